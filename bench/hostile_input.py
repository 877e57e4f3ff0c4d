"""Cost of refusing hostile input: the header check, the CLI's refusal, the tile check.

Prints, measured in this run:

- the header check (:func:`enhance_hmi.io.header_limits.check_input_file`) on files
  claiming 100000 x 100000 pixels (uncompressed and tile-compressed);
- ``python -m enhance_hmi predict`` on them: exit status, wall time and peak RSS
  of the whole process (start-up and imports included);
- the tile check (:func:`enhance_hmi.io.tile_integrity.check_tiles`) on the real
  full disks with DATASUM removed (``--fulldisk DIR``), against reading the
  same file's data with astropy (the ratio says what the check adds).

    python bench/hostile_input.py --fulldisk ../shared/data/hmi/fulldisk
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.io.header_limits import check_input_file
from enhance_hmi.io.tile_integrity import check_tiles

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
MAGNETOGRAM = SAMPLE / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"

_CHILD = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, capture_output=True)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def with_cards(source: Path, target: Path, cards: dict[str, int]) -> Path:
    """``source`` with the header cards ``cards`` rewritten in place (same length)."""
    blob = bytearray(source.read_bytes())
    for key, value in cards.items():
        needle = key.ljust(8).encode() + b"= "
        at = blob.find(needle)
        while at % 80:
            at = blob.find(needle, at + 1)
        blob[at : at + 80] = fits.Card(key, value).image.encode()
    target.write_bytes(bytes(blob))
    return target


def hostile_files(folder: Path) -> dict[str, Path]:
    plain = folder / "plain.fits"
    with fits.open(MAGNETOGRAM) as hdul:
        data = np.asarray(hdul[1].data, dtype=np.float32)
    fits.PrimaryHDU(data).writeto(plain)
    return {
        "uncompressed": with_cards(plain, folder / "u.fits", {"NAXIS1": 100000, "NAXIS2": 100000}),
        "tile-compressed": with_cards(
            MAGNETOGRAM, folder / "c.fits", {"ZNAXIS1": 100000, "ZNAXIS2": 100000}
        ),
    }


def cli_refusal(path: Path, out: Path) -> tuple[int, float, float]:
    command = [sys.executable, "-m", "enhance_hmi", "predict", str(path), "-o", str(out)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *command], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    code, kib = (int(word) for word in done.stdout.split())
    return code, wall, kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fulldisk", type=Path, default=None, help="folder of real full disks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, path in hostile_files(folder).items():
            start = time.perf_counter()
            try:
                check_input_file(path)
            except Exception as exc:  # noqa: BLE001 - the refusal is what is timed
                refused = type(exc).__name__
            check_ms = 1000 * (time.perf_counter() - start)
            code, wall, rss = cli_refusal(path, folder / "out.fits")
            print(
                f"{kind:16s} header check {check_ms:6.1f} ms ({refused}); enhance predict: "
                f"exit {code}, {wall:.2f} s wall, peak RSS {rss:.0f} MB"
            )
        for disk in sorted(args.fulldisk.glob("*.fits")) if args.fulldisk else []:
            bare = folder / disk.name
            with fits.open(disk, disable_image_compression=True) as hdul:
                for hdu in hdul:
                    for key in ("DATASUM", "CHECKSUM"):
                        hdu.header.remove(key, ignore_missing=True)
                hdul.writeto(bare, overwrite=True)
            start = time.perf_counter()
            tiles = check_tiles(bare)
            check_s = time.perf_counter() - start
            start = time.perf_counter()
            with fits.open(bare) as hdul:
                _ = np.asarray(hdul[1].data).sum()
            read_s = time.perf_counter() - start
            print(
                f"{disk.name}: tile check {check_s:.2f} s for {tiles} tiles; astropy read "
                f"{read_s:.2f} s; check/read {check_s / read_s:.2f}x"
            )
    print(
        f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
