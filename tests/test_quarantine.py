"""The workflow's bookkeeping as plain Python: batch jobs that quarantine, the run status.

Real bundled HMI files, an untrained network (the plumbing is under test),
real FITS files written and read; no Snakemake (tests/test_workflow_quarantine.py
runs the same through the workflow against the JSOC stand-in).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from conftest import untrained_magnetogram_weights

from enhance_hmi.cube.plan import PlannedFrame
from enhance_hmi.pipeline import EnhanceSettings, accepted_settings_sha256
from enhance_hmi.provenance import sha256_file
from enhance_hmi.workflow.batch_job import run_batch
from enhance_hmi.workflow.quarantine import (
    QUARANTINE_EXIT_STATUS,
    drop_unplanned,
    read_quarantine,
    release,
    retry_batches,
    write_batch_quarantine,
)
from enhance_hmi.workflow.run_status import (
    clear_job_failure,
    record_job_failure,
    run_status,
    write_run_status,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "enhance_hmi" / "data" / "sample"
GOOD = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
SERIES = "hmi.M_720s"
BATCH = "20160707-0000"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_magnetogram_weights(tmp_path_factory.mktemp("weights"))


def _all_nan_copy(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        with fits.open(GOOD) as hdul:
            header = hdul[1].header.copy()
            data = np.full(hdul[1].data.shape, np.nan, dtype=np.float32)
    for key in ("BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    header["T_REC"] = "2016.07.07_01:12:00_TAI"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]).writeto(path)
    return path


def _plan(raw: Path, t_rec: str, sha: str | None = None) -> PlannedFrame:
    return PlannedFrame(t_rec=t_rec, file=str(raw), sha256=sha or sha256_file(raw), quality="0")


def _job(tmp_path: Path, weights: Path, frames, previous=()):
    settings = EnhanceSettings(observable="magnetogram", weights=weights, device="cpu", tile=64)
    return run_batch(
        frames,
        batch=BATCH,
        frames_dir=tmp_path / "enhanced",
        settings=settings,
        weights_sha256=sha256_file(weights),
        settings_sha256=accepted_settings_sha256(
            settings, observable="magnetogram", uncertainty=False
        ),
        previous=previous,
    )


def test_a_batch_quarantines_its_bad_frames_and_enhances_the_rest(tmp_path, weights) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    good = Path(shutil.copy(GOOD, raw / GOOD.name))
    nan = _all_nan_copy(raw / "nan.fits")
    changed = Path(shutil.copy(GOOD, raw / "changed.fits"))
    manifest_sha = sha256_file(changed)
    body = bytearray(changed.read_bytes())
    body[-3000] ^= 0x01  # the same size, other bytes: changed after acquisition
    changed.write_bytes(bytes(body))
    frames = [
        _plan(good, "2016.07.07_01:00:00_TAI"),
        _plan(nan, "2016.07.07_01:12:00_TAI"),
        _plan(changed, "2016.07.07_01:24:00_TAI", manifest_sha),
    ]

    result = _job(tmp_path, weights, frames)
    assert [r.status for r in result.records] == ["enhanced", "quarantined", "quarantined"]
    assert Path(result.records[0].output).is_file()
    assert not Path(result.records[2].output).exists()  # never enhanced from other bytes
    by_slot = {entry.t_rec: entry for entry in result.quarantine}
    assert by_slot["2016.07.07_01:12:00_TAI"].stage == "read"
    assert "no finite pixel" in by_slot["2016.07.07_01:12:00_TAI"].cause
    entry = by_slot["2016.07.07_01:24:00_TAI"]
    assert entry.stage == "verify" and "changed after acquisition" in entry.cause
    assert entry.input_sha256 == sha256_file(changed) != entry.manifest_sha256 == manifest_sha
    marker = result.marker("w")
    assert [f["status"] for f in marker["frames"]] == ["enhanced", "quarantined", "quarantined"]

    # nothing changed: the quarantined frames stay as they were, untried
    again = _job(tmp_path, weights, frames, previous=result.quarantine)
    assert [r.status for r in again.records] == ["kept", "quarantined", "quarantined"]
    assert again.quarantine == result.quarantine  # the same entries, same times

    # the raw file is restored to what the manifest recorded: tried again and enhanced
    shutil.copy(GOOD, changed)
    healed = _job(tmp_path, weights, frames, previous=again.quarantine)
    assert [r.status for r in healed.records] == ["kept", "quarantined", "enhanced"]
    assert fits.getval(healed.records[2].output, "ENHINSHA", ext=1) == manifest_sha


def test_quarantine_files_release_and_plans(tmp_path, weights) -> None:
    out = tmp_path / "out"
    raw = tmp_path / "raw"
    raw.mkdir()
    nan = _all_nan_copy(raw / "nan.fits")
    result = _job(out, weights, [_plan(nan, "2016.07.07_01:12:00_TAI")])
    assert write_batch_quarantine(out, SERIES, BATCH, result.quarantine) is not None
    assert [e.t_rec for e in read_quarantine(out, SERIES)] == ["2016.07.07_01:12:00_TAI"]
    marker = out / "enhanced" / SERIES / "batches" / f"{BATCH}.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")

    assert release(out, t_recs=["2016-07-07T01:00:00"]) == []  # another slot: nothing
    released = release(out, t_recs=["2016-07-07T01:12:00"])  # any T_REC spelling
    assert [e.t_rec for e in released] == ["2016.07.07_01:12:00_TAI"]
    assert read_quarantine(out, SERIES) == []
    assert not (out / "quarantine" / SERIES / f"{BATCH}.json").exists()
    assert not marker.exists()  # so Snakemake runs the batch again


def test_run_status_says_quarantine_and_causes(tmp_path, weights) -> None:
    out = tmp_path / "out"
    raw = tmp_path / "raw"
    raw.mkdir()
    nan = _all_nan_copy(raw / "nan.fits")
    clean = run_status(output=out, series=[SERIES], acquisition={}, success=True, started="x")
    assert clean["exit_status"] == 0 and clean["quarantined"] == {}

    result = _job(out, weights, [_plan(nan, "2016.07.07_01:12:00_TAI")])
    write_batch_quarantine(out, SERIES, BATCH, result.quarantine)
    held = run_status(output=out, series=[SERIES], acquisition={}, success=True, started="x")
    assert held["exit_status"] == QUARANTINE_EXIT_STATUS
    assert "1 frame(s) quarantined: 2016.07.07_01:12:00_TAI (nan.fits)" in held["reason"]
    line = write_run_status(held, out)
    assert line.startswith("enhance: done, with frames quarantined:") and "no finite" in line

    record_job_failure(out, "cube", f"{SERIES}/20160707", "no space left on device (/x)")
    record_job_failure(out, "enhance_batch", f"{SERIES}/{BATCH}", "weights unreadable")
    clear_job_failure(out, "enhance_batch", f"{SERIES}/{BATCH}")  # a later attempt succeeded
    failed = run_status(output=out, series=[SERIES], acquisition={}, success=False, started="")
    assert failed["exit_status"] == 1
    assert failed["reason"].startswith(
        f"failed jobs: cube {SERIES}/20160707: no space left on device (/x); 1 frame(s)"
    )
    assert [f["rule"] for f in failed["failures"]] == ["cube"]
    later = run_status(output=out, series=[SERIES], acquisition={}, success=False, started="9999")
    assert later["failures"] == []  # recorded before this run started: not this run's


def test_a_frame_refused_for_unrecorded_bytes_is_due_once_the_manifest_holds_them(
    tmp_path, weights
) -> None:
    """The server replaced the file: the refused bytes are now the recorded ones, so try them."""
    raw = tmp_path / "raw"
    raw.mkdir()
    changed = Path(shutil.copy(GOOD, raw / "changed.fits"))
    old_sha = sha256_file(changed)
    body = bytearray(changed.read_bytes())
    body[-3000] ^= 0x01
    changed.write_bytes(bytes(body))
    first = _job(tmp_path, weights, [_plan(changed, "2016.07.07_01:24:00_TAI", old_sha)])
    (entry,) = first.quarantine
    assert entry.stage == "verify"
    new_sha = sha256_file(changed)
    # the acquisition now records these bytes: the batch is due, and the frame is enhanced
    assert retry_batches(tmp_path, SERIES, {entry.t_rec: new_sha}) == []  # no file written yet
    write_batch_quarantine(tmp_path, SERIES, BATCH, first.quarantine)
    assert retry_batches(tmp_path, SERIES, {entry.t_rec: new_sha}) == [BATCH]
    again = _job(
        tmp_path,
        weights,
        [_plan(changed, "2016.07.07_01:24:00_TAI", new_sha)],
        previous=first.quarantine,
    )
    assert [r.status for r in again.records] == ["enhanced"]


def test_quarantine_of_batches_no_longer_planned_is_dropped(tmp_path, weights) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    nan = _all_nan_copy(raw / "nan.fits")
    result = _job(tmp_path, weights, [_plan(nan, "2016.07.07_01:12:00_TAI")])
    write_batch_quarantine(tmp_path, SERIES, BATCH, result.quarantine)
    assert drop_unplanned(tmp_path, SERIES, {BATCH}) == []
    assert len(read_quarantine(tmp_path, SERIES)) == 1
    dropped = drop_unplanned(tmp_path, SERIES, {"20160707-0001"})  # frames_per_job changed
    assert [e.t_rec for e in dropped] == ["2016.07.07_01:12:00_TAI"]
    assert read_quarantine(tmp_path, SERIES) == []
