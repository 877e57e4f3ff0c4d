"""
Enhance a sunpy Map
===================

:func:`enhance_hmi.enhance_map` takes a :class:`sunpy.map.GenericMap` (or a
sequence of them) and returns Maps: north up on the 2x grid with its WCS,
the provenance in ``.meta`` and, where the network has an uncertainty head,
the per-pixel sigma as the Map's ``uncertainty``.
"""

# %%
# The bundled continuum sample: 130x130 real HMI pixels of quiet Sun at disk
# centre (DN/s) under the header of an ``hmi.Ic_45s`` full-disk frame, whose
# ``CROTA2`` of 180 degrees says the image is upside down.
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map
from astropy.visualization import ImageNormalize, PercentileInterval

import enhance_hmi
from enhance_hmi.acquire import sample_dir

hmi = sunpy.map.Map(sample_dir() / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits")
sharper = enhance_hmi.enhance_map(hmi, uncertainty=True)

for name, smap in (("input", hmi), ("output", sharper)):
    size = f"{int(smap.dimensions.x.value)}x{int(smap.dimensions.y.value)}"
    angle = np.degrees(np.arctan2(smap.rotation_matrix[1, 0], smap.rotation_matrix[0, 0]))
    print(f"{name}: {size} px of {smap.scale.axis1:.3f}, rotated by {abs(angle):.0f} deg")
print("made by", sharper.meta["enhvers"], "with weights", sharper.meta["enhwsha"][:12], "...")

# %%
# Each Map drawn on its own WCS: the input as HMI recorded it, the output north
# up, so their axes agree on where each granule is. The output is in units of
# the quiet-Sun intensity (the network's), the input in DN/s. The sigma is an
# array on the output's grid: with the output's metadata it is a Map too.
sigma = sunpy.map.Map(sharper.uncertainty.array, sharper.meta)
fig = plt.figure(figsize=(15, 5))
panels = (
    (hmi, "HMI input", {"norm": ImageNormalize(hmi.data, interval=PercentileInterval(99.5))}),
    (
        sharper,
        "enhanced",
        {"norm": ImageNormalize(sharper.data, interval=PercentileInterval(99.5))},
    ),
    (sigma, "sigma (uncertainty)", {"cmap": "magma"}),
)
for index, (smap, title, style) in enumerate(panels, start=1):
    ax = fig.add_subplot(1, 3, index, projection=smap)
    image = smap.plot(axes=ax, title=title, **style)
    ax.coords[1].set_axislabel(" " if index > 1 else "Helioprojective Latitude (Solar-Y)")
fig.colorbar(image, ax=ax, shrink=0.75, label="sigma (quiet-Sun intensity)")
plt.show()
