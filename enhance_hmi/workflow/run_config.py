"""The workflow's configuration, checked beyond its schema.

``workflow/rules/common.smk`` validates the config against
``workflow/schemas/config.schema.yaml`` (which fills in the defaults), then
builds a :class:`RunConfig` from it: the checks a schema cannot make (a
source that exists, times that parse and are in order, a cadence on the
series' grid, weights files that exist, a quality policy and an input
noise that parse), each raising a :class:`~enhance_hmi.errors.ConfigError`
whose one line names the key and what to do, and the values the rules read
(the source, the series, the range, the slot step, the cube layout).

Nothing here imports torch: the input-noise check loads the inference
package only when a noise is configured.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from enhance_hmi.acquire import HmiSeries, QualityPolicy, get_series, parse_cadence, sample_dir
from enhance_hmi.cube import CubeLayout, out_of_tolerance_choice
from enhance_hmi.errors import ConfigError
from enhance_hmi.frame import OBSERVABLES
from enhance_hmi.settings import EnhanceSettings
from enhance_hmi.time import tai_datetime

__all__ = [
    "REMOTE_SOURCES",
    "RunConfig",
    "check_enhance_settings",
    "config_sha256",
    "resolve_source",
    "times_as_text",
]

#: Named remote servers (besides http(s) URLs).
REMOTE_SOURCES = ("jsoc", "kis")


def times_as_text(config: MutableMapping[str, Any]) -> None:
    """Write ``start`` and ``end`` back as text where YAML read them as dates.

    YAML reads an unquoted ``2014-01-01`` as a date; the schema asks for
    text. Changes ``config`` in place, before it is validated.
    """
    for key in ("start", "end"):
        if isinstance(config.get(key), (dt.date, dt.datetime)):
            config[key] = config[key].isoformat()


def resolve_source(source: str) -> str:
    """The acquisition server of the config's ``source``: "sample" is the bundled archive.

    Raises
    ------
    ConfigError
        Neither sample, jsoc, kis, an http(s) URL nor an existing directory.
    """
    text = str(source).strip()
    if text == "sample":
        return str(sample_dir())
    if text in REMOTE_SOURCES or text.startswith(("http://", "https://")):
        return text
    if not Path(text).is_dir():
        raise ConfigError(
            f"config source {text!r} is not sample, jsoc, kis, an http(s) URL or an "
            "existing directory of HMI FITS files; fix `source:` in the config"
        )
    return str(Path(text).resolve())


def check_enhance_settings(config: Mapping[str, Any]) -> None:
    """Check every enhancement option as the batch jobs will read it, for each observable.

    :meth:`enhance_hmi.settings.EnhanceSettings.from_config`: the ``enhance:``
    section (input noise per observable included), ``weights:`` and
    ``validation.frame_quality``, judged as ``enhance predict`` judges its
    options.

    Raises
    ------
    ConfigError
        The first option refused, named as in the configuration
        (``config enhance.input_noise.continuum: ...``).
    """
    for observable in OBSERVABLES:
        try:
            EnhanceSettings.from_config(config, observable)
        except ConfigError as exc:
            raise ConfigError(f"config {exc}") from exc


def config_sha256(config: Mapping[str, Any]) -> str:
    """Digest of the whole config (keys sorted), recorded in the cubes and the run status."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _check_weights(config: Mapping[str, Any]) -> None:
    for observable, path in config["weights"].items():
        if path is not None and not Path(path).is_file():
            raise ConfigError(
                f"config weights for {observable}: {path} does not exist (give a .safetensors "
                "file with its .json sidecar, or null for the shipped weights)"
            )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated workflow config with the values its rules read.

    Build it with :meth:`from_config`, which makes every check.

    Attributes
    ----------
    config
        The config as validated (schema defaults filled in).
    output
        The output directory (POSIX spelling, as in the rules' paths).
    source
        The acquisition server (a named server, a URL or an absolute path).
    series
        The configured series by name.
    start, end
        The range bounds (naive TAI), or None; ``end`` is None too when it
        is ``now`` (see :attr:`end_is_now`).
    end_is_now
        Whether the range ends at the last slot before the run's start.
    cadence
        The slot spacing, or None for every frame found.
    out_of_tolerance
        ``cube.out_of_tolerance`` (or its older name ``cube.flagged``).
    sha256
        :func:`config_sha256` of :attr:`config`.
    """

    config: Mapping[str, Any]
    output: str
    source: str
    series: dict[str, HmiSeries]
    start: dt.datetime | None
    end: dt.datetime | None
    end_is_now: bool
    cadence: dt.timedelta | None
    out_of_tolerance: str
    sha256: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunConfig:
        """Check a schema-validated config; return its values.

        Raises
        ------
        ConfigError
            The first value that is wrong, with the key and what to do.
        """
        source = resolve_source(config["source"])
        start = tai_datetime(config["start"]) if config["start"] else None
        end_is_now = str(config["end"]).strip().lower() == "now"
        end = None if end_is_now or not config["end"] else tai_datetime(config["end"])
        cadence = parse_cadence(config["cadence"]) if config["cadence"] else None
        QualityPolicy.parse(config["quality_policy"])
        out_of_tolerance = out_of_tolerance_choice(config["cube"])
        series = {name: get_series(name) for name in config["series"]}
        if not Path(source).is_dir() and (
            start is None or config["end"] is None or cadence is None
        ):
            raise ConfigError(
                f"config source {config['source']!r} needs start, end (a time or now) and "
                "cadence; only a local archive may leave them null"
            )
        if start is not None and end is not None and end < start:
            raise ConfigError(f"config end {config['end']} is before start {config['start']}")
        for name, hmi in series.items():
            if cadence is not None and cadence % hmi.step:
                raise ConfigError(
                    f"config cadence {config['cadence']} is not a multiple of the "
                    f"{int(hmi.step.total_seconds())} s step of {name}"
                )
        _check_weights(config)
        check_enhance_settings(config)
        return cls(
            config=config,
            output=Path(config["output"]).as_posix(),
            source=source,
            series=series,
            start=start,
            end=end,
            end_is_now=end_is_now,
            cadence=cadence,
            out_of_tolerance=out_of_tolerance,
            sha256=config_sha256(config),
        )

    @property
    def is_remote(self) -> bool:
        """Whether the source is a server (not a local directory)."""
        return not Path(self.source).is_dir()

    def slot_step(self, series: str) -> dt.timedelta:
        """Spacing of the slot grid: the cadence, or the series' native step."""
        return self.cadence if self.cadence is not None else self.series[series].step

    def layout(self, series: str) -> CubeLayout:
        """The cube layout of ``series``."""
        cube = self.config["cube"]
        return CubeLayout(period=cube["period"], frames=cube["frames"], step=self.slot_step(series))

    def layout_params(self, series: str) -> dict[str, Any]:
        """The cube layout of ``series`` as plain values (a rule's params)."""
        return {
            "period": self.config["cube"]["period"],
            "frames": self.config["cube"]["frames"],
            "step_seconds": int(self.slot_step(series).total_seconds()),
        }

    @property
    def frames_per_job(self) -> int:
        """Slots per enhancement batch."""
        return int(self.config["enhance"]["frames_per_job"])

    def input_noise_for(self, series: str) -> str | None:
        """The configured input noise of a series' observable (text), or None to estimate it."""
        value = self.config["enhance"]["input_noise"].get(self.series[series].observable)
        return None if value is None else str(value)

    def weights_for(self, series: str) -> str | None:
        """The configured weights of a series' observable (absolute), or None for the shipped."""
        path = self.config["weights"][self.series[series].observable]
        return str(Path(path).resolve()) if path else None
