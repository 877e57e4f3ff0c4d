# Enhancement in batches: one job loads the network once and enhances up to
# `frames_per_job` frames, skipping those already enhanced from the same input
# and weights (a killed or extended batch resumes where it stopped). A frame
# that cannot be enhanced is quarantined (<output>/quarantine/), not fatal.

from enhance_hmi.settings import EnhanceSettings


rule enhance_batch:
    input:
        batch_plan,
    output:
        f"{OUT}/enhanced/{{series}}/batches/{{batch}}.json",
    log:
        f"{OUT}/logs/enhance/{{series}}/{{batch}}.log",
    conda:
        "../../envs/enhance.yaml"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
        gpu=config["resources"]["gpu"],
    params:
        out_dir=lambda wildcards: OUT,
        frames_dir=lambda wildcards: f"{OUT}/enhanced/{wildcards.series}",
        observable=lambda wildcards: SERIES[wildcards.series].observable,
        # the whole of what enhance_hmi.settings.EnhanceSettings.from_config reads
        settings=lambda wildcards: EnhanceSettings.config_section(
            config, SERIES[wildcards.series].observable
        ),
    script:
        "../scripts/enhance_batch.py"
