"""The gap report: expected ``T_REC`` slots against what the archive holds.

Written next to the manifest as ``<series>.gaps.csv`` (one row per expected
slot that is not a verified good frame) and ``<series>.gaps.json`` (counts,
runs of consecutive missing slots, provenance), plus one summary line in the
log. A later run over the same range re-queries the missing slots, so the
report shrinks as JSOC backfills.

Three kinds of absent frame are told apart, because they call for different
actions: ``missing`` (the server was asked and has no record: a real gap),
``not queried`` (the server was never asked about the slot, e.g. because it
was unreachable: rerun) and ``failed`` (the record exists but its file could
not be fetched or verified after every attempt: rerun).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from enhance.acquire.manifest import Manifest
from enhance.acquire.timespec import format_duration, format_t_rec
from enhance.atomic import atomic_path

__all__ = ["GapReport", "gap_report"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GapReport:
    """Coverage of one run's expected slots."""

    series: str
    cadence: str
    start: str
    end: str
    expected: int
    present: int
    verified: int
    missing: list[str]
    flagged: list[dict[str, str]]
    skipped: list[dict[str, str]]
    failed: list[dict[str, str]]
    pending: list[str]
    gaps: list[dict[str, object]]
    not_queried: list[str] = dataclasses.field(default_factory=list)
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary_line(self) -> str:
        """One line for the log: expected, present, verified, missing, flagged, skipped,
        and, when there are any, failed, not queried and not yet downloaded."""
        parts = [
            f"{self.series} {self.start} .. {self.end} @ {self.cadence}:",
            f"{self.expected} expected,",
            f"{self.present} present ({self.verified} verified),",
            f"{len(self.missing)} missing in {len(self.gaps)} gap(s),",
            f"{len(self.flagged)} flagged,",
            f"{len(self.skipped)} skipped",
        ]
        if self.failed:
            parts[-1] += ","
            parts.append(f"{len(self.failed)} failed")
        if self.not_queried:
            parts[-1] += ","
            parts.append(f"{len(self.not_queried)} not queried")
        if self.pending:
            parts[-1] += ","
            parts.append(f"{len(self.pending)} not yet downloaded")
        return " ".join(parts)

    @property
    def complete(self) -> bool:
        """True when every slot was queried and nothing failed or is still pending."""
        return not (self.not_queried or self.failed or self.pending)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready content."""
        return dataclasses.asdict(self)

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``<series>.gaps.csv`` and ``<series>.gaps.json`` atomically."""
        rows = [
            {
                "t_rec": t,
                "status": "missing",
                "quality": "",
                "quality_bits": "",
                "reason": "no record on the server",
            }
            for t in self.missing
        ]
        for status, items in (
            ("flagged", self.flagged),
            ("skipped", self.skipped),
            ("failed", self.failed),
        ):
            rows += [
                {
                    "t_rec": it["t_rec"],
                    "status": status,
                    "quality": it.get("quality", ""),
                    "quality_bits": it.get("quality_bits", ""),
                    "reason": it.get("reason", ""),
                }
                for it in items
            ]
        rows += [
            {
                "t_rec": t,
                "status": "pending",
                "quality": "",
                "quality_bits": "",
                "reason": "not downloaded yet",
            }
            for t in self.pending
        ]
        rows += [
            {
                "t_rec": t,
                "status": "not queried",
                "quality": "",
                "quality_bits": "",
                "reason": "the server was not asked about this slot (rerun)",
            }
            for t in self.not_queried
        ]
        frame = pd.DataFrame(
            sorted(rows, key=lambda r: (r["t_rec"], r["status"])),
            columns=["t_rec", "status", "quality", "quality_bits", "reason"],
        )
        csv_path = out_dir / f"{self.series}.gaps.csv"
        json_path = out_dir / f"{self.series}.gaps.json"
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return csv_path, json_path


def _runs(missing: list[dt.datetime], cadence: dt.timedelta | None) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = []
    for when in missing:
        last = runs[-1] if runs else None
        if last is not None and cadence is not None and when - last["_last"] == cadence:
            last["_last"] = when
            last["slots"] = int(last["slots"]) + 1
        else:
            runs.append({"_first": when, "_last": when, "slots": 1})
    return [
        {"first": format_t_rec(r["_first"]), "last": format_t_rec(r["_last"]), "slots": r["slots"]}
        for r in runs
    ]


def gap_report(
    manifest: Manifest,
    slots: Iterable[dt.datetime],
    *,
    cadence: dt.timedelta | None,
    provenance: dict[str, str] | None = None,
) -> GapReport:
    """Compare ``slots`` with the manifest rows.

    Parameters
    ----------
    manifest : Manifest
        The rows after the run.
    slots : iterable of datetime
        The expected slots, in time order (read once).
    cadence : timedelta or None
        Slot spacing (None: as found), for the runs of missing slots.
    provenance : dict, optional
        Recorded in the JSON file.

    A slot with no row was never queried. A ``missing`` row is a slot the
    server said it has no record for (in this run or, if this run did not get
    to ask, in the earlier one that wrote the row).
    """
    missing: list[dt.datetime] = []
    not_queried: list[str] = []
    flagged, skipped, failed, pending = [], [], [], []
    present = verified = 0
    first = last = None
    expected = 0
    for when in slots:
        expected += 1
        first = when if first is None else first
        last = when
        key = format_t_rec(when)
        row = manifest.get(key)
        if row is None:
            not_queried.append(key)
            continue
        if row["state"] == "missing":
            missing.append(when)
            continue
        present += 1
        quality = row["quality"]
        item = {
            "t_rec": key,
            "quality": quality,
            "quality_bits": row["quality_bits"],
            "reason": row["reason"],
        }
        if row["quality_bits"]:
            flagged.append(item)
        if row["state"] == "verified":
            verified += 1
        elif row["state"] == "skipped":
            skipped.append(item)
        elif row["state"] == "failed":
            failed.append(item)
        else:
            pending.append(key)
    return GapReport(
        series=manifest.series,
        cadence=format_duration(cadence) if cadence is not None else "as found",
        start=format_t_rec(first) if first is not None else "",
        end=format_t_rec(last) if last is not None else "",
        expected=expected,
        present=present,
        verified=verified,
        missing=[format_t_rec(m) for m in missing],
        flagged=flagged,
        skipped=skipped,
        failed=failed,
        pending=pending,
        gaps=_runs(missing, cadence),
        not_queried=not_queried,
        provenance=dict(provenance or {}),
    )
