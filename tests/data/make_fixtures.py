"""Regenerate the small FITS fixtures in this directory from ../shared/data.

Run from the repository root: ``python tests/data/make_fixtures.py``. See
README.md in this directory for the sources and licences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "hmi" / "fulldisk"
SOURCE = SHARED / "hmi.M_720s.20111217_060000_TAI.magnetogram.fits"
# 128x128 pixels around NOAA active-region flux near (x, y) = (852, 2635)
# (0-based, unrotated JSOC array), found as the peak of the 128-px running
# mean of |Blos|.
X0, Y0, SIZE = 788, 2571, 128


def crop_magnetogram(out: Path) -> None:
    """Crop the JSOC file keeping its layout: int32 + BSCALE, RICE_1 in HDU 1."""
    with fits.open(SOURCE, do_not_scale_image_data=True) as hdul:
        raw = np.array(hdul[1].data[Y0 : Y0 + SIZE, X0 : X0 + SIZE], dtype=np.int32)
        header = hdul[1].header.copy()
    header["CRPIX1"] = float(header["CRPIX1"]) - X0
    header["CRPIX2"] = float(header["CRPIX2"]) - Y0
    header.add_history(
        f"enhance test fixture: pixels [{Y0}:{Y0 + SIZE}, {X0}:{X0 + SIZE}] of {SOURCE.name}"
    )
    image = fits.CompImageHDU(
        data=raw, header=header, compression_type="RICE_1", do_not_scale_image_data=True
    )
    image.header["BSCALE"] = 0.1
    image.header["BZERO"] = 0.0
    image.header["BLANK"] = -2147483648
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(out, overwrite=True, checksum=True)


if __name__ == "__main__":
    crop_magnetogram(HERE / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits")
