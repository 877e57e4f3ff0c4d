"""Figure: a real full disk projected with and without the disk, at disk centre and both limbs.

Reads a JSOC full-disk magnetogram, runs the shipped network once (or
loads its output from ``--network-npz``, an ``.npz`` with arrays ``x``, the
input, and ``y``, the network output), and projects the output onto the
input twice with the shipped recipe: once with every finite input pixel
constraining it (``disk=None``, the behaviour before the projection knew the
disk, which fits the off-limb ring) and once with the disk from the header
(:data:`enhance_hmi.physics.disk.CONSTRAINED_RADIUS`). Panels: 128x128 input
pixels (the output's 256x256) on the disk's equator at the east limb, at
disk centre and at the west limb; rows input (each input pixel drawn as a
2x2 block), output with every pixel constraining, output with the disk and
NaN beyond the limb as :func:`enhance_hmi.inference.enhance_frame` delivers it
(blue); one colour scale (+-100 G).

Run from the repository root (about 4 minutes with the network)::

    python bench/fulldisk_figure.py -o docs/figures/fulldisk_projection.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

from enhance_hmi.inference import enhance_frame
from enhance_hmi.inference.consistency import project_as_recipe
from enhance_hmi.io import read_hmi
from enhance_hmi.model.weights import default_weights, read_sidecar
from enhance_hmi.physics.disk import SolarDisk
from enhance_hmi.validation.report.figures import new_figure, save_png

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = (
    ROOT.parent / "shared/data/hmi/fulldisk/hmi.M_720s.20160707_010000_TAI.magnetogram.fits"
)
#: Side of each panel, input pixels.
PANEL = 128
#: Colour range, gauss.
LIMIT = 100.0
#: Grey scale with NaN (no value) in blue.
CMAP = matplotlib.colormaps["gray"].with_extremes(bad="tab:blue")


def windows(disk: SolarDisk) -> dict[str, tuple[int, int]]:
    """Input-pixel origins (row, column) of the three panels on the equator."""
    row = int(disk.y0) - PANEL // 2
    east = int(disk.x0 - disk.radius) - PANEL // 8
    west = int(disk.x0 + disk.radius) + PANEL // 8 - PANEL
    centre = int(disk.x0) - PANEL // 2
    return {"east limb": (row, east), "disk centre": (row, centre), "west limb": (row, west)}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--network-npz", type=Path, default=None, help="cached x and y arrays")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    frame = read_hmi(args.input)
    if args.network_npz:
        cached = np.load(args.network_npz)
        network = cached["y"]
        if not np.array_equal(cached["x"], frame.data, equal_nan=True):
            raise SystemExit(f"{args.network_npz} was not made from {args.input.name}")
    else:
        network = enhance_frame(frame, device="cpu", consistency=False, uncertainty=False).data
    meta = read_sidecar(default_weights("magnetogram"))
    disk = SolarDisk.from_header(frame.header)
    every, every_info = project_as_recipe(network, frame.data, meta)
    told, told_info = project_as_recipe(network, frame.data, meta, disk=disk)
    # as enhance_frame delivers it: NaN beyond the limb
    told = np.where(disk.scaled(2).inside(told.shape), told, np.float32(np.nan))
    rows = [
        ("input (HMI)", np.repeat(np.repeat(frame.data, 2, axis=0), 2, axis=1)),
        (f"every pixel constrains\n({every_info.iterations} iterations)", every),
        (f"disk within 0.99 R constrains\n({told_info.iterations} iterations; NaN off disk)", told),
    ]
    fig = new_figure(10.5, 10.5)
    axes = fig.subplots(3, 3)
    for column, (title, (y0, x0)) in enumerate(windows(disk).items()):
        for row, (label, image) in enumerate(rows):
            ax = axes[row, column]
            cut = image[2 * y0 : 2 * (y0 + PANEL), 2 * x0 : 2 * (x0 + PANEL)]
            shown = ax.imshow(cut, origin="lower", cmap=CMAP, vmin=-LIMIT, vmax=LIMIT)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
            if column == 0:
                ax.set_ylabel(label)
    fig.colorbar(shown, ax=axes, shrink=0.6, label="B_los (G)")
    fig.suptitle(f"{args.input.name}: the projection onto the input", fontsize=11)
    return save_png(fig, args.output, dpi=80)


if __name__ == "__main__":
    main()
