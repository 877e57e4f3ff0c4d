"""Batches fixed on the slot grid: known from the date range, stable as gaps fill."""

from __future__ import annotations

import datetime as dt

import pytest

from enhance.acquire import get_series
from enhance.acquire.timespec import iter_slots
from enhance.cube import CubeLayout
from enhance.cube.plan import batch_of, plan_batches, range_batches


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
