"""Batches fixed on the slot grid: known from the date range, stable as gaps fill."""

from __future__ import annotations

import datetime as dt

import pytest

from enhance_hmi.acquire import get_series
from enhance_hmi.acquire.timespec import iter_slots
from enhance_hmi.cube import CubeLayout
from enhance_hmi.cube.plan import (
    batch_of,
    plan_batches,
    range_batches,
    read_plan,
    write_plan_streamed,
)
from enhance_hmi.time import format_t_rec


@pytest.mark.parametrize(
    ("series", "cadence", "period", "start", "end", "per_job"),
    [
        ("hmi.M_720s", 720, "day", "2014-01-01T05:00", "2014-01-03T02:24", 7),
        ("hmi.Ic_45s", 45, "day", "2014-03-01T23:40:10", "2014-03-02T00:20", 50),
        ("hmi.Ic_45s", 720, "day", "2014-03-01T00:00:30", "2014-03-04", 11),  # off midnight
        ("hmi.M_720s", 720, "frames", "2016-07-07T01:00", "2016-07-09T13:00", 4),
    ],
)
def test_range_batches_are_the_batches_of_every_slot(
    series, cadence, period, start, end, per_job
) -> None:
    hmi = get_series(series)
    step = dt.timedelta(seconds=cadence)
    layout = CubeLayout(period=period, frames=30, step=step)
    t0, t1 = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    slots = list(iter_slots(hmi, t0, t1, step))
    expected: dict[str, list[str]] = {}
    for when in slots:
        period_name, name = batch_of(layout, when, per_job)
        if name not in expected.setdefault(period_name, []):
            expected[period_name].append(name)
    assert range_batches(layout, slots[0], t1, per_job) == expected
    sizes: dict[str, int] = {}
    for when in slots:
        name = batch_of(layout, when, per_job)[1]
        sizes[name] = sizes.get(name, 0) + 1
    assert max(sizes.values()) <= per_job


def test_plan_keeps_empty_range_batches_and_a_frame_never_moves(tmp_path) -> None:
    layout = CubeLayout(period="day", step=dt.timedelta(minutes=12))
    t0 = dt.datetime(2016, 7, 7, 1)
    rows = [
        {"t_rec": f"2016.07.07_01:{m:02d}:00_TAI", "state": "verified", "file": f"{m}.fits"}
        for m in (0, 12, 48)
    ]
    batches = range_batches(layout, t0, t0 + dt.timedelta(hours=2), 4)
    plan = plan_batches(rows, base_dir=tmp_path, layout=layout, frames_per_job=4, batches=batches)
    assert list(plan) == ["20160707"]
    assert {k: [f.t_rec[11:16] for f in v] for k, v in plan["20160707"].items()} == {
        "20160707-0001": ["01:00", "01:12"],  # slots 5..7 of the day (4 to 7)
        "20160707-0002": ["01:48"],  # slots 8..11
        "20160707-0003": [],  # 02:24 .. 03:00: nothing verified yet
    }
    rows.insert(1, {"t_rec": "2016.07.07_00:48:00_TAI", "state": "verified", "file": "a.fits"})
    again = plan_batches(rows, base_dir=tmp_path, layout=layout, frames_per_job=4)
    assert [f.t_rec[11:16] for f in again["20160707"]["20160707-0002"]] == ["01:48"]


def test_streamed_plan_rewrites_only_changed_batches(tmp_path) -> None:
    """A rerun leaves unchanged batch files as they are and repairs a truncated one."""
    layout = CubeLayout(period="day", step=dt.timedelta(minutes=12))
    t0 = dt.datetime(2016, 7, 7)
    rows = [
        {
            "t_rec": format_t_rec(t0 + dt.timedelta(minutes=12 * k)),
            "state": "verified",
            "file": f"{k}.fits",
            "sha256": f"{k:064d}",
            "quality": "0",
        }
        for k in range(0, 240, 3)  # two days, every third slot
    ]
    batches = range_batches(layout, t0, t0 + dt.timedelta(days=2, minutes=-12), 10)
    plan_dir = tmp_path / "plan"

    def plan() -> dict[str, list[str]]:
        return write_plan_streamed(
            iter(rows),
            base_dir=tmp_path,
            layout=layout,
            frames_per_job=10,
            plan_dir=plan_dir,
            batches=batches,
        )

    index = plan()
    assert index == batches and sum(len(ids) for ids in index.values()) == 24
    files = sorted(plan_dir.iterdir())
    assert [p.name for p in files] == sorted(f"{b}.csv" for ids in batches.values() for b in ids)
    assert not list(plan_dir.glob("*.part"))
    frames = [f for p in files for f in read_plan(p)]
    assert [f.t_rec for f in frames] == [r["t_rec"] for r in rows]
    assert frames[1].file == str(tmp_path.resolve() / "3.fits")
    state = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    truncated = plan_dir / "20160708-0000.csv"
    truncated.write_text("t_rec,file")  # what a crash before the flush may leave
    rows.append(
        {
            "t_rec": format_t_rec(t0 + dt.timedelta(minutes=12 * 239)),
            "state": "verified",
            "file": "239.fits",
            "sha256": "",
            "quality": "0",
        }
    )
    assert plan() == batches
    changed = {
        p.name
        for p in plan_dir.iterdir()
        if (p.stat().st_ino, p.stat().st_mtime_ns) != state[p.name]
    }
    assert changed == {"20160708-0000.csv", "20160708-0011.csv"}
    assert [f.t_rec for f in read_plan(truncated)] == [r["t_rec"] for r in rows[40:44]]
    assert read_plan(plan_dir / "20160708-0011.csv")[-1].file.endswith("239.fits")
