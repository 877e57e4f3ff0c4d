"""Hostile headers and corrupt compressed data are refused, real files are not.

Inputs are real: the bundled JSOC crops and continuum cut-out
(``enhance_hmi/data/sample``), the real 4096 x 4096 hmi.M_720s full disks of
``../shared/data``, files served by the JSOC stand-in and fetched by the real
drms client. Hostile variants are made by editing the fixed-width header
cards of a real file in place (the data stay as they were) or by flipping
one bit of its compressed data. ``enhance predict`` runs as a real process.

"Has teeth" counter-cases: each hostile file differs from an accepted one by
one card or one bit, and the low-bit flip that the Rice re-encoding cannot
see is shown to be refused on a full disk (through its off-disk ``BLANK``
pixels) and to pass on a crop without them, the limit the module states.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.hdu.compressed._codecs import Rice1
from jsoc_standin import running_standin
from test_acquire_jsoc import at, key, run

from enhance_hmi.acquire import Manifest
from enhance_hmi.errors import CorruptDataError, HeaderLimitError, JsocError
from enhance_hmi.io import read_hmi
from enhance_hmi.io.header_limits import MAX_IMAGE_AXIS, check_input_file
from enhance_hmi.io.tile_integrity import check_tiles

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
MAGNETOGRAM = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"  # RICE_1, no DATASUM
CONTINUUM = SAMPLE / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits"  # GZIP_2, DATASUM
PLAIN = SAMPLE / "hmi_quiet_ic_cutout.fits"  # uncompressed 130 x 130 float32
FULL_DISK = "hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
BLANK = -(2**31)
#: Peak resident memory allowed to a refused ``enhance predict`` (the issue's bound).
RSS_LIMIT_BYTES = 300 * 2**20


# ----------------------------------------------------------------- helpers
def _card_offset(blob: bytes | bytearray, keyword: str, start: int = 0) -> int:
    """Byte offset of the 80-byte card ``keyword`` (value card), searching from ``start``."""
    needle = keyword.ljust(8).encode() + b"= "
    pos = blob.find(needle, start)
    while pos >= 0 and pos % 80:
        pos = blob.find(needle, pos + 1)
    assert pos >= 0, keyword
    return pos


def patched(src: Path, dst: Path, cards: dict[str, object], *, hdu_start: int = 0) -> Path:
    """``src`` with header cards rewritten in place: same length, same data."""
    blob = bytearray(src.read_bytes())
    for keyword, value in cards.items():
        pos = _card_offset(blob, keyword, hdu_start)
        image = fits.Card(keyword, value).image.encode()
        assert len(image) == 80
        blob[pos : pos + 80] = image
    dst.write_bytes(bytes(blob))
    return dst


def without_datasum(src: Path, dst: Path) -> Path:
    """``src`` with its ``DATASUM`` and ``CHECKSUM`` cards blanked (length kept)."""
    blob = bytearray(src.read_bytes())
    with fits.open(src) as hdul:
        headers = [
            (hdul.fileinfo(i)["hdrLoc"], hdul.fileinfo(i)["datLoc"]) for i in range(len(hdul))
        ]
    for start, end in headers:
        for pos in range(start, end, 80):
            if blob[pos : pos + 10] in (b"DATASUM = ", b"CHECKSUM= "):
                blob[pos : pos + 80] = b" " * 80
    dst.write_bytes(bytes(blob))
    return dst


class RiceFile:
    """The tiles of HDU 1 of a Rice-compressed file: byte offsets and a codec."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blob = path.read_bytes()
        with fits.open(path, disable_image_compression=True) as hdul:
            header = hdul[1].header
            data_start = hdul.fileinfo(1)["datLoc"]
        rows, width = int(header["NAXIS2"]), int(header["NAXIS1"])
        table = np.frombuffer(self.blob, dtype=">i4", count=2 * rows, offset=data_start)
        self.lengths, offsets = table[0::2], table[1::2]
        self.starts = data_start + rows * width + offsets  # heap right after the table
        self.codec = Rice1(blocksize=32, bytepix=4, tilesize=int(header["ZTILE1"]))

    def tile(self, row: int) -> np.ndarray:
        start = int(self.starts[row])
        return np.frombuffer(self.blob[start : start + int(self.lengths[row])], dtype=np.uint8)

    def flipped(self, dst: Path, row: int, bit: int) -> Path:
        """A copy with bit ``bit`` (from the start, MSB first) of tile ``row`` flipped."""
        blob = bytearray(self.blob)
        blob[int(self.starts[row]) + bit // 8] ^= 0x80 >> (bit % 8)
        dst.write_bytes(bytes(blob))
        return dst

    def silent_flip(self, row: int) -> int:
        """A bit whose flip leaves a valid Rice stream of other pixels (re-encodes the same)."""
        stream = self.tile(row)
        original = self.codec.decode(stream).copy()
        for bit in range(8 * len(stream) // 2, 8 * len(stream)):
            damaged = stream.copy()
            damaged[bit // 8] ^= 0x80 >> (bit % 8)
            try:
                values = self.codec.decode(damaged)
            except Exception:  # noqa: BLE001 - a decode error is the easy case, not wanted here
                continue
            if not np.array_equal(values, original) and (
                self.codec.encode(values) == damaged.tobytes()
            ):
                return bit
        raise AssertionError("no silent flip found")


#: Runs the command in argv and prints its exit code and peak RSS (KiB). A small
#: process of its own: a child forked from the test session (torch loaded) would
#: count the session's pages in its peak until it execs.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run_predict(path: Path, out: Path) -> tuple[int, str, int, float]:
    """``python -m enhance_hmi predict``: exit code, stderr, peak RSS (bytes) and wall seconds."""
    command = [sys.executable, "-m", "enhance_hmi", "predict", str(path), "-o", str(out)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        check=False,
    )
    wall = time.perf_counter() - start
    code, rss_kib = (int(word) for word in done.stdout.split())
    return code, done.stderr, rss_kib * 1024, wall


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("enhance predict: error: "), lines[0]
    return lines[0]


# ------------------------------------------------------- hostile headers
HOSTILE_SIZES = {
    "uncompressed": (PLAIN, {"NAXIS1": 100_000, "NAXIS2": 100_000}, "NAXIS1 = 100000"),
    "tile-compressed": (MAGNETOGRAM, {"ZNAXIS1": 100_000, "ZNAXIS2": 100_000}, "ZNAXIS1 = 100000"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_SIZES))
def test_predict_refuses_a_100000_squared_header_in_one_line(tmp_path: Path, kind: str) -> None:
    """Exit 2, one line naming file, card and limit, < 300 MB peak RSS (wall time: bench)."""
    src, cards, card = HOSTILE_SIZES[kind]
    hostile = patched(src, tmp_path / f"hostile-{kind}.fits", cards)
    with pytest.raises(HeaderLimitError) as info:
        check_input_file(hostile)
    assert card in str(info.value) and str(MAX_IMAGE_AXIS) in str(info.value)

    code, err, rss, wall = run_predict(hostile, tmp_path / "out.fits")
    line = one_error_line(err)
    assert code == 2, err
    assert hostile.name in line and card in line and f"beyond the {MAX_IMAGE_AXIS}" in line
    assert rss < RSS_LIMIT_BYTES, f"peak RSS {rss / 2**20:.0f} MB (wall {wall:.2f} s)"
    assert not (tmp_path / "out.fits").exists()


def test_the_unedited_files_pass_the_same_checks() -> None:
    """Counter-case: the files the hostile ones are made from are accepted."""
    for path in (PLAIN, MAGNETOGRAM, CONTINUUM):
        check_input_file(path)
        check_tiles(path)


HOSTILE_CARDS = [
    # (source, cards, words of the message)
    (PLAIN, {"BITPIX": 24}, "BITPIX = 24"),
    (PLAIN, {"NAXIS": 1000}, "NAXIS = 1000"),
    (PLAIN, {"NAXIS1": MAX_IMAGE_AXIS + 1}, f"NAXIS1 = {MAX_IMAGE_AXIS + 1}"),
    (PLAIN, {"NAXIS2": 200}, "truncated or corrupt"),  # more data than the file holds
    (MAGNETOGRAM, {"ZNAXIS2": 100_000}, "ZNAXIS2 = 100000"),
    (MAGNETOGRAM, {"ZBITPIX": 24}, "ZBITPIX = 24"),
    (MAGNETOGRAM, {"ZTILE1": 100_000}, "ZTILE1 = 100000"),
    (MAGNETOGRAM, {"ZTILE2": 2}, "but ZNAXISn / ZTILEn make 128 tiles"),
    (MAGNETOGRAM, {"ZCMPTYPE": "HCOMPRESS_1"}, "ZCMPTYPE = 'HCOMPRESS_1'"),
    (MAGNETOGRAM, {"ZVAL1": 1024}, "BLOCKSIZE (ZVALn) = 1024"),
    (MAGNETOGRAM, {"ZVAL2": 8}, "BYTEPIX (ZVALn) = 8"),
    (MAGNETOGRAM, {"PCOUNT": 10**12}, "claims 1000000002048 bytes"),
    (MAGNETOGRAM, {"NAXIS2": 10**9}, "NAXIS2 = 1000000000"),
]


@pytest.mark.parametrize(("src", "cards", "words"), HOSTILE_CARDS, ids=lambda v: str(v)[:40])
def test_each_hostile_card_is_refused_before_any_data_is_read(
    tmp_path: Path, src: Path, cards: dict[str, object], words: str
) -> None:
    hostile = patched(src, tmp_path / "hostile.fits", cards)
    with pytest.raises(HeaderLimitError) as info:
        read_hmi(hostile)
    message = str(info.value)
    assert words in message and hostile.name in message and "\n" not in message


# ------------------------------------------- corrupt Rice without DATASUM
def test_clean_files_without_datasum_are_accepted(tmp_path: Path) -> None:
    """No false refusal: real crops, and astropy's own Rice and gzip of several types."""
    for path in sorted(SAMPLE.glob("*magnetogram.fits")):
        assert check_tiles(path) == 256  # bundled crops carry no DATASUM: every tile checked
        read_hmi(path)
    rng = np.random.default_rng(5)
    for algorithm in ("RICE_1", "GZIP_1", "GZIP_2"):
        for dtype in ("u1", "i2", "i4", "f4"):
            data = rng.normal(0.0, 300.0, (50, 70))
            data = np.abs(data).astype(dtype) if dtype == "u1" else data.astype(dtype)
            for tile in ((70, 1), (16, 16)):  # rows; squares with cut edge tiles
                path = tmp_path / f"{algorithm}-{dtype}-{tile[0]}.fits"
                image = fits.CompImageHDU(data, compression_type=algorithm, tile_shape=tile[::-1])
                fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
                assert check_tiles(path) == (50 if tile == (70, 1) else 20), path.name


@pytest.mark.shared_data
def test_real_full_disks_reencode_byte_for_byte_and_pass(shared_data: Path, tmp_path: Path):
    """Every tile of the real JSOC full disks passes (its cost: bench/tile_check.py)."""
    disks = sorted((shared_data / "hmi" / "fulldisk").glob("hmi.M_720s.*.fits"))
    assert len(disks) == 3
    for disk in disks:
        bare = without_datasum(disk, tmp_path / disk.name)
        assert check_tiles(bare) == 4096
        assert check_tiles(disk) == 0  # DATASUM present: left to that check


def test_flipped_bits_in_a_crop_without_datasum_are_refused(tmp_path: Path) -> None:
    rice = RiceFile(MAGNETOGRAM)
    # a high bit of the first pixel, stored raw: the whole row shifts by 2**28
    high = rice.flipped(tmp_path / "high.fits", row=0, bit=3)
    with pytest.raises(CorruptDataError, match=r"tile 1 of 256 .* beyond any HMI value"):
        read_hmi(high)
    # flips in the first block's split code and first samples (after the 32 raw
    # bits of the first pixel) desynchronise the rest of the tile
    problems = set()
    for bit in range(32, 45):
        with pytest.raises(CorruptDataError) as info:
            check_tiles(rice.flipped(tmp_path / "early.fits", row=100, bit=bit))
        assert "tile 101 of 256" in str(info.value) and "no DATASUM" in str(info.value)
        problems.add("does not decode" in str(info.value))
    assert problems == {True, False}  # decode errors, and streams that re-encode otherwise


def test_a_silent_flip_is_not_detectable_without_blank_pixels(tmp_path: Path) -> None:
    """The limit: a low-bit flip leaves a valid Rice stream; in a crop nothing shows it."""
    rice = RiceFile(MAGNETOGRAM)
    bit = rice.silent_flip(row=100)
    flipped = rice.flipped(tmp_path / "silent.fits", row=100, bit=bit)
    assert check_tiles(flipped) == 256  # passes: only DATASUM protects such a file
    wrong = np.count_nonzero(fits.getdata(MAGNETOGRAM) != fits.getdata(flipped))
    assert 0 < wrong < 256  # the rest of one row, shifted


@pytest.mark.shared_data
def test_a_silent_flip_on_a_full_disk_shifts_its_blank_pixels_and_is_refused(
    shared_data: Path, tmp_path: Path
) -> None:
    bare = without_datasum(shared_data / "hmi" / "fulldisk" / FULL_DISK, tmp_path / FULL_DISK)
    rice = RiceFile(bare)
    row = 2048  # the disk's equator: BLANK pixels beyond the limb at the row's end
    assert rice.codec.decode(rice.tile(row))[-1] == BLANK
    bit = rice.silent_flip(row)
    flipped = rice.flipped(tmp_path / "flipped.fits", row, bit)
    with pytest.raises(CorruptDataError, match=r"tile 2049 of 4096 .* beyond any HMI value"):
        check_tiles(flipped)


def test_predict_refuses_a_flipped_rice_file_without_datasum(tmp_path: Path) -> None:
    flipped = RiceFile(MAGNETOGRAM).flipped(tmp_path / "flipped.fits", row=0, bit=3)
    code, err, _, _ = run_predict(flipped, tmp_path / "out.fits")
    line = one_error_line(err)
    assert code == 2, err
    assert "flipped.fits: tile 1 of 256" in line and "corrupt" in line and "no DATASUM" in line
    assert not (tmp_path / "out.fits").exists()


# ------------------------------------------------------------ acquisition
@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def test_acquisition_refuses_a_flipped_file_without_datasum(standin, tmp_path: Path) -> None:
    standin.no_datasum.update(at(m) for m in range(0, 61, 12))
    standin.bitflip.add(at(24))
    with pytest.raises(JsocError, match="failed"):
        run(standin, tmp_path)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    row = manifest.get(key(24))
    assert row["state"] == "failed", row
    assert "no DATASUM" in row["reason"] and "beyond any HMI value" in row["reason"], row["reason"]
    assert standin.served[at(24)] == 3  # refused on every attempt
    assert manifest.counts()["verified"] == 5  # the clean files without DATASUM are kept
    assert not list(tmp_path.glob("*.part"))


def test_acquisition_keeps_clean_files_without_datasum(standin, tmp_path: Path) -> None:
    standin.no_datasum.update(at(m) for m in range(0, 61, 12))
    manifest = run(standin, tmp_path)
    assert manifest.counts()["verified"] == 6
    for row in manifest:
        with fits.open(tmp_path / row["file"], disable_image_compression=True) as hdul:
            assert "DATASUM" not in hdul[1].header  # the check ran: nothing else to go by
        assert check_tiles(tmp_path / row["file"]) == 32
