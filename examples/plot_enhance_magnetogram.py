"""
Enhance an HMI magnetogram
==========================

Read a line-of-sight magnetogram of the bundled sample, enhance it with the
shipped magnetogram network, and compare input and output: the whole crop,
then a zoom where the 2x finer grid and the deconvolution show.
"""

# %%
# The sample holds 256x256 crops of real ``hmi.M_720s`` frames with their
# JSOC headers. :func:`enhance_hmi.io.read_hmi` turns the file solar north up and
# reads Blos in gauss; :func:`enhance_hmi.inference.enhance_frame` runs the
# network (on the CPU here, tiled) and projects its output onto the images
# that give back the input when observed again by HMI.
import matplotlib.pyplot as plt
import numpy as np

from enhance_hmi.acquire import sample_dir
from enhance_hmi.inference import enhance_frame
from enhance_hmi.io import read_hmi

frame = read_hmi(sample_dir() / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits")
enhanced = enhance_frame(frame)
print(f"input {frame.data.shape} at {frame.header['CDELT1']:.3f} arcsec/px")
print(f"output {enhanced.data.shape} at {enhanced.header['CDELT1']:.3f} arcsec/px")


# %%
# Both images on helioprojective axes (arcsec, from each header's WCS) and on
# one grey scale, so the same field strength has the same shade.
def extent(header):
    """Edges of the image in arcsec: (left, right, bottom, top)."""

    def edges(axis):
        n, crpix = header[f"NAXIS{axis}"], header[f"CRPIX{axis}"]
        crval, cdelt = header[f"CRVAL{axis}"], header[f"CDELT{axis}"]
        return crval + (0.5 - crpix) * cdelt, crval + (n + 0.5 - crpix) * cdelt

    return (*edges(1), *edges(2))


limit = float(np.nanpercentile(np.abs(frame.data), 99.5))
style = {"cmap": "gray", "vmin": -limit, "vmax": limit, "origin": "lower"}
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), layout="constrained")
for ax, image, title in zip(axes, (frame, enhanced), ("HMI input", "enhanced"), strict=True):
    shown = ax.imshow(image.data, extent=extent(image.header), **style)
    ax.set(title=title, xlabel="Tx (arcsec)", ylabel="Ty (arcsec)")
fig.colorbar(shown, ax=axes, label="Blos (G)", shrink=0.8)

# %%
# A 20 arcsec zoom: 40 HMI pixels across, 80 enhanced ones. Small flux
# concentrations come out sharper and stronger, as the 28 cm telescope the
# network emulates would have seen them.
centre = np.unravel_index(np.nanargmax(np.abs(frame.data)), frame.data.shape)
box = 20.0  # arcsec
left, right, bottom, top = extent(frame.header)
x0 = left + (centre[1] + 0.5) * frame.header["CDELT1"]
y0 = bottom + (centre[0] + 0.5) * frame.header["CDELT2"]
fig, axes = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
for ax, image, title in zip(axes, (frame, enhanced), ("HMI input", "enhanced"), strict=True):
    ax.imshow(image.data, extent=extent(image.header), interpolation="nearest", **style)
    ax.set(
        title=title,
        xlim=(x0 - box / 2, x0 + box / 2),
        ylim=(y0 - box / 2, y0 + box / 2),
        xlabel="Tx (arcsec)",
        ylabel="Ty (arcsec)",
    )
plt.show()
