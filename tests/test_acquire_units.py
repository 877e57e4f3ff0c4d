"""Acquisition building blocks: QUALITY, times, manifest, verification (no network)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil

import astropy.units as u
import pytest
from astropy.io import fits

from enhance_hmi.acquire import (
    COLUMNS,
    Manifest,
    QualityPolicy,
    decode_quality,
    expected_slots,
    get_series,
    parse_cadence,
    parse_quality,
    read_manifest,
    sample_dir,
    verify_fits,
)
from enhance_hmi.acquire.addresses import mask_email, mask_emails
from enhance_hmi.acquire.download import DownloadTask, download_all, export_clashes, local_name
from enhance_hmi.acquire.jsoc import ExportedFile
from enhance_hmi.acquire.origins import (
    RefusedDownloadError,
    _redirect_allowed,
    allowed_origins,
    check_url,
)
from enhance_hmi.acquire.timespec import record_set
from enhance_hmi.acquire.verify import VerificationError
from enhance_hmi.atomic import atomic_path, unique_part_path
from enhance_hmi.errors import ConfigError, InputError, OutputError

M720 = get_series("hmi.M_720s")
SAMPLE_M = sorted(sample_dir().glob("hmi.M_720s.*.fits"))


# ------------------------------------------------------------------ QUALITY
def test_sample_quality_values_decode_to_named_bits() -> None:
    # the three real magnetograms carry QUALITY 66560, 0 and 65536 (INVENTORY.md)
    decoded = {}
    for path in SAMPLE_M:
        header = fits.getheader(path, 1)
        decoded[header["T_REC"][:10]] = decode_quality(header["QUALITY"])
    assert decoded == {
        "2011.12.17": ["LOWINTERPNUM", "NOCOSMICRAY"],
        "2016.07.07": [],
        "2019.06.21": ["LOWINTERPNUM"],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0x00010400", 0x10400),
        ("0x80000000", 0x80000000),
        (-2147483648, 0x80000000),  # FITS headers hold it signed
        ("66560", 66560),
        (512.0, 512),
        ("MISSING", None),
        (float("nan"), None),
    ],
)
def test_parse_quality_forms(value: object, expected: int | None) -> None:
    assert parse_quality(value) == expected


@pytest.mark.parametrize("value", ["0xZZ", "1.5", 2**33, 0.5])
def test_parse_quality_rejects_garbage(value: object) -> None:
    with pytest.raises(InputError):
        parse_quality(value)


def test_decode_quality_nodata_and_unknown_bits() -> None:
    assert decode_quality("0x80000000") == ["NODATA"]
    assert decode_quality("0x00000201") == ["ECLIPSE", "BIT_0x00000001"]
    assert decode_quality("0x00000000") == []


def test_quality_policy_presets_names_and_masks() -> None:
    default = QualityPolicy.parse(None)
    assert default.skip_reason(0) is None
    assert default.skip_reason(0x10400) is None  # sub-optimal but usable
    assert "NODATA" in default.skip_reason(0x80000000)
    assert "MISSINGLEV1D" in default.skip_reason(0x02000000)
    eclipse = QualityPolicy.parse("nodata,ECLIPSE")
    reason = eclipse.skip_reason(0x200)
    assert "ECLIPSE" in reason and "nodata,ECLIPSE" in reason
    assert QualityPolicy.parse("QUAL_ISSTARGET").skip_reason(0x4000) is not None
    assert QualityPolicy.parse("0x00000400").skip_reason(0x10400) is not None
    assert QualityPolicy.parse("strict").skip_reason(0x10000) is not None
    # NODATA is always skipped, whatever the policy says
    assert QualityPolicy.parse("ECLIPSE").skip_reason(0x80000000) is not None
    with pytest.raises(ConfigError, match="unknown QUALITY policy item"):
        QualityPolicy.parse("nodata,SUNNY")


# -------------------------------------------------------------------- times
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("12m", 720), ("1h", 3600), ("1d", 86400), ("720 s", 720), ("2min", 120)],
)
def test_parse_cadence(text: str, seconds: int) -> None:
    assert parse_cadence(text) == dt.timedelta(seconds=seconds)


def test_parse_cadence_quantity() -> None:
    assert parse_cadence(12 * u.min) == dt.timedelta(minutes=12)
    with pytest.raises(ConfigError):
        parse_cadence(3 * u.m)


@pytest.mark.parametrize("text", ["12", "12x", "m12", "", "0m", "-1h", "1.5s", "twelve minutes"])
def test_parse_cadence_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_cadence(text)


def test_expected_slots_snap_to_the_series_grid() -> None:
    slots = expected_slots(
        M720, dt.datetime(2014, 1, 1, 0, 5), dt.datetime(2014, 1, 1, 1), dt.timedelta(minutes=12)
    )
    assert slots[0] == dt.datetime(2014, 1, 1, 0, 12)
    assert slots[-1] == dt.datetime(2014, 1, 1, 1, 0)
    assert len(slots) == 5
    with pytest.raises(ConfigError, match="not a multiple"):
        expected_slots(
            M720, dt.datetime(2014, 1, 1), dt.datetime(2014, 1, 2), dt.timedelta(seconds=45)
        )
    with pytest.raises(ConfigError, match="before"):
        expected_slots(
            M720, dt.datetime(2014, 1, 2), dt.datetime(2014, 1, 1), dt.timedelta(hours=1)
        )


def test_record_set_syntax() -> None:
    ds = record_set(M720, dt.datetime(2014, 1, 1), 120, dt.timedelta(minutes=12))
    assert ds == "hmi.M_720s[2014.01.01_00:00:00_TAI/1d@12m]{magnetogram}"


def test_unknown_series() -> None:
    with pytest.raises(ConfigError, match="unknown series"):
        get_series("hmi.V_45s")
    assert get_series("HMI.m_720S").name == "hmi.M_720s"


def test_mask_email() -> None:
    assert mask_email("john.doe@example.org") == "j***@example.org"
    assert "john" not in mask_email("john.doe@example.org")


# ----------------------------------------------------------------- manifest
def test_manifest_round_trip_and_series_check(tmp_path) -> None:
    manifest = Manifest(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    manifest.update(
        "2014.01.01_00:12:00_TAI",
        state="verified",
        quality="0x00000200",
        quality_bits="ECLIPSE",
        size=1234,
        CRPIX1="2048.5",
    )
    manifest.update("2014.01.01_00:00:00_TAI", state="missing", reason="no record on the server")
    manifest.save()
    assert not (tmp_path / "hmi.M_720s.manifest.csv.part").exists()
    back = Manifest.load(manifest.path, "hmi.M_720s")
    assert back.frame.equals(manifest.frame)
    assert list(back.frame["t_rec"]) == ["2014.01.01_00:00:00_TAI", "2014.01.01_00:12:00_TAI"]
    assert back.counts()["verified"] == 1 and back.counts()["missing"] == 1
    with pytest.raises(ValueError, match="state"):
        back.update("2014.01.01_00:24:00_TAI", state="lost")
    with pytest.raises(InputError, match="hmi.M_720s"):
        Manifest.load(manifest.path, "hmi.Ic_720s")


def test_read_manifest_is_the_csv_reader_of_load(tmp_path) -> None:
    """The CSV copy read back gives the stored rows; Manifest.load imports through it."""
    manifest = Manifest(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    manifest.update("2014.01.01_00:12:00_TAI", state="verified", size=1234, CRPIX1="2048.5")
    manifest.update("2014.01.01_00:00:00_TAI", state="missing", reason="no record, 'quoted'")
    manifest.save()
    rows = list(read_manifest(manifest.path))
    assert rows == list(manifest)
    assert all(list(row) == list(COLUMNS) for row in rows)
    manifest.db_path.unlink()  # a CSV-only manifest: imported through read_manifest
    assert list(Manifest.load(manifest.path, "hmi.M_720s")) == rows
    trimmed = tmp_path / "trimmed.manifest.csv"
    trimmed.write_text("t_rec,state,series\n2014.01.01_00:00:00_TAI,missing,hmi.M_720s\n")
    (row,) = read_manifest(trimmed)
    assert row["t_rec"] == "2014.01.01_00:00:00_TAI" and row["file"] == ""
    bad = tmp_path / "bad.manifest.csv"
    bad.write_text("time,status\n1,2\n")
    with pytest.raises(InputError, match="no series, state, t_rec column"):
        list(read_manifest(bad))
    with pytest.raises(InputError, match="no series, state, t_rec column"):
        Manifest.load(bad, "hmi.M_720s")
    assert not bad.with_suffix(".sqlite").exists()  # nothing half-imported is left
    with pytest.raises(InputError, match="cannot read manifest"):
        list(read_manifest(tmp_path / "absent.manifest.csv"))


# ------------------------------------------------------------- verification
def test_verify_fits_on_real_sample(tmp_path) -> None:
    path = SAMPLE_M[0]
    header = verify_fits(path, series=M720, t_rec=dt.datetime(2011, 12, 17, 6))
    assert header["NAXIS1"] == 256 and header["QUALITY"] == 66560
    with pytest.raises(VerificationError, match="T_REC"):
        verify_fits(path, series=M720, t_rec=dt.datetime(2011, 12, 17, 6, 12))
    with pytest.raises(VerificationError, match="hmi.M_45s"):
        verify_fits(path, series=get_series("hmi.M_45s"), t_rec=dt.datetime(2011, 12, 17, 6))
    with pytest.raises(VerificationError, match="announced"):
        verify_fits(path, series=M720, t_rec=dt.datetime(2011, 12, 17, 6), expected_size=1)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[: 2880 * 10])  # whole blocks, data missing
    with pytest.raises(VerificationError):
        verify_fits(cut, series=M720, t_rec=dt.datetime(2011, 12, 17, 6))
    garbage = tmp_path / "garbage.fits"
    shutil.copyfile(path, garbage)
    data = bytearray(garbage.read_bytes())
    data[:2880] = b"\0" * 2880
    garbage.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="not a readable FITS"):
        verify_fits(garbage, series=M720, t_rec=dt.datetime(2011, 12, 17, 6))


# ---------------------------------------------------------------- e-mail masking
@pytest.mark.parametrize(
    "text",
    [
        "hmi.M_720s[2014.01.01_00:00:00_TAI/1d@12m]{magnetogram}",
        "export of hmi.M_45s[2014.01.01_00:00:00_TAI/48m@12m] failed",
        "48m@12m",
        "ds=hmi.M_720s%5B2014.01.01_00%3A00%3A00_TAI%2F1d%4012m%5D",
    ],
)
def test_record_sets_are_not_masked_as_addresses(text: str) -> None:
    assert mask_emails(text) == text


def test_addresses_are_masked_plain_encoded_and_in_requester() -> None:
    text = "notify=john.doe%40example.org&requester=john for john.doe@mail.example.co.uk"
    masked = mask_emails(text)
    assert "john.doe" not in masked and "requester=j***" in masked
    assert "j***%40example.org" in masked and "j***@mail.example.co.uk" in masked


# --------------------------------------------------------------- names and URLs
def test_local_names_come_from_the_record_only() -> None:
    when = dt.datetime(2014, 1, 1, 0, 12)
    assert local_name(M720, when) == "hmi.M_720s.20140101_001200_TAI.magnetogram.fits"
    slots = expected_slots(M720, dt.datetime(2014, 1, 1), dt.datetime(2014, 1, 8), M720.step)
    names = {local_name(M720, t) for t in slots}
    assert len(names) == len(slots)  # unique by construction
    assert not names & {"hmi.M_720s.manifest.csv", "hmi.M_720s.gaps.csv", "hmi.M_720s.gaps.json"}


def test_export_clashes_names_every_ambiguous_record() -> None:
    t = [dt.datetime(2014, 1, 1, 0, 12 * i) for i in range(4)]
    listed = [
        ExportedFile(t[0], "r0", "a.fits", "u"),
        ExportedFile(t[1], "r1", "a.fits", "u"),  # one name, two records
        ExportedFile(t[2], "r2", "c.fits", "u"),
        ExportedFile(t[2], "r2bis", "d.fits", "u"),  # two files, one record
        ExportedFile(t[3], "r3", "NoDataFile", None),
    ]
    clashes = export_clashes(listed)
    assert set(clashes) == {t[0], t[1], t[2]}
    assert "'a.fits' to 2 records" in clashes[t[0]] and "2 files for T_REC" in clashes[t[2]]
    assert export_clashes([*listed[2:3], *listed[4:]]) == {}


def test_allowed_origins_and_check_url() -> None:
    allowed = allowed_origins("http://jsoc.stanford.edu/", ["mirror.example.org:8080"])
    check_url("http://jsoc.stanford.edu/SUM1/D1/x.fits", allowed)
    check_url("http://JSOC.Stanford.edu:80/x.fits", allowed)  # same origin, spelled out
    check_url("https://mirror.example.org:8080/x.fits", allowed)
    for url, why in [
        ("https://jsoc.stanford.edu/x.fits", "own origin"),  # another scheme is another origin
        ("http://jsoc.stanford.edu:8080/x.fits", "own origin"),
        ("http://evil.example.org/x.fits", "--allow-host http://evil.example.org"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://jsoc.stanford.edu/x.fits", "only http and https"),
        ("http:///x.fits", "no host"),
    ]:
        with pytest.raises(RefusedDownloadError, match=why):
            check_url(url, allowed)
    scheme_only = allowed_origins("http://127.0.0.1:5000/", ["https://m.example.org"])
    assert ("https", "m.example.org", 443) in scheme_only
    assert ("http", "m.example.org", 80) not in scheme_only
    for bad in ["file:///", "ftp://m", "http://m/path", "m:http", "user@m", ""]:
        with pytest.raises(ConfigError, match="allowed download host"):
            allowed_origins("http://127.0.0.1:5000/", [bad])


def test_redirects_may_upgrade_to_https_on_the_same_host_only() -> None:
    allowed = allowed_origins("http://jsoc.stanford.edu/")
    _redirect_allowed("http://jsoc.stanford.edu/a", "https://jsoc.stanford.edu/a", allowed)
    with pytest.raises(RefusedDownloadError):
        _redirect_allowed("http://jsoc.stanford.edu/a", "https://other.org/a", allowed)
    with pytest.raises(RefusedDownloadError):  # no downgrade
        _redirect_allowed(
            "https://jsoc.stanford.edu/a",
            "http://jsoc.stanford.edu/a",
            allowed_origins("https://jsoc.stanford.edu/"),
        )


# ------------------------------------------------------------ atomic writes
def test_unique_part_names_differ_per_call(tmp_path) -> None:
    target = tmp_path / "x.fits"
    names = {unique_part_path(target).name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(f"x.fits.{os.getpid()}-") and n.endswith(".part") for n in names)
    with atomic_path(target, unique=True) as tmp:
        assert tmp.name in names or tmp.name.endswith(".part")
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and [p.name for p in tmp_path.iterdir()] == ["x.fits"]


def test_a_full_device_becomes_one_output_error(tmp_path) -> None:
    # /dev/full answers every write with ENOSPC, like a full filesystem
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    target = tmp_path / "report.json"
    with pytest.raises(OutputError) as info, atomic_path(target) as tmp:
        tmp.symlink_to("/dev/full")
        with open(tmp, "w") as fh:
            fh.write("x" * 10)
            fh.flush()
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value.__cause__, OSError)
    message = str(info.value)
    assert "\n" not in message and f"cannot write {target}" in message
    assert "No space left on device" in message and "free some space" in message
    assert list(tmp_path.iterdir()) == []  # the temporary name is gone, no target


def test_download_all_refuses_two_tasks_with_one_destination(tmp_path) -> None:
    when = dt.datetime(2014, 1, 1)
    tasks = [
        DownloadTask(when, f"http://127.0.0.1:9/{i}", tmp_path / "a.fits", M720) for i in (1, 2)
    ]
    with pytest.raises(ValueError, match="destination of both"):
        list(download_all(tasks))
