"""Physics of the Enhance forward model: PSFs, degradation, resampling, diagnostics.

Pure numpy/scipy/astropy (no torch, drms or h5py). Scales, wavelengths and
apertures are astropy Quantities at the public boundary. The science
diagnostics every layer measures with are defined here once: the quiet-Sun
mask, the field regions and the forward residual
(:mod:`enhance_hmi.physics.diagnostics`), the noise estimates
(:mod:`enhance_hmi.physics.noise`) and the projection onto the input with
its forward operator (:mod:`enhance_hmi.physics.projection`).

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), "Enhancing SDO/HMI images
   using deep learning", A&A 614, A5.
.. [2] Wachter, R. et al. (2012), Sol. Phys. 275, 261.
.. [3] Yeo, K. L. et al. (2014), A&A 561, A22.
"""

from enhance_hmi.physics.constants import (
    ENHANCED_PIXEL_SCALE,
    HINODE_BFI_RED_WAVELENGTH,
    HINODE_NFI_NA_D1_WAVELENGTH,
    HINODE_SP_WAVELENGTH,
    HMI_APERTURE,
    HMI_PIXEL_SCALE,
    HMI_WAVELENGTH,
    SOLAR_KM_PER_ARCSEC,
    TARGET_APERTURE,
)
from enhance_hmi.physics.convolve import BOUNDARY_MODES, convolve_fft
from enhance_hmi.physics.degrade import DegradedPair, degrade, reobserve
from enhance_hmi.physics.diagnostics import (
    field_mask,
    forward_residual,
    forward_residual_stats,
    quiet_sun_mask,
)
from enhance_hmi.physics.noise import (
    input_noise,
    input_noise_in_data_units,
    parse_input_noise,
)
from enhance_hmi.physics.projection import (
    ForwardModel,
    Projection,
    project_as_recipe,
    project_to_observation,
)
from enhance_hmi.physics.psf import (
    DEFAULT_PSF_MODEL,
    HMI_PSF_MODELS,
    WACHTER_2012_PARAMETERS,
    WACHTER_PARAMETERS,
    YEO_PARAMETERS,
    airy_psf,
    hmi_psf,
    psf_model_of,
)
from enhance_hmi.physics.resample import resample

__all__ = [
    "hmi_psf",
    "airy_psf",
    "resample",
    "degrade",
    "DegradedPair",
    "reobserve",
    "convolve_fft",
    "BOUNDARY_MODES",
    "HMI_PSF_MODELS",
    "DEFAULT_PSF_MODEL",
    "psf_model_of",
    "WACHTER_PARAMETERS",
    "WACHTER_2012_PARAMETERS",
    "YEO_PARAMETERS",
    "HMI_PIXEL_SCALE",
    "ENHANCED_PIXEL_SCALE",
    "HMI_APERTURE",
    "TARGET_APERTURE",
    "HMI_WAVELENGTH",
    "HINODE_BFI_RED_WAVELENGTH",
    "SOLAR_KM_PER_ARCSEC",
    "HINODE_NFI_NA_D1_WAVELENGTH",
    "HINODE_SP_WAVELENGTH",
    "quiet_sun_mask",
    "field_mask",
    "forward_residual",
    "forward_residual_stats",
    "input_noise",
    "parse_input_noise",
    "input_noise_in_data_units",
    "ForwardModel",
    "Projection",
    "project_to_observation",
    "project_as_recipe",
]
