"""Rule ``completeness``: per-frame table and timeline of what became of each slot.

The status rules live in :mod:`enhance_hmi.cube.completeness`; this script only
passes the rule's inputs and outputs.
"""

import json
import logging
from pathlib import Path

from enhance_hmi.acquire import manifest_path, read_manifest
from enhance_hmi.cube.completeness import write_completeness

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
summary = json.loads(Path(snakemake.input.summary).read_text())
write_completeness(
    read_manifest(manifest_path(snakemake.params.raw_dir, summary["series"])),
    [json.loads(Path(path).read_text()) for path in snakemake.input.cubes],
    table_path=snakemake.output.table,
    figure_path=snakemake.output.figure,
    series=summary["series"],
    start=summary["start"],
    end=summary["end"],
)
