"""Build the 28 cm truth crop shipped in ``enhance_hmi/data/truth/``.

Source (see ``../shared/data/INVENTORY.md``): the MURaM radiative-MHD
quiet-Sun continuum snapshot ``highres/muram_quiet_ic_0.0662.fits``
(1000 x 1000 at 0.0662"/px, HelioML book, BSD-3-Clause). The crop is the
central 640 rows of its held-out columns (``enhance train``'s split with
``holdout=0.35``, beyond the guard band:
:func:`enhance_hmi.scenes.held_out_columns`), i.e. pixels the shipped
networks never saw, divided by the quiet-Sun level of the whole snapshot
(:func:`enhance_hmi.scenes.scene_quiet_sun_level`, as ``enhance train``
divides it) and stored as 16-bit integers with ``BSCALE`` (a step of
~2e-5 quiet-Sun units, 50 times below the paper's input noise of 1e-3).

Run from the repository root::

    python tests/data/make_truth_crop.py [--shared ../shared/data] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from enhance_hmi.scenes import held_out_columns, read_scene_image, scene_quiet_sun_level

SCENE = "highres/muram_quiet_ic_0.0662.fits"
PIXEL_SCALE = 0.0662 * u.arcsec  # MURaM grid, 48 km (INVENTORY.md)
HOLDOUT = 0.35  # the split of the shipped networks (docs/model_card.md)
ROWS = 640
NAME = "muram_quiet_ic_heldout.fits"


def truth_crop(shared: Path) -> fits.PrimaryHDU:
    """The held-out crop in quiet-Sun units as an int16 + BSCALE primary HDU."""
    data, header = read_scene_image(shared / SCENE)
    level = scene_quiet_sun_level(data, PIXEL_SCALE)
    _, start = held_out_columns(data.shape[1], PIXEL_SCALE, HOLDOUT)
    y0 = (data.shape[0] - ROWS) // 2
    crop = data[y0 : y0 + ROWS, start:] / level
    low, high = float(crop.min()), float(crop.max())
    hdu = fits.PrimaryHDU(crop.astype(np.float32))
    card = hdu.header
    card["CDELT1"] = (PIXEL_SCALE.to_value(u.arcsec), "arcsec/px (48 km)")
    card["CDELT2"] = (PIXEL_SCALE.to_value(u.arcsec), "arcsec/px (48 km)")
    card["BUNIT"] = ("", "intensity / quiet-Sun level of the snapshot")
    card["WAVELNTH"] = (6173.0, "Angstrom (continuum near Fe I 6173)")
    card["ORIGIN"] = ("MURaM", "radiative MHD simulation (quiet Sun)")
    card["SOURCE"] = header["SOURCE"]
    card["LICENSE"] = "BSD-3-Clause (HelioML)"
    card["REGION"] = (f"y {y0}:{y0 + ROWS} x {start}:{data.shape[1]}", "of the snapshot")
    card["QSLEVEL"] = (level, "quiet-Sun level divided out (erg/s/cm2/sr)")
    card["HOLDOUT"] = (HOLDOUT, "held-out fraction of enhance train")
    card.add_history(f"Held-out columns of {Path(SCENE).name} (enhance train split {HOLDOUT},")
    card.add_history("beyond the guard band): pixels the shipped networks never saw.")
    hdu.scale("int16", bscale=(high - low) / 65000.0, bzero=(high + low) / 2.0)
    return hdu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("enhance_hmi/data/truth"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    truth_crop(args.shared).writeto(args.out / NAME, overwrite=True, checksum=True)
    print(f"wrote {args.out / NAME}")


if __name__ == "__main__":
    main()
