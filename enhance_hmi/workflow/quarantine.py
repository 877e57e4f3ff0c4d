"""The quarantine: frames an archive run could not enhance, kept aside instead of blocking.

A frame whose enhancement fails (all-NaN data, a unit the network cannot
take, a raw file that changed after acquisition, ...) does not stop its
period's cube: its batch job records it here, with the cause, the sha256 of
the input it refused, the settings and weights it was tried with, and the
time, and the cube is built from the other frames.

Files
-----
``<output>/quarantine/<series>/<batch>.json``, one per batch job that
quarantined something, rewritten atomically by that job (and removed when
the batch has nothing quarantined any more), so parallel jobs never write
the same file.

When a quarantined frame is tried again
---------------------------------------
Only when something that decides its fate changed (:func:`is_retry_due`):

* its input: a later acquisition fetched different bytes (the server
  replaced the file, or the raw file was restored to what the manifest
  recorded);
* the settings or the weights its batch runs with;
* or an operator released it (:func:`release`, ``enhance quarantine
  --release``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from enhance_hmi.atomic import atomic_path
from enhance_hmi.errors import InputError
from enhance_hmi.time import format_t_rec

__all__ = [
    "QUARANTINE_EXIT_STATUS",
    "QuarantineEntry",
    "drop_unplanned",
    "is_retry_due",
    "quarantine_dir",
    "read_quarantine",
    "release",
    "retry_batches",
    "rerun_batches",
    "write_batch_quarantine",
]

log = logging.getLogger(__name__)

#: Exit status of a workflow run that finished every job but holds quarantined
#: frames (cron and scrontab see it; 1 stays "a job failed").
QUARANTINE_EXIT_STATUS = 3


@dataclasses.dataclass(frozen=True)
class QuarantineEntry:
    """One frame kept out of its cube because it could not be enhanced.

    Attributes
    ----------
    t_rec : str
        The frame's slot (JSOC ``T_REC`` spelling).
    batch : str
        The batch job that tried it.
    input : str
        The raw file.
    input_sha256 : str
        sha256 of the raw file as it was refused.
    manifest_sha256 : str
        sha256 the acquisition manifest recorded for it (differs from
        ``input_sha256`` when the file changed after acquisition).
    stage : str
        ``verify`` (the hash check before enhancement), ``read``, ``network``
        or ``write``.
    cause : str
        One sentence.
    settings_sha256 : str
        Digest of the enhancement settings it was tried with.
    weights_sha256 : str
        sha256 of the weights it was tried with.
    quarantined : str
        When (UTC, ISO 8601).
    """

    t_rec: str
    batch: str
    input: str
    input_sha256: str
    manifest_sha256: str
    stage: str
    cause: str
    settings_sha256: str
    weights_sha256: str
    quarantined: str

    def as_dict(self) -> dict[str, str]:
        """The entry as the quarantine file stores it."""
        return dataclasses.asdict(self)

    def summary_line(self) -> str:
        """``<T_REC> (<file>): <cause>``."""
        return f"{self.t_rec} ({Path(self.input).name}): {self.cause}"


def quarantine_dir(output: str | os.PathLike[str], series: str) -> Path:
    """Where the quarantine files of ``series`` live under the workflow's ``output``."""
    return Path(output) / "quarantine" / series


def _batch_file(output: str | os.PathLike[str], series: str, batch: str) -> Path:
    return quarantine_dir(output, series) / f"{batch}.json"


def write_batch_quarantine(
    output: str | os.PathLike[str], series: str, batch: str, entries: Iterable[QuarantineEntry]
) -> Path | None:
    """Replace the quarantine of one batch with ``entries`` (atomically).

    Returns the file written, or None when ``entries`` is empty (the
    batch's file, if any, is removed).
    """
    rows = sorted((e.as_dict() for e in entries), key=lambda row: row["t_rec"])
    path = _batch_file(output, series, batch)
    if not rows:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"series": series, "batch": batch, "frames": rows}, indent=1))
    return path


def _read_file(path: Path) -> list[QuarantineEntry]:
    try:
        payload = json.loads(path.read_text())
        return [QuarantineEntry(**row) for row in payload["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"quarantine file {path} is unreadable: {exc}") from exc


def read_quarantine(
    output: str | os.PathLike[str], series: str, batch: str | None = None
) -> list[QuarantineEntry]:
    """The quarantined frames of ``series`` (of one ``batch`` if given), in time order.

    Raises
    ------
    InputError
        A quarantine file is not one this module wrote.
    """
    if batch is not None:
        path = _batch_file(output, series, batch)
        return _read_file(path) if path.is_file() else []
    entries = [
        entry
        for path in sorted(quarantine_dir(output, series).glob("*.json"))
        for entry in _read_file(path)
    ]
    return sorted(entries, key=lambda entry: entry.t_rec)


def is_retry_due(
    entry: QuarantineEntry,
    *,
    input_sha256: str,
    settings_sha256: str | Collection[str],
    weights_sha256: str,
    manifest_sha256: str | None = None,
) -> bool:
    """Whether a quarantined frame should be tried again with this input, settings and weights.

    True when the input's hash differs from the refused one, the frame was
    tried with other settings or weights, or it was refused because its
    bytes were not the manifest's (stage ``verify``) and the manifest now
    records exactly these bytes (``manifest_sha256``: a new version
    fetched since).
    """
    accepted = {settings_sha256} if isinstance(settings_sha256, str) else set(settings_sha256)
    agreed = entry.stage == "verify" and input_sha256 == manifest_sha256
    return (
        agreed
        or input_sha256 != entry.input_sha256
        or entry.settings_sha256 not in accepted
        or weights_sha256 != entry.weights_sha256
    )


def retry_batches(
    output: str | os.PathLike[str], series: str, manifest_sha256: Mapping[str, str]
) -> list[str]:
    """Batches holding a quarantined frame whose acquired input is no longer the refused one.

    ``manifest_sha256`` maps ``T_REC`` to the sha256 the acquisition now
    records (after it fetched quarantined frames again). A frame refused
    because its bytes were not the manifest's (stage ``verify``) is always
    due: the acquisition has verified and recorded the file again since,
    and its batch job tries it if the file now holds those bytes. A batch listed
    here must run again (:func:`rerun_batches`).
    """
    due = set()
    for entry in read_quarantine(output, series):
        now = manifest_sha256.get(entry.t_rec) or manifest_sha256.get(format_t_rec(entry.t_rec))
        # a frame refused for bytes the manifest did not record: the acquisition has
        # verified and recorded the file again since, so its record is what counts now
        if now and (now != entry.input_sha256 or entry.stage == "verify"):
            due.add(entry.batch)
    return sorted(due)


def rerun_batches(
    output: str | os.PathLike[str], series: str, batches: Iterable[str]
) -> list[Path]:
    """Remove the markers of ``batches``, so that Snakemake runs those batch jobs again.

    A batch job keeps every frame already enhanced (same input, weights and
    settings), so running it again costs only the frames it tries. Touching
    the plan instead would not do: Snakemake does not rerun a job whose
    input has a newer time but the same content. The workflow calls this
    inside its acquisition checkpoint, before Snakemake decides which of the
    quarantine's batches (they wait for the checkpoint) must run.
    """
    removed = []
    for batch in batches:
        marker = Path(output) / "enhanced" / series / "batches" / f"{batch}.json"
        if marker.is_file():
            marker.unlink()
            removed.append(marker)
    return removed


def drop_unplanned(
    output: str | os.PathLike[str], series: str, planned: Collection[str]
) -> list[QuarantineEntry]:
    """Forget the quarantine of batches that are no longer planned (a new range or layout).

    No job would ever rewrite their files, so they would hold the run's
    exit status at 3 and be fetched again forever. Returns what was dropped.
    """
    dropped = []
    for path in sorted(quarantine_dir(output, series).glob("*.json")):
        if path.stem not in planned:
            dropped += _read_file(path)
            path.unlink()
    return dropped


def release(
    output: str | os.PathLike[str],
    series: Iterable[str] | None = None,
    t_recs: Collection[str] | None = None,
) -> list[QuarantineEntry]:
    """Take frames out of the quarantine, so the next run tries them again.

    Parameters
    ----------
    output : path-like
        The workflow's output directory.
    series : iterable of str, optional
        Only these series (default: every series with a quarantine).
    t_recs : collection of str, optional
        Only these slots (any ``T_REC`` spelling; default: every frame).

    Returns
    -------
    list of QuarantineEntry
        The frames released. Their batches' markers are removed, so the
        next ``snakemake`` run enhances them again (frames already enhanced
        in those batches are kept, not redone).
    """
    root = Path(output) / "quarantine"
    names = list(series) if series is not None else sorted(p.name for p in root.glob("*/"))
    wanted = None if t_recs is None else {format_t_rec(t) for t in t_recs}
    released: list[QuarantineEntry] = []
    for name in names:
        by_batch: dict[str, list[QuarantineEntry]] = {}
        for entry in read_quarantine(output, name):
            by_batch.setdefault(entry.batch, []).append(entry)
        for batch, entries in by_batch.items():
            gone = [e for e in entries if wanted is None or format_t_rec(e.t_rec) in wanted]
            if not gone:
                continue
            kept = [e for e in entries if e not in gone]
            write_batch_quarantine(output, name, batch, kept)
            rerun_batches(output, name, [batch])
            released += gone
            for entry in gone:
                log.info("released %s from the quarantine of %s", entry.t_rec, name)
    return released
