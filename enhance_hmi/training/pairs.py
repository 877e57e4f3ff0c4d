"""Input/target pairs from truth scenes, and augmented patch sampling.

Every pair comes from :func:`enhance_hmi.physics.degrade` (HMI PSF + 0.504"/px ->
input; 28 cm Airy + 0.252"/px -> target), the one degradation shared by
training, tests and validation. Augmentation uses what the Sun allows
(one MURaM snapshot is far less than the paper's 250): rotations by any
angle before degrading, sub-pixel sampling phases (random truth offsets),
flips and 90-degree turns of the patches, and a fresh input-noise draw per
patch (the paper's Gaussian noise layer). Optional per-patch augmentations
that the linearity of the degradation allows without degrading again: a
random noise level, a random granulation contrast (continuum) and a random
calibration gain (a magnetogram truth known up to a factor).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5, Sect. 3.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import ndimage

from enhance_hmi.errors import ConfigError, TrainingError
from enhance_hmi.physics import HMI_PIXEL_SCALE, degrade
from enhance_hmi.physics.psf import DEFAULT_PSF_MODEL
from enhance_hmi.scenes import Scene

__all__ = ["Pair", "PatchSampler", "degraded_pair", "augmented_pairs"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Pair:
    """A degraded input (0.504"/px), its 28 cm target (0.252"/px) and validity.

    ``valid`` (input grid) is False where the rotation filled the corners, so
    patches never include invented pixels. ``gain`` is the range of the
    calibration factor from the truth's data units to physical units (1, 1
    when the truth is calibrated); :class:`PatchSampler` draws one factor per
    patch from it. ``weight`` multiplies the share of patches drawn from the
    pair (its area sets the share otherwise).
    """

    input: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    label: str
    gain: tuple[float, float] = (1.0, 1.0)
    weight: float = 1.0


def degraded_pair(scene: Scene, *, psf_model: str = DEFAULT_PSF_MODEL, label: str = "") -> Pair:
    """The noise-free degradation of a whole scene (no augmentation)."""
    pair = degrade(scene.data, scene.pixel_scale, psf_model=psf_model)
    return Pair(
        input=pair.input.astype(np.float32),
        target=pair.target.astype(np.float32),
        valid=np.ones(pair.input.shape, bool),
        label=label or scene.name,
        gain=scene.gain,
    )


def augmented_pairs(
    scene: Scene,
    n: int,
    *,
    rng: np.random.Generator,
    psf_model: str = DEFAULT_PSF_MODEL,
) -> list[Pair]:
    """``n`` degraded versions of ``scene`` at random angles and sampling phases.

    Each version rotates the truth by a uniform random angle (cubic spline,
    mirror fill), crops a random offset of up to one input pixel (a new
    sub-pixel phase of the 0.504"/px grid) and degrades. The input-grid
    ``valid`` mask excludes every input pixel within 2 pixels (the HMI PSF
    core) of a filled corner.
    """
    ratio = int(np.ceil((HMI_PIXEL_SCALE / scene.pixel_scale).decompose().value))
    pairs = []
    for k in range(n):
        angle = float(rng.uniform(0.0, 360.0)) if k else 0.0
        truth = scene.data
        inside: np.ndarray = np.ones(truth.shape)
        if angle:
            truth = ndimage.rotate(truth, angle, reshape=False, order=3, mode="mirror")
            inside = ndimage.rotate(inside, angle, reshape=False, order=1, mode="constant")
        dy, dx = (int(v) for v in rng.integers(0, ratio, size=2))
        truth, inside = truth[dy:, dx:], inside[dy:, dx:]
        degraded = degrade(truth, scene.pixel_scale, psf_model=psf_model)
        ny, nx = degraded.input.shape
        # fraction of real (not filled) truth pixels in each input pixel
        zoom = (ny / inside.shape[0], nx / inside.shape[1])
        real = ndimage.zoom(inside, zoom, order=1)[:ny, :nx] > 0.999
        valid = ndimage.binary_erosion(real, iterations=2, border_value=1)
        pairs.append(
            Pair(
                input=degraded.input.astype(np.float32),
                target=degraded.target.astype(np.float32),
                valid=valid,
                label=f"{scene.name} rot {angle:.0f} phase ({dy},{dx})",
                gain=scene.gain,
            )
        )
    return pairs


def quiet_contrast(target: np.ndarray) -> float:
    """Rms contrast of a continuum target over its granulation (pixels above 0.85).

    Umbrae and penumbrae (below 0.85 quiet-Sun units) are left out, so the
    figure is that of the granulation the contrast augmentation rescales.
    """
    quiet = target[target > 0.85]
    if quiet.size < 16:
        return float("nan")
    return float(quiet.std() / quiet.mean())


class PatchSampler:
    """Random (input, target) patches from pairs, with flips, turns and noise.

    Parameters
    ----------
    pairs : list of Pair
    patch : int
        Input patch side in pixels (target side ``2 * patch``); the paper used 50.
    noise_sigma : float or (float, float)
        Gaussian noise added to every input patch, in network units (paper:
        1e-3 for continuum, 1e-2 kG for Blos). A pair ``(low, high)`` draws
        one level per patch, log-uniformly between them (real frames differ:
        HMI 45 s data are ~4x noisier than 720 s averages).
    input_scale : float
        Network units = physical / ``input_scale`` (1000 for Blos in G).
    rng : numpy.random.Generator
    contrast : (float, float), optional
        Continuum only: the granulation rms contrast of each patch is drawn
        uniformly in ``[low, high]`` (fractions, e.g. 0.03-0.09) by
        ``I -> 1 + c (I - 1)`` applied to input and target alike (exact,
        since the degradation is linear and keeps the level 1). ``c`` is
        capped so that no target pixel falls below 0.05 (umbrae).
    """

    def __init__(
        self,
        pairs: list[Pair],
        *,
        patch: int,
        noise_sigma: float | tuple[float, float],
        input_scale: float,
        rng: np.random.Generator,
        contrast: tuple[float, float] | None = None,
    ) -> None:
        self.patch, self.rng = int(patch), rng
        low, high = (
            (float(noise_sigma[0]), float(noise_sigma[1]))
            if isinstance(noise_sigma, tuple | list | np.ndarray)
            else (float(noise_sigma), float(noise_sigma))
        )
        if not 0 <= low <= high:
            raise ConfigError(f"noise range must be 0 <= low <= high, got {noise_sigma}")
        if low == 0 and high > 0:
            raise ConfigError("a log-uniform noise range needs low > 0")
        self.noise_range = (low, high)
        if contrast is not None and not 0 < contrast[0] <= contrast[1]:
            raise ConfigError(f"contrast range must be 0 < low <= high, got {contrast}")
        self.contrast = contrast
        self.inputs = [p.input / np.float32(input_scale) for p in pairs]
        self.targets = [p.target / np.float32(input_scale) for p in pairs]
        self.gains = [p.gain for p in pairs]
        self.scene_contrast = [quiet_contrast(p.target) for p in pairs] if contrast else None
        # valid top-left corners: the whole patch lies in valid pixels
        self.corners = []
        for p in pairs:
            ok = ndimage.minimum_filter(p.valid.astype(np.uint8), size=self.patch, origin=0)
            half = self.patch // 2
            shifted = np.zeros_like(ok)
            shifted[: ok.shape[0] - half, : ok.shape[1] - half] = ok[half:, half:]
            ys, xs = np.nonzero(
                shifted[: ok.shape[0] - self.patch + 1, : ok.shape[1] - self.patch + 1]
            )
            self.corners.append(np.stack([ys, xs], axis=1))
        weights = np.array([p.weight for p in pairs], dtype=float)
        if not np.all(np.isfinite(weights) & (weights > 0)):
            raise ConfigError(f"pair weights must be positive and finite, got {weights.tolist()}")
        counts = np.array([len(c) for c in self.corners]) * weights
        if counts.sum() == 0:
            raise TrainingError(
                f"no valid {patch}x{patch} patch in any pair; use a smaller patch or larger scenes"
            )
        self.weights = counts / counts.sum()

    def _noise(self) -> float:
        low, high = self.noise_range
        if low == high:
            return low
        return float(np.exp(self.rng.uniform(np.log(low), np.log(high))))

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch ``(inputs (B,1,p,p), targets (B,1,2p,2p))``, float32."""
        p = self.patch
        xs = np.empty((batch, 1, p, p), np.float32)
        ys = np.empty((batch, 1, 2 * p, 2 * p), np.float32)
        for i in range(batch):
            k = int(self.rng.choice(len(self.corners), p=self.weights))
            y0, x0 = self.corners[k][int(self.rng.integers(len(self.corners[k])))]
            x = self.inputs[k][y0 : y0 + p, x0 : x0 + p]
            y = self.targets[k][2 * y0 : 2 * y0 + 2 * p, 2 * x0 : 2 * x0 + 2 * p]
            turns = int(self.rng.integers(4))
            x, y = np.rot90(x, turns), np.rot90(y, turns)
            if self.rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            lo, hi = self.gains[k]
            if hi != 1.0 or lo != 1.0:
                gain = np.float32(self.rng.uniform(lo, hi))
                x, y = x * gain, y * gain
            scene_contrast = self.scene_contrast[k] if self.scene_contrast is not None else np.nan
            if self.contrast is not None and np.isfinite(scene_contrast):
                c = self.rng.uniform(*self.contrast) / scene_contrast
                floor = float(y.min())
                if floor < 1.0:
                    c = min(c, 0.95 / (1.0 - floor))
                factor = np.float32(c)
                x, y = 1 + factor * (x - 1), 1 + factor * (y - 1)
            xs[i, 0] = x + self.rng.normal(0.0, self._noise(), x.shape)
            ys[i, 0] = y
        return xs, ys
