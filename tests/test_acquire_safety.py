"""A hostile or broken server, a full disk, two runs on one directory, a messy local archive.

Everything runs the real drms client against the JSOC stand-in
(tests/jsoc_standin.py) with its hostile knobs: export directories on
``file://`` or another host, redirects, file names of the server's choosing,
one name for several records, trickled bytes, short or overlong bodies, HTML
pages, absurd Content-Lengths, a flipped bit that decompresses silently. The
full disk is a real one: a tmpfs mounted in a private mount namespace
(``unshare``), or the process's file-size limit (``ulimit -f``), which needs
no privilege.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from astropy.io import fits
from jsoc_standin import running_standin
from test_acquire_jsoc import EMAIL, M720, at, key, options, run

from enhance_hmi.acquire import Manifest, acquire, sample_dir
from enhance_hmi.acquire.download import file_url, local_name
from enhance_hmi.acquire.lock import OutDirLockedError, out_dir_lock
from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError, InputError, JsocError
from enhance_hmi.provenance import sha256_file

REPO = Path(__file__).resolve().parents[1]
FILE_SIZE = 23040  # one stand-in file: 32 x 32 crop with the full real header


@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def port(standin) -> int:
    return int(standin.url.rstrip("/").rsplit(":", 1)[1])


def fits_files(out: Path) -> set[str]:
    return {p.name for p in out.glob("*.fits")}


def assert_nothing_half_written(out: Path) -> None:
    """No temporary file; every FITS file is a complete verified record of the manifest."""
    assert not list(out.glob("*.part")), "a temporary file was left behind"
    manifest = Manifest.load(out / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    verified = {r["file"]: r for r in manifest.rows(["verified"])}
    for path in out.glob("*.fits"):
        assert path.name in verified, f"{path.name} is on disk but not verified"
        assert sha256_file(path) == verified[path.name]["sha256"]


# ------------------------------------------------------------------ names
def test_server_file_names_never_become_local_names(standin, tmp_path) -> None:
    # a server naming a record's file after the client's manifest and gap report
    standin.filenames[at(12)] = "hmi.M_720s.manifest.csv"
    standin.filenames[at(24)] = "hmi.M_720s.gaps.json"
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.served[at(12)] == 1 and standin.served[at(24)] == 1
    assert [r["file"] for r in manifest] == [local_name(M720, at(m)) for m in range(0, 61, 12)]
    on_disk = pd.read_csv(tmp_path / "hmi.M_720s.manifest.csv", dtype=str, keep_default_na=False)
    assert len(on_disk) == 6 and set(on_disk["state"]) == {"verified"}
    assert json.loads((tmp_path / "hmi.M_720s.gaps.json").read_text())["verified"] == 6
    for row in manifest:
        assert fits.getheader(tmp_path / row["file"], 1)["T_REC"].startswith(row["t_rec"][:19])


def test_server_file_names_with_space_hash_percent_and_question_mark(standin, tmp_path) -> None:
    # drms 0.9.0 joins them unquoted: a space makes a URL urllib refuses, "#" and "?"
    # cut the name short, "%20" would name another file
    names = {
        at(12): "hmi M_720s 00:12.fits",
        at(24): "hmi#24.fits",
        at(36): "hmi%20M%.fits",
        at(48): "hmi?48&x=1.fits",
    }
    standin.filenames.update(names)
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    for when, name in names.items():
        assert standin.served[when] == 1 and standin.downloads[name] == 1, name
    assert standin.calls["file"] == 6  # each fetched once, nothing retried
    assert [r["file"] for r in manifest] == [local_name(M720, at(m)) for m in range(0, 61, 12)]
    assert_nothing_half_written(tmp_path)


def test_file_url_quotes_the_name_and_keeps_where_the_dir_points() -> None:
    base = "http://jsoc.stanford.edu/"
    jsoc_name = "hmi.M_720s.20140101_001200_TAI.1.magnetogram.fits"
    # what JSOC lists comes out as drms builds it
    assert file_url(base, "/SUM12/D1234/S00000", jsoc_name) == (
        f"http://jsoc.stanford.edu/SUM12/D1234/S00000/{jsoc_name}"
    )
    assert file_url(base, "/SUM1/D1", "a b#c?d%e.fits") == (
        "http://jsoc.stanford.edu/SUM1/D1/a%20b%23c%3Fd%25e.fits"
    )
    assert file_url(base, "/SUM1/my dir#1", "x.fits") == (
        "http://jsoc.stanford.edu/SUM1/my%20dir%231/x.fits"
    )
    # a name never climbs out of the export's directory nor becomes a host
    assert file_url(base, "/SUM1/D1", "../../etc/passwd") == (
        "http://jsoc.stanford.edu/SUM1/D1/..%2F..%2Fetc%2Fpasswd"
    )
    assert (
        file_url(base, "//evil.example/x", "f.fits")
        == "http://jsoc.stanford.edu/evil.example/x/f.fits"
    )
    assert (
        file_url("http://h:8080/jsoc/", "SUM1/D1", "f.fits") == "http://h:8080/jsoc/SUM1/D1/f.fits"
    )
    # a directory naming a scheme or a host keeps it, for check_url to refuse
    assert file_url(base, "file:///tmp/x y", "f.fits") == "file:///tmp/x%20y/f.fits"
    assert file_url(base, "http://localhost:81/S", "f g.fits") == "http://localhost:81/S/f%20g.fits"
    # no directory: the name is the whole path
    assert (
        file_url(base, None, "/SUM1/D1/f g.fits") == "http://jsoc.stanford.edu/SUM1/D1/f%20g.fits"
    )


def test_one_file_name_for_several_records_is_refused_then_recovered(standin, tmp_path) -> None:
    standin.same_name |= {at(24), at(48)}  # listed under the file name of at(0)
    with pytest.raises(JsocError, match="failed"):
        run(standin, tmp_path)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    states = {r["t_rec"]: r["state"] for r in manifest}
    assert states == {
        key(0): "failed",
        key(12): "verified",
        key(24): "failed",
        key(36): "verified",
        key(48): "failed",
        key(60): "verified",
    }
    assert "file name" in manifest.get(key(24))["reason"]
    assert standin.served[at(0)] == 0  # the ambiguous file was never fetched
    assert_nothing_half_written(tmp_path)
    standin.same_name.clear()
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    assert standin.calls["exp_request"] == 1  # the request was resumed
    assert_nothing_half_written(tmp_path)


def test_a_name_taken_by_another_row_is_never_overwritten(standin, tmp_path) -> None:
    run(standin, tmp_path)
    # an older manifest (server-given names) whose row 00:12 holds 00:24's derived name
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    taken = local_name(M720, at(24))
    (tmp_path / manifest.get(key(12))["file"]).rename(tmp_path / taken)
    manifest.update(key(12), file=taken)
    manifest.update(key(24), state="queried", file="", sha256="", size="", request_id="")
    manifest.save()
    before = sha256_file(tmp_path / taken)
    with pytest.raises(JsocError, match="failed"):
        run(standin, tmp_path)
    after = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert after.get(key(24))["state"] == "failed"
    assert "already the file of " + key(12) in after.get(key(24))["reason"]
    assert sha256_file(tmp_path / taken) == before  # 00:12's bytes, untouched


# ------------------------------------------------------------------- URLs
def test_file_urls_are_never_opened(standin, tmp_path) -> None:
    # a file:// export directory holding a perfectly valid record: drms would read it
    planted = tmp_path / "planted"
    planted.mkdir()
    name = "hmi.M_720s.20140101_001200_TAI.1.magnetogram.fits"
    (planted / name).write_bytes(standin.file_bytes(M720, at(12)))
    standin.export_dir = planted.as_uri()
    out = tmp_path / "out"
    with pytest.raises(JsocError, match="failed") as info:
        run(standin, out)
    assert "only http and https" in str(info.value)
    manifest = Manifest.load(out / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert set(manifest.frame["state"]) == {"failed"}
    assert all("refusing to download 'file://" in r["reason"] for r in manifest)
    assert fits_files(out) == set() and sum(standin.served.values()) == 0


def test_other_hosts_are_refused_unless_allowed(standin, tmp_path) -> None:
    # the same machine under another name: without the check the files would arrive
    standin.export_dir = f"http://localhost:{port(standin)}/SUM1/D001/S00000"
    with pytest.raises(JsocError) as info:
        run(standin, tmp_path)
    assert f"--allow-host http://localhost:{port(standin)}" in str(info.value)
    assert sum(standin.served.values()) == 0 and fits_files(tmp_path) == set()
    manifest = run(standin, tmp_path, options=options(allow_hosts=(f"localhost:{port(standin)}",)))
    assert manifest.counts()["verified"] == 6
    assert_nothing_half_written(tmp_path)


def test_another_port_of_the_same_host_is_another_origin(standin, tmp_path) -> None:
    with running_standin() as mirror:
        mirror.exports = standin.exports  # the mirror serves the same files
        standin.export_dir = mirror.url + "SUM1/D001/S00000"
        with pytest.raises(JsocError, match="not from the server's own origin"):
            run(standin, tmp_path)
        assert sum(mirror.served.values()) == 0
        manifest = run(standin, tmp_path, options=options(allow_hosts=(mirror.url,)))
        assert manifest.counts()["verified"] == 6 and sum(mirror.served.values()) == 6


@pytest.mark.parametrize("target", ["localhost", "file"])
def test_redirects_off_the_origin_are_refused(standin, tmp_path, target) -> None:
    name = "hmi.M_720s.20140101_001200_TAI.1.magnetogram.fits"
    planted = tmp_path / name
    planted.write_bytes(standin.file_bytes(M720, at(12)))
    location = {
        "localhost": f"http://localhost:{port(standin)}/SUM1/D001/S00000/"
        "hmi.M_720s.20140101_001200_TAI.1.magnetogram.fits",
        "file": planted.as_uri(),
    }[target]
    standin.redirect[at(12)] = location
    out = tmp_path / "out"
    with pytest.raises(JsocError):
        run(standin, out)
    row = Manifest.load(out / "hmi.M_720s.manifest.csv", "hmi.M_720s").get(key(12))
    assert row["state"] == "failed" and "refusing to download" in row["reason"]
    assert standin.served[at(12)] == 1  # refused at once, not retried
    assert_nothing_half_written(out)


def test_redirect_to_an_allowed_host_is_followed(standin, tmp_path) -> None:
    standin.redirect[at(12)] = (
        f"http://localhost:{port(standin)}/SUM1/D001/S00000/"
        "hmi.m_720s.20140101_001200_TAI.1.magnetogram.fits"  # as served
    )
    manifest = run(standin, tmp_path, options=options(allow_hosts=(f"localhost:{port(standin)}",)))
    assert manifest.counts()["verified"] == 6
    assert standin.served[at(12)] == 2  # the redirect, then the file at its new place
    assert_nothing_half_written(tmp_path)


def test_bad_allow_host_is_a_config_error(standin, tmp_path) -> None:
    for bad in ("file:///etc", "ftp://mirror", "http://mirror/path", "host:port"):
        with pytest.raises(ConfigError, match="allowed download host"):
            run(standin, tmp_path / "x", options=options(allow_hosts=(bad,)))
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------ hostile responses
@pytest.mark.parametrize(
    ("knob", "reason", "attempts"),
    [
        ("html", "text/html starting b'<!DOCTYPE html>", 3),
        ("short_file", "not a readable FITS file", 3),
        ("overlong", "not a readable FITS file", 3),
        ("huge_length", "announces 1000000000000 bytes", 1),
        ("bitflip", "differs from its DATASUM", 3),
    ],
)
def test_hostile_bodies_are_refused(standin, tmp_path, knob, reason, attempts) -> None:
    getattr(standin, knob).add(at(24))
    with pytest.raises(JsocError, match="failed"):
        run(standin, tmp_path)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    row = manifest.get(key(24))
    assert row["state"] == "failed" and reason in row["reason"], row["reason"]
    assert standin.served[at(24)] == attempts
    assert manifest.counts()["verified"] == 5
    assert_nothing_half_written(tmp_path)


def test_trickling_server_hits_the_per_file_deadline(standin, tmp_path) -> None:
    standin.trickle.add(at(24))  # 16 bytes every 50 ms: 23 kB would take 72 s
    slow = options(download_deadline=0.3, download_retries=2)
    with pytest.raises(JsocError, match="failed"):
        run(standin, tmp_path, options=slow)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    row = manifest.get(key(24))
    assert row["state"] == "failed" and "deadline" in row["reason"], row["reason"]
    assert standin.served[at(24)] == 2 and manifest.counts()["verified"] == 5
    assert_nothing_half_written(tmp_path)
    standin.trickle.clear()
    assert run(standin, tmp_path, options=slow).counts()["verified"] == 6


# --------------------------------------------------------------- the lock
def test_a_second_acquisition_on_one_directory_fails_fast(standin, tmp_path) -> None:
    with out_dir_lock(tmp_path), pytest.raises(OutDirLockedError, match=f"pid {os.getpid()}"):
        run(standin, tmp_path)
    assert standin.calls["rs_list"] == 0
    assert run(standin, tmp_path).counts()["verified"] == 6  # released on exit


def fetch_argv(standin, out: Path, *extra: str) -> list[str]:
    return [
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
        str(out),
        "--server",
        standin.url,
        "--no-progress",
        *extra,
    ]


def test_two_fetch_processes_on_one_out(standin, tmp_path, capsys) -> None:
    standin.stall.add(at(24))
    env = {**os.environ, "ENHANCE_JSOC_EMAIL": EMAIL}
    first = subprocess.Popen(
        fetch_argv(standin, tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert standin.stall_started.wait(60), first.communicate(timeout=5)
        second = subprocess.run(
            fetch_argv(standin, tmp_path), env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("enhance fetch: error:")
        assert f"in use by another acquisition (pid {first.pid} on " in lines[0]
        standin.stall.clear()
        standin.release.set()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert manifest.counts()["verified"] == 6 and standin.calls["exp_request"] == 1
    assert_nothing_half_written(tmp_path)


# -------------------------------------------------------------- disk full
_FULL_DISK = """
set -u
{mount}
{python} -m enhance_hmi fetch {args} > {log}/first.out 2> {log}/first.err
echo $? > {log}/first.rc
find {out} -maxdepth 1 -type f -printf '%s %f\\n' > {log}/first.files
cp {out}/hmi.M_720s.manifest.csv {log}/first.manifest.csv 2>/dev/null || true
{grow}
{python} -m enhance_hmi fetch {args} > {log}/second.out 2> {log}/second.err
echo $? > {log}/second.rc
find {out} -maxdepth 1 -type f -printf '%s %f\\n' > {log}/second.files
"""


def _disk_full_run(standin, tmp_path: Path, *, mount: str, grow: str, wrapper: list[str]):
    log, out = tmp_path / "log", tmp_path / "disk" / "out"
    log.mkdir()
    (tmp_path / "disk").mkdir()
    args = " ".join(fetch_argv(standin, out)[4:])
    script = _FULL_DISK.format(
        mount=mount, grow=grow, python=sys.executable, args=args, log=log, out=out
    )
    env = {**os.environ, "ENHANCE_JSOC_EMAIL": EMAIL, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*wrapper, "sh", "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    def read(name: str) -> str:
        return (log / name).read_text()

    def files(name: str) -> dict[str, int]:
        pairs = (line.split(" ", 1) for line in read(name).splitlines())
        return {n: int(s) for s, n in pairs}

    return read, files


def _check_full_disk(read, files, reason: str) -> None:
    assert read("first.rc").strip() == "2"
    err = read("first.err")
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("enhance fetch: error: cannot write ") and re.search(reason, last), err
    first = files("first.files")
    assert not [n for n in first if n.endswith(".part")], first
    # what was kept is complete: every FITS file whole, the manifest a manifest
    assert all(size == FILE_SIZE for n, size in first.items() if n.endswith(".fits")), first
    if "hmi.M_720s.manifest.csv" in first:
        rows = pd.read_csv(
            pd.io.common.StringIO(read("first.manifest.csv")), dtype=str, keep_default_na=False
        )
        assert len(rows) == 6
    assert read("second.rc").strip() == "0", read("second.err")
    second = files("second.files")
    assert sorted(n for n in second if n.endswith(".fits")) == [
        local_name(M720, at(m)) for m in range(0, 61, 12)
    ]
    assert all(second[n] == FILE_SIZE for n in second if n.endswith(".fits"))


def test_disk_full_on_a_real_small_filesystem(standin, tmp_path) -> None:
    unshare = shutil.which("unshare")
    probe = tmp_path / "probe"
    probe.mkdir()
    if unshare is None or (
        subprocess.run(
            [unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (unshare -rm)")
    disk = tmp_path / "disk"
    read, files = _disk_full_run(
        standin,
        tmp_path,
        # 64 KiB: the manifest and about two files fit, six do not
        mount=f"mount -t tmpfs -o size=64k tmpfs {disk} && mkdir {disk}/out",
        grow=f"mount -o remount,size=4m {disk}",
        wrapper=[unshare, "-rm"],
    )
    _check_full_disk(read, files, "No space left on device|disk is full")


def test_file_size_limit_is_one_line_too(standin, tmp_path) -> None:
    # ulimit -f (512-byte blocks): the manifest fits, a 23 kB FITS file does not
    read, files = _disk_full_run(
        standin,
        tmp_path,
        mount=f"mkdir {tmp_path / 'disk' / 'out'} && ulimit -S -f 30",
        grow="ulimit -S -f unlimited || exit 3",
        wrapper=[],
    )
    _check_full_disk(read, files, "File too large")


# ------------------------------------------------------- the local archive
def _archive(tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    for sub, src in zip(
        ("2011", "2016", "2019"), sorted(sample_dir().glob("hmi.M_720s.*.fits")), strict=True
    ):
        (archive / sub).mkdir(parents=True)
        shutil.copy(src, archive / sub / "image.fits")  # one base name in every folder
    return archive


def test_local_archive_files_with_one_base_name_all_count(tmp_path) -> None:
    archive = _archive(tmp_path)
    out = tmp_path / "out"
    manifest = acquire(
        series="hmi.M_720s", start=None, end=None, cadence=None, out_dir=out, server=str(archive)
    )
    assert manifest.counts()["verified"] == 3
    sources = sorted(archive.rglob("image.fits"))
    for row, src in zip(manifest, sources, strict=True):
        link = out / row["file"]
        assert link.is_symlink() and link.resolve() == src.resolve()  # no copy
        assert row["sha256"] == sha256_file(src) and int(row["size"]) == src.stat().st_size
    assert len({r["file"] for r in manifest}) == 3
    used = sum(p.lstat().st_size for p in out.iterdir() if p.suffix == ".fits")
    assert used < 3 * 1024  # three links, not three copies (~90 kB each)
    # a rerun keeps the links; the archive itself is never written
    before = {p: p.stat().st_mtime_ns for p in sources}
    again = acquire(
        series="hmi.M_720s", start=None, end=None, cadence=None, out_dir=out, server=str(archive)
    )
    assert again.frame[["file", "sha256"]].equals(manifest.frame[["file", "sha256"]])
    assert {p: p.stat().st_mtime_ns for p in sources} == before


def test_local_archive_with_two_files_for_one_t_rec(tmp_path) -> None:
    archive = _archive(tmp_path)
    copy = archive / "mirror" / "2016"
    copy.mkdir(parents=True)
    shutil.copy(archive / "2016" / "image.fits", copy / "image.fits")  # identical: fine
    out = tmp_path / "out"
    manifest = acquire(
        series="hmi.M_720s", start=None, end=None, cadence=None, out_dir=out, server=str(archive)
    )
    assert manifest.counts()["verified"] == 3
    # a different file claiming the same T_REC: an error naming both, nothing linked
    with fits.open(copy / "image.fits", mode="update") as hdul:
        hdul[1].header["HISTORY"] = "edited"
    with pytest.raises(InputError, match=r"2016/image.fits and mirror/2016/image.fits"):
        acquire(
            series="hmi.M_720s",
            start=None,
            end=None,
            cadence=None,
            out_dir=tmp_path / "out2",
            server=str(archive),
        )
    assert not list((tmp_path / "out2").glob("*.fits"))


def test_cli_email_file_and_the_ps_warning(standin, tmp_path, caplog, monkeypatch) -> None:
    monkeypatch.delenv("ENHANCE_JSOC_EMAIL", raising=False)
    secret = tmp_path / "email"
    secret.write_text(EMAIL + "\n")
    argv = ["fetch", "--no-progress", "--series", "hmi.M_720s", "--start", "2014-01-01T00:00"]
    argv += ["--end", "2014-01-01T00:24", "--cadence", "12m", "--server", standin.url]
    assert main([*argv, "--out", str(tmp_path / "a"), "--email-file", str(secret)]) == 0
    assert "visible" not in caplog.text
    assert main([*argv, "--out", str(tmp_path / "b"), "--email", EMAIL]) == 0
    assert "--email is visible to every user" in caplog.text and EMAIL not in caplog.text
    assert main([*argv, "--out", str(tmp_path / "c"), "--email-file", str(tmp_path / "no")]) == 2


# -------------------------------------------------------- content on reruns
def test_a_rerun_fetches_a_file_whose_bytes_changed_keeping_its_size(standin, tmp_path) -> None:
    run(standin, tmp_path)
    path = tmp_path / local_name(M720, at(36))
    recorded = sha256_file(path)
    body = bytearray(path.read_bytes())
    body[-3000] ^= 0x01  # bit rot, another process: same size, other bytes
    path.write_bytes(bytes(body))
    manifest = run(standin, tmp_path)
    assert standin.served[at(36)] == 2 and standin.served[at(24)] == 1  # only that one again
    assert sha256_file(path) == recorded
    assert manifest.get(key(36))["state"] == "verified"
    assert_nothing_half_written(tmp_path)


def test_refetch_downloads_verified_files_again(standin, tmp_path) -> None:
    run(standin, tmp_path)
    run(standin, tmp_path, refetch=[key(12), "2014-01-01T00:48:00"])  # any T_REC spelling
    assert [standin.served[at(m)] for m in range(0, 61, 12)] == [1, 2, 1, 1, 2, 1]
    assert_nothing_half_written(tmp_path)
