"""The gap report: expected ``T_REC`` slots against what the archive holds.

Written next to the manifest as ``<series>.gaps.csv`` (one row per expected
slot that is not a verified good frame) and ``<series>.gaps.json`` (counts,
runs of consecutive missing slots, provenance), plus one summary line in the
log. A later run over the same range re-queries the missing slots, so the
report shrinks as JSOC backfills. The report is built in one streamed pass
over the slots and the manifest, so a range of millions of slots costs the
memory of a few rows; the JSON lists at most :data:`LISTED` slots of each
kind beside the full counts (the CSV lists them all).

Three kinds of absent frame are told apart, because they call for different
actions: ``missing`` (the server was asked and has no record: a real gap),
``not queried`` (the server was never asked about the slot, e.g. because it
was unreachable: rerun) and ``failed`` (the record exists but its file could
not be fetched or verified after every attempt: rerun). A present record
whose JSOC ``QUALITY`` word has bits set is listed as ``QUALITY bits set``
(kind ``quality_bits_set``) beside its other status: JSOC's verdict on the
frame, not enhance's (docs/workflow.md, "Words").
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from enhance_hmi.acquire.manifest import Manifest
from enhance_hmi.acquire.timespec import format_duration
from enhance_hmi.atomic import atomic_path
from enhance_hmi.time import format_t_rec

__all__ = ["GapReport", "gap_report", "LISTED"]

log = logging.getLogger(__name__)

#: Slots of each kind (and runs of missing slots) listed by name in the JSON file.
LISTED = 1000
_KINDS = ("missing", "not_queried", "quality_bits_set", "skipped", "failed", "pending")
#: Status word of each kind in the CSV where it differs from the kind.
_WORDS = {"not_queried": "not queried", "quality_bits_set": "QUALITY bits set"}


@dataclasses.dataclass
class GapReport:
    """Coverage of one run's expected slots.

    ``counts`` holds the number of slots of each kind (``missing`` on the
    server, ``not_queried``, ``quality_bits_set``: present with JSOC
    ``QUALITY`` bits set, ``skipped``, ``failed``, ``pending``: not yet
    downloaded) and ``gaps`` (runs of consecutive missing slots); the lists
    hold the first :data:`LISTED` of each.
    """

    series: str
    cadence: str
    start: str
    end: str
    expected: int
    present: int
    verified: int
    counts: dict[str, int]
    missing: list[str]
    not_queried: list[str]
    quality_bits_set: list[dict[str, str]]
    skipped: list[dict[str, str]]
    failed: list[dict[str, str]]
    pending: list[str]
    gaps: list[dict[str, object]]
    provenance: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary_line(self) -> str:
        """One line for the log, the counts of each status.

        Expected, present, verified, missing, QUALITY bits set, skipped, and,
        when there are any, failed, not queried and not yet downloaded.
        """
        c = self.counts
        parts = [
            f"{self.series} {self.start} .. {self.end} @ {self.cadence}:",
            f"{self.expected} expected,",
            f"{self.present} present ({self.verified} verified),",
            f"{c['missing']} missing in {c['gaps']} gap(s),",
            f"{c['quality_bits_set']} with QUALITY bits set,",
            f"{c['skipped']} skipped",
        ]
        for kind, words in (
            ("failed", "failed"),
            ("not_queried", "not queried"),
            ("pending", "not yet downloaded"),
        ):
            if c[kind]:
                parts[-1] += ","
                parts.append(f"{c[kind]} {words}")
        return " ".join(parts)

    @property
    def complete(self) -> bool:
        """True when every slot was queried and nothing failed or is still pending."""
        return not (self.counts["not_queried"] or self.counts["failed"] or self.counts["pending"])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready content."""
        return dataclasses.asdict(self)


class _Runs:
    """Runs of consecutive missing slots, counted all, listed up to :data:`LISTED`."""

    def __init__(self, cadence: dt.timedelta | None) -> None:
        self.cadence = cadence
        self.count = 0
        self.listed: list[dict[str, object]] = []
        self._first: dt.datetime | None = None
        self._last: dt.datetime | None = None
        self._slots = 0

    def add(self, when: dt.datetime) -> None:
        if (
            self._last is not None
            and self.cadence is not None
            and when - self._last == self.cadence
        ):
            self._last = when
            self._slots += 1
            return
        self.close()
        self._first = self._last = when
        self._slots = 1

    def close(self) -> None:
        if self._first is None:
            return
        self.count += 1
        if len(self.listed) < LISTED:
            self.listed.append(
                {
                    "first": format_t_rec(self._first),
                    "last": format_t_rec(self._last),
                    "slots": self._slots,
                }
            )
        self._first = self._last = None


def _rows_at(
    manifest: Manifest, slots: Iterator[dt.datetime]
) -> Iterator[tuple[dt.datetime, str, dict[str, str] | None]]:
    """Pairs ``(slot, row or None)``, merging the slots with the manifest's sorted rows."""
    first = next(slots, None)
    if first is None:
        return
    rows = manifest.between(format_t_rec(first), "9999")
    row = next(rows, None)
    for when in _chain_first(first, slots):
        key = format_t_rec(when)
        while row is not None and row["t_rec"] < key:
            row = next(rows, None)
        yield when, key, row if row is not None and row["t_rec"] == key else None


def _chain_first(first: dt.datetime, rest: Iterator[dt.datetime]) -> Iterator[dt.datetime]:
    yield first
    yield from rest


class _Tally:
    """Counts of the slots by kind, the first :data:`LISTED` of each, and the totals."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_KINDS, 0)
        self.listed: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
        self.present = self.verified = self.expected = 0
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None

    def note(self, kind: str, value: object) -> None:
        self.counts[kind] += 1
        if len(self.listed[kind]) < LISTED:
            self.listed[kind].append(value)


def _slot_lines(
    tally: _Tally, runs: _Runs, when: dt.datetime, key: str, row: dict[str, str] | None
) -> list[list[str]]:
    """Tally the slot ``key`` (``row`` its manifest row, None if none); its CSV lines."""
    if row is None:
        tally.note("not_queried", key)
        return [[key, "not queried", "", "", "the server was not asked about this slot (rerun)"]]
    if row["state"] == "missing":
        tally.note("missing", key)
        runs.add(when)
        return [[key, "missing", "", "", row["reason"] or "no record on the server"]]
    tally.present += 1
    item = {
        "t_rec": key,
        "quality": row["quality"],
        "quality_bits": row["quality_bits"],
        "reason": row["reason"],
    }
    statuses = []
    if row["quality_bits"]:
        tally.note("quality_bits_set", item)
        statuses.append("quality_bits_set")
    if row["state"] == "verified":
        tally.verified += 1
    elif row["state"] in ("skipped", "failed"):
        tally.note(row["state"], item)
        statuses.append(row["state"])
    else:
        tally.note("pending", key)
        statuses.append("pending")
    lines = []
    for status in sorted(statuses):
        reason = "not downloaded yet" if status == "pending" else row["reason"]
        quality = "" if status == "pending" else row["quality"]
        bits = "" if status == "pending" else row["quality_bits"]
        lines.append([key, _WORDS.get(status, status), quality, bits, reason])
    return lines


def gap_report(
    manifest: Manifest,
    slots: Iterable[dt.datetime],
    *,
    cadence: dt.timedelta | None,
    out_dir: str | Path,
    provenance: dict[str, str] | None = None,
) -> GapReport:
    """Compare ``slots`` with the manifest rows; write ``<series>.gaps.{csv,json}``.

    Parameters
    ----------
    manifest : Manifest
        The rows after the run.
    slots : iterable of datetime
        The expected slots, in time order (read once).
    cadence : timedelta or None
        Slot spacing (None: as found), for the runs of missing slots.
    out_dir : path-like
        Where the two files go (written atomically; the CSV is streamed).
    provenance : dict, optional
        Recorded in the JSON file.

    A slot with no row was never queried. A ``missing`` row is a slot the
    server said it has no record for (in this run or, if this run did not get
    to ask, in the earlier one that wrote the row).
    """
    out = Path(out_dir)
    tally = _Tally()
    runs = _Runs(cadence)
    csv_path = out / f"{manifest.series}.gaps.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["t_rec", "status", "quality", "quality_bits", "reason"])
        for when, key, row in _rows_at(manifest, iter(slots)):
            tally.expected += 1
            tally.first = when if tally.first is None else tally.first
            tally.last = when
            for line in _slot_lines(tally, runs, when, key, row):
                writer.writerow(line)
    runs.close()
    counts, listed = tally.counts, tally.listed
    counts["gaps"] = runs.count
    report = GapReport(
        series=manifest.series,
        cadence=format_duration(cadence) if cadence is not None else "as found",
        start=format_t_rec(tally.first) if tally.first is not None else "",
        end=format_t_rec(tally.last) if tally.last is not None else "",
        expected=tally.expected,
        present=tally.present,
        verified=tally.verified,
        counts=counts,
        missing=listed["missing"],
        not_queried=listed["not_queried"],
        quality_bits_set=listed["quality_bits_set"],
        skipped=listed["skipped"],
        failed=listed["failed"],
        pending=listed["pending"],
        gaps=runs.listed,
        provenance=dict(provenance or {}),
    )
    with atomic_path(out / f"{manifest.series}.gaps.json") as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
