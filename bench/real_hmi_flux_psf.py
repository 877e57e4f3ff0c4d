"""Field-region flux of real HMI magnetograms deconvolved to 28 cm under each HMI PSF model.

The unsigned flux a deconvolution gives the field regions of a real HMI
magnetogram depends on the HMI PSF it assumes, as the continuum contrast
does (``bench/real_hmi_contrast_psf.py``). This prints, for the central
crop of each real hmi.M_720s full-disk frame in ``../shared/data``, the
unsigned flux of :func:`enhance_hmi.validation.baselines.tikhonov` (no training)
over the field regions, divided by the input's, for every model of
:data:`enhance_hmi.physics.HMI_PSF_MODELS`. Field regions and noise are those of
``enhance evaluate --hmi`` (:func:`enhance_hmi.validation.metrics.field_mask`
of the input, grown onto the 2x grid). One run, figures printed, nothing
asserted.

Measured (2026-12-01, central 512^2; flux ratio wachter / wachter2012 / yeo):
2011-12-17 1.249 / 1.147 / 1.427; 2016-07-07 1.260 / 1.156 / 1.433;
2019-06-21 1.307 / 1.187 / 1.498 (field regions 8-11 % of the pixels).
The shipped magnetogram network (trained with ``wachter``) gives 1.106 /
1.147 / 1.161 on the central 1024^2 (docs/model_card.md).

Usage::

    python bench/real_hmi_flux_psf.py [--shared ../shared/data] [--crop 512]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from enhance_hmi.io import read_hmi
from enhance_hmi.physics import HMI_PIXEL_SCALE, HMI_PSF_MODELS
from enhance_hmi.validation import baselines, metrics

REPO = Path(__file__).resolve().parents[1]


def _field_flux_ratios(data: np.ndarray) -> tuple[dict[str, float], float]:
    """Tikhonov's field-region flux over the input's, per PSF model; and the field fraction."""
    quiet = metrics.quiet_sun_mask(data, kind="blos")
    field = metrics.field_mask(data, metrics.noise_level(data, quiet))
    field_out = np.repeat(np.repeat(field, 2, axis=0), 2, axis=1)
    pixel_in = metrics.solar_pixel_area(HMI_PIXEL_SCALE)
    flux_in = metrics.unsigned_flux(np.where(field, data, 0.0), pixel_in)
    ratios = {}
    for model in HMI_PSF_MODELS:
        out = baselines.tikhonov(data, psf_model=model)
        flux_out = metrics.unsigned_flux(np.where(field_out, out, 0.0), pixel_in / 4)
        ratios[model] = float(flux_out / flux_in)
    return ratios, float(field.mean())


def main() -> None:
    """Print the ratios for every HMI magnetogram under ``--shared``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--crop", type=int, default=512, help="central crop side (pixels)")
    args = parser.parse_args()
    paths = sorted((args.shared / "hmi" / "fulldisk").glob("*magnetogram*.fits"))
    if not paths:
        parser.error(f"no HMI magnetograms under {args.shared / 'hmi' / 'fulldisk'}")
    for path in paths:
        disk = read_hmi(path, observable="magnetogram").data
        ny, nx = disk.shape
        h = args.crop // 2
        crop = np.asarray(disk[ny // 2 - h : ny // 2 + h, nx // 2 - h : nx // 2 + h], np.float32)
        ratios, fraction = _field_flux_ratios(crop)
        figures = "  ".join(f"{m} {ratios[m]:.3f}" for m in HMI_PSF_MODELS)
        print(f"{path.name:50s} {figures}  field fraction {fraction:.3f}", flush=True)


if __name__ == "__main__":
    main()
