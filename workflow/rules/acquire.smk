# Acquisition (JSOC through drms, or a local archive): a checkpoint, since the
# frames to enhance are known only once the manifest is written. Downloads run
# on the submit host (localrules): compute nodes often have no internet.
#
# Failures are never frozen: a query that did not cover the range fails the
# checkpoint (no summary is written, so the next run tries again); files that
# failed every attempt or exports still pending give a summary marked
# incomplete, whose verified frames are processed while `acquisition_complete`
# fails the run; the next run then gets a new acquisition key and retries.


localrules:
    acquire,
    acquisition_complete,


checkpoint acquire:
    output:
        f"{OUT}/acquire/{{series}}/{{key}}.json",
    log:
        f"{OUT}/logs/acquire/{{series}}.{{key}}.log",
    conda:
        "../../envs/enhance.yaml"
    params:
        out_dir=lambda wildcards: OUT,
        source=SOURCE,
        start=RUN.start_t_rec(),
        end=lambda wildcards: resolved_end(wildcards.series),
        cadence=config["cadence"],
        quality_policy=config["quality_policy"],
        raw_dir=lambda wildcards: f"{OUT}/raw/{wildcards.series}",
        plan_dir=lambda wildcards: f"{OUT}/plan/{wildcards.series}",
        layout=lambda wildcards: layout_params(wildcards.series),
        frames_per_job=config["enhance"]["frames_per_job"],
        batches=lambda wildcards: range_plan(wildcards.series),
        jsoc=config["jsoc"],
    script:
        "../scripts/acquire.py"


rule acquisition_complete:
    input:
        f"{OUT}/acquire/{{series}}/{{key}}.json",
    output:
        f"{OUT}/acquire/{{series}}/{{key}}.complete",
    log:
        f"{OUT}/logs/acquire/{{series}}.{{key}}.complete.log",
    conda:
        "../../envs/enhance.yaml"
    params:
        out_dir=lambda wildcards: OUT,
    script:
        "../scripts/acquisition_complete.py"


# Every run that gets to execute jobs leaves <output>/status.json for monitoring
# (finish_run in common.smk, from what the jobs recorded) and ends with its one-line summary; a run that
# finished but holds quarantined frames exits 3.
onsuccess:
    finish_run(True, log)


onerror:
    finish_run(False, log)
