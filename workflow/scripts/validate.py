"""Rules ``validate``, ``validation_twin`` and ``validation_hinode``.

``validate``: quick look at the latest frame of every cube (input and
output), the per-frame quality figures of every cube (time series and the
frames out of tolerance), and the summaries of the twin and Hinode reports of the
series' observable (:mod:`enhance_hmi.validation.series_report`).
``validation_twin``: the synthetic-twin report of one scene
(:func:`enhance_hmi.validation.twin.run_twin`).
``validation_hinode``: the report of one Hinode file against its co-temporal
HMI frame (:func:`enhance_hmi.validation.hinode_targets.run_hinode_target`).
"""

import logging
import sys
from pathlib import Path

import astropy.units as u

from enhance_hmi.errors import EnhanceError

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
logging.captureWarnings(True)  # data caveats (EnhanceWarning) go to the rule's log too


def archive_validation():
    from enhance_hmi.acquire import get_series
    from enhance_hmi.validation.series_report import write_series_validation

    series = snakemake.wildcards.series
    write_series_validation(
        [Path(p).with_suffix(".h5") for p in snakemake.input.cubes],
        observable=get_series(series).observable,
        series=series,
        raw_dir=snakemake.params.raw_dir,
        reports={"twins": snakemake.input.twins, "hinode": snakemake.input.hinode},
        tolerances=snakemake.params.tolerances,
        figure_path=snakemake.output.figure,
        quality_path=snakemake.output.quality,
        out_of_tolerance_path=snakemake.output.out_of_tolerance,
        summary_path=snakemake.output.summary,
    )


def twin_report():
    from enhance_hmi.validation.twin import run_twin

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
        symmetries=snakemake.params.symmetries,
    )


def hinode_report():
    from enhance_hmi.acquire import acquire_options
    from enhance_hmi.validation.hinode_targets import run_hinode_target
    from enhance_hmi.workflow.run_status import clear_job_failure, record_job_failure

    p = snakemake.params
    target = snakemake.wildcards.target
    try:
        doc = run_hinode_target(
            snakemake.input.hinode,
            Path(snakemake.output.html).parent,
            server=p.source,
            series=p.series,
            max_difference=p.max_minutes * u.min,
            weights=snakemake.input.weights[0] if snakemake.input.weights else None,
            device=p.device,
            tile=p.tile,
            strict=p.strict,
            options=acquire_options(p.jsoc),
            symmetries=p.symmetries,
        )
    except EnhanceError as exc:
        error = " ".join(str(exc).split())
        logging.error("Hinode validation failed: %s", error)
        record_job_failure(p.out_dir, "validation_hinode", target, error)
        print(f"enhance: validation {target}: {error}", file=sys.stderr)
        sys.exit(1)
    clear_job_failure(p.out_dir, "validation_hinode", target)
    logging.info("Hinode target %s: %s", target, doc["status"])


if snakemake.rule == "validation_twin":
    twin_report()
elif snakemake.rule == "validation_hinode":
    hinode_report()
else:
    archive_validation()
