"""Rule ``enhance_batch``: enhance the frames of one batch (network loaded once)."""

import json
import logging
import os

from enhance.atomic import atomic_path
from enhance.batch import enhance_files, enhanced_frame_path, is_already_enhanced
from enhance.cube import read_plan
from enhance.heap import keep_freed_memory
from enhance.inference.consistency import parse_input_noise
from enhance.inference.uncertainty import resolve_uncertainty
from enhance.io.frame_quality import QualityTolerances
from enhance.pipeline import EnhanceSettings, accepted_settings_sha256, resolve_weights
from enhance.provenance import sha256_file

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
logging.captureWarnings(True)  # data caveats (EnhanceWarning) go to the rule's log too
log = logging.getLogger("enhance_batch")
keep_freed_memory()  # a batch job: the CPU network reuses freed activations
p = snakemake.params
log.info(
    "GPUs: CUDA_VISIBLE_DEVICES=%s SLURM_JOB_GPUS=%s",
    os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    os.environ.get("SLURM_JOB_GPUS", ""),
)
weights = resolve_weights(p.weights, p.observable)
weights_sha = sha256_file(weights)
settings = EnhanceSettings(
    observable=p.observable,
    weights=weights,
    device=p.device,
    precision=p.precision,
    tile=p.tile,
    normalize=p.normalize,
    compile=p.compile,
    check_scale=p.check_scale,
    check_range=p.check_range,
    uncertainty=None if p.uncertainty == "auto" else bool(p.uncertainty),
    consistency=bool(p.consistency),
    input_noise=None if p.input_noise is None else parse_input_noise(p.input_noise),
    compression=None if p.compression == "none" else p.compression,
    quality=QualityTolerances.from_mapping(p.quality),
)
settings_shas = accepted_settings_sha256(
    settings,
    observable=p.observable,
    uncertainty=resolve_uncertainty(settings.uncertainty, weights),
)
records, todo = [], []
for frame in read_plan(snakemake.input[0]):
    out = enhanced_frame_path(p.frames_dir, frame.t_rec, frame.file)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = is_already_enhanced(out, frame.sha256, weights_sha, settings_sha256=settings_shas)
    status = "kept" if kept else "enhanced"
    records.append(
        {"t_rec": frame.t_rec, "input": frame.file, "output": str(out), "status": status}
    )
    if kept:
        log.info("%s kept -> %s", frame.t_rec, out)
    else:
        todo.append((frame.file, out))
outcomes = enhance_files(
    todo,
    settings,
    overlap=p.overlap,
    prefetch=p.prefetch,
    readers=p.readers,
    writers=p.writers,
)
failures = [f"{o.input.name}: {o.error}" for o in outcomes if o.status == "failed"]
if failures:  # no marker: the job fails and the next run retries only these frames
    raise RuntimeError(f"{len(failures)} frame(s) failed, first: {failures[0]}")
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"weights_sha256": weights_sha, "frames": records}, indent=1) + "\n")
