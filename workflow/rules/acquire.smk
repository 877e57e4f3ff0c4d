# Acquisition (JSOC through drms, or a local archive): a checkpoint, since the
# frames to enhance are known only once the manifest is written. Downloads run
# on the submit host (localrules): compute nodes often have no internet.


localrules:
    acquire,


checkpoint acquire:
    output:
        f"{OUT}/acquire/{{series}}/{{key}}.json",
    log:
        f"{OUT}/logs/acquire/{{series}}.{{key}}.log",
    conda:
        "../../envs/enhance.yaml"
    params:
        source=SOURCE,
        start=format_t_rec(START) if START else None,
        end=lambda wildcards: resolved_end(wildcards.series),
        cadence=config["cadence"],
        quality_policy=config["quality_policy"],
        raw_dir=lambda wildcards: f"{OUT}/raw/{wildcards.series}",
        plan_dir=lambda wildcards: f"{OUT}/plan/{wildcards.series}",
        layout=lambda wildcards: layout_params(wildcards.series),
        frames_per_job=config["enhance"]["frames_per_job"],
    script:
        "../scripts/acquire.py"
