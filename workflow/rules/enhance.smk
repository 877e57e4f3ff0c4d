# Enhancement in batches: one job loads the network once and enhances up to
# `frames_per_job` frames, skipping those already enhanced from the same input
# and weights (a killed or extended batch resumes where it stopped). A frame
# that cannot be enhanced is quarantined (<output>/quarantine/), not fatal.


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
        weights=lambda wildcards: weights_for(wildcards.series),
        device=config["enhance"]["device"],
        precision=config["enhance"]["precision"],
        tile=config["enhance"]["tile"],
        normalize=config["enhance"]["normalize"],
        overlap=config["enhance"]["overlap"],
        prefetch=config["enhance"]["prefetch"],
        readers=config["enhance"]["readers"],
        writers=config["enhance"]["writers"],
        compression=config["enhance"]["compression"],
        compile=config["enhance"]["compile"],
        check_scale=config["enhance"]["check_scale"],
        check_range=config["enhance"]["check_range"],
        uncertainty=config["enhance"]["uncertainty"],
        consistency=config["enhance"]["consistency"],
        input_noise=lambda wildcards: input_noise_for(wildcards.series),
        quality=config["validation"]["frame_quality"],
    script:
        "../scripts/enhance_batch.py"
