"""``enhance predict`` end to end: real CLI, real inputs, freshly initialised nets.

The nets are small (``n_blocks=1, width=8``) randomly initialised
:class:`enhance_hmi.model.EnhanceNet` instances saved with
:func:`enhance_hmi.model.save_weights`: the point is the plumbing (reading,
weights, tiling, 2x WCS, provenance, errors), not the science, and small nets
keep the file fast on two shared cores. Inputs: the committed crop of a real
JSOC hmi.M_720s file, the bundled real hmi.Ic_45s continuum cut-out at
0.504"/px, sunpy's real hmi.Ic_45s full disk resampled to 20.66"/px (refused
unless ``--no-scale-check``) and, for the progress bar, a 1024x1024 crop of a
real JSOC full-disk magnetogram from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
import torch
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from conftest import require
from sunpy.data.test import get_test_filepath

from enhance_hmi.atomic import part_path
from enhance_hmi.cli import main
from enhance_hmi.io import read_hmi
from enhance_hmi.model import EnhanceNet, save_weights
from enhance_hmi.physics.disk import SolarDisk
from enhance_hmi.provenance import sha256_file

DATA = Path(__file__).parent / "data"
CROP = DATA / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"
CONTINUUM = Path(get_test_filepath("resampled_hmi.fits"))
SAMPLE_IC = (
    Path(__file__).resolve().parents[1]
    / "enhance_hmi"
    / "data"
    / "sample"
    / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits"
)
SMALL_NET = {"n_blocks": 1, "width": 8}
INPUT_SCALE = {"continuum": 1.0, "magnetogram": 1000.0}


def _save_net(path: Path, observable: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = EnhanceNet(**SMALL_NET)
    metadata = {
        "observable": observable,
        "input_normalisation": {
            "quantity": "continuum intensity" if observable == "continuum" else "Blos",
            "units": "quiet-Sun intensity" if observable == "continuum" else "G",
            "scale": INPUT_SCALE[observable],
        },
        "psf_model": "wachter",
        "training_data": "untrained: random initialisation (test)",
    }
    return Path(save_weights(net, path, metadata=metadata))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    for observable in ("continuum", "magnetogram"):
        _save_net(directory / f"{observable}.safetensors", observable)
    return directory


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _without_quality_flags(err: str) -> str:
    """``err`` without the log line of a frame flagged for ripples (and only that flag)."""
    flagged = "frame quality out of tolerance (ripple)"
    lines = [line for line in err.splitlines() if flagged not in line]
    return "\n".join(lines).strip()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("enhance predict: error: "), lines[0]
    return lines[0]


def _check_output(out: Path, source: Path, weights: Path, observable: str) -> None:
    frame = read_hmi(source)
    with fits.open(out) as hdul:
        index = next(i for i, h in enumerate(hdul) if h.header.get("NAXIS") == 2)
        header, data = hdul[index].header, hdul[index].data
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4
        assert data.shape == (2 * frame.data.shape[0], 2 * frame.data.shape[1])
        # off-disk NaN survive the network, input pixels beyond the limb become NaN,
        # on-disk pixels are finite
        disk = SolarDisk.from_header(frame.header)
        beyond = (
            np.zeros(frame.data.shape, bool) if disk is None else ~disk.inside(frame.data.shape)
        )
        big_nan = np.kron(np.isnan(frame.data) | beyond, np.ones((2, 2), dtype=bool))
        np.testing.assert_array_equal(np.isnan(data), big_nan)
    assert header["ENHWSHA"] == sha256_file(weights)
    assert header["ENHWTS"] == weights.name
    assert header["ENHPSF"] == "wachter"
    assert header["ENHINPUT"] == source.name
    assert header["ENHINSHA"] == sha256_file(source)
    assert header["ENHOBS"] == observable
    assert header["ENHVERS"].startswith("enhance ")
    assert header["CDELT1"] == pytest.approx(frame.header["CDELT1"] / 2)
    assert header["CRPIX1"] == pytest.approx(2 * frame.header["CRPIX1"] - 0.5)
    smap = sunpy.map.Map(out)
    source_map = sunpy.map.Map(frame.data, frame.header)
    assert smap.observer_coordinate.separation_3d(source_map.observer_coordinate) < 1 * u.m
    point = SkyCoord(-150 * u.arcsec, 90 * u.arcsec, frame=source_map.coordinate_frame)
    p = np.array([v.to_value(u.pix) for v in source_map.world_to_pixel(point)])
    q = np.array([v.to_value(u.pix) for v in smap.world_to_pixel(point)])
    np.testing.assert_allclose(q, 2 * p + 0.5, atol=0.25)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_predict_magnetogram_subprocess(tmp_path: Path, weights_dir: Path) -> None:
    weights = weights_dir / "magnetogram.safetensors"
    out = tmp_path / "enhanced.fits"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "enhance_hmi",
            "predict",
            str(CROP),
            "-o",
            str(out),
            "--weights",
            str(weights),
            "--device",
            "cpu",
            "--tile",
            "64",
            "--input-noise",  # an active-region cut-out: no quiet Sun to estimate it on
            "5G",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # no warnings, no progress bar off a terminal: only the quality flag of the untrained
    # network's output, which the projection must change far (ripple figure > 1.5)
    assert _without_quality_flags(result.stderr) == ""
    assert result.stdout.strip() == str(out)
    assert _files(tmp_path) == {"enhanced.fits"}
    _check_output(out, CROP, weights, "magnetogram")
    assert sunpy.map.Map(out).unit == u.G


def test_predict_continuum_with_shipped_weights_dir(
    tmp_path: Path,
    weights_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bundled continuum sample (real HMI at 0.504"/px); ENHDEV is the device used."""
    monkeypatch.setenv("ENHANCE_WEIGHTS_DIR", str(weights_dir))
    out = tmp_path / "continuum_2x.fits"
    code = main(["predict", str(SAMPLE_IC), "-o", str(out), "--device", "auto"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.strip() == ""
    _check_output(out, SAMPLE_IC, weights_dir / "continuum.safetensors", "continuum")
    with fits.open(out) as hdul:
        header = hdul[1].header
    assert header["ENHNORM"] == "quiet-sun-median" and header["BUNIT"] == ""
    assert header["ENHUNIT"] == "I/I_quiet-Sun"
    assert header["ENHDEV"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert (header["ENHMNAN"], header["ENHMINF"], header["ENHMFILL"], header["ENHMBAD"]) == (
        0,
        0,
        0,
        0,
    )


def test_resampled_full_disk_is_refused_unless_the_scale_check_is_off(
    tmp_path: Path,
    weights_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sunpy's real full disk at 20.66"/px: one line and nothing written; then the override."""
    monkeypatch.setenv("ENHANCE_WEIGHTS_DIR", str(weights_dir))
    out = tmp_path / "continuum_2x.fits"
    assert main(["predict", str(CONTINUUM), "-o", str(out), "--device", "cpu"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert 'resampled_hmi.fits has 20.66x20.66"/px pixels' in line
    assert 'trained at 0.504"/px' in line and "--no-scale-check" in line
    assert _files(tmp_path) == set()
    argv = ["predict", str(CONTINUUM), "-o", str(out), "--device", "cpu", "--no-scale-check"]
    assert main(argv) == 0, capsys.readouterr().err
    _check_output(out, CONTINUUM, weights_dir / "continuum.safetensors", "continuum")
    with fits.open(out) as hdul:
        header = hdul[1].header
    assert header["ENHNORM"] == "limb-darkening-fit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # float image with a BLANK card
        raw = fits.getdata(CONTINUUM)
    assert header["ENHMNAN"] == int(np.isnan(raw).sum()) > 0
    assert any("scale_check: off" in str(h) for h in header["HISTORY"])


# --------------------------------------------------------------------------- progress, -v


def _crop_1024(shared: Path, tmp_path: Path) -> Path:
    """A 1024x1024 crop of a real JSOC full-disk magnetogram, float32, header adapted."""
    src = shared / "hmi" / "fulldisk" / "hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
    require(src.is_file(), f"{src} not found")
    with fits.open(src) as hdul:
        header = hdul[1].header.copy()
        data = np.asarray(hdul[1].data[1536:2560, 1536:2560], dtype=np.float32)
    for key in ("BLANK", "BSCALE", "BZERO", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    header["CRPIX1"] -= 1536
    header["CRPIX2"] -= 1536
    path = tmp_path / "hmi.M_720s.20160707_010000_TAI.crop1024.magnetogram.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def _run_under_pty(argv: list[str], *, timeout: float = 300.0) -> tuple[int, str, str]:
    """Run ``python -m enhance_hmi ARGV`` with standard error on a real pseudo-terminal.

    Returns (exit code, what the terminal received, standard output).
    """
    master, slave = pty.openpty()
    # a terminal of 24 rows and 100 columns (a fresh pty reports 0x0)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "enhance_hmi", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=_env(),
    )
    os.close(slave)
    screen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no terminal output for {timeout} s: {screen.decode()!r}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        screen.extend(chunk)
    os.close(master)
    stdout, _ = proc.communicate(timeout=timeout)
    return proc.returncode, screen.decode(errors="replace"), stdout.decode()


def test_predict_shows_a_progress_bar_over_windows_on_a_terminal(
    tmp_path: Path, weights_dir: Path, shared_data: Path
) -> None:
    """1024x1024 in 256-px tiles: 25 windows, counted on the terminal; none off it."""
    frame = _crop_1024(shared_data, tmp_path)
    weights = weights_dir / "magnetogram.safetensors"
    out = tmp_path / "enhanced.fits"
    argv = [str(frame), "-o", str(out), "--weights", str(weights), "--device", "cpu"]
    code, screen, stdout = _run_under_pty(["predict", *argv, "--tile", "256"])
    assert code == 0, screen
    assert stdout.strip() == str(out)
    assert frame.name[:31] + "…" in screen  # labelled with the input file (cut to 32)
    assert "25/25" in screen and "window" in screen and "100%" in screen
    assert "\r" in screen  # redrawn in place
    out.unlink()
    code, screen, _ = _run_under_pty(["predict", *argv, "--tile", "256", "--no-progress"])
    assert code == 0, screen
    assert _without_quality_flags(screen) == ""  # the untrained network's output is flagged
    # no terminal, but asked for
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", "predict", *argv, "--tile", "512", "--progress"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "9/9" in result.stderr and "window" in result.stderr


@pytest.mark.parametrize(
    ("where", "flags", "expected"),
    [("before", ["-v"], "INFO"), ("after", ["-v"], "INFO"), ("after", ["-vv"], "DEBUG")],
)
def test_verbosity_before_or_after_the_subcommand(
    tmp_path: Path, weights_dir: Path, where: str, flags: list[str], expected: str
) -> None:
    weights = weights_dir / "magnetogram.safetensors"
    out = tmp_path / "enhanced.fits"
    argv = ["predict", str(CROP), "-o", str(out), "--weights", str(weights), "--device", "cpu"]
    argv = [*flags, *argv] if where == "before" else [*argv, *flags]
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    levels = {line.split(" ", 1)[0] for line in result.stderr.splitlines() if line.strip()}
    assert expected in levels, result.stderr
    assert (expected == "DEBUG") == ("DEBUG" in levels), result.stderr
    assert f"read {CROP.name}" in result.stderr


# --------------------------------------------------------------------------- errors


def _bad_case(case: str, tmp_path: Path, weights_dir: Path) -> tuple[list[str], Path, str]:
    """Return (argv, output path, expected words) for one bad call."""
    out = tmp_path / "out" / "enhanced.fits"
    out.parent.mkdir()
    weights = weights_dir / "magnetogram.safetensors"
    inp = CROP
    extra: list[str] = ["--weights", str(weights)]
    if case == "not-fits":
        inp = tmp_path / "notes.fits"
        inp.write_text("this is not a FITS file\n" * 100)
        expect = "not a readable FITS file"
    elif case == "missing-input":
        inp = tmp_path / "nowhere.fits"
        expect = "does not exist"
    elif case == "not-2d":
        inp = tmp_path / "cube.fits"
        fits.PrimaryHDU(np.ones((2, 16, 16), dtype=np.float32)).writeto(inp)
        expect = "no 2-D image"
    elif case == "all-nan":
        inp = tmp_path / "nan.fits"
        header = fits.Header({"CONTENT": "MAGNETOGRAM", "BUNIT": "Gauss"})
        fits.PrimaryHDU(np.full((16, 16), np.nan, dtype=np.float32), header).writeto(inp)
        expect = "no finite pixel"
    elif case == "unknown-observable-option":
        extra += ["--observable", "dopplergram"]
        expect = "unknown observable 'dopplergram'"
    elif case == "unknown-observable-file":
        inp = tmp_path / "anonymous.fits"
        fits.PrimaryHDU(np.ones((16, 16), dtype=np.float32)).writeto(inp)
        expect = "cannot tell whether"
    elif case == "missing-weights":
        extra = ["--weights", str(tmp_path / "nope.safetensors")]
        expect = "nope.safetensors does not exist"
    elif case == "corrupt-weights":
        bad = tmp_path / "corrupt.safetensors"
        shutil.copy(weights, bad)
        shutil.copy(weights.with_suffix(".json"), bad.with_suffix(".json"))
        raw = bytearray(bad.read_bytes())
        for i in range(len(raw) - 64, len(raw) - 32):
            raw[i] ^= 0xFF
        bad.write_bytes(bytes(raw))
        extra = ["--weights", str(bad)]
        expect = "corrupt.safetensors"
    elif case == "wrong-observable-weights":
        extra = ["--weights", str(weights_dir / "continuum.safetensors")]
        expect = "trained for continuum"
    elif case == "missing-output-dir":
        out = tmp_path / "no-such-dir" / "enhanced.fits"
        expect = "does not exist"
    elif case == "output-under-a-file":
        blocker = tmp_path / "plain-file"
        blocker.write_text("x")
        out = blocker / "enhanced.fits"
        expect = "not a directory"
    elif case == "output-is-input":
        inp = tmp_path / CROP.name
        shutil.copy(CROP, inp)
        out = inp
        expect = "would overwrite the input"
    elif case == "bad-tile":
        extra += ["--tile", "-3"]
        expect = "--tile must be a positive integer"
    elif case == "bad-device":
        extra += ["--device", "tpu"]
        expect = "unknown device 'tpu'"
    elif case == "bad-precision":
        extra += ["--precision", "fp8"]
        expect = "unknown precision 'fp8'"
    elif case == "bad-normalize":
        extra += ["--normalize", "max"]
        expect = "unknown normalisation 'max'"
    elif case == "bad-compression":
        extra += ["--compression", "zip"]
        expect = "unknown --compression 'zip'"
    else:  # pragma: no cover - parametrisation guard
        raise AssertionError(case)
    # the extra options come last, so a bad --device wins over "--device cpu"
    return ["predict", str(inp), "-o", str(out), "--device", "cpu", *extra], out, expect


BAD_CASES = [
    "not-fits",
    "missing-input",
    "not-2d",
    "all-nan",
    "unknown-observable-option",
    "unknown-observable-file",
    "missing-weights",
    "corrupt-weights",
    "wrong-observable-weights",
    "missing-output-dir",
    "output-under-a-file",
    "output-is-input",
    "bad-tile",
    "bad-device",
    "bad-precision",
    "bad-normalize",
    "bad-compression",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_call_gives_one_line_and_no_output(
    case: str, tmp_path: Path, weights_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, out, expect = _bad_case(case, tmp_path, weights_dir)
    before = set(tmp_path.rglob("*"))
    sizes = {p: p.stat().st_size for p in before if p.is_file()}
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    line = _one_error_line(captured.err)
    assert expect in line, line
    assert case == "output-is-input" or not out.exists()
    assert not part_path(out).exists()
    assert set(tmp_path.rglob("*")) == before  # nothing else left behind
    assert {p: p.stat().st_size for p in before if p.is_file()} == sizes  # nothing changed


def test_corrupt_weights_message_names_the_checksum(
    tmp_path: Path, weights_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _, _ = _bad_case("corrupt-weights", tmp_path, weights_dir)
    assert main(argv) == 2
    assert "sha256" in _one_error_line(capsys.readouterr().err).lower()


#: Run a command (after the directory argument) with that directory bind-mounted
#: read-only onto itself, in a private mount namespace: the change is seen by
#: that command alone and ends with it.
_READ_ONLY_BIND = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def _with_read_only(directory: Path, command: list[str]) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _READ_ONLY_BIND, "sh"] + [
        str(directory),
        *command,
    ]


def _read_only_bind_works(directory: Path) -> bool:
    """True when a read-only bind mount really stops this (root) process from writing."""
    if shutil.which("unshare") is None:
        return False
    probe = _with_read_only(directory, ["sh", "-c", f"! touch {directory}/probe 2>/dev/null"])
    done = subprocess.run(probe, capture_output=True, check=False)
    return done.returncode == 0 and not (directory / "probe").exists()


def test_output_directory_without_write_permission(tmp_path: Path, weights_dir: Path) -> None:
    """An output directory the process may not write to: one line, exit 2, nothing written.

    Permission bits do not stop root (CI runs as root), so for root the
    directory is a read-only bind mount in a private mount namespace, which
    refuses root's writes too (EROFS); other users get a directory without
    write permission.
    """
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "enhanced.fits"
    weights = weights_dir / "magnetogram.safetensors"
    command = [sys.executable, "-m", "enhance_hmi", "predict", str(CROP), "-o", str(out)]
    command += ["--weights", str(weights), "--device", "cpu"]
    if os.geteuid() == 0:
        require(_read_only_bind_works(locked), "root, but no read-only bind mount (unshare -m)")
        command = _with_read_only(locked, command)
    else:
        locked.chmod(0o500)
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2, result.stderr
    assert "not writable" in _one_error_line(result.stderr)
    assert list(locked.iterdir()) == []


def test_no_shipped_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-weights"
    empty.mkdir()
    monkeypatch.setenv("ENHANCE_WEIGHTS_DIR", str(empty))
    out = tmp_path / "enhanced.fits"
    assert main(["predict", str(CROP), "-o", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no trained weights are installed for magnetogram" in line
    assert "--weights PATH" in line
    assert _files(tmp_path) == {"empty-weights"}


def test_bad_call_subprocess_stderr_is_one_line(tmp_path: Path, weights_dir: Path) -> None:
    """The real process: nothing but the one error line reaches stderr."""
    argv, out, expect = _bad_case("corrupt-weights", tmp_path, weights_dir)
    result = subprocess.run(
        [sys.executable, "-m", "enhance_hmi", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert result.returncode == 2
    assert expect in _one_error_line(result.stderr)
    assert not out.exists() and not part_path(out).exists()


def test_the_tile_the_help_names_is_the_default_used():
    """``--tile``'s help states the default the pipeline and the workflow use."""
    import yaml

    from enhance_hmi.cli import build_parser
    from enhance_hmi.inference.tiling import DEFAULT_TILE
    from enhance_hmi.pipeline import EnhanceSettings

    parser = build_parser()
    predict = next(
        action.choices["predict"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert f"default {DEFAULT_TILE}" in predict.format_help()
    assert EnhanceSettings().tile == DEFAULT_TILE
    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    assert config["enhance"]["tile"] == DEFAULT_TILE


def test_warnings_are_one_line_and_a_wrong_unit_of_input_noise_is_named(tmp_path):
    """``--input-noise 10kG`` on a quiet map: one line that names the factor; no source echo."""
    sample = SAMPLE_IC.with_name("hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits")
    argv = [sys.executable, "-m", "enhance_hmi", "predict", str(sample), "--device", "cpu"]
    done = subprocess.run(
        [*argv, "-o", str(tmp_path / "a.fits"), "--input-noise", "10kG"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "warning:" in line]
    assert len(warned) == 1 and warned[0].startswith("enhance predict: warning: the given input")
    assert re.search(r"10000 G is 2\.\d+e\+03 x this frame's own histogram estimate", warned[0])
    assert ".py:" not in done.stderr and "warnings.warn" not in done.stderr
    done = subprocess.run(
        [*argv, "-o", str(tmp_path / "b.fits"), "--no-consistency"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("enhance predict: warning: the sigma of")
    assert ".py:" not in done.stderr and "enhance_frame(" not in done.stderr
