"""Rule ``acquisition_complete``: fail, with one line, while an acquisition is incomplete.

The failure is recorded for the run's status (:mod:`enhance_hmi.workflow.run_status`).
"""

import json
import sys
from pathlib import Path

from enhance_hmi.atomic import atomic_path
from enhance_hmi.workflow.run_status import clear_job_failure, record_job_failure

snakemake = globals()["snakemake"]
summary = json.loads(Path(snakemake.input[0]).read_text())
series = summary["series"]
if not summary["complete"]:
    cause = f"acquisition incomplete: {summary['status_line']}"
    line = f"enhance: {series}: {cause}"
    Path(snakemake.log[0]).write_text(line + "\n")
    record_job_failure(snakemake.params.out_dir, "acquisition_complete", series, cause)
    print(line, file=sys.stderr)
    sys.exit(1)
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(summary["status_line"] + "\n")
Path(snakemake.log[0]).write_text(summary["status_line"] + "\n")
clear_job_failure(snakemake.params.out_dir, "acquisition_complete", series)
