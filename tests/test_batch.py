"""Many files in one process: the staged runner and :func:`enhance_hmi.batch.enhance_files`.

The overlap is checked by event order, not by timing: in threaded mode the
network stage of frame 0 waits until the reader has started frame 1, which
can only happen when reading runs in its own thread.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import untrained_magnetogram_weights

from enhance_hmi.batch import enhance_files, input_pixels, is_already_enhanced, run_stages
from enhance_hmi.errors import ConfigError
from enhance_hmi.io import read_hmi
from enhance_hmi.pipeline import (
    COMPILE_AUTO_MIN_PIXELS,
    EnhanceSettings,
    enhance_file,
    resolve_compile,
    settings_sha256,
)
from enhance_hmi.provenance import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "enhance_hmi" / "data" / "sample"
MAGNETOGRAMS = sorted(SAMPLE.glob("hmi.M_720s.*.magnetogram.fits"))
WAIT_S = 30.0  # generous: only a broken overlap (or a hang) ever reaches it


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_magnetogram_weights(tmp_path_factory.mktemp("weights"))


# ------------------------------------------------------------ run_stages
@pytest.mark.parametrize(
    ("threaded", "readers", "writers"), [(False, 1, 1), (True, 1, 1), (True, 3, 4)]
)
def test_stages_keep_the_order(threaded: bool, readers: int, writers: int) -> None:
    out = run_stages(
        range(23),
        read=lambda k: k * 10,
        compute=lambda v: v + 1,
        write=lambda v: -v,
        threaded=threaded,
        prefetch=2,
        readers=readers,
        writers=writers,
    )
    assert out == [-(k * 10 + 1) for k in range(23)]


def test_several_writers_write_at_once() -> None:
    started = {k: threading.Event() for k in range(2)}

    def write(k: int) -> int:
        started[k].set()
        # Each write waits for the other to start: only two writer threads
        # working at the same time can finish.
        assert started[1 - k].wait(WAIT_S), "the writes did not overlap"
        return k

    assert run_stages(range(2), int, int, write, threaded=True, writers=2) == [0, 1]


def test_threaded_stages_overlap() -> None:
    reading = {k: threading.Event() for k in range(3)}
    writing = {k: threading.Event() for k in range(3)}
    log: list[str] = []

    def read(k: int) -> int:
        reading[k].set()
        log.append(f"read {k}")
        return k

    def compute(k: int) -> int:
        # Frame k's network waits for the reader to reach frame k+1 and for the
        # writer to have taken frame k-1: both other stages are busy meanwhile.
        if k + 1 in reading:
            assert reading[k + 1].wait(WAIT_S), "the reader did not run ahead"
        if k - 1 in writing:
            assert writing[k - 1].wait(WAIT_S), "the writer did not run behind"
        log.append(f"compute {k}")
        return k

    def write(k: int) -> int:
        writing[k].set()
        log.append(f"write {k}")
        return k

    assert run_stages(range(3), read, compute, write, threaded=True, prefetch=1) == [0, 1, 2]
    assert log.index("read 1") < log.index("compute 0")


@pytest.mark.parametrize("stage", ["read", "compute", "write"])
def test_an_exception_in_any_stage_stops_the_run(stage: str) -> None:
    def boom(k: int) -> int:
        if k == 3:
            raise RuntimeError(f"{stage} broke on 3")
        return k

    funcs = {"read": lambda k: k, "compute": lambda k: k, "write": lambda k: k}
    funcs[stage] = boom
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_stages(range(50), funcs["read"], funcs["compute"], funcs["write"], threaded=True)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(WAIT_S), "the run hung after a stage failed"
    assert len(errors) == 1 and str(errors[0]) == f"{stage} broke on 3"
    assert not [t for t in threading.enumerate() if t.name.startswith("enhance-")]


@pytest.mark.parametrize("option", ["prefetch", "readers", "writers"])
def test_bad_thread_options_are_config_errors(option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        run_stages([1], int, int, int, threaded=True, **{option: 0})


# ---------------------------------------------------------- enhance_files
@pytest.mark.parametrize(("overlap", "threads"), [("serial", 1), ("threaded", 1), ("threaded", 2)])
def test_enhance_files_equals_enhance_file(
    tmp_path: Path, weights: Path, overlap: str, threads: int
) -> None:
    pairs = [(src, tmp_path / f"{src.stem}.{overlap}.fits") for src in MAGNETOGRAMS]
    settings = EnhanceSettings(weights=weights, device="cpu")
    outcomes = enhance_files(
        pairs, settings, overlap=overlap, prefetch=1, readers=threads, writers=threads
    )
    assert [o.status for o in outcomes] == ["enhanced"] * len(MAGNETOGRAMS)
    assert [o.input for o in outcomes] == MAGNETOGRAMS
    one = enhance_file(MAGNETOGRAMS[1], tmp_path / "one.fits", weights=weights, device="cpu")
    batch = fits.getdata(pairs[1][1], 1)
    assert batch.shape == tuple(2 * n for n in read_hmi(MAGNETOGRAMS[1]).data.shape)
    np.testing.assert_array_equal(batch, fits.getdata(one, 1))
    header = fits.getheader(pairs[1][1], 1)
    assert header["ENHINSHA"] == sha256_file(MAGNETOGRAMS[1])
    assert header["ENHWSHA"] == sha256_file(weights)


def test_a_bad_frame_fails_alone(tmp_path: Path, weights: Path) -> None:
    broken = tmp_path / "hmi.M_720s.20111217_061200_TAI.1.magnetogram.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"truncated")
    pairs = [
        (MAGNETOGRAMS[0], tmp_path / "a.fits"),
        (broken, tmp_path / "b.fits"),
        (MAGNETOGRAMS[1], tmp_path / "missing-dir" / "c.fits"),
        (MAGNETOGRAMS[2], tmp_path / "d.fits"),
    ]
    outcomes = enhance_files(
        pairs, EnhanceSettings(weights=weights, device="cpu"), overlap="threaded"
    )
    assert [o.status for o in outcomes] == ["enhanced", "failed", "failed", "enhanced"]
    assert outcomes[1].error.startswith("read: ") and broken.name in outcomes[1].error
    assert "missing-dir" in outcomes[2].error
    assert (tmp_path / "a.fits").is_file() and (tmp_path / "d.fits").is_file()
    assert not (tmp_path / "b.fits").exists()
    assert not list(tmp_path.glob("*.part*"))


def test_compile_auto_compiles_a_cpu_job_only_where_it_pays(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two full disks' pixels or more on a CPU; the sample's crops never pay the ~21 s."""
    shapes = [read_hmi(path).data.shape for path in MAGNETOGRAMS]
    assert [input_pixels(path) for path in MAGNETOGRAMS] == [h * w for h, w in shapes]
    assert input_pixels(tmp_path / "missing.fits") == 0
    assert resolve_compile("auto", "cpu", COMPILE_AUTO_MIN_PIXELS)
    assert not resolve_compile("auto", "cpu", COMPILE_AUTO_MIN_PIXELS - 1)
    assert resolve_compile(True, "cpu", 1) and not resolve_compile(False, "cpu", 10**9)
    pairs = [(MAGNETOGRAMS[0], tmp_path / "a.fits")]
    settings = EnhanceSettings(weights=weights, device="cpu", compile="auto")
    assert [o.status for o in enhance_files(pairs, settings)] == ["enhanced"]
    history = "\n".join(str(card) for card in fits.getheader(pairs[0][1], 1)["HISTORY"])
    assert "compiled: False" in history
    # a job above the threshold is compiled, decided once for all its frames
    pairs = [(path, tmp_path / f"{path.stem}.fits") for path in MAGNETOGRAMS[:2]]
    job = sum(input_pixels(path) for path, _ in pairs)
    monkeypatch.setattr("enhance_hmi.inference.frame.COMPILE_AUTO_MIN_PIXELS", job)
    monkeypatch.setattr(torch, "compile", lambda module: module)  # no 20 s compilation here
    assert [o.status for o in enhance_files(pairs, settings)] == ["enhanced"] * 2
    for _, out in pairs:
        history = "\n".join(str(card) for card in fits.getheader(out, 1)["HISTORY"])
        assert "compiled: True" in history
    with pytest.raises(ConfigError, match="compile must be true, false or auto"):
        enhance_files(pairs, EnhanceSettings(device="cpu", compile="sometimes"))


def test_bad_settings_fail_before_reading(tmp_path: Path) -> None:
    pairs = [(tmp_path / "does-not-exist.fits", tmp_path / "out.fits")]
    with pytest.raises(ConfigError, match="precision"):
        enhance_files(pairs, EnhanceSettings(precision="fp8"))
    with pytest.raises(ConfigError, match="overlap"):
        enhance_files(pairs, EnhanceSettings(device="cpu"), overlap="parallel")


# ------------------------------------------------------ already enhanced
def test_is_already_enhanced(tmp_path: Path, weights: Path) -> None:
    source = MAGNETOGRAMS[0]
    out = tmp_path / "out.fits"
    input_sha, weights_sha = sha256_file(source), sha256_file(weights)
    digest = settings_sha256(EnhanceSettings(), observable="magnetogram", uncertainty=False)
    same = {"settings_sha256": digest}
    assert not is_already_enhanced(out, input_sha, weights_sha, **same)
    enhance_file(source, out, weights=weights, device="cpu")
    assert is_already_enhanced(out, input_sha, weights_sha, **same)
    assert not is_already_enhanced(out, input_sha, "0" * 64, **same)  # new network
    assert not is_already_enhanced(out, "0" * 64, weights_sha, **same)  # reprocessed input
    truncated = tmp_path / "truncated.fits"
    shutil.copyfile(out, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert not is_already_enhanced(truncated, input_sha, weights_sha, **same)
