"""Rule ``cube``: append the enhanced frames of one period to its HDF5 time cube."""

import json
import logging
import sys
from pathlib import Path

from enhance_hmi.atomic import atomic_path
from enhance_hmi.cube import Codec, CubeInput, TimeCube
from enhance_hmi.errors import EnhanceError
from enhance_hmi.workflow.run_status import clear_job_failure, record_job_failure

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
logging.captureWarnings(True)  # data caveats (EnhanceWarning) go to the rule's log too
p = snakemake.params
series, period = snakemake.wildcards.series, snakemake.wildcards.period
records = [
    item for marker in snakemake.input for item in json.loads(Path(marker).read_text())["frames"]
]
# quarantined frames have no enhanced file: the cube holds the others, the summary lists them
frames = sorted(
    (item["t_rec"], item["output"])
    for item in records
    if item.get("status", "enhanced") in ("enhanced", "kept")
)
quarantined = sorted(
    (
        {"t_rec": item["t_rec"], "input": item["input"], "cause": item.get("cause", "")}
        for item in records
        if item.get("status") == "quarantined"
    ),
    key=lambda row: row["t_rec"],
)
codec = Codec.from_options(
    compression=p.compression,
    level=p.level,
    quantize=p.quantize.get(p.observable, 0) or None,
    observable=p.observable,
)
cube = TimeCube(p.cube, codec=codec, tile=p.tile, provenance={"config_sha256": p.config_sha256})
source = CubeInput([path for _, path in frames], sigma=p.sigma, out_of_tolerance=p.out_of_tolerance)
try:
    added = cube.append(source)
except EnhanceError as exc:  # a full disk, a mismatched frame...: the cube is left as it was
    error = " ".join(str(exc).split())
    logging.error("cube append failed: %s", error)
    record_job_failure(p.out_dir, "cube", f"{series}/{period}", error)
    print(f"enhance: {Path(p.cube).name}: {error}", file=sys.stderr)
    sys.exit(1)
clear_job_failure(p.out_dir, "cube", f"{series}/{period}")
table = cube.table() if cube.exists else []  # a period without any frame yet has no cube
summary = {
    "cube": str(Path(p.cube).name),
    "frames": len(table),
    "appended": added,
    "t_rec": [row["t_rec"] for row in table],
    # frames out of tolerance kept out (cube.out_of_tolerance: exclude), unless an
    # earlier run cubed them
    "kept_out": source.kept_out_of([row["t_rec"] for row in table]),
    # frames that could not be enhanced (enhance_hmi.workflow.quarantine): not in the cube
    "quarantined": quarantined,
    "attributes": cube.attributes() if cube.exists else {},
}
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
