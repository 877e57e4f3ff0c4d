"""Rules ``validate`` and ``validation_twin``.

``validate``: quick look at the latest frame of every cube, with statistics,
and the summaries of the synthetic-twin reports of the series' observable.
``validation_twin``: the synthetic-twin report of one scene
(:func:`enhance.validation.twin.run_twin`).
"""

import json
import logging
from pathlib import Path

import matplotlib
import numpy as np

from enhance.atomic import atomic_path

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)


def quick_look():
    from enhance.cube import TimeCube

    cubes = [Path(p).with_suffix(".h5") for p in snakemake.input.cubes]
    stats = []
    ncol = max(1, len(cubes))
    fig, axes = plt.subplots(1, ncol, figsize=(4 * ncol, 4), squeeze=False)
    for ax, path in zip(axes[0], cubes, strict=False):
        cube = TimeCube(path)
        data, header = cube.read_frame(-1)
        finite = data[np.isfinite(data)]
        units = cube.attributes()["units"]
        stats.append(
            {
                "cube": path.name,
                "frames": len(cube),
                "latest": header.get("T_REC"),
                "shape": list(data.shape),
                "nan_fraction": float(1 - finite.size / data.size),
                "p1_p99": [float(v) for v in np.percentile(finite, [1, 99])]
                if finite.size
                else None,
                "units": units,
            }
        )
        lim = np.percentile(np.abs(finite), 99) if finite.size else 1
        magnetic = units == "G"
        ax.imshow(
            data,
            origin="lower",
            cmap="gray",
            vmin=-lim if magnetic else None,
            vmax=lim if magnetic else None,
        )
        ax.set_title(f"{path.name}: {len(cube)} frames\n{header.get('T_REC')}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    twins = []
    for path in snakemake.input.twins:
        doc = json.loads(Path(path).read_text())
        twins.append(
            {
                "target": doc["target"],
                "report": str(Path(path).with_name("report.html")),
                "summary": doc["summary"],
                "enhance": doc["methods"]["enhance"],
                "truth": doc["truth_stats"],
            }
        )
    with atomic_path(snakemake.output.figure) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(json.dumps({"cubes": stats, "twins": twins}, indent=1) + "\n")


def twin_report():
    from enhance.validation.twin import run_twin

    twin = snakemake.params.twin
    crop = twin.get("crop") or snakemake.params.crop or None
    out = Path(snakemake.output.html).parent
    run_twin(
        snakemake.input.scene,
        out,
        weights=snakemake.input.weights[0] if snakemake.input.weights else None,
        observable=snakemake.wildcards.observable,
        pixel_scale=twin.get("pixel_scale"),
        crop=crop,
        holdout=twin.get("held_out"),
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        tile=snakemake.params.tile,
        name=snakemake.wildcards.twin,
    )


if snakemake.rule == "validation_twin":
    twin_report()
else:
    quick_look()
