"""Acquisition with the real drms client against the local JSOC stand-in.

Every failure mode of issue 5 is provoked on the stand-in (tests/jsoc_standin.py):
pending exports, "pending export requests" refusals, HTTP 500s, downloads cut
half way, corrupt or wrong files, QUALITY 0x80000000 records, missing records,
failed exports, export time-outs, and a client killed mid-download.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from astropy.io import fits
from jsoc_standin import NODATA, running_standin
from packaging.version import Version

from enhance_hmi.acquire import (
    AcquireOptions,
    JsocOptions,
    JsocSource,
    Manifest,
    acquire,
    get_series,
)
from enhance_hmi.acquire._drms import drms
from enhance_hmi.acquire.timespec import expected_slots, record_set
from enhance_hmi.errors import ConfigError, JsocError
from enhance_hmi.provenance import sha256_file

EMAIL = "john.doe@example.org"
M720 = get_series("hmi.M_720s")
T0 = dt.datetime(2014, 1, 1)
FAST = JsocOptions(
    poll_interval=0.001, poll_max_interval=0.01, retry_wait=0.001, retries=4, export_timeout=10
)


def options(**kwargs: object) -> AcquireOptions:
    base = {"save_every": 0.0, "jsoc": FAST}
    base.update(kwargs)
    return AcquireOptions(**base)


@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def run(standin, out: Path, *, end: str = "2014-01-01T01:00", **kwargs):
    kwargs.setdefault("options", options())
    return acquire(
        series="hmi.M_720s",
        start="2014-01-01T00:00",
        end=end,
        cadence="12m",
        out_dir=out,
        server=standin.url,
        email=EMAIL,
        **kwargs,
    )


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def key(minutes: int) -> str:
    return at(minutes).strftime("%Y.%m.%d_%H:%M:%S_TAI")


def assert_consistent(manifest: Manifest) -> None:
    """Every verified row points at its file, with the recorded size, sha256 and T_REC."""
    out = manifest.path.parent
    assert not list(out.glob("*.part")), "a temporary file was left behind"
    on_disk = Manifest.load(manifest.path, manifest.series)
    assert on_disk.frame.equals(manifest.frame)
    for row in on_disk.rows(["verified"]):
        path = out / row["file"]
        assert path.stat().st_size == int(row["size"])
        assert sha256_file(path) == row["sha256"]
        with fits.open(path) as hdul:
            assert hdul[1].header["T_REC"].startswith(row["t_rec"][:19])
            assert hdul[1].data.shape == (32, 32)
    fits_files = {p.name for p in out.glob("*.fits")}
    assert fits_files == {r["file"] for r in on_disk.rows(["verified"])}


def test_clean_range_in_bounded_chunks(standin, tmp_path) -> None:
    manifest = run(standin, tmp_path, end="2014-01-01T02:00", options=options(max_per_request=4))
    assert len(manifest) == 11
    assert manifest.counts()["verified"] == 11
    assert standin.calls["exp_request"] == 3  # 11 slots, at most 4 per request
    assert all(len(e.records) <= 4 for e in standin.exports.values())
    assert len(standin.downloads) == 11 and set(standin.downloads.values()) == {1}
    assert_consistent(manifest)
    frame = manifest.frame
    assert set(frame["request_id"]) == set(standin.exports)
    assert (frame["quality"] == "0x00000000").all()
    assert frame["CRPIX1"].astype(float).between(1, 33).all()  # WCS kept, cropped
    assert (frame["EXPTIME"] == "").all()  # the series has no EXPTIME
    report = json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())
    assert (report["expected"], report["verified"], report["missing"]) == (11, 11, [])
    assert report["provenance"]["series"] == "hmi.M_720s"


def test_pandas3_hex_quality(standin, tmp_path) -> None:
    standin.quality[at(12)] = 0x10400
    standin.quality[at(24)] = NODATA
    ds = record_set(M720, T0, 5, dt.timedelta(minutes=12)).split("{")[0]
    raw = drms.Client(server=JsocSource(standin.url).config).query(ds, key="T_REC,QUALITY")
    if Version(pd.__version__).major >= 3 and drms.__version__ == "0.9.0":
        # the bug this package works around (drms issue 167): hex QUALITY -> NaN
        assert raw["QUALITY"].isna().all()
    slots = expected_slots(M720, T0, at(48), dt.timedelta(minutes=12))
    found = JsocSource(standin.url, options=FAST).query(M720, slots, dt.timedelta(minutes=12), ())
    assert {t: r.quality for t, r in found.items()} == {
        at(0): 0,
        at(12): 0x10400,
        at(24): 0x80000000,
        at(36): 0,
        at(48): 0,
    }
    manifest = run(standin, tmp_path)
    row = manifest.get(key(12))
    assert (row["quality"], row["quality_bits"], row["state"]) == (
        "0x00010400",
        "LOWINTERPNUM|NOCOSMICRAY",
        "verified",
    )


def test_missing_nodata_and_quality_bits_set_frames_are_recorded(standin, tmp_path) -> None:
    standin.missing |= {at(12), at(24)}
    standin.quality[at(36)] = NODATA
    standin.quality[at(48)] = 0x200  # eclipse: kept by the default policy
    manifest = run(standin, tmp_path, end="2014-01-01T01:12")
    states = {r["t_rec"]: r["state"] for r in manifest}
    assert states == {
        key(0): "verified",
        key(12): "missing",
        key(24): "missing",
        key(36): "skipped",
        key(48): "verified",
        key(60): "verified",
        key(72): "verified",
    }
    assert "NODATA" in manifest.get(key(36))["reason"]
    assert not any("000000" in n and "0036" in n for n in standin.downloads)
    assert len(standin.downloads) == 4
    gaps = pd.read_csv(tmp_path / "hmi.M_720s.gaps.csv", dtype=str, keep_default_na=False)
    assert dict(zip(gaps["t_rec"] + " " + gaps["status"], gaps["quality_bits"], strict=True)) == {
        f"{key(12)} missing": "",
        f"{key(24)} missing": "",
        f"{key(36)} QUALITY bits set": "NODATA",
        f"{key(36)} skipped": "NODATA",
        f"{key(48)} QUALITY bits set": "ECLIPSE",
    }
    report = json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())
    assert report["gaps"] == [{"first": key(12), "last": key(24), "slots": 2}]
    assert manifest.report.summary_line().count("2 missing in 1 gap(s)") == 1
    assert "2 with QUALITY bits set" in manifest.report.summary_line()
    assert report["counts"]["quality_bits_set"] == 2
    assert [item["t_rec"] for item in report["quality_bits_set"]] == [key(36), key(48)]


def test_quality_policy_skips_quality_bits_set_with_reason(standin, tmp_path) -> None:
    standin.quality[at(24)] = 0x200
    manifest = run(standin, tmp_path, quality_policy="nodata,ECLIPSE")
    row = manifest.get(key(24))
    assert row["state"] == "skipped"
    assert "ECLIPSE" in row["reason"] and "nodata,ECLIPSE" in row["reason"]
    assert len(standin.downloads) == 5 and manifest.counts()["verified"] == 5


def test_pending_export_is_polled_until_ready(standin, tmp_path) -> None:
    standin.pending_polls = 5
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_status"] >= 6 and standin.calls["exp_request"] == 1


def test_pending_export_refusal_is_retried(standin, tmp_path) -> None:
    standin.refuse_exports = 2
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 3 and len(standin.exports) == 1


def test_persistent_refusal_gives_one_clear_error(standin, tmp_path, caplog) -> None:
    standin.refuse_exports = 100
    with caplog.at_level(logging.DEBUG), pytest.raises(JsocError) as info:
        run(standin, tmp_path)
    message = str(info.value)
    assert "pending" in message and "j***@example.org" in message and EMAIL not in message
    assert standin.calls["exp_request"] == FAST.retries
    assert EMAIL not in caplog.text and "john.doe%40" not in caplog.text


def test_http_500s_everywhere_are_retried(standin, tmp_path) -> None:
    standin.http_errors.update(
        {"series_struct": 1, "rs_list": 2, "exp_request": 1, "exp_status": 2, "file": 2}
    )
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert sum(standin.http_errors.values()) == 0  # every 500 was served and survived
    assert_consistent(manifest)


def test_server_down_gives_one_clear_error(standin, tmp_path) -> None:
    standin.http_errors["rs_list"] = 100
    with pytest.raises(JsocError, match="failed 4 times.*HTTPError"):
        run(standin, tmp_path)


def test_failed_export_is_submitted_again(standin, tmp_path) -> None:
    standin.fail_exports = 1
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 2
    assert set(manifest.frame["request_id"]) == {"JSOC_20260101_002"}


def test_cut_download_is_retried_and_never_kept(standin, tmp_path) -> None:
    # drms 0.9.0 itself keeps a download cut after its Content-Length: why we verify
    client = drms.Client(server=JsocSource(standin.url).config)
    request = client.export(
        record_set(M720, T0, 1, dt.timedelta(minutes=12)),
        method="url",
        protocol="fits",
        email=EMAIL,
    )
    request.wait(sleep=0.001)
    standin.cut[T0] = 1
    raw_dir = tmp_path / "drms"
    raw_dir.mkdir()
    kept = Path(request.download(str(raw_dir))["download"][0])
    assert kept.stat().st_size < len(standin.file_bytes(M720, T0))

    out = tmp_path / "enhance_hmi"
    standin.cut[at(12)] = 2
    manifest = run(standin, out)
    assert manifest.counts()["verified"] == 6
    assert standin.served[at(12)] == 3
    assert_consistent(manifest)


def test_corrupt_and_wrong_files_are_retried(standin, tmp_path) -> None:
    standin.corrupt[at(12)] = 1
    standin.wrong[at(24)] = 1
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.served[at(12)] == 2
    assert standin.served[at(24)] == 2
    assert_consistent(manifest)


def test_download_failing_every_retry_is_recorded_then_resumed(standin, tmp_path) -> None:
    standin.cut[at(24)] = 100
    with pytest.raises(JsocError, match="failed every retry"):
        run(standin, tmp_path)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    row = manifest.get(key(24))
    assert row["state"] == "failed" and "connection closed" in row["reason"]
    assert not (tmp_path / row["file"]).exists()
    assert not list(tmp_path.glob("*.part"))
    assert json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())["failed"][0]["t_rec"] == key(
        24
    )
    standin.cut.clear()
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 1  # the same request was resumed
    assert_consistent(manifest)


def test_export_timeout_keeps_the_request_and_rerun_resumes_it(standin, tmp_path) -> None:
    standin.pending_polls = 10**9
    slow = options(
        jsoc=JsocOptions(
            poll_interval=0.01, poll_max_interval=0.01, retry_wait=0.001, export_timeout=0.2
        )
    )
    with pytest.raises(JsocError, match="JSOC_20260101_001 still pending.*rerun"):
        run(standin, tmp_path, options=slow)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert set(manifest.frame["state"]) == {"exported"}
    assert set(manifest.frame["request_id"]) == {"JSOC_20260101_001"}
    standin.pending_polls = 0
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 1
    assert_consistent(manifest)


def test_forgotten_request_is_exported_anew(standin, tmp_path) -> None:
    standin.pending_polls = 10**9
    slow = options(
        jsoc=JsocOptions(
            poll_interval=0.01, poll_max_interval=0.01, retry_wait=0.001, export_timeout=0.1
        )
    )
    with pytest.raises(JsocError, match="still pending"):
        run(standin, tmp_path, options=slow)
    assert (tmp_path / "hmi.M_720s.gaps.json").exists()  # written before the error
    standin.exports.clear()  # the server lost the request (expired, purged)
    standin.pending_polls = 0
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 2
    assert set(manifest.frame["request_id"]) == {"JSOC_20260101_001"}  # numbering restarted
    assert_consistent(manifest)


def test_killed_mid_download_then_rerun(standin, tmp_path) -> None:
    standin.stall.add(at(24))
    env = {**os.environ, "ENHANCE_JSOC_EMAIL": EMAIL}
    argv = [
        sys.executable,
        "-m",
        "enhance_hmi",
        "fetch",
        "--series",
        "hmi.M_720s",
        "--start",
        "2014-01-01T00:00",
        "--end",
        "2014-01-01T01:00",
        "--cadence",
        "12m",
        "--out",
        str(tmp_path),
        "--server",
        standin.url,
        "--no-progress",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    name = "hmi.M_720s.20140101_002400_TAI.magnetogram.fits"
    try:
        assert standin.stall_started.wait(60), proc.communicate(timeout=5)
        for _ in range(1000):  # the client writes what it has received so far
            parts = list(tmp_path.glob(name + ".*.part"))
            if parts and parts[0].stat().st_size > 0:
                break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    on_disk = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    stalled = on_disk.get(key(24))
    assert stalled["state"] == "exported" and stalled["request_id"] == "JSOC_20260101_001"
    assert not (tmp_path / stalled["file"]).exists()  # the cut file never got its name
    assert stalled["file"] == name
    (part,) = parts  # a temporary name of that process's own
    assert part.name.startswith(f"{name}.{proc.pid}-")
    assert 0 < part.stat().st_size < len(standin.file_bytes(M720, at(24)))

    standin.stall.clear()
    standin.release.set()
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 1  # resumed, no duplicate export request
    assert standin.served[at(24)] == 2
    assert_consistent(manifest)


def test_second_run_downloads_nothing(standin, tmp_path) -> None:
    first = run(standin, tmp_path)
    before = (dict(standin.downloads), standin.calls["exp_request"])
    second = run(standin, tmp_path)
    assert (dict(standin.downloads), standin.calls["exp_request"]) == before
    assert second.frame[["t_rec", "file", "sha256"]].equals(
        first.frame[["t_rec", "file", "sha256"]]
    )
    assert standin.calls["rs_list"] == 2  # but the range was queried again


def test_extending_the_end_downloads_only_new_frames(standin, tmp_path) -> None:
    run(standin, tmp_path, end="2014-01-01T01:00")
    old = set(standin.downloads)
    manifest = run(standin, tmp_path, end="2014-01-01T02:00")
    assert manifest.counts()["verified"] == 11
    new = set(standin.downloads) - old
    assert len(new) == 5 and set(standin.downloads.values()) == {1}
    assert standin.calls["exp_request"] == 2
    assert min(standin.exports["JSOC_20260101_002"].records) == at(72)
    assert_consistent(manifest)


def test_later_run_backfills_what_appeared(standin, tmp_path) -> None:
    standin.missing.add(at(36))
    first = run(standin, tmp_path)
    assert first.get(key(36))["state"] == "missing"
    standin.missing.clear()
    served = set(standin.served)
    manifest = run(standin, tmp_path)
    assert manifest.get(key(36))["state"] == "verified"
    assert set(standin.served) - served == {at(36)}
    assert json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())["missing"] == []


def test_unregistered_email_is_refused_before_exporting(standin) -> None:
    source = JsocSource(standin.config(check_address=True), email=EMAIL, options=FAST)
    ds = record_set(M720, T0, 2, dt.timedelta(minutes=12))
    with pytest.raises(ConfigError, match=r"j\*\*\*@example.org.*register"):
        source.submit_export(ds)
    assert standin.calls["check_address"] == 1 and standin.calls["exp_request"] == 0
    standin.registered.add(EMAIL)
    request = source.submit_export(ds)
    assert source.wait(request) == (True, "")
    assert standin.calls["exp_request"] == 1


def test_query_only_and_kis_without_export(standin, tmp_path) -> None:
    manifest = run(standin, tmp_path, download=False)
    assert manifest.counts()["queried"] == 6 and standin.calls["exp_request"] == 0
    with pytest.raises(ConfigError, match="queries only"):
        acquire(
            series="hmi.M_720s",
            start="2014-01-01",
            end="2014-01-02",
            cadence="1h",
            out_dir=tmp_path / "kis",
            server="kis",
            email=EMAIL,
        )


def test_continuum_45s_series(standin, tmp_path) -> None:
    manifest = acquire(
        series="hmi.Ic_45s",
        start="2014-01-01T00:00:00",
        end="2014-01-01T00:03:00",
        cadence="45s",
        out_dir=tmp_path,
        server=standin.url,
        email=EMAIL,
        options=options(),
    )
    assert [r["t_rec"][11:19] for r in manifest] == [
        "00:00:00",
        "00:00:45",
        "00:01:30",
        "00:02:15",
        "00:03:00",
    ]
    assert manifest.counts()["verified"] == 5
    for path in manifest.files():
        header = fits.getheader(path, 1)
        assert header["CONTENT"] == "CONTINUUM INTENSITY"
        assert header["DRMS_ID"].startswith("hmi.Ic_45s:")
    assert_consistent(manifest)
