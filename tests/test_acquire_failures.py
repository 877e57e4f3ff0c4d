"""Failure semantics of acquisition: nothing failed is reported as done or as a gap.

The real drms client against the JSOC stand-in (tests/jsoc_standin.py) and a
port with nothing listening: a query that fails half way, a server that is
down, files that fail every attempt. Each run must exit non-zero, leave a gap
report that tells "not queried" and "failed" from "missing on the server",
leave a status file saying what happened, and be completed by a rerun.
"""

from __future__ import annotations

import datetime as dt
import json
import socket

import pandas as pd
import pytest
from jsoc_standin import running_standin

from enhance_hmi.acquire import AcquireOptions, JsocOptions, acquire, read_status, status_path
from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError, JsocError

EMAIL = "john.doe@example.org"
RANGE = ("--start", "2014-01-01T00:00", "--end", "2014-01-01T01:00", "--cadence", "12m")
FAST = ("--retries", "2", "--retry-wait", "0.001", "--no-progress")


@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def closed_port_url() -> str:
    """A 127.0.0.1 URL on which nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def gaps(out) -> pd.DataFrame:
    return pd.read_csv(out / "hmi.M_720s.gaps.csv", dtype=str, keep_default_na=False)


def fetch(out, server: str, *extra: str) -> int:
    return main(
        ["fetch", "--series", "hmi.M_720s", *RANGE, "--out", str(out), "--server", server]
        + ["--email", EMAIL, *FAST, *extra]
    )


def standin_time(minutes: int) -> dt.datetime:
    return dt.datetime(2014, 1, 1) + dt.timedelta(minutes=minutes)


def run(standin, out, options):
    return acquire(
        series="hmi.M_720s",
        start="2014-01-01T00:00",
        end="2014-01-01T01:00",
        cadence="12m",
        out_dir=out,
        server=standin.url,
        email=EMAIL,
        options=options,
    )


def test_server_down_exits_nonzero_without_a_false_gap_then_rerun_completes(
    standin, tmp_path, capsys
) -> None:
    code = fetch(tmp_path, closed_port_url())
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "may be down" in err, err
    table = gaps(tmp_path)
    assert list(table["status"]) == ["not queried"] * 6  # not "missing": nobody asked
    report = json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())
    assert report["missing"] == [] and report["gaps"] == [] and len(report["not_queried"]) == 6
    status = read_status(status_path(tmp_path, "hmi.M_720s"))
    assert not status.complete and "may be down" in status.error
    assert status.counts["not_queried"] == 6 and status.counts["verified"] == 0

    assert fetch(tmp_path, standin.url) == 0  # the same command, server up
    assert "6 expected, 6 present (6 verified)" in capsys.readouterr().out
    status = read_status(status_path(tmp_path, "hmi.M_720s"))
    assert status.complete and status.error is None and status.counts["verified"] == 6
    assert set(gaps(tmp_path)["status"]) <= {"QUALITY bits set"}


def test_query_failing_half_way_keeps_what_was_answered(standin, tmp_path) -> None:
    standin.fail_after["rs_list"] = 1  # the first window is answered, then an outage
    standin.missing.add(standin_time(0))
    options = AcquireOptions(
        save_every=0.0,
        jsoc=JsocOptions(retries=2, retry_wait=0.001, poll_interval=0.001, query_chunk=2),
    )
    with pytest.raises(JsocError, match="query .* failed 2 times"):
        run(standin, tmp_path, options)
    table = gaps(tmp_path).set_index("t_rec")["status"].to_dict()
    assert table == {
        "2014.01.01_00:00:00_TAI": "missing",  # asked, and the server has no record
        "2014.01.01_00:12:00_TAI": "pending",  # asked, found, not downloaded
        **{f"2014.01.01_00:{m}:00_TAI": "not queried" for m in ("24", "36", "48")},
        "2014.01.01_01:00:00_TAI": "not queried",
    }
    assert standin.calls["exp_request"] == 0  # nothing exported from a partial query
    standin.fail_after.clear()
    manifest = run(standin, tmp_path, options)
    assert manifest.counts()["verified"] == 5 and manifest.counts()["missing"] == 1
    assert manifest.status.complete


def test_files_failing_every_attempt_exit_nonzero_and_a_rerun_fetches_them(
    standin, tmp_path, capsys
) -> None:
    standin.cut[standin_time(24)] = 100
    assert fetch(tmp_path, standin.url) == 2
    err = capsys.readouterr().err
    assert "1 file(s) failed every retry" in err and err.count("\n") == 1
    table = gaps(tmp_path)
    assert list(table[table["status"] != "QUALITY bits set"]["status"]) == ["failed"]
    status = read_status(status_path(tmp_path, "hmi.M_720s"))
    assert status.counts["failed"] == 1 and status.failures[0]["t_rec"].startswith(
        "2014.01.01_00:24"
    )
    standin.cut.clear()
    assert fetch(tmp_path, standin.url) == 0
    assert read_status(status_path(tmp_path, "hmi.M_720s")).complete


def test_retries_must_be_positive(tmp_path) -> None:
    with pytest.raises(ConfigError, match="retries must be at least 1"):
        acquire(
            series="hmi.M_720s",
            start="2014-01-01",
            end="2014-01-01T01:00",
            cadence="12m",
            out_dir=tmp_path,
            server="http://127.0.0.1:9/",
            email=EMAIL,
            options=AcquireOptions(jsoc=JsocOptions(retries=0)),
        )
