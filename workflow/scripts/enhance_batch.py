"""Rule ``enhance_batch``: enhance the frames of one batch (network loaded once).

A frame that cannot be enhanced is quarantined (enhance_hmi.workflow.quarantine),
not fatal: the marker lists every frame with its status and the cube is built
from the others. A failure of the whole batch (bad settings) or of the output
side (a full disk) fails the job with one line and no marker: the next run
tries again.
"""

import json
import logging
import os
import sys

from enhance_hmi.atomic import atomic_path
from enhance_hmi.cube import read_plan
from enhance_hmi.errors import EnhanceError, OutputError
from enhance_hmi.heap import keep_freed_memory
from enhance_hmi.inference.uncertainty import resolve_uncertainty, sigma_calibration_digest
from enhance_hmi.model import read_sidecar
from enhance_hmi.pipeline import accepted_settings_sha256, resolve_weights
from enhance_hmi.provenance import sha256_file
from enhance_hmi.settings import EnhanceSettings
from enhance_hmi.workflow.batch_job import run_batch
from enhance_hmi.workflow.quarantine import read_quarantine, write_batch_quarantine
from enhance_hmi.workflow.run_status import clear_job_failure, record_job_failure

snakemake = globals()["snakemake"]
logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
logging.captureWarnings(True)  # data caveats (EnhanceWarning) go to the rule's log too
log = logging.getLogger("enhance_batch")
keep_freed_memory()  # a batch job: the CPU network reuses freed activations
p = snakemake.params
series, batch = snakemake.wildcards.series, snakemake.wildcards.batch
log.info(
    "GPUs: CUDA_VISIBLE_DEVICES=%s SLURM_JOB_GPUS=%s",
    os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    os.environ.get("SLURM_JOB_GPUS", ""),
)
try:
    settings = EnhanceSettings.from_config(p.settings, p.observable)
    weights = resolve_weights(settings.weights, p.observable)
    weights_sha = sha256_file(weights)
    settings = settings.replace(weights=weights)
    sigma = resolve_uncertainty(settings.uncertainty, weights)
    job = p.settings["enhance"]  # how the job is run: threads around the network
    result = run_batch(
        read_plan(snakemake.input[0]),
        batch=batch,
        frames_dir=p.frames_dir,
        settings=settings,
        weights_sha256=weights_sha,
        settings_sha256=accepted_settings_sha256(
            settings.for_weights(read_sidecar(weights), sigma=sigma),  # what ENHSETSH say
            observable=p.observable,
            uncertainty=sigma,
            sigma_calibration=sigma_calibration_digest(weights) if sigma else None,
        ),
        previous=read_quarantine(p.out_dir, series, batch),
        stage_options={key: job[key] for key in ("overlap", "prefetch", "readers", "writers")},
    )
    write_batch_quarantine(p.out_dir, series, batch, result.quarantine)
    if result.write_failures:  # the output side (a full disk...): no marker, a rerun retries
        first = result.write_failures[0]
        raise OutputError(
            f"{len(result.write_failures)} frame(s) could not be written, first "
            f"{first.t_rec}: {first.cause}"
        )
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(json.dumps(result.marker(weights_sha), indent=1) + "\n")
except EnhanceError as exc:  # the whole batch: one line, its cause kept for status.json
    cause = " ".join(str(exc).split())
    log.error("batch failed: %s", cause)
    record_job_failure(p.out_dir, "enhance_batch", f"{series}/{batch}", cause)
    print(f"enhance: {series} batch {batch}: {cause}", file=sys.stderr)
    sys.exit(1)
clear_job_failure(p.out_dir, "enhance_batch", f"{series}/{batch}")
log.info(
    "%d enhanced, %d kept, %d quarantined",
    result.count("enhanced"),
    result.count("kept"),
    result.count("quarantined"),
)
