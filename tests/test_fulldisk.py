"""Full-disk frames: the disk geometry, the projection near the limb, ripple figures.

The real frames are the three JSOC full-disk magnetograms in
``../shared/data/hmi/fulldisk`` (INVENTORY.md): beyond the limb they hold
noisy values out to ~1.045 R_sun and NaN further out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from enhance_hmi.frame import Frame
from enhance_hmi.inference import InferenceTimings, enhance_frame
from enhance_hmi.inference.consistency import CONSTRAINED_RADIUS, project_to_observation
from enhance_hmi.inference.device_arrays import binary_dilation, gaussian_filter, median
from enhance_hmi.inference.device_noise import input_noise_on, quiet_sun_fraction_on
from enhance_hmi.inference.device_quality import TorchQualityKernels
from enhance_hmi.inference.forward_model import (
    ForwardModel,
    TorchForwardModel,
    fast_padded_length,
    reobserve_target_on,
)
from enhance_hmi.inference.tiling import plan_windows
from enhance_hmi.io import read_hmi
from enhance_hmi.io.frame_quality import frame_quality
from enhance_hmi.io.wcs import upsample_header
from enhance_hmi.model.weights import default_weights, load_weights
from enhance_hmi.physics.disk import SolarDisk, constraint_region
from enhance_hmi.physics.noise import input_noise, quiet_sun_fraction
from enhance_hmi.physics.spectrum import band_power
from enhance_hmi.physics.transfer import reobserve_target

#: Frequencies (cycles per output pixel) around HMI's Nyquist where a projection
#: that fits the noise leaves its ripples.
RIPPLE_BAND = (0.15, 0.375)
FRAMES = ("20111217_060000_TAI", "20160707_010000_TAI", "20190621_060000_TAI")


@pytest.fixture(scope="module")
def full_disks(shared_data):
    return {
        name: read_hmi(shared_data / "hmi" / "fulldisk" / f"hmi.M_720s.{name}.magnetogram.fits")
        for name in FRAMES
    }


def limb_crop(frame: Frame, size: int, *, side: str = "east") -> Frame:
    """A ``size``^2 cut-out on the disk's equator whose outer eighth lies beyond the limb."""
    disk = SolarDisk.from_header(frame.header)
    row = int(disk.y0) - size // 2
    if side == "east":
        column = int(disk.x0 - disk.radius) - size // 8
    else:
        column = int(disk.x0 + disk.radius) + size // 8 - size
    header = frame.header.copy()
    header["CRPIX1"] -= column
    header["CRPIX2"] -= row
    header["NAXIS1"] = header["NAXIS2"] = size
    data = np.ascontiguousarray(frame.data[row : row + size, column : column + size])
    return dataclasses.replace(frame, data=data, header=header)


# --------------------------------------------------------------------------- geometry


def test_the_disk_of_a_real_frame_ends_where_its_values_turn_to_noise(full_disks):
    """Radius from RSUN_OBS/CDELT1 and centre from the WCS: the off-limb ring starts at 1.00 R."""
    frame = full_disks["20160707_010000_TAI"]
    disk = SolarDisk.from_header(frame.header)
    radius = disk.relative_radius(frame.data.shape)
    inner = np.abs(frame.data[(radius > 0.98) & (radius < 0.995)])
    outer = np.abs(frame.data[(radius > 1.005) & (radius < 1.02)])
    assert np.nanmedian(outer) > 4 * np.nanmedian(inner)
    assert np.isnan(frame.data[radius > 1.05]).all()


def test_the_disk_on_the_2x_grid_is_the_one_of_the_2x_header(full_disks):
    header = full_disks["20111217_060000_TAI"].header
    fine = SolarDisk.from_header(upsample_header(header, factor=2))
    expected = SolarDisk.from_header(header).scaled(2)
    assert fine.x0 == pytest.approx(expected.x0, abs=1e-6)
    assert fine.y0 == pytest.approx(expected.y0, abs=1e-6)
    assert fine.radius == pytest.approx(expected.radius, rel=1e-9)


def test_a_header_without_disk_keywords_has_no_disk():
    assert SolarDisk.from_header({"CDELT1": 0.5}) is None
    assert SolarDisk.from_header(None) is None
    disk = SolarDisk(x0=6.0, y0=6.0, radius=10.0)
    assert not disk.holds_limb((13, 13)) and disk.inside((13, 13)).all()
    assert disk.holds_limb((13, 13), fraction=0.8) and not disk.inside((13, 13), 0.8).all()
    assert disk.holds_limb((20, 20))


# --------------------------------------------------------------------------- spectrum


def test_band_power_sees_a_ripple_of_a_few_pixels_and_not_the_region_outside():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(512, 512)).astype(np.float32)
    yy, xx = np.mgrid[:512, :512]
    ripple = image + 3 * np.sin(2 * np.pi * 0.2 * xx)
    base = band_power(image, RIPPLE_BAND)
    assert band_power(ripple, RIPPLE_BAND) > 10 * base
    assert band_power(ripple, (0.4, 0.5)) == pytest.approx(band_power(image, (0.4, 0.5)), rel=0.05)
    left = xx < 256
    spoilt = np.where(left, image, ripple)
    assert band_power(spoilt, RIPPLE_BAND, region=left, tile=128) == pytest.approx(
        band_power(image, RIPPLE_BAND, region=left, tile=128)
    )
    assert np.isnan(band_power(image, RIPPLE_BAND, region=np.zeros_like(left)))


# --------------------------------------------------------------------------- forward model


def test_the_padded_grid_is_a_fast_fft_size():
    # a 4096 frame with the wachter2012 margin: 8440 = 2^3 5 211 per axis before
    assert fast_padded_length(4096, 12) == 4320
    for n in (40, 130, 256, 1000, 4096):
        m = fast_padded_length(n, 9)
        assert m >= n + 18
        left = 2 * m
        for p in (2, 3, 5):
            while left % p == 0:
                left //= p
        assert left == 1


def test_the_torch_operator_is_the_numpy_one():
    rng = np.random.default_rng(4)
    numpy_model = ForwardModel((60, 50), 8, "wachter2012")
    torch_model = TorchForwardModel((60, 50), 8, "wachter2012")
    x = rng.normal(size=numpy_model.fine).astype(np.float32)
    r = rng.normal(size=numpy_model.padded).astype(np.float32)
    forward = torch_model.to_numpy(torch_model.forward(torch_model.array(x)))
    adjoint = torch_model.to_numpy(torch_model.adjoint(torch_model.array(r)))
    np.testing.assert_allclose(forward, numpy_model.forward(x), rtol=0, atol=1e-5)
    np.testing.assert_allclose(adjoint, numpy_model.adjoint(r), rtol=0, atol=1e-5)
    lhs = float(np.sum(forward.astype(np.float64) * r))
    rhs = float(np.sum(x.astype(np.float64) * adjoint))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_the_projection_in_torch_equals_the_numpy_path_within_1e_5(full_disks):
    """A limb crop made far from consistent (bicubic-like start), so CGLS iterates."""
    crop = limb_crop(full_disks["20111217_060000_TAI"], 256)
    disk = SolarDisk.from_header(crop.header)
    start = np.repeat(np.repeat(crop.data, 2, axis=0), 2, axis=1)
    kwargs = dict(noise=2.0, discrepancy=0.5, max_iterations=6, psf_model="wachter2012", disk=disk)
    ref, ref_info = project_to_observation(start, crop.data, **kwargs)
    out, info = project_to_observation(start, crop.data, backend="torch", **kwargs)
    assert ref_info.iterations >= 3 and info.iterations == ref_info.iterations
    finite = np.isfinite(ref)
    assert np.array_equal(finite, np.isfinite(out))
    scale = np.max(np.abs(ref[finite]))
    assert np.max(np.abs(out[finite] - ref[finite])) <= 1e-5 * scale
    assert info.residual_after == pytest.approx(ref_info.residual_after, rel=1e-5)


def test_the_torch_reobservation_is_the_numpy_one(full_disks):
    """The quality figures' re-observation on the device equals the numpy one within 1e-5."""
    crop = limb_crop(full_disks["20160707_010000_TAI"], 192)
    disk = SolarDisk.from_header(crop.header)
    image = np.kron(crop.data, np.ones((2, 2), np.float32))
    image[np.kron(~disk.inside(crop.data.shape), np.ones((2, 2), bool))] = np.nan
    image = image[:, :-1]  # an odd width: the last column is dropped
    ref = reobserve_target(image, psf_model="wachter2012")
    out = reobserve_target_on(image, psf_model="wachter2012", device="cpu")
    assert out.shape == ref.shape == (192, 191) and out.dtype == np.float64
    finite = np.isfinite(ref)
    assert np.array_equal(finite, np.isfinite(out)) and 0.5 < finite.mean() < 1
    scale = np.max(np.abs(ref[finite]))
    assert np.max(np.abs(out[finite] - ref[finite])) <= 1e-5 * scale


@pytest.mark.parametrize("mode", ["reflect", "mirror"])
def test_the_torch_filters_are_scipys(mode):
    from scipy import ndimage

    rng = np.random.default_rng(5)
    image = rng.normal(size=(37, 52))
    image[:3, :] += 10  # an edge that tells the edge modes apart
    out = gaussian_filter(torch.from_numpy(image), 2.0, mode=mode).numpy()
    np.testing.assert_allclose(out, ndimage.gaussian_filter(image, 2.0, mode=mode), atol=1e-12)
    mask = rng.random((37, 52)) > 0.97
    for square, structure in ((False, None), (True, np.ones((3, 3), bool))):
        ref = ndimage.binary_dilation(mask, structure=structure, iterations=3)
        dilated = binary_dilation(torch.from_numpy(mask), square=square, iterations=3).numpy()
        assert np.array_equal(dilated, ref)
    values = torch.from_numpy(image.ravel())
    assert median(values) == np.median(image) and median(values[:-1]) == np.median(
        image.ravel()[:-1]
    )


def _figures(quality) -> dict[str, float]:
    return {k: v for k, v in quality.as_dict().items() if isinstance(v, float)}


def test_the_quality_figures_on_the_device_are_the_numpy_ones(full_disks):
    """Magnetogram (limb crop, field regions) and continuum-like figures within 1e-5."""
    crop = limb_crop(full_disks["20190621_060000_TAI"], 512)  # reaches inside 0.9 R_sun
    disk = SolarDisk.from_header(crop.header)
    rng = np.random.default_rng(3)
    output = np.kron(crop.data, np.ones((2, 2), np.float32)) * np.float32(1.1)
    output += rng.normal(0, 3, output.shape).astype(np.float32)
    output[np.kron(~disk.inside(crop.data.shape), np.ones((2, 2), bool))] = np.nan
    network = output + rng.normal(0, 1, output.shape).astype(np.float32)
    kwargs = dict(
        observable="magnetogram",
        header=crop.header,
        psf_model="wachter2012",
        network_output=network,
    )
    here = frame_quality(crop.data, output, **kwargs)
    there = frame_quality(crop.data, output, kernels=TorchQualityKernels("cpu"), **kwargs)
    assert np.isfinite(here.flux_ratio) and np.isfinite(here.forward_residual)
    assert 0.5 < here.ripple < 1  # the network image holds more noise than the output
    assert _figures(there) == pytest.approx(_figures(here), rel=1e-5, nan_ok=True)
    # a continuum: granulation-like texture around 1 with a dark spot
    texture = 1 + 0.04 * rng.standard_normal((128, 128))
    texture[40:60, 50:70] = 0.5
    fine = np.kron(texture, np.ones((2, 2))).astype(np.float32)
    fine += rng.normal(0, 0.02, fine.shape).astype(np.float32)
    continuum = dict(observable="continuum", psf_model="wachter2012")
    here = frame_quality(texture, fine, **continuum)
    there = frame_quality(texture, fine, kernels=TorchQualityKernels("cpu"), **continuum)
    assert np.isfinite(here.contrast) and np.isfinite(here.input_contrast)
    assert _figures(there) == pytest.approx(_figures(here), rel=1e-5, nan_ok=True)


@pytest.mark.parametrize("how", ["auto", "histogram", "spectral"])
def test_the_noise_estimate_on_the_device_is_the_numpy_one(full_disks, how):
    """What the projection on a GPU stops at: the same noise within 1e-5, limb crop and centre."""
    frame = full_disks["20190621_060000_TAI"]
    disk = SolarDisk.from_header(frame.header)
    limb = limb_crop(frame, 384)
    y0, x0 = int(disk.y0), int(disk.x0)
    centre = (slice(y0 - 200, y0 + 200), slice(x0 - 200, x0 + 200))
    cases = {
        "limb": (limb.data, constraint_region(limb.data.shape, SolarDisk.from_header(limb.header))),
        "centre": (frame.data[centre], None),
    }
    for name, (data, region) in cases.items():
        ref, ref_source = input_noise(data, how, region=region)
        out, source = input_noise_on(data, how, region=region, device="cpu")
        assert source == ref_source and out == pytest.approx(ref, rel=1e-5), name
        fraction = quiet_sun_fraction_on(data, region=region, device="cpu")
        assert fraction == pytest.approx(quiet_sun_fraction(data, region=region), abs=1e-5)


def test_windows_wholly_beyond_the_limb_are_not_computed(full_disks):
    """The disk geometry, not only the NaN corners, decides which windows run."""
    crop = limb_crop(full_disks["20160707_010000_TAI"], 512)  # 64 px beyond the limb
    disk = SolarDisk.from_header(crop.header)
    timings = InferenceTimings()
    out = enhance_frame(
        crop, device="cpu", tile=64, consistency=False, uncertainty=False, timings=timings
    )
    model, _ = load_weights(default_weights("magnetogram"))
    (wh, ww), windows = plan_windows(
        crop.data.shape, tile=64, margin=model.receptive_radius, blend=8
    )
    finite = np.isfinite(crop.data)
    on_disk = finite & disk.inside(crop.data.shape)
    with_values = [w for w in windows if finite[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww].any()]
    wanted = [w for w in windows if on_disk[w.y0 : w.y0 + wh, w.x0 : w.x0 + ww].any()]
    assert timings.windows == len(wanted) < len(with_values)
    limb = np.kron(disk.inside(crop.data.shape), np.ones((2, 2), bool))
    assert np.isfinite(out.data[limb]).all() and np.isnan(out.data[~limb]).all()


# --------------------------------------------------------------------------- the limb


@pytest.mark.parametrize("name", FRAMES)
def test_a_real_limb_crop_comes_out_without_ripples(full_disks, name):
    """The projection must not fit the off-limb ring (it made +-60-100 G ripples everywhere).

    512^2 at the east limb, half of it inside 0.9 R_sun. Before the fix the
    projection ran its 25 iterations and left 79x the network's power at
    0.15-0.375 cycles/pixel there and a mean |B| of 18.7 G for 6.7 G in
    (2016 frame).
    """
    crop = limb_crop(full_disks[name], 512)
    raw = enhance_frame(crop, device="cpu", consistency=False, uncertainty=False)
    out = enhance_frame(crop, device="cpu", uncertainty=True)
    projection = out.meta["consistency"]
    assert projection.constrained_radius == CONSTRAINED_RADIUS
    assert projection.iterations <= 5 and projection.converged
    disk = SolarDisk.from_header(crop.header)
    inside_in = disk.inside(crop.data.shape, 0.9)
    inside_out = disk.scaled(2).inside(out.data.shape, 0.9)
    assert 0.3 < inside_in.mean() < 0.7
    ratio = band_power(out.data, RIPPLE_BAND, region=inside_out, tile=128) / band_power(
        raw.data, RIPPLE_BAND, region=inside_out, tile=128
    )
    assert ratio <= 1.2
    mean_in = np.nanmean(np.abs(crop.data[inside_in]))
    mean_raw = np.nanmean(np.abs(raw.data[inside_out]))
    mean_out = np.nanmean(np.abs(out.data[inside_out]))
    assert mean_out == pytest.approx(mean_raw, rel=0.05)
    # the network removes some of the input's noise from |B| (0.88-0.95 x on these crops)
    assert 0.85 * mean_in < mean_out < 1.1 * mean_in
    # beyond the limb the output is NaN, inside it every pixel has a value
    limb = np.kron(disk.inside(crop.data.shape), np.ones((2, 2), bool))
    assert np.isnan(out.data[~limb]).all() and np.isfinite(out.data[limb]).all()
    assert np.isnan(out.meta["sigma"].data[~limb]).all()


def test_a_continuum_limb_crop_comes_out_clean(full_disks):
    """The continuum path at the limb: limb darkening, NaN beyond it (HMI's continuum frames).

    No continuum full disk at 0.504"/px is in ../shared/data, so the crop is
    synthetic on the 2016 frame's geometry: quadratic limb darkening
    (I/I_c = 0.4 + 0.8 mu - 0.2 mu^2), granulation-like texture of 3.7 % rms
    and 0.3 % white noise, NaN beyond the limb.
    """
    from scipy import ndimage

    geometry = limb_crop(full_disks["20160707_010000_TAI"], 384)
    disk = SolarDisk.from_header(geometry.header)
    rng = np.random.default_rng(8)
    r = disk.relative_radius(geometry.data.shape)
    mu = np.sqrt(np.clip(1 - r**2, 0, None))
    texture = ndimage.gaussian_filter(rng.standard_normal(r.shape), 1.2)
    data = (0.4 + 0.8 * mu - 0.2 * mu**2) * (1 + 0.037 * texture / texture.std())
    data += rng.normal(0, 0.003, r.shape)
    data[r > 1] = np.nan
    frame = dataclasses.replace(
        geometry, data=data.astype(np.float32), observable="continuum", meta={}
    )
    raw = enhance_frame(frame, device="cpu", consistency=False, uncertainty=False)
    out = enhance_frame(frame, device="cpu", uncertainty=False)
    projection = out.meta["consistency"]
    assert projection.iterations <= 5 and projection.converged
    inside_out = disk.scaled(2).inside(out.data.shape, 0.9)
    ratio = band_power(out.data, RIPPLE_BAND, region=inside_out, tile=128) / band_power(
        raw.data, RIPPLE_BAND, region=inside_out, tile=128
    )
    assert ratio <= 1.2
    limb = np.kron(disk.inside(frame.data.shape), np.ones((2, 2), bool))
    assert np.isnan(out.data[~limb]).all() and np.isfinite(out.data[limb]).all()
    # the limb darkening survives: the output's mean over 0.9-0.99 R against the input's
    ring_in = disk.inside(frame.data.shape, 0.99) & ~disk.inside(frame.data.shape, 0.9)
    ring_out = np.kron(ring_in, np.ones((2, 2), bool))
    assert np.nanmean(out.data[ring_out]) == pytest.approx(np.mean(data[ring_in]), rel=0.02)
