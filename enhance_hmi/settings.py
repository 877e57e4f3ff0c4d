"""The options of an enhancement run: :class:`EnhanceSettings`, the one currency.

``enhance predict``, the workflow's batch jobs, :func:`enhance_hmi.enhance_map`
and Python callers all describe a run with one :class:`EnhanceSettings`,
built once and passed whole to :func:`enhance_hmi.pipeline.enhance_file`,
:func:`enhance_hmi.batch.enhance_files` and
:func:`enhance_hmi.inference.enhance_frame`. It is built from

- Python values: ``EnhanceSettings(tile=256)``, or
  :meth:`EnhanceSettings.from_mapping` for values that may still be text
  (``"10 G"``, ``"none"``, ``"auto"``);
- the command line: the options of ``enhance predict`` whose destination is a
  field name (:meth:`EnhanceSettings.from_mapping` with ``--option`` labels);
- the workflow's configuration: :meth:`EnhanceSettings.from_config`, which
  reads the ``enhance:`` section, the ``weights:`` of the observable and
  ``validation.frame_quality``.

Every value is checked against the workflow's configuration schema
(``workflow/schemas/config.schema.yaml``, carried in the wheel) and by
:meth:`EnhanceSettings.validate`, so the three routes refuse the same values
with one sentence naming the option as its user wrote it. Adding an option
means adding a field here (its metadata says whether it changes the
enhanced pixels, see :meth:`EnhanceSettings.output_record`), its entry in
the schema, its ``enhance predict`` flag (``dest`` = the field name) and its
documentation; every enhanced file records every field in its header
(:meth:`EnhanceSettings.provenance`).

This module loads neither torch nor the network: the workflow checks its
configuration with it when Snakemake parses the Snakefile.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import astropy.units as u

from enhance_hmi.errors import ConfigError
from enhance_hmi.frame import OBSERVABLES
from enhance_hmi.io.frame_quality import QualityTolerances
from enhance_hmi.io.reader import NORMALIZE_CHOICES
from enhance_hmi.io.writer import COMPRESSION_CHOICES
from enhance_hmi.physics.noise import input_noise_in_data_units, parse_input_noise
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL, HMI_PSF_MODELS

__all__ = [
    "COMPILE_CHOICES",
    "DEFAULT_TILE",
    "DEVICE_PATTERN",
    "JOB_KEYS",
    "PRECISION_CHOICES",
    "SYMMETRY_COUNTS",
    "EnhanceSettings",
    "check_symmetries",
    "config_schema",
    "validate_options",
]

#: Accepted ``device`` values: auto, cpu, cuda or cuda:N.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: The numbers of symmetries the network may be averaged over
#: (:func:`enhance_hmi.inference.symmetry.symmetry_group`, ``symmetries``).
SYMMETRY_COUNTS: tuple[int, ...] = (1, 2, 4, 8)

#: Inference precisions (:func:`enhance_hmi.inference.autocast_dtype` maps them to dtypes).
PRECISION_CHOICES = ("fp32", "bf16", "fp16")
#: ``compile`` values: always, never, or where it pays
#: (:func:`enhance_hmi.inference.frame.resolve_compile`).
COMPILE_CHOICES = (True, False, "auto")
#: Default inference tile in input pixels: the fastest on a CPU for a full
#: disk (``bench/cpu_tile.py``, docs/performance.md).
DEFAULT_TILE = 512

#: The smallest inference tile (input pixels), as the configuration schema says.
MIN_TILE = 16

#: Keys of the configuration's ``enhance:`` section that schedule a job rather
#: than change what a frame becomes: frames per job and the threads that read
#: and write around the network (:func:`enhance_hmi.batch.enhance_files`).
JOB_KEYS = ("frames_per_job", "overlap", "prefetch", "readers", "writers")

#: Where the workflow's configuration schema lives, relative to the repository
#: (a wheel carries a copy, :func:`enhance_hmi.repository_files.repository_path`).
SCHEMA_PATH = "workflow/schemas/config.schema.yaml"


@functools.cache
def config_schema() -> dict[str, Any]:
    """The workflow's configuration schema (JSON Schema, read once per process).

    Raises
    ------
    ConfigError
        The schema is not installed (a package copied without its repository
        or wheel data).
    """
    import yaml

    from enhance_hmi.repository_files import repository_path

    path = repository_path(SCHEMA_PATH)
    if not path.is_file():
        raise ConfigError(
            f"the configuration schema {SCHEMA_PATH} is not installed beside the package "
            "(reinstall enhance-hmi)"
        )
    schema: dict[str, Any] = yaml.safe_load(path.read_text())
    return schema


def validate_options(
    *,
    observable: str | None,
    device: str,
    precision: str,
    tile: int,
    normalize: str,
) -> None:
    """Raise :class:`ConfigError` (one sentence) for any invalid option value."""
    if observable is not None and observable not in OBSERVABLES:
        raise ConfigError(
            f"unknown observable {observable!r}; use one of {', '.join(OBSERVABLES)} "
            "(or leave it out to read it from the file)"
        )
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if precision not in PRECISION_CHOICES:
        raise ConfigError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}"
        )
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE:
        raise ConfigError(f"tile must be at least {MIN_TILE} pixels, got {tile!r}")
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; use one of {', '.join(NORMALIZE_CHOICES)}"
        )


def _output(default: Any) -> Any:
    """A field whose value changes the enhanced pixels (:meth:`EnhanceSettings.output_record`)."""
    return dataclasses.field(default=default, metadata={"output": True})


@dataclasses.dataclass(frozen=True)
class EnhanceSettings:
    """The options of one enhancement run, shared by every frame of a batch.

    Attributes
    ----------
    observable : {"continuum", "magnetogram"}, optional
        Read from each file when None.
    weights : path-like, optional
        A ``.safetensors`` weights file (with its JSON sidecar); default: the
        shipped weights for the observable.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    precision : {"fp32", "bf16", "fp16"}
    tile : int
        Inference tile size in input pixels.
    normalize : {"auto", "quiet-sun", "none"}
        See :func:`enhance_hmi.io.read_hmi`.
    compression : {"gzip", "rice", None}
        Output compression, see :func:`enhance_hmi.io.write_enhanced` (default
        lossless gzip).
    compile : bool or "auto"
        Run the network through :func:`torch.compile`: a one-off
        compilation per process, then faster forward passes
        (:func:`enhance_hmi.inference.array.prepare_model`, figures in
        docs/performance.md); for jobs of many full-disk frames. "auto":
        where it pays (:func:`enhance_hmi.inference.frame.resolve_compile`).
    check_scale : bool
        Refuse frames whose pixel scale is not the network's training scale
        (:func:`enhance_hmi.io.plausibility.check_pixel_scale`); False to enhance
        them anyway.
    check_range : bool
        Refuse frames whose values do not fit the observable and mask the
        few implausible pixels (see :func:`enhance_hmi.io.read_hmi`); False to
        use the values as they are.
    quality : QualityTolerances
        Tolerances of the per-frame quality figures
        (:func:`enhance_hmi.io.frame_quality.frame_quality`, measured in the
        write stage and written to the header; frames out of tolerance are
        written too).
    uncertainty : bool or None
        Write the per-pixel sigma (``SIGMA`` HDU) computed by the network's
        uncertainty head: True always (no head is an error), False never,
        None when a head fitted for these weights is installed (the shipped
        networks have one); see
        :func:`enhance_hmi.inference.uncertainty.resolve_uncertainty`.
    consistency : bool
        Project the network output onto the images consistent with the
        input within its noise (:func:`enhance_hmi.inference.enhance_frame`);
        the held-out scores of the shipped networks include it.
    input_noise : astropy.units.Quantity, optional
        Input noise the projection stops at instead of the weights'
        estimate: gauss for magnetograms, quiet-Sun units (dimensionless)
        for continuum (:func:`enhance_hmi.physics.noise.input_noise_in_data_units`).
    psf_model : {"wachter", "wachter2012", "yeo", "airy14"}, optional
        The HMI PSF of the forward model the data were made with, as the
        user holds it (:data:`enhance_hmi.physics.psf.HMI_PSF_MODELS`).
        None (default): the model the network was trained for (its
        sidecar's ``psf_model``, ``ENHPSF``).
    symmetries : int
        Average the network over this many symmetries of the forward model
        (:func:`enhance_hmi.inference.symmetry.symmetry_group`: turns and
        mirror images, and for magnetograms first the sign of the field),
        one pass each: 1 (default, one pass, as trained), 2, 4 or 8. Gains
        and costs in docs/model_card.md ("Averaging over symmetries").
    pixel_integration : bool, optional
        Whether that forward model integrates over the 0.504" CCD pixel
        (True) or the measured PSF already includes the pixel's response
        and the image samples it at pixel centres (False)
        (:class:`enhance_hmi.physics.forward_family.ForwardModelSpec`).
        None (default): the network's own (True for the shipped networks).

        When ``psf_model`` and ``pixel_integration`` name another member of
        the family than the network was trained for, the network is told:
        its input is first harmonised to its own member
        (:func:`enhance_hmi.physics.harmonise.harmonise`, a Wiener-regularised
        ratio of the two transfer functions), the projection onto the
        (unfiltered) input uses the told member, and the per-frame quality
        figures its PSF (their re-observation integrates over the pixel)
        (docs/forward_models.md).
    """

    observable: str | None = None
    weights: str | os.PathLike[str] | None = None
    device: str = "auto"
    precision: str = "fp32"
    tile: int = DEFAULT_TILE
    normalize: str = "auto"
    compression: str | None = "gzip"
    compile: bool | str = False
    check_scale: bool = True
    check_range: bool = True
    quality: QualityTolerances = dataclasses.field(default_factory=QualityTolerances)
    uncertainty: bool | None = None
    consistency: bool = True
    input_noise: u.Quantity | None = None
    psf_model: str | None = dataclasses.field(
        default=None,
        metadata={"output": True, "sidecar": ("psf_model",), "unset": DEFAULT_PSF_MODEL},
    )
    pixel_integration: bool | None = dataclasses.field(
        default=None,
        metadata={"output": True, "sidecar": ("pixel_integration",), "unset": True},
    )
    symmetries: int = _output(1)

    # ------------------------------------------------------------ building
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        observable: str | None = None,
        label: Callable[[str], str] | None = None,
        base: EnhanceSettings | None = None,
    ) -> EnhanceSettings:
        """Settings from option names and values that may still be text.

        Parameters
        ----------
        values : mapping
            Field names to values: Python values, or their text as a
            configuration or a command line gives them (``tile="256"``,
            ``compression="none"``, ``uncertainty="auto"``,
            ``input_noise="10 G"``, ``quality={...}``). ``input_noise`` may
            also be a mapping per observable, as in the configuration.
            Absent keys keep ``base``'s values (default: the field defaults).
        observable : str, optional
            The observable the settings are for, when ``values`` does not
            name it; picks the per-observable ``input_noise``.
        label : callable, optional
            How a user wrote an option, for messages: e.g.
            ``lambda name: "--" + name.replace("_", "-")`` for a command line.
            Default: the field name.
        base : EnhanceSettings, optional
            The settings the values change.

        Raises
        ------
        ConfigError
            An unknown option, or a value the schema or :meth:`validate`
            refuses, in one sentence naming the option.
        """
        label = label or (lambda name: name)
        known = cls.option_names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown option {label(unknown[0])}; known options: "
                + ", ".join(label(name) for name in known)
            )
        observable = values.get("observable", observable)
        changes = {
            name: _convert(name, value, observable=observable, label=label)
            for name, value in values.items()
        }
        settings = dataclasses.replace(base or cls(), **changes)
        settings.validate()
        _check_against_schema(changes, label)  # what validate() does not judge
        return settings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], observable: str) -> EnhanceSettings:
        """The settings of the workflow's batch jobs for one observable.

        Reads the configuration's ``enhance:`` section (without
        :data:`JOB_KEYS`), ``weights[observable]`` (a path relative to the
        working directory, or null for the shipped weights) and
        ``validation.frame_quality``. Values absent from ``config`` take the
        schema's defaults, which differ from the Python ones where the
        archive needs it (``compression: none``, ``compile: auto``).

        Raises
        ------
        ConfigError
            A value the schema or :meth:`validate` refuses, naming the
            configuration key (``enhance.tile``).
        """
        section = _with_schema_defaults(config.get("enhance") or {}, "enhance")
        values: dict[str, Any] = {k: v for k, v in section.items() if k not in JOB_KEYS}
        weights = (config.get("weights") or {}).get(observable)
        values["weights"] = str(Path(weights).resolve()) if weights else None
        values["quality"] = (config.get("validation") or {}).get("frame_quality") or {}
        values["observable"] = observable

        def label(name: str) -> str:
            if name in ("weights", "input_noise"):  # per observable
                return (
                    f"weights.{observable}" if name == "weights" else f"enhance.{name}.{observable}"
                )
            if name == "quality":
                return "validation.frame_quality"
            return f"enhance.{name}"

        return cls.from_mapping(values, observable=observable, label=label)

    @staticmethod
    def config_section(config: Mapping[str, Any], observable: str) -> dict[str, Any]:
        """The part of the workflow's configuration :meth:`from_config` reads for ``observable``.

        What the batch rule hands its job (its change reruns the batches,
        whose frames already enhanced with the same settings are kept).
        """
        return {
            "enhance": dict(config.get("enhance") or {}),
            "weights": {observable: (config.get("weights") or {}).get(observable)},
            "validation": {
                "frame_quality": (config.get("validation") or {}).get("frame_quality") or {}
            },
        }

    def replace(self, **changes: Any) -> EnhanceSettings:
        """A copy with ``changes`` (as :meth:`from_mapping` reads them)."""
        return type(self).from_mapping(changes, observable=self.observable, base=self)

    # ------------------------------------------------------------ checking
    def validate(self) -> None:
        """Raise :class:`ConfigError` for a bad value (no device is opened)."""
        validate_options(
            observable=self.observable,
            device=self.device,
            precision=self.precision,
            tile=self.tile,
            normalize=self.normalize,
        )
        if self.compression not in COMPRESSION_CHOICES:
            raise ConfigError(f"unknown compression {self.compression!r}; use gzip, rice or none")
        for name in ("check_scale", "check_range", "consistency"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.pixel_integration is not None and not isinstance(self.pixel_integration, bool):
            raise ConfigError(
                f"pixel_integration must be true, false or null, got {self.pixel_integration!r}"
            )
        if self.psf_model is not None and self.psf_model not in HMI_PSF_MODELS:
            raise ConfigError(
                f"unknown psf_model {self.psf_model!r}; use one of {', '.join(HMI_PSF_MODELS)}"
            )
        check_symmetries(self.symmetries)
        if self.compile not in COMPILE_CHOICES or not isinstance(self.compile, (bool, str)):
            raise ConfigError(f"compile must be true, false or auto, got {self.compile!r}")
        if self.input_noise is not None:
            if not self.consistency:
                raise ConfigError(
                    "an input noise is used only by the projection onto the input, which is "
                    "off (--no-consistency, consistency=False); drop one of the two"
                )
            if self.observable is not None:
                input_noise_in_data_units(self.input_noise, self.observable)

    def check(self) -> None:
        """:meth:`validate`, then that a requested GPU exists (:class:`ConfigError` if not)."""
        self.validate()
        _check_device(self.device)

    def _sidecar_options(self) -> Iterator[tuple[dataclasses.Field[Any], tuple[str, ...], Any]]:
        """Each set option tied to a sidecar key (``metadata["sidecar"]``): field, keys, value."""
        for field in dataclasses.fields(self):
            keys = field.metadata.get("sidecar")
            value = getattr(self, field.name)
            if keys and value is not None:
                yield field, keys, value

    @property
    def tells_forward_model(self) -> bool:
        """Whether the run names the HMI forward model's PSF (``psf_model``).

        A run that names none gets a sigma widened for the whole family
        (:class:`enhance_hmi.model.uncertainty.FamilySigma`), even if it sets
        ``pixel_integration``: the PSF, the larger unknown, was not said.
        Naming a PSF (the network's own included) says the member is known
        (with ``pixel_integration``, or the network's pixel choice), and its
        sigma is widened only for what harmonising the input left.
        """
        return self.psf_model is not None

    def recipe(self, sidecar: Mapping[str, Any]) -> dict[str, Any]:
        """The weights' sidecar as this run reads it: the network's recipe, amended by the options.

        A sidecar says how its network is to be used (the HMI PSF model it
        was trained for, the projection's stopping level and noise
        estimate, :mod:`enhance_hmi.model.weights`). An option whose field
        metadata names a sidecar key (``metadata["sidecar"]``, a path of
        keys) replaces that entry when it is not None; the projection onto
        the input and the per-frame quality figures read the result. The
        sidecar itself is not changed.
        """
        amended = copy.deepcopy(dict(sidecar))
        for _, keys, value in self._sidecar_options():
            entry = amended
            for key in keys[:-1]:
                entry = entry.setdefault(key, {})
            entry[keys[-1]] = value
        return amended

    def for_weights(self, sidecar: Mapping[str, Any], *, sigma: bool = False) -> EnhanceSettings:
        """These settings with every sidecar-tied option that repeats the sidecar set to None.

        ``psf_model="wachter2012"`` for a network trained with it changes
        no output pixel: without sigma (``uncertainty=False``) the frame is
        the default's, bit for bit, so its settings digest
        (:func:`enhance_hmi.pipeline.settings_sha256`) must be the default's
        too, or an archive would be redone for nothing. With sigma the two
        differ (told its own member, sigma is not widened for the family:
        :attr:`tells_forward_model`), and so do their digests: ``sigma``
        says whether the frames carry one (the resolved ``uncertainty``).
        A key the sidecar lacks reads as the field's ``metadata["unset"]``
        (what a network without it was trained with).
        """
        if sigma:
            return self
        changes: dict[str, Any] = {}
        for field, keys, value in self._sidecar_options():
            entry: Any = sidecar
            for key in keys:
                entry = entry.get(key) if isinstance(entry, Mapping) else None
            if value == (field.metadata.get("unset") if entry is None else entry):
                changes[field.name] = None
        return dataclasses.replace(self, **changes) if changes else self

    # ------------------------------------------------------------ records
    def provenance(self) -> dict[str, str]:
        """Every option as text, for the header's provenance (``HISTORY``).

        The weights by file name (their sha256 is recorded beside), None
        as "default".
        """
        record = {}
        for name in self.option_names():
            value = getattr(self, name)
            if name == "weights" and value is not None:
                value = Path(value).name
            elif isinstance(value, QualityTolerances):
                value = ", ".join(
                    f"{field.name}={getattr(value, field.name)}"
                    for field in dataclasses.fields(value)
                )
            record[name] = "default" if value is None else str(value)
        return record

    def output_record(self) -> dict[str, Any]:
        """The options that change the pixels (``metadata["output"]``), where not at their default.

        :func:`enhance_hmi.pipeline.settings_sha256` adds them to the digest
        that decides whether an archived frame must be redone; an option at
        its default adds nothing, so adding an option keeps the digests of
        the frames already in the archive.
        """
        record = {}
        for field in dataclasses.fields(self):
            if not field.metadata.get("output"):
                continue
            value = getattr(self, field.name)
            if value != field.default:
                record[field.name] = value if isinstance(value, (bool, int, float)) else str(value)
        return record


# ------------------------------------------------------------------ helpers
def _check_device(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
        )


_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


def _flag(name: str, value: Any, label: Callable[[str], str], *, auto: bool = False) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if auto and text == "auto":
        return "auto" if name == "compile" else None
    choices = "true, false or auto" if auto else "true or false"
    raise ConfigError(f"{label(name)} must be {choices}, got {value!r}")


def _tile(value: Any, label: Callable[[str], str]) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{label('tile')} must be a positive integer, got {value!r}")
    try:
        tile = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{label('tile')} must be a positive integer, got {value!r}") from exc
    if tile <= 0 or tile != value and str(value).strip() != str(tile):
        raise ConfigError(f"{label('tile')} must be a positive integer, got {value!r}")
    if tile < MIN_TILE:
        raise ConfigError(f"{label('tile')} must be at least {MIN_TILE} pixels, got {value!r}")
    return tile


def check_symmetries(count: Any, *, name: str = "symmetries") -> None:
    """Refuse a ``symmetries`` count that is not a Python int of :data:`SYMMETRY_COUNTS`.

    Parameters
    ----------
    count : object
        The count to check.
    name : str
        What the message calls the value (e.g. ``--symmetries`` on a command line).

    Raises
    ------
    ConfigError
        Any other value (a bool, a float, a NumPy integer, text).
    """
    if type(count) is not int or count not in SYMMETRY_COUNTS:
        raise ConfigError(
            f"{name} must be one of {', '.join(map(str, SYMMETRY_COUNTS))}, got {count!r}"
        )


def _symmetries(value: Any, label: Callable[[str], str]) -> int:
    counts = ", ".join(map(str, SYMMETRY_COUNTS))
    message = f"{label('symmetries')} must be one of {counts}, got {value!r}"
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) not in SYMMETRY_COUNTS:
        raise ConfigError(message)
    return int(text)


def _compression(value: Any, label: Callable[[str], str]) -> str | None:
    if value is None or value == "none":
        return None
    if value not in COMPRESSION_CHOICES:
        raise ConfigError(f"unknown {label('compression')} {value!r}; use gzip, rice or none")
    return str(value)


def _input_noise(
    value: Any, observable: str | None, label: Callable[[str], str]
) -> u.Quantity | None:
    if isinstance(value, Mapping):  # the configuration's, per observable
        if observable is None:
            raise ConfigError(
                f"{label('input_noise')} is given per observable; say which observable "
                "these settings are for"
            )
        value = value.get(observable)
    if value is None:
        return None
    try:
        noise = parse_input_noise(value)
        if observable is not None:
            input_noise_in_data_units(noise, observable)  # a unit that fits the observable
    except ConfigError as exc:
        raise ConfigError(f"{label('input_noise')}: {exc}") from exc
    return noise


def _convert(name: str, value: Any, *, observable: str | None, label: Callable[[str], str]) -> Any:
    """One option's value from its Python value or text (:meth:`EnhanceSettings.from_mapping`)."""
    if name == "tile":
        return _tile(value, label)
    if name == "compression":
        return _compression(value, label)
    if name == "symmetries":
        return _symmetries(value, label)
    if name == "pixel_integration":
        return _flag(name, value, label)
    if name in ("check_scale", "check_range", "consistency"):
        return bool(_flag(name, value, label)) if value is not None else True
    if name in ("uncertainty", "compile"):
        return _flag(name, value, label, auto=True)
    if name == "input_noise":
        return _input_noise(value, observable, label)
    if name == "quality":
        if isinstance(value, QualityTolerances):
            return value
        try:
            return QualityTolerances.from_mapping(value)
        except ConfigError as exc:
            raise ConfigError(f"{label('quality')}: {exc}") from exc
    if name == "weights":
        return None if value in (None, "") else value
    return value


def _enhance_properties() -> dict[str, Any]:
    properties: dict[str, Any] = config_schema()["properties"]["enhance"]["properties"]
    return properties


def _check_against_schema(values: Mapping[str, Any], label: Callable[[str], str]) -> None:
    """The configuration schema's verdict on each converted value, in its configuration form.

    Python objects (a Quantity, a path, :class:`QualityTolerances`) are
    judged by :meth:`EnhanceSettings.validate` instead.
    """
    import jsonschema

    properties = _enhance_properties()
    none_as = {"compression": "none", "uncertainty": "auto"}  # None, as a configuration says it
    for name, value in values.items():
        if name not in properties or name == "input_noise":
            continue
        if value is None:
            value = none_as.get(name)
        if not isinstance(value, (str, int, float, bool)):
            continue
        try:
            jsonschema.validate(value, properties[name])
        except jsonschema.ValidationError as exc:
            raise ConfigError(f"{label(name)}: {exc.message}") from None


def _with_schema_defaults(section: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``section`` of the configuration with the schema's defaults filled in."""
    properties = config_schema()["properties"][key]["properties"]
    values = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    values.update(section)
    return values
