# Configuration checks (schema with defaults, then the values the schema
# cannot judge) and the input functions that read what acquisition found.

import datetime as dt
import hashlib
import json
from pathlib import Path

from snakemake.utils import validate

import enhance.acquire as acquisition
from enhance.acquire.timespec import format_t_rec
from enhance.errors import ConfigError

for _key in ("start", "end"):  # YAML reads an unquoted 2014-01-01 as a date
    if isinstance(config.get(_key), (dt.date, dt.datetime)):
        config[_key] = config[_key].isoformat()

validate(config, schema="../schemas/config.schema.yaml")

OUT = Path(config["output"]).as_posix()
SERIES = {name: acquisition.get_series(name) for name in config["series"]}
REMOTE_SOURCES = ("jsoc", "kis")


def _source():
    """The acquisition server: "sample" is the bundled archive."""
    source = str(config["source"]).strip()
    if source == "sample":
        return str(acquisition.sample_dir())
    if source in REMOTE_SOURCES or source.startswith(("http://", "https://")):
        return source
    if not Path(source).is_dir():
        raise ConfigError(
            f"config source {source!r} is not sample, jsoc, kis, an http(s) URL or an "
            "existing directory of HMI FITS files; fix `source:` in the config"
        )
    return str(Path(source).resolve())


SOURCE = _source()
IS_REMOTE = not Path(SOURCE).is_dir()
START = acquisition.parse_time(config["start"]) if config["start"] else None
END_IS_NOW = str(config["end"]).strip().lower() == "now"
END = None if END_IS_NOW or not config["end"] else acquisition.parse_time(config["end"])
CADENCE = acquisition.parse_cadence(config["cadence"]) if config["cadence"] else None
acquisition.QualityPolicy.parse(config["quality_policy"])  # ConfigError when malformed

if IS_REMOTE and (START is None or config["end"] is None or CADENCE is None):
    raise ConfigError(
        f"config source {config['source']!r} needs start, end (a time or now) and cadence; "
        "only a local archive may leave them null"
    )
if START is not None and END is not None and END < START:
    raise ConfigError(f"config end {config['end']} is before start {config['start']}")
for _name, _series in SERIES.items():
    if CADENCE is not None and CADENCE % _series.step:
        raise ConfigError(
            f"config cadence {config['cadence']} is not a multiple of the "
            f"{int(_series.step.total_seconds())} s step of {_name}"
        )
for _observable, _path in config["weights"].items():
    if _path is not None and not Path(_path).is_file():
        raise ConfigError(
            f"config weights for {_observable}: {_path} does not exist (give a .safetensors "
            "file with its .json sidecar, or null for the shipped weights)"
        )

CONFIG_SHA256 = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


wildcard_constraints:
    series=r"hmi\.[A-Za-z_]+_[0-9]+s",
    key=r"[0-9a-f]{12}",
    batch=r"[0-9_]+-[0-9]{4}",
    period=r"[0-9_]+",


def slot_step(series):
    """Spacing of the slot grid: the cadence, or the series' native step."""
    return CADENCE if CADENCE is not None else SERIES[series].step


def resolved_end(series):
    """``end`` as a JSOC time; ``now`` is the last slot before the current TAI time."""
    if not END_IS_NOW:
        return format_t_rec(END) if END is not None else None
    from astropy.time import Time

    now = Time.now().tai.datetime.replace(tzinfo=None)
    epoch = dt.datetime(1993, 1, 1)  # T_REC grid origin (Couvidat et al. 2016)
    step = slot_step(series)
    return format_t_rec(epoch + step * ((now - epoch) // step))


def acquire_key(series):
    """Name of one acquisition: changes when anything that decides the plan changes."""
    if END_IS_NOW and (workflow.remote_exec or workflow.subprocess_exec):
        # a job started later must see the plan its scheduler saw, not a newer "now"
        done = sorted(
            Path(OUT, "acquire", series).glob("*.json"), key=lambda p: p.stat().st_mtime
        )
        if done:
            return done[-1].stem
    request = {
        "source": SOURCE,
        "series": series,
        "start": format_t_rec(START) if START else None,
        "end": resolved_end(series),
        "cadence": config["cadence"],
        "quality_policy": config["quality_policy"],
        "frames_per_job": config["enhance"]["frames_per_job"],
        "period": config["cube"]["period"],
        "frames": config["cube"]["frames"],
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]


def layout_params(series):
    """Cube layout for the planner."""
    return {
        "period": config["cube"]["period"],
        "frames": config["cube"]["frames"],
        "step_seconds": int(slot_step(series).total_seconds()),
    }


def acquire_output(series):
    """The checkpoint's summary file of ``series`` (after it has run)."""
    return checkpoints.acquire.get(series=series, key=acquire_key(series)).output[0]


def acquire_summary(series):
    return json.loads(Path(acquire_output(series)).read_text())


def cube_batches(wildcards):
    """Batch markers of the frames of one cube."""
    summary = acquire_summary(wildcards.series)
    return [
        f"{OUT}/enhanced/{wildcards.series}/batches/{batch}.json"
        for batch in summary["periods"][wildcards.period]
    ]


def series_cubes(series):
    return [
        f"{OUT}/cubes/{series}/{period}.json"
        for period in acquire_summary(series)["periods"]
    ]


def report_inputs(wildcards):
    return {
        "summary": acquire_output(wildcards.series),
        "cubes": series_cubes(wildcards.series),
    }


def weights_for(series):
    path = config["weights"][SERIES[series].observable]
    return str(Path(path).resolve()) if path else None


def all_targets(wildcards):
    targets = []
    for series in SERIES:
        targets += series_cubes(series)
        targets.append(f"{OUT}/report/{series}/frames.csv")
        targets.append(f"{OUT}/report/{series}/validation.json")
    return targets + TWIN_TARGETS  # twins added to a finished run are still built
