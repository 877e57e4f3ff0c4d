"""Rule ``completeness``: per-frame table and timeline of what became of each slot."""

import json
import logging
from pathlib import Path

import matplotlib
import pandas as pd

from enhance.acquire import COLUMNS, manifest_path, read_manifest
from enhance.atomic import atomic_path
from enhance.time import format_t_rec, tai_datetime

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
summary = json.loads(Path(snakemake.input.summary).read_text())
series = summary["series"]
manifest = pd.DataFrame(
    read_manifest(manifest_path(snakemake.params.raw_dir, series)), columns=list(COLUMNS)
)
manifest["time"] = [tai_datetime(t) for t in manifest["t_rec"]]
if summary["start"]:
    manifest = manifest[manifest["time"] >= tai_datetime(summary["start"])]
if summary["end"]:
    manifest = manifest[manifest["time"] <= tai_datetime(summary["end"])]
in_cube = {}
for path in snakemake.input.cubes:
    cube = json.loads(Path(path).read_text())
    for t_rec in cube["t_rec"]:
        in_cube[t_rec] = cube["cube"]
key = [format_t_rec(t) for t in manifest["t_rec"]]
manifest["cube"] = [in_cube.get(k, "") for k in key]
status = []
for state, bits, cube in zip(
    manifest["state"], manifest["quality_bits"], manifest["cube"], strict=False
):
    if cube:
        status.append("in cube (flagged)" if bits else "in cube")
    elif state == "verified":
        status.append("not processed yet")
    else:
        status.append(state)
manifest["status"] = status
columns = ["t_rec", "status", "state", "quality", "quality_bits", "reason", "file", "cube"]
with atomic_path(snakemake.output.table) as tmp:
    manifest[columns].to_csv(tmp, index=False)
fig, ax = plt.subplots(figsize=(9, 3))
for row, name in enumerate(sorted(set(status))):
    times = manifest["time"][manifest["status"] == name]
    ax.plot(times, [row] * len(times), "|", markersize=12, label=f"{name} ({len(times)})")
ax.set_yticks(range(len(set(status))), sorted(set(status)))
ax.set_xlabel("T_REC (TAI)")
ax.set_title(f"{series}: {len(manifest)} slots")
fig.autofmt_xdate()
fig.tight_layout()
with atomic_path(snakemake.output.figure) as tmp:
    fig.savefig(tmp, format="png", dpi=100)
