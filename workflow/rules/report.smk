# Per-frame completeness: every expected slot with its manifest state, QUALITY
# bits and whether it was enhanced and is in a cube; table and figure go into
# `snakemake --report`.


localrules:
    completeness,


rule completeness:
    input:
        unpack(report_inputs),
    output:
        table=report(
            f"{OUT}/report/{{series}}/frames.csv",
            caption="../report/frames.rst",
            category="Completeness",
            subcategory="{series}",
        ),
        figure=report(
            f"{OUT}/report/{{series}}/completeness.png",
            caption="../report/completeness.rst",
            category="Completeness",
            subcategory="{series}",
        ),
    log:
        f"{OUT}/logs/completeness/{{series}}.log",
    conda:
        "../../envs/enhance.yaml"
    params:
        raw_dir=lambda wildcards: f"{OUT}/raw/{wildcards.series}",
    script:
        "../scripts/completeness.py"
