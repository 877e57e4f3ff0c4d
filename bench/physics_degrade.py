"""Benchmark and accuracy figures of enhance_hmi.physics (one run, prints measurements).

Usage: ``OMP_NUM_THREADS=1 python bench/physics_degrade.py``

Prints wall-clock times of degrade/reobserve for typical sizes (cold = first
call, PSFs built; warm = PSFs cached) and the accuracy figures of the forward
model: PSF FWHMs (sampled vs analytic), Airy first zero, point-source
registration and flux, reobserve residual. Nothing is asserted.
"""

from __future__ import annotations

import math
import time

import astropy.units as u
import numpy as np
from scipy import ndimage, optimize

from enhance_hmi.physics import (
    WACHTER_2012_PARAMETERS,
    WACHTER_PARAMETERS,
    airy_psf,
    degrade,
    hmi_psf,
    reobserve,
    resample,
)

ARCSEC_PER_RAD = 180 * 3600 / math.pi


def timed(label: str, func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    print(f"{label:<58s} {time.perf_counter() - start:8.3f} s")
    return result


def smooth(shape, sigma, seed=0):
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return 1 + 0.1 * field / field.std()


def fwhm_sampled(psf, scale):
    row = psf[psf.shape[0] // 2, psf.shape[0] // 2 :] / psf.max()
    i = int(np.argmax(row < 0.5))
    return 2 * (i - 1 + (row[i - 1] - 0.5) / (row[i - 1] - row[i])) * scale


def fwhm_wachter(p):
    r = optimize.brentq(
        lambda r: (
            (1 - p["eps"]) * math.exp(-((r / p["w"]) ** 2))
            + p["eps"] / (1 + (r / p["W"]) ** p["k"])
            - 0.5
        ),
        0,
        20,
    )
    return 2 * r * 6173e-10 / (math.pi * 0.14) * ARCSEC_PER_RAD


def main() -> None:
    print("== timings ==")
    truth = smooth((1000, 1000), 5)
    timed('degrade 1000x1000 @0.0662"/px (cold, builds PSFs)', degrade, truth, 0.0662 * u.arcsec)
    timed('degrade 1000x1000 @0.0662"/px (warm)', degrade, truth, 0.0662 * u.arcsec)
    muram = smooth((1024, 1920), 5, seed=1)
    timed('degrade 1920x1024 MURaM-size @0.0662"/px (warm)', degrade, muram, 0.0662 * u.arcsec)
    timed(
        "degrade 1000x1000, psf_model=yeo (cold)",
        degrade,
        truth,
        0.0662 * u.arcsec,
        psf_model="yeo",
    )
    hinode = smooth((1024, 2048), 3, seed=2)
    timed(
        'degrade 2048x1024 Hinode-size @0.109"/px, 6684 A (cold)',
        degrade,
        hinode,
        0.109 * u.arcsec,
        wavelength=6684 * u.AA,
    )
    enhanced = smooth((2048, 2048), 4, seed=3)
    timed('reobserve 2048x2048 @0.252"/px (cold)', reobserve, enhanced)
    timed('reobserve 2048x2048 @0.252"/px (warm)', reobserve, enhanced)

    print("== accuracy ==")
    for name, params in (("wachter", WACHTER_PARAMETERS), ("wachter2012", WACHTER_2012_PARAMETERS)):
        psf = hmi_psf(0.01 * u.arcsec, model=name, size=401)
        print(
            f'FWHM {name:<12s} sampled {fwhm_sampled(psf, 0.01):.4f}"  '
            f'analytic {fwhm_wachter(params):.4f}"'
        )
    psf = hmi_psf(0.01 * u.arcsec, model="yeo", size=401)
    print(f'FWHM yeo          sampled {fwhm_sampled(psf, 0.01):.4f}"')
    airy = airy_psf(0.005 * u.arcsec, size=801)
    row = airy[400, 400:]
    i = int(np.argmax(np.diff(row) > 0))
    print(
        f'Airy 28 cm 6173 A first minimum {i * 0.005:.4f}"  '
        f'(1.22 lambda/D = {1.22 * 6173e-10 / 0.28 * ARCSEC_PER_RAD:.4f}")'
    )
    point = np.zeros((501, 480))
    point[250, 219] = 1.0
    step = 0.504 / 0.0662
    pair = degrade(point, 0.0662 * u.arcsec)
    expected = np.array([250.5, 219.5]) / step
    lo = np.floor(expected).astype(int) - 12

    def centroid(img):
        ys, xs = np.indices(img.shape)
        return np.array([((ys + 0.5) * img).sum(), ((xs + 0.5) * img).sum()]) / img.sum()

    c_in = centroid(pair.input[lo[0] : lo[0] + 25, lo[1] : lo[1] + 25]) + lo
    c_t = centroid(pair.target[2 * lo[0] : 2 * lo[0] + 50, 2 * lo[1] : 2 * lo[1] + 50]) / 2 + lo
    print(f"point source: input-target centroid offset {np.abs(c_in - c_t).max():.4f} input px")
    print(f"point source: input-truth offset {np.abs(c_in - expected).max():.4f} input px")
    flux = np.zeros((480, 480))
    flux[203, 261] = 1.0
    pair = degrade(flux, (0.504 / 8) * u.arcsec)
    print(
        f"flux (8 truth px per input px): input {pair.input.sum() * 64:.12f}, "
        f"target {pair.target.sum() * 16:.12f}"
    )
    for sigma in (10, 20, 30):
        field = smooth((760, 760), sigma, seed=10)
        pair = degrade(field, 0.0662 * u.arcsec)
        again = reobserve(pair.target)
        rms = np.sqrt(np.mean((again - pair.input) ** 2))
        binned = np.sqrt(np.mean((resample(pair.target, factor=0.5) - pair.input) ** 2))
        print(
            f'reobserve(target) vs input, field sigma {sigma * 0.0662:.2f}": rms {rms:.5f} '
            f"= {rms / pair.input.std():.3f} of input contrast; 2x2 binning alone {binned:.5f}"
        )


if __name__ == "__main__":
    main()
