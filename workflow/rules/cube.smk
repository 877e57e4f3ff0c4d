# One HDF5 time cube per series and period. The cube file ({period}.h5) is
# extended in place by an atomic, idempotent append; the rule's output is the
# small index written after each append (so a rerun never deletes the cube).


rule cube:
    input:
        cube_batches,
    output:
        f"{OUT}/cubes/{{series}}/{{period}}.json",
    log:
        f"{OUT}/logs/cube/{{series}}/{{period}}.log",
    conda:
        "../../envs/enhance.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out_dir=lambda wildcards: OUT,
        cube=lambda wildcards: f"{OUT}/cubes/{wildcards.series}/{wildcards.period}.h5",
        observable=lambda wildcards: SERIES[wildcards.series].observable,
        compression=config["cube"]["compression"],
        level=config["cube"]["level"],
        tile=config["cube"]["tile"],
        quantize=config["cube"]["quantize"],
        sigma=config["cube"]["sigma"],
        out_of_tolerance=CUBE_OUT_OF_TOLERANCE,
        config_sha256=CONFIG_SHA256,
    script:
        "../scripts/cube.py"
