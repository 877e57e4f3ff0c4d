"""Appends to HDF5 time cubes: cost of the new frames only, crash safety, full disks.

Real HDF5 files throughout; kills are real SIGKILLs of a real appending
process, full disks a real (small tmpfs) filesystem or a real file size
limit (RLIMIT_FSIZE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import require
from test_cube import SAMPLE, T0, make_frame

from enhance_hmi.cube import Codec, TimeCube, parse_t_rec
from enhance_hmi.errors import CubeError
from enhance_hmi.frame import Frame
from enhance_hmi.io import read_hmi, write_enhanced

HERE = Path(__file__).resolve().parent
CUBE_V1 = HERE / "data" / "cube_v1.h5"
CUBE_V2 = HERE / "data" / "cube_v2.h5"
V1_FIXTURE = HERE / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"


@pytest.fixture(scope="module")
def base() -> Frame:
    return read_hmi(SAMPLE)


def written_bytes() -> int:
    """Bytes this process has passed to write() so far (``wchar``; copies count too)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"])


def files_state(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Inode, size and mtime of every file under ``folder`` (by relative path)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_frames(cube: TimeCube, base: Frame) -> list[int]:
    """Frame numbers in the cube, each checked pixel for pixel against what was appended."""
    numbers = []
    for index, t_rec in enumerate(cube.times()):
        k = (parse_t_rec(t_rec) - T0) // dt.timedelta(minutes=12)
        data, header = cube.read_frame(index)
        np.testing.assert_array_equal(data, make_frame(base, k).data)
        assert header["T_REC"] == t_rec
        numbers.append(k)
    return numbers


APPENDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_cube import make_frame, SAMPLE
    from enhance_hmi.io import read_hmi
    from enhance_hmi.cube import TimeCube
    import enhance_hmi.cube.append as append_module
    import enhance_hmi.cube.segments as segments

    base = read_hmi(SAMPLE)
    marker, phase = Path({marker!r}), {phase!r}
    cube = TimeCube({path!r})
    numbers = (2, 3, 4) if phase != "root" else (1,)

    def pause(what):
        marker.write_text(what)
        time.sleep(600)  # the parent kills us here

    if phase == "renaming":  # stop after the first of the renames into the tail
        class PausingOs:
            def __getattr__(self, name):
                return getattr(os, name)
            def replace(self, src, dst):
                os.replace(src, dst)
                pause("one staged frame renamed into the tail")
        append_module.os = PausingOs()
    if phase == "root":  # pause the real write of the new root after its first block
        import builtins
        segments._WRITE_BLOCK = 4096
        class PausingFile:
            def __init__(self, fh):
                self.fh = fh
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                self.fh.close()
            def write(self, block):
                self.fh.write(block)
                self.fh.flush()
                pause("root half written")
        def pausing_open(name, mode="r", *args, **kwargs):
            fh = builtins.open(name, mode, *args, **kwargs)
            if "w" in mode and Path(name).parent == cube.path.parent:
                return PausingFile(fh)
            return fh
        segments.open = pausing_open
    def frames():
        for k in numbers:
            yield make_frame(base, k)
            if phase == "staged" and k == 3:
                pause("two frames staged")
    cube.append(frames())
    """
)


@pytest.mark.parametrize("phase", ["staged", "renaming", "root"])
def test_killed_append_leaves_the_cube_and_is_rolled_back(tmp_path, base, phase):
    """Killed while staging, between the renames into the tail, or writing a backfill's root."""
    path = tmp_path / "m.h5"
    cube = TimeCube(path)
    cube.append([make_frame(base, 0)])
    if phase == "root":  # a backfill (frame 1) writes a new root
        cube.append([make_frame(base, 2)])
    else:
        cube.append([make_frame(base, 1)])
    held = [0, 2] if phase == "root" else [0, 1]
    root_before = sha(path)
    segments_before = files_state(cube.segments_dir)
    marker = tmp_path / "marker"
    script = APPENDER.format(tests=str(HERE), marker=str(marker), phase=phase, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the appending process ended early"
            assert time.monotonic() < deadline, "the append never reached the kill point"
            time.sleep(0.05)
        left_over = set(files_state(cube.segments_dir)) - set(segments_before)
        if phase == "staged":
            assert len(left_over) == 2 and all("staged-" in name for name in left_over)
        if phase == "renaming":  # one of the three staged frames renamed into the tail
            assert len(left_over) == 3 and sum("staged-" in name for name in left_over) == 2
        if phase == "root":
            assert len(left_over) == 1 and (tmp_path / "m.h5.part").stat().st_size > 0
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # readers see the cube of before the append, whatever was left on disk
    assert sha(path) == root_before
    assert check_frames(TimeCube(path), base) == held
    assert len(TimeCube(path).read_maps()) == 2
    with h5py.File(path, "r") as h5:  # plain h5py too: the tail ends at the gap
        assert h5["data"].shape[0] == 2
        assert [t.decode() for t in h5["t_rec"][:]] == TimeCube(path).times()
    # the next append removes the leftovers and adds the frames
    assert TimeCube(path).append([make_frame(base, k) for k in range(5)]) == 3
    assert check_frames(TimeCube(path), base) == [0, 1, 2, 3, 4]
    assert not (tmp_path / "m.h5.part").exists()
    after = files_state(cube.segments_dir)
    assert all(after[name] == state for name, state in segments_before.items())
    assert len(after) == len(segments_before) + 3  # one file per new frame, nothing stranded
    assert not [name for name in after if "staged-" in name and phase != "root"]


def test_random_kills_never_show_a_partial_frame(tmp_path, base):
    """SIGKILL an appending process at random moments: each time a whole prefix survives."""
    path = tmp_path / "m.h5"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from test_cube import make_frame, SAMPLE
        from enhance_hmi.io import read_hmi, write_enhanced
        from enhance_hmi.cube import TimeCube
        base = read_hmi(SAMPLE)
        cube = TimeCube({str(path)!r})
        for k in range(int(sys.argv[1]), 400):
            cube.append([make_frame(base, k)])
            print(k, flush=True)
        """
    )
    rng = random.Random(1)
    held: list[int] = []
    for _ in range(8):
        start = held[-1] + 1 if held else 0
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(start)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # one append done: the process is in its loop
            time.sleep(rng.uniform(0.0, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate()
        numbers = check_frames(TimeCube(path), base)
        assert numbers == list(range(len(numbers)))  # a prefix, every frame whole
        assert len(numbers) > len(held)
        held = numbers


def test_append_writes_the_new_frame_not_the_cube(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5")
    cost = {}
    root = None
    for k in range(40):
        old = files_state(cube.segments_dir) if cube.exists else {}
        before = written_bytes()
        assert cube.append([make_frame(base, k)]) == 1
        cost[k + 1] = written_bytes() - before
        new = files_state(cube.segments_dir)
        # the stored files are untouched, the root is not rewritten: all bytes written
        # are the new frame's file
        assert all(new[name] == state for name, state in old.items())
        (added,) = set(new) - set(old)
        if root is not None:
            assert sha(cube.path) == root
            assert cost[k + 1] <= (cube.segments_dir / added).stat().st_size + 4096
        root = sha(cube.path)
    assert cost[40] <= 1.1 * cost[5]
    assert check_frames(cube, base) == list(range(40))


def test_backfill_reorders_the_index_only(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5")
    cube.append([make_frame(base, k) for k in (0, 2, 3)])
    old = {name: sha(cube.segments_dir / name) for name in files_state(cube.segments_dir)}
    before = written_bytes()
    assert cube.append([make_frame(base, 1)]) == 1
    # the new frame's file and a new root (listing the 4 frames): no stored frame rewritten
    (added,) = set(files_state(cube.segments_dir)) - set(old)
    fresh = (cube.segments_dir / added).stat().st_size + cube.path.stat().st_size
    assert written_bytes() - before <= fresh + 8192
    assert all(sha(cube.segments_dir / name) == digest for name, digest in old.items())
    assert check_frames(cube, base) == [0, 1, 2, 3]
    with h5py.File(cube.path, "r") as h5:  # the virtual /data is in time order too
        np.testing.assert_array_equal(h5["data"][1], make_frame(base, 1).data)
        assert h5["header"][1].decode().find(make_frame(base, 1).meta["t_rec"]) > 0
        assert [t.decode() for t in h5["t_rec"][:]] == cube.times()


def test_version_1_cube_is_read_and_extended_without_a_copy(tmp_path):
    path = tmp_path / "day.h5"
    shutil.copyfile(CUBE_V1, path)
    inode = path.stat().st_ino
    cube = TimeCube(path)
    assert cube.attributes()["format_version"] == 1
    assert cube.times() == ["2011.12.17_06:00:00_TAI", "2011.12.17_06:12:00_TAI"]
    maps = cube.read_maps()
    assert len(maps) == 2 and maps[0].data.shape == (128, 128)
    base = read_hmi(V1_FIXTURE)
    good = np.isfinite(base.data)
    np.testing.assert_allclose(maps[1].data[good], base.data[good] + 1, atol=0.05 + 1e-4)
    frame = make_frame(base, 0)  # 2016.07.07_01:00:00_TAI, after both stored frames
    frame.meta["weights_sha256"] = "a" * 64
    before = written_bytes()
    # another codec asked for: the cube keeps its own (blosc2-zstd, 0.1 G step)
    assert TimeCube(path, codec=Codec(compression="gzip")).append([frame]) == 1
    assert written_bytes() - before < CUBE_V1.stat().st_size  # the old frames were not copied
    cube = TimeCube(path)
    assert cube.attributes()["format_version"] == 3
    assert len(cube.times()) == 3
    adopted = [p for p in cube.segments_dir.iterdir() if p.stat().st_ino == inode]
    assert len(adopted) == 1  # the version 1 file, hard-linked as the first segment
    data = cube.read_frame(2)[0]
    ok = np.isfinite(frame.data)
    assert np.allclose(data[ok] / 0.1, np.round(data[ok] / 0.1), atol=1e-3)
    np.testing.assert_allclose(cube.read_frame(1)[0][good], base.data[good] + 1, atol=0.051)


def test_version_2_cube_is_read_and_extended_without_a_copy(tmp_path):
    path = tmp_path / "day.h5"  # the index records its folder's name (cube_v2.h5.segments)
    shutil.copyfile(CUBE_V2, path)
    folder = tmp_path / "cube_v2.h5.segments"
    shutil.copytree(CUBE_V2.with_name(CUBE_V2.name + ".segments"), folder)
    stored = files_state(folder)
    cube = TimeCube(path)
    assert cube.attributes()["format_version"] == 2
    assert cube.times() == ["2011.12.17_06:00:00_TAI", "2011.12.17_06:24:00_TAI"]
    base = read_hmi(V1_FIXTURE)
    good = np.isfinite(base.data)
    np.testing.assert_allclose(cube.read_frame(1)[0][good], base.data[good] + 2, atol=0.051)

    def frame(k: int) -> Frame:  # frame k of the fixture's 12-minute sequence
        header = base.header.copy()
        header["T_REC"] = f"2011.12.17_06:{12 * k:02d}:00_TAI"
        meta = {"t_rec": header["T_REC"], "input_sha256": str(k) * 64, "weights_sha256": "a" * 64}
        data = (base.data + k).astype(np.float32)
        return Frame(data=data, header=header, observable="magnetogram", meta=meta)

    before = written_bytes()
    assert cube.append([frame(3), frame(1)]) == 2  # a backfill and a later frame
    cost = written_bytes() - before
    after = files_state(cube.segments_dir)
    fresh = sum(after[name][1] for name in set(after) - set(stored)) + path.stat().st_size
    assert cost <= fresh + 8192  # the two new frames' files and the new root, nothing else
    assert all(after[name] == state for name, state in stored.items())  # no copy, no rewrite
    assert cube.attributes()["format_version"] == 3
    assert [t[11:16] for t in cube.times()] == ["06:00", "06:12", "06:24", "06:36"]
    for index in range(4):
        np.testing.assert_allclose(
            cube.read_frame(index)[0][good], base.data[good] + index, atol=0.051
        )
    root = sha(path)
    assert cube.append([frame(4)]) == 1  # now into the tail: the root stays as it is
    assert sha(path) == root
    with h5py.File(path, "r") as h5:
        assert [t.decode()[11:16] for t in h5["t_rec"][:]] == [
            "06:00",
            "06:12",
            "06:24",
            "06:36",
            "06:48",
        ]
        np.testing.assert_allclose(h5["data"][4][good], base.data[good] + 4, atol=0.051)
        np.testing.assert_allclose(h5["data"][2][good], base.data[good] + 2, atol=0.051)


def test_cube_without_its_segment_folder_is_a_clear_error(tmp_path, base):
    cube = TimeCube(tmp_path / "a" / "m.h5")
    cube.path.parent.mkdir()
    cube.append([make_frame(base, 0)])
    moved = tmp_path / "m.h5"
    shutil.copyfile(cube.path, moved)
    with pytest.raises(CubeError, match=r"m\.h5\.segments/ must stay next to m\.h5"):
        TimeCube(moved).read_maps()


def test_renamed_index_keeps_its_segments(tmp_path, base):
    cube = TimeCube(tmp_path / "m.h5")
    cube.append([make_frame(base, 0), make_frame(base, 1)])
    renamed = tmp_path / "renamed.h5"
    os.replace(cube.path, renamed)
    cube = TimeCube(renamed)
    assert cube.segments_dir == tmp_path / "m.h5.segments"  # recorded in the index
    assert check_frames(cube, base) == [0, 1]
    with h5py.File(renamed, "r") as h5:  # the virtual dataset finds them too
        np.testing.assert_array_equal(h5["data"][1], make_frame(base, 1).data)
    assert cube.append([make_frame(base, 2)]) == 1
    assert check_frames(TimeCube(renamed), base) == [0, 1, 2]
    assert not (tmp_path / "renamed.h5.segments").exists()


FILLER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_cube import make_frame, SAMPLE
    from enhance_hmi.io import read_hmi, write_enhanced
    from enhance_hmi.cube import TimeCube
    from enhance_hmi.errors import CubeError
    base = read_hmi(SAMPLE)
    cube = TimeCube({path!r})
    try:
        cube.append([make_frame(base, k) for k in {numbers}])
    except CubeError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    """
)


def run_filler(path: Path, numbers: list[int], **popen) -> subprocess.CompletedProcess:
    script = FILLER.format(tests=str(HERE), path=str(path), numbers=numbers)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, **popen
    )


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MiB tmpfs mounted for the test (needs root, as in CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    require(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("stage", ["segment", "index"])
def test_full_disk_is_a_cube_error_and_the_cube_is_unchanged(
    tmp_path, base, small_filesystem, stage
):
    """A backfill (frame 2 into 0, 1, 3) writes a frame file and a new root: each refused."""
    # the same appends on a roomy disk give the sizes to expect (the files are deterministic)
    reference = TimeCube(tmp_path / "ref.h5")
    reference.append([make_frame(base, k) for k in (0, 1, 3)])
    segments = set(files_state(reference.segments_dir))
    index_3 = reference.path.stat().st_size
    reference.append([make_frame(base, 2)])
    (added,) = set(files_state(reference.segments_dir)) - segments
    segment_4 = reference.segments_dir / added
    index_4 = reference.path.stat().st_size

    path = small_filesystem / "m.h5"
    assert run_filler(path, [0, 1, 3]).returncode == 0
    cube = TimeCube(path)
    index_before = sha(path)
    segments_before = files_state(cube.segments_dir)
    assert path.stat().st_size == index_3
    # leave room for the new segment but not the index, or not even for the segment
    room = segment_4.stat().st_size + 4096 * 2 if stage == "index" else 4096 * 4
    assert room < segment_4.stat().st_size + index_4 - 4096
    free = shutil.disk_usage(small_filesystem).free
    with open(small_filesystem / "filler", "wb") as fh:
        fh.truncate(0)
        fh.write(b"\0" * (free - room))

    done = run_filler(path, [2])
    assert done.returncode == 3, f"not a CubeError (rc {done.returncode}): {done.stderr}"
    message = done.stderr.strip()
    assert "\n" not in message and "No space left on device" in message
    assert "unchanged, still 3 frame(s)" in message and "free some space" in message
    refused = f"cannot write {path}: " if stage == "index" else f"cannot write {path}.segments/"
    assert refused in message
    assert sha(path) == index_before and files_state(cube.segments_dir) == segments_before
    assert not list(small_filesystem.rglob("*.part"))
    assert check_frames(TimeCube(path), base) == [0, 1, 3]
    # with room again the same append succeeds
    (small_filesystem / "filler").unlink()
    assert run_filler(path, [2]).returncode == 0
    assert check_frames(TimeCube(path), base) == [0, 1, 2, 3]


def test_file_size_limit_is_a_cube_error(tmp_path, base):
    path = tmp_path / "m.h5"
    assert run_filler(path, [0]).returncode == 0
    before = sha(path)
    limit = 50_000  # below one segment of a 256x256 frame

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = run_filler(path, [1, 2], preexec_fn=limit_file_size)
    assert done.returncode == 3, f"not a CubeError (rc {done.returncode}): {done.stderr}"
    message = done.stderr.strip()
    assert "\n" not in message and "File too large" in message and "ulimit -f" in message
    assert sha(path) == before
    assert check_frames(TimeCube(path), base) == [0]
    assert len(files_state(TimeCube(path).segments_dir)) == 1


RULE = textwrap.dedent(
    """
    import os, runpy, sys
    from types import SimpleNamespace
    params = SimpleNamespace(
        cube=sys.argv[1], observable="magnetogram", compression="blosc2-zstd", level=1,
        tile=None, quantize={{}}, config_sha256="c0ffee", sigma=False,
        out_of_tolerance="keep", out_dir=os.path.dirname(sys.argv[3]),
    )
    snakemake = SimpleNamespace(
        input=[sys.argv[2]], output=[sys.argv[3]], log=[sys.argv[4]], params=params,
        wildcards=SimpleNamespace(series="hmi.M_720s", period="20160707"),
    )
    runpy.run_path({script!r}, init_globals={{"snakemake": snakemake}}, run_name="__main__")
    """
)


def test_cube_rule_on_a_full_disk_fails_in_one_line(tmp_path, base, small_filesystem):
    """The rule's script (as Snakemake runs it) exits 1 with one line; the cube keeps its frames."""
    items = []
    for k in range(12):
        out = write_enhanced(
            tmp_path / f"e{k}.fits",
            make_frame(base, k),
            provenance={"weights_sha256": "a" * 64, "psf_model": "wachter"},
        )
        items.append({"t_rec": make_frame(base, k).meta["t_rec"], "output": str(out)})
    script = RULE.format(script=str(HERE.parent / "workflow" / "scripts" / "cube.py"))
    cube = small_filesystem / "20160707.h5"

    def run_rule(count: int, name: str) -> subprocess.CompletedProcess:
        marker = tmp_path / f"{name}.json"
        marker.write_text(json.dumps({"frames": items[:count]}))
        args = [str(cube), str(marker), str(tmp_path / f"{name}.out.json"), str(tmp_path / name)]
        return subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
        )

    assert run_rule(2, "first").returncode == 0
    assert json.loads((tmp_path / "first.out.json").read_text())["frames"] == 2
    with open(small_filesystem / "filler", "wb") as fh:
        fh.write(b"\0" * (shutil.disk_usage(small_filesystem).free - 200_000))
    done = run_rule(12, "second")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enhance: 20160707.h5: cube 20160707.h5 not")
    assert "No space left on device" in lines[0] and "still 2 frame(s)" in lines[0]
    assert "cube append failed" in (tmp_path / "second").read_text()
    assert not (tmp_path / "second.out.json").exists()  # the rule's output is not written
    (cause,) = (tmp_path / "status" / "failures").glob("cube.*.json")  # for status.json
    assert "No space left on device" in json.loads(cause.read_text())["cause"]
    assert check_frames(TimeCube(cube), base) == [0, 1]


def test_full_disk_with_incompressible_frames_is_an_error_not_a_crash(small_filesystem):
    """Noise frames fill the disk mid-chunk: HDF5 writing there itself dies with SIGSEGV."""
    path = small_filesystem / "m.h5"
    script = textwrap.dedent(
        f"""
        import datetime as dt, sys
        import numpy as np
        from astropy.io import fits
        from enhance_hmi.cube import TimeCube
        from enhance_hmi.errors import CubeError
        from enhance_hmi.frame import Frame
        cube = TimeCube({str(path)!r})
        for k in range(40):
            header = fits.Header()
            when = dt.datetime(2014, 1, 1) + dt.timedelta(minutes=12 * k)
            header["T_REC"] = when.strftime("%Y.%m.%d_%H:%M:%S_TAI")
            data = np.random.default_rng(k).normal(0, 10, (512, 512)).astype("float32")
            frame = Frame(data=data, header=header, observable="magnetogram", meta={{}})
            try:
                cube.append([frame])
            except CubeError as exc:
                print(k, file=sys.stderr)
                print(exc, file=sys.stderr)
                sys.exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3, f"rc {done.returncode} (-11: SIGSEGV): {done.stderr[-500:]}"
    failed_at, message = done.stderr.strip().splitlines()
    assert "No space left on device" in message and f"still {failed_at} frame(s)" in message
    cube = TimeCube(path)
    assert len(cube.times()) == int(failed_at) > 0
    for index in range(int(failed_at)):
        expected = np.random.default_rng(index).normal(0, 10, (512, 512)).astype("float32")
        np.testing.assert_array_equal(cube.read_frame(index)[0], expected)
    assert not list(small_filesystem.rglob("*.part"))
