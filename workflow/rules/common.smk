# Configuration checks (schema with defaults, then the values the schema
# cannot judge) and the input functions that read what acquisition found.

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from snakemake.utils import validate

import enhance_hmi.acquire as acquisition
from enhance_hmi.acquire.timespec import snap_up
from enhance_hmi.cube import CubeLayout, out_of_tolerance_choice
from enhance_hmi.cube.plan import range_batches
from enhance_hmi.errors import ConfigError
from enhance_hmi.inference.consistency import (
    input_noise_in_data_units,
    parse_input_noise,
)
from enhance_hmi.time import format_t_rec, grid_floor, tai_datetime, utc_timestamp
from enhance_hmi.workflow.quarantine import read_quarantine
from enhance_hmi.workflow.run_status import run_status, write_run_status

RUN_STARTED = utc_timestamp()

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
START = tai_datetime(config["start"]) if config["start"] else None
END_IS_NOW = str(config["end"]).strip().lower() == "now"
END = None if END_IS_NOW or not config["end"] else tai_datetime(config["end"])
CADENCE = acquisition.parse_cadence(config["cadence"]) if config["cadence"] else None
acquisition.QualityPolicy.parse(config["quality_policy"])  # ConfigError when malformed
# cube.out_of_tolerance, or its older name cube.flagged (configs written before)
CUBE_OUT_OF_TOLERANCE = out_of_tolerance_choice(config["cube"])

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
for _observable, _noise in config["enhance"]["input_noise"].items():
    if _noise is not None:
        try:
            input_noise_in_data_units(parse_input_noise(_noise), _observable)
        except ConfigError as exc:
            raise ConfigError(
                f"config enhance.input_noise.{_observable}: {exc}"
            ) from exc

CONFIG_SHA256 = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


wildcard_constraints:
    series=r"hmi\.[A-Za-z_]+_[0-9]+s",
    key=r"[0-9a-f]{12}(-r[0-9]+)?",
    batch=r"[0-9_]+-[0-9]{4}",
    period=r"[0-9_]+",


def slot_step(series):
    """Spacing of the slot grid: the cadence, or the series' native step."""
    return CADENCE if CADENCE is not None else SERIES[series].step


_ENDS = {}


def resolved_end(series):
    """``end`` as a JSOC time; ``now`` is the last slot before the current TAI time.

    Computed once per run, so the key, the batches and the checkpoint agree.
    """
    if series not in _ENDS:
        _ENDS[series] = _resolve_end(series)
    return _ENDS[series]


def _resolve_end(series):
    if not END_IS_NOW:
        return format_t_rec(END) if END is not None else None
    now = tai_datetime(dt.datetime.now(dt.timezone.utc))
    return format_t_rec(grid_floor(now, slot_step(series)))


def _request_hash(series):
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


def _attempt(path):
    """The retry number in a summary name ``<hash>[-r<n>]``."""
    _, _, number = path.stem.partition("-r")
    return int(number) if number else 0


_KEYS = {}


def acquire_key(series):
    """Name of one acquisition, fixed for the whole run.

    ``<hash>`` of everything that decides the plan; when the summary of that
    request records an incomplete acquisition (files that failed, exports
    still pending), the next run gets ``<hash>-r<n+1>``: a new checkpoint
    output, so a rerun retries what failed instead of finding it "done". So
    does a series with quarantined frames: the acquisition fetches them
    again, and a frame whose input changed is tried again.
    """
    if series in _KEYS:
        return _KEYS[series]
    done = sorted(
        Path(OUT, "acquire", series).glob("*.json"), key=lambda p: p.stat().st_mtime
    )
    if done and (workflow.remote_exec or workflow.subprocess_exec):
        # a job started later must see the plan its scheduler saw, not a newer "now"
        _KEYS[series] = done[-1].stem
        return _KEYS[series]
    base = _request_hash(series)
    tries = sorted((p for p in done if p.stem.split("-r")[0] == base), key=_attempt)
    key = base
    if tries:
        latest = tries[-1]
        summary = json.loads(latest.read_text())
        attempt = _attempt(latest)
        settled = summary.get("complete") and not read_quarantine(OUT, series)
        key = latest.stem if settled else f"{base}-r{attempt + 1}"
    _KEYS[series] = key
    return key


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


_RANGE_BATCHES = {}


def range_plan(series):
    """``{period: [batch id]}`` of the configured range, known before any query.

    None for a local archive without ``start``/``end``: its batches are known
    only once the checkpoint has scanned it.
    """
    if series not in _RANGE_BATCHES:
        end = resolved_end(series)
        if START is None or end is None:
            _RANGE_BATCHES[series] = None
        else:
            layout = CubeLayout(
                period=config["cube"]["period"],
                frames=config["cube"]["frames"],
                step=slot_step(series),
            )
            first = snap_up(START, SERIES[series])
            last = tai_datetime(end)
            _RANGE_BATCHES[series] = (
                {}
                if first > last
                else range_batches(
                    layout, first, last, config["enhance"]["frames_per_job"]
                )
            )
    return _RANGE_BATCHES[series]


def series_periods(series):
    """Every period (cube) of ``series`` with its batch ids."""
    planned = range_plan(series)
    return planned if planned is not None else acquire_summary(series)["periods"]


def batch_plan(wildcards):
    """The plan file of one batch, waiting for the checkpoint whenever it may change.

    A batch whose plan and marker both exist and that held no unfinished
    slot at the last acquisition reads its plan file as it is: Snakemake's
    job count then includes only the batches with work, before and after the
    checkpoint. Any other batch depends on the checkpoint, which writes its
    plan.
    """
    series = wildcards.series
    plan = Path(OUT, "plan", series, f"{wildcards.batch}.csv")
    marker = Path(OUT, "enhanced", series, "batches", f"{wildcards.batch}.json")
    settled = (
        plan.is_file() and marker.is_file() and not _open_batch(series, wildcards.batch)
    )
    if not settled:
        acquire_output(series)  # IncompleteCheckpointException until the checkpoint ran
    return str(plan)


_OPEN_BATCHES = {}


def _open_batch(series, batch):
    """Whether the last acquisition left slots of ``batch`` unfinished, or it holds quarantined frames."""
    if series not in _OPEN_BATCHES:
        done = sorted(
            Path(OUT, "acquire", series).glob("*.json"), key=lambda p: p.stat().st_mtime
        )
        summary = json.loads(done[-1].read_text()) if done else {}
        quarantined = {entry.batch for entry in read_quarantine(OUT, series)}
        _OPEN_BATCHES[series] = set(summary.get("open_batches", [])) | quarantined
    return batch in _OPEN_BATCHES[series]


def cube_batches(wildcards):
    """Batch markers of the frames of one cube."""
    return [
        f"{OUT}/enhanced/{wildcards.series}/batches/{batch}.json"
        for batch in series_periods(wildcards.series)[wildcards.period]
    ]


def series_cubes(series):
    return [f"{OUT}/cubes/{series}/{period}.json" for period in series_periods(series)]


def report_inputs(wildcards):
    """Acquisition summary and the cubes that hold frames (read after the checkpoint)."""
    summary = acquire_summary(wildcards.series)
    return {
        "summary": acquire_output(wildcards.series),
        "cubes": [
            f"{OUT}/cubes/{wildcards.series}/{period}.json"
            for period in summary["filled_periods"]
        ],
    }


def input_noise_for(series):
    """The configured input noise of a series' observable (text), or None to estimate it."""
    value = config["enhance"]["input_noise"].get(SERIES[series].observable)
    return None if value is None else str(value)


def weights_for(series):
    path = config["weights"][SERIES[series].observable]
    return str(Path(path).resolve()) if path else None


def acquisition_check(series):
    """The marker of a complete acquisition (its rule fails while one is incomplete)."""
    return f"{OUT}/acquire/{series}/{acquire_key(series)}.complete"


def all_targets(wildcards):
    targets = []
    for series in SERIES:
        targets.append(acquisition_check(series))
        targets += series_cubes(series)
        targets.append(f"{OUT}/report/{series}/frames.csv")
        targets.append(f"{OUT}/report/{series}/validation.json")
    return targets + TWIN_TARGETS  # twins added to a finished run are still built


# ------------------------------------------------------------------ run status
def _acquisition_statuses():
    statuses = {}
    for series in SERIES:
        path = acquisition.status_path(f"{OUT}/raw/{series}", series)
        if path.is_file():
            statuses[series] = json.loads(path.read_text())
    return statuses


def _log_files(log):
    """Snakemake hands the hooks its log file, or a list of them."""
    if not log:
        return []
    return [str(path) for path in ([log] if isinstance(log, (str, Path)) else log)]


def finish_run(success, log):
    """Write ``<output>/status.json``, print its one-line summary, end with its exit status.

    A run that finished every job but holds quarantined frames exits with
    ``QUARANTINE_EXIT_STATUS`` (3) instead of 0, so cron sees it.
    """
    status = run_status(
        output=OUT,
        series=SERIES,
        acquisition=_acquisition_statuses(),
        success=success,
        started=RUN_STARTED,
        logs=_log_files(log),
        config_sha256=CONFIG_SHA256,
    )
    print(write_run_status(status, OUT), file=sys.stderr)
    if success and status["exit_status"]:
        sys.exit(status["exit_status"])
