"""Rule ``enhance_batch``: enhance the frames of one batch (network loaded once)."""

import json
import logging
import os
from pathlib import Path

from astropy.io import fits

from enhance.atomic import atomic_path
from enhance.cube import parse_t_rec, read_plan
from enhance.errors import EnhanceError
from enhance.pipeline import enhance_file, resolve_weights
from enhance.provenance import sha256_file

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
log = logging.getLogger("enhance_batch")
p = snakemake.params
log.info(
    "GPUs: CUDA_VISIBLE_DEVICES=%s SLURM_JOB_GPUS=%s",
    os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    os.environ.get("SLURM_JOB_GPUS", ""),
)
weights = resolve_weights(p.weights, p.observable)
weights_sha = sha256_file(weights)
done, failures = [], []
for frame in read_plan(snakemake.input[0]):
    when = parse_t_rec(frame.t_rec)
    name = Path(frame.file).name.removesuffix(".fits") + ".enhanced.fits"
    out = Path(p.frames_dir, f"{when:%Y}", f"{when:%m%d}", name)
    out.parent.mkdir(parents=True, exist_ok=True)
    status = "enhanced"
    if out.is_file():
        header = fits.getheader(out, 1 if fits.getheader(out).get("EXTEND") else 0)
        if header.get("ENHINSHA") == frame.sha256 and header.get("ENHWSHA") == weights_sha:
            status = "kept"
    if status == "enhanced":
        try:
            enhance_file(
                frame.file,
                out,
                observable=p.observable,
                weights=weights,
                device=p.device,
                precision=p.precision,
                tile=p.tile,
                normalize=p.normalize,
            )
        except EnhanceError as exc:
            log.error("%s failed: %s", frame.t_rec, exc)
            failures.append(f"{frame.t_rec}: {exc}")
            continue
    log.info("%s %s -> %s", frame.t_rec, status, out)
    done.append({"t_rec": frame.t_rec, "input": frame.file, "output": str(out), "status": status})
if failures:  # no marker: the job fails and the next run retries only these frames
    raise RuntimeError(f"{len(failures)} frame(s) failed, first: {failures[0]}")
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"weights_sha256": weights_sha, "frames": done}, indent=1) + "\n")
