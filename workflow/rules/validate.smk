# Validation per series: a quick look at the latest enhanced frame of every
# cube with per-cube statistics, plus the synthetic-twin reports of the
# series' observable (config `validation.twins`): a high-resolution scene is
# degraded to an HMI-like input and a 28 cm truth, enhanced with the
# configured weights and compared with bicubic, unsharp masking and
# Richardson-Lucy (Diaz Baso & Asensio Ramos 2018, A&A 614, A5, Sect. 4).


TWINS = {
    twin.get("name") or Path(twin["scene"]).name.split(".fits")[0]: twin
    for twin in config["validation"]["twins"]
}
if len(TWINS) != len(config["validation"]["twins"]):
    raise ConfigError(
        "config validation.twins has two scenes with the same name; give each a distinct `name`"
    )
#: Every twin report (for `snakemake <target>` or a target list).
TWIN_TARGETS = [
    f"{OUT}/validation/twin/{name}/{twin['observable']}/report.html"
    for name, twin in TWINS.items()
]
_OBSERVABLES = {series.observable for series in SERIES.values()}
for _name, _twin in TWINS.items():
    if not Path(_twin["scene"]).is_file():
        raise ConfigError(
            f"config validation twin {_name}: scene {_twin['scene']} does not exist "
            "(paths are relative to the working directory)"
        )
    if _twin["observable"] not in _OBSERVABLES:
        raise ConfigError(
            f"config validation twin {_name} is a {_twin['observable']} scene but no "
            f"{_twin['observable']} series is configured; add one to `series` or drop the twin"
        )


rule validate:
    input:
        unpack(
            lambda wildcards: {
                **report_inputs(wildcards),
                "twins": [
                    f"{OUT}/validation/twin/{name}/{twin['observable']}/metrics.json"
                    for name, twin in TWINS.items()
                    if twin["observable"] == SERIES[wildcards.series].observable
                ],
            }
        ),
    output:
        summary=f"{OUT}/report/{{series}}/validation.json",
        figure=report(
            f"{OUT}/report/{{series}}/quicklook.png",
            caption="../report/quicklook.rst",
            category="Validation",
            subcategory="{series}",
        ),
    log:
        f"{OUT}/logs/validate/{{series}}.log",
    conda:
        "../../envs/enhance.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/validate.py"


rule validation_twin:
    input:
        scene=lambda wildcards: TWINS[wildcards.twin]["scene"],
        weights=lambda wildcards: [
            path for path in [config["weights"][wildcards.observable]] if path
        ],
    output:
        html=f"{OUT}/validation/twin/{{twin}}/{{observable}}/report.html",
        metrics=f"{OUT}/validation/twin/{{twin}}/{{observable}}/metrics.json",
        images=report(
            f"{OUT}/validation/twin/{{twin}}/{{observable}}/images.png",
            caption="../report/validation_twin.rst",
            category="Validation",
            subcategory="twin {twin} ({observable})",
            labels={"twin": "{twin}", "figure": "images"},
        ),
        spectra=report(
            f"{OUT}/validation/twin/{{twin}}/{{observable}}/spectra.png",
            caption="../report/validation_twin.rst",
            category="Validation",
            subcategory="twin {twin} ({observable})",
            labels={"twin": "{twin}", "figure": "power spectra"},
        ),
    log:
        f"{OUT}/logs/validation_twin/{{twin}}.{{observable}}.log",
    wildcard_constraints:
        twin=r"[A-Za-z0-9_.+-]+",
        observable=r"continuum|magnetogram",
    conda:
        "../../envs/enhance.yaml"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    params:
        twin=lambda wildcards: TWINS[wildcards.twin],
        crop=config["validation"]["crop"],
        seed=config["validation"]["seed"],
        device=config["enhance"]["device"],
        tile=config["enhance"]["tile"],
    script:
        "../scripts/validate.py"
