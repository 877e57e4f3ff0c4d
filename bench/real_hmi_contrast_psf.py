"""Quiet-Sun contrast of the real HMI cut-out deconvolved to 28 cm under each HMI PSF model.

The 28 cm contrast a deconvolution gives a real HMI image depends on the
HMI PSF it assumes. This prints, for the bundled real HMI quiet-Sun cut-out
(``enhance_hmi/data/sample/hmi_quiet_ic_cutout.fits``), the quiet-Sun rms
contrast of the input and of :func:`enhance_hmi.validation.baselines.tikhonov`
(no training, a smoothness prior weighted by the discrepancy principle)
for every model of :data:`enhance_hmi.physics.HMI_PSF_MODELS`, and, when weights
are given, of the network output (the network was trained with one PSF
model, named in its sidecar). An 8-pixel border of the 0.252"/px output is
left out. One run, figures printed, nothing asserted.

Measured (2026-12-01): HMI 3.76 %; Tikhonov 8.38 % (``wachter``, the
paper's modified form, eq. 1), 6.92 % (``wachter2012``, Wachter et al.'s
own parameters), 10.62 % (``yeo``); the shipped continuum network (trained
with ``wachter2012``, projection on) 7.09 % (7.07 % in ``enhance evaluate``,
which keeps the border); the network shipped before it, trained with
``wachter``, 8.44 % (8.39 %). The paper reports 6.7-7.7 % for its network.

Usage::

    python bench/real_hmi_contrast_psf.py [--weights enhance_hmi/data/weights/continuum.safetensors]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from enhance_hmi.io import read_hmi
from enhance_hmi.physics import HMI_PSF_MODELS
from enhance_hmi.validation import baselines, metrics

CUTOUT = (
    Path(__file__).resolve().parents[1]
    / "enhance_hmi"
    / "data"
    / "sample"
    / "hmi_quiet_ic_cutout.fits"
)
BORDER = 8


def _contrast(image) -> float:
    inner = image[BORDER:-BORDER, BORDER:-BORDER]
    return 100.0 * metrics.rms_contrast(inner, metrics.quiet_sun_mask(inner))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="also score this network's output")
    args = parser.parse_args()
    data = read_hmi(CUTOUT, observable="continuum").data
    inner = data[BORDER // 2 : -BORDER // 2, BORDER // 2 : -BORDER // 2]
    print(f"HMI input: {100 * metrics.rms_contrast(inner, metrics.quiet_sun_mask(inner)):.2f} %")
    for model in HMI_PSF_MODELS:
        deconvolved = baselines.tikhonov(data, psf_model=model)
        print(f"Tikhonov, psf_model={model}: {_contrast(deconvolved):.2f} %")
    if args.weights:
        from enhance_hmi.inference import enhance_frame

        frame = read_hmi(CUTOUT, observable="continuum")
        out = enhance_frame(frame, weights=args.weights, device="cpu", uncertainty=False)
        print(f"network {Path(args.weights).name}: {_contrast(out.data):.2f} %")


if __name__ == "__main__":
    main()
