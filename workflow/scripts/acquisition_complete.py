"""Rule ``acquisition_complete``: fail, with one line, while an acquisition is incomplete."""

import json
import sys
from pathlib import Path

from enhance_hmi.atomic import atomic_path

snakemake = globals()["snakemake"]
summary = json.loads(Path(snakemake.input[0]).read_text())
if not summary["complete"]:
    line = f"enhance: {summary['series']}: acquisition incomplete: {summary['status_line']}"
    Path(snakemake.log[0]).write_text(line + "\n")
    print(line, file=sys.stderr)
    sys.exit(1)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(summary["status_line"] + "\n")
Path(snakemake.log[0]).write_text(summary["status_line"] + "\n")
