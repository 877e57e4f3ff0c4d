"""One batch job of the workflow: enhance its planned frames, quarantine those that fail.

:func:`run_batch` decides, frame by frame:

``kept``
    the enhanced frame exists and was made from this input, by these
    weights, with these settings (:func:`enhance_hmi.batch.is_already_enhanced`);
``quarantined``
    the frame is in the quarantine and nothing that decides its fate has
    changed (:func:`enhance_hmi.workflow.quarantine.is_retry_due`), or it fails
    now: its raw file's sha256 is not the one the acquisition manifest
    recorded (checked before enhancement, and again on the hash the reader
    took, which the written frame's ``ENHINSHA`` records), or a stage of the
    enhancement refused it;
``enhanced``
    written now;
``failed``
    its output could not be written (a full disk, a read-only folder): not
    the frame's fault, so it is not quarantined; the job fails with the
    cause and the next run tries the frame again.

No bad frame can block the others: the batch's marker lists every frame
with its status, and the cube is built from the ``kept`` and ``enhanced``
ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from enhance_hmi.batch import enhance_files, enhanced_frame_path, is_already_enhanced
from enhance_hmi.cube.plan import PlannedFrame
from enhance_hmi.pipeline import EnhanceSettings
from enhance_hmi.provenance import sha256_file
from enhance_hmi.time import utc_timestamp
from enhance_hmi.workflow.quarantine import QuarantineEntry, is_retry_due

__all__ = ["BatchResult", "FrameRecord", "run_batch"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """What became of one planned frame in its batch job (one row of the batch marker)."""

    t_rec: str
    input: str
    input_sha256: str
    output: str
    status: str
    cause: str = ""

    def as_dict(self) -> dict[str, str]:
        """The record as the batch marker stores it."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """The frames of one batch and the batch's quarantine after the job."""

    records: list[FrameRecord]
    quarantine: list[QuarantineEntry]

    @property
    def write_failures(self) -> list[FrameRecord]:
        """Frames whose output could not be written (the job must fail, without a marker)."""
        return [record for record in self.records if record.status == "failed"]

    def count(self, status: str) -> int:
        """How many frames of the batch have ``status``."""
        return sum(record.status == status for record in self.records)

    def marker(self, weights_sha256: str) -> dict[str, Any]:
        """The batch marker's content (the cube rule reads its ``frames``)."""
        return {
            "weights_sha256": weights_sha256,
            "frames": [record.as_dict() for record in self.records],
            "quarantined": [entry.as_dict() for entry in self.quarantine],
        }


def _file_sha256(path: str) -> tuple[str, str]:
    """(sha256, "") of a file, or ("", cause) when it cannot be read."""
    try:
        return sha256_file(path), ""
    except OSError as exc:
        return "", f"raw file {Path(path).name} cannot be read: {exc.strerror or exc}"


def run_batch(
    frames: Sequence[PlannedFrame],
    *,
    batch: str,
    frames_dir: str | os.PathLike[str],
    settings: EnhanceSettings,
    weights_sha256: str,
    settings_sha256: Collection[str],
    previous: Sequence[QuarantineEntry] = (),
    stage_options: Mapping[str, Any] | None = None,
) -> BatchResult:
    """Enhance the frames of one batch; quarantine, never raise, for a frame that fails.

    Parameters
    ----------
    frames : sequence of PlannedFrame
        The batch's plan (slot, raw file, manifest sha256, QUALITY).
    batch : str
        The batch id, recorded in quarantine entries.
    frames_dir : path-like
        Where enhanced frames go (:func:`enhance_hmi.batch.enhanced_frame_path`).
    settings : EnhanceSettings
        With the weights resolved to a file.
    weights_sha256 : str
        sha256 of ``settings.weights``.
    settings_sha256 : collection of str
        Digests an enhanced frame may carry to count as made with these
        settings (:func:`enhance_hmi.pipeline.accepted_settings_sha256`); the
        first in sorted order is recorded with new quarantine entries.
    previous : sequence of QuarantineEntry
        The batch's quarantine before this job.
    stage_options : mapping, optional
        ``overlap``, ``prefetch``, ``readers``, ``writers`` of
        :func:`enhance_hmi.batch.enhance_files`.

    Returns
    -------
    BatchResult
        A record per frame and the batch's quarantine now.

    Raises
    ------
    EnhanceError
        Only for what concerns the whole batch (bad settings); a frame's
        failure is quarantined.
    """
    shas = sorted(settings_sha256)
    book = _BatchBook(
        batch=batch,
        weights_sha256=weights_sha256,
        settings_sha256=settings_sha256,
        recorded_settings=shas[0] if shas else "",
        earlier={entry.t_rec: entry for entry in previous},
    )
    todo: list[tuple[PlannedFrame, Path]] = []
    for frame in frames:
        out = book.triage(frame, enhanced_frame_path(frames_dir, frame.t_rec, frame.file))
        if out is not None:
            todo.append((frame, out))
    outcomes = enhance_files(
        [(frame.file, out) for frame, out in todo], settings, **dict(stage_options or {})
    )
    for (frame, out), outcome in zip(todo, outcomes, strict=True):
        book.settle(frame, out, outcome)
    ordered = [book.records[frame.t_rec] for frame in frames]
    return BatchResult(ordered, sorted(book.quarantine, key=lambda entry: entry.t_rec))


@dataclasses.dataclass
class _BatchBook:
    """What :func:`run_batch` knows of each frame: its record, and the batch's quarantine."""

    batch: str
    weights_sha256: str
    settings_sha256: Collection[str]
    recorded_settings: str
    earlier: dict[str, QuarantineEntry]
    records: dict[str, FrameRecord] = dataclasses.field(default_factory=dict)
    quarantine: list[QuarantineEntry] = dataclasses.field(default_factory=list)

    def quarantined(self, frame: PlannedFrame, out: Path, stage: str, cause: str, sha: str) -> None:
        """Quarantine ``frame`` at ``stage`` for ``cause`` (its input hashed as ``sha``)."""
        self.quarantine.append(
            QuarantineEntry(
                t_rec=frame.t_rec,
                batch=self.batch,
                input=frame.file,
                input_sha256=sha,
                manifest_sha256=frame.sha256,
                stage=stage,
                cause=cause,
                settings_sha256=self.recorded_settings,
                weights_sha256=self.weights_sha256,
                quarantined=utc_timestamp(),
            )
        )
        self.records[frame.t_rec] = FrameRecord(
            frame.t_rec, frame.file, sha, str(out), "quarantined", cause
        )
        log.warning("%s quarantined: %s", frame.t_rec, cause)

    def triage(self, frame: PlannedFrame, out: Path) -> Path | None:
        """``out`` when ``frame`` must be enhanced; None when it is kept or stays quarantined.

        Kept: already enhanced from the same input, weights and settings.
        Quarantined: refused before with the same input and settings
        (:func:`~enhance_hmi.workflow.quarantine.is_retry_due`), or a raw
        file unreadable or changed since the manifest recorded it.
        """
        out.parent.mkdir(parents=True, exist_ok=True)
        if is_already_enhanced(
            out, frame.sha256, self.weights_sha256, settings_sha256=self.settings_sha256
        ):
            self.records[frame.t_rec] = FrameRecord(
                frame.t_rec, frame.file, frame.sha256, str(out), "kept"
            )
            log.info("%s kept -> %s", frame.t_rec, out)
            return None
        sha, unreadable = _file_sha256(frame.file)
        before = self.earlier.get(frame.t_rec)
        if before is not None and not is_retry_due(
            before,
            input_sha256=sha,
            settings_sha256=self.settings_sha256,
            weights_sha256=self.weights_sha256,
            manifest_sha256=frame.sha256,
        ):
            self.quarantine.append(before)
            self.records[frame.t_rec] = FrameRecord(
                frame.t_rec, frame.file, sha, str(out), "quarantined", before.cause
            )
            log.info(
                "%s stays quarantined (same input and settings): %s", frame.t_rec, before.cause
            )
            return None
        if unreadable:
            self.quarantined(frame, out, "verify", unreadable, sha)
            return None
        if sha != frame.sha256:
            self.quarantined(
                frame,
                out,
                "verify",
                f"raw file {Path(frame.file).name} changed after acquisition (sha256 "
                f"{sha[:12]}..., the manifest recorded {frame.sha256[:12]}...)",
                sha,
            )
            return None
        return out

    def settle(self, frame: PlannedFrame, out: Path, outcome: Any) -> None:
        """Record what enhancing ``frame`` gave: enhanced, quarantined, or failed to write."""
        if outcome.status != "enhanced" and outcome.stage == "write":
            self.records[frame.t_rec] = FrameRecord(
                frame.t_rec, frame.file, frame.sha256, str(out), "failed", str(outcome.error)
            )
            return
        if outcome.status != "enhanced":
            self.quarantined(frame, out, outcome.stage or "read", str(outcome.error), frame.sha256)
            return
        written = outcome.input_sha256 or ""  # what the reader hashed, ENHINSHA
        if written != frame.sha256:  # the raw file changed while it was being read
            out.unlink(missing_ok=True)
            self.quarantined(
                frame,
                out,
                "verify",
                f"raw file {Path(frame.file).name} changed while it was enhanced (sha256 "
                f"{written[:12]}..., the manifest recorded {frame.sha256[:12]}...)",
                written,
            )
            return
        self.records[frame.t_rec] = FrameRecord(
            frame.t_rec, frame.file, frame.sha256, str(out), "enhanced"
        )
