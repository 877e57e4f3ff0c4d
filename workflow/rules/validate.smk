# Validation per series: a quick look at the latest enhanced frame of every
# cube (input and output on helioprojective axes, a zoom, power spectra), the
# per-frame quality figures of every cube (time series, frames out of
# tolerance), and
# the summaries of the reports of the series' observable:
# - synthetic twins (config `validation.twins`): a high-resolution scene is
#   degraded to an HMI-like input and a 28 cm truth, enhanced with the
#   configured weights and compared with bicubic, unsharp masking,
#   Richardson-Lucy, Tikhonov and the linear bound (Diaz Baso & Asensio
#   Ramos 2018, A&A 614, A5, Sect. 4);
# - Hinode targets (config `validation.hinode`): the HMI frame nearest in time
#   is fetched from `source`, enhanced and compared with the Hinode image
#   degraded to 28 cm (enhance_hmi.validation.hinode_targets).

from enhance_hmi.validation.hinode_targets import expand_targets, read_target
from enhance_hmi.validation.shipped_truth import resolve_scene

TWINS = {
    twin.get("name") or Path(twin["scene"]).name.split(".fits")[0]: twin
    for twin in config["validation"]["twins"]
}
if len(TWINS) != len(config["validation"]["twins"]):
    raise ConfigError(
        "config validation.twins has two scenes with the same name; give each a distinct `name`"
    )
_OBSERVABLES = {series.observable for series in SERIES.values()}
for _name, _twin in TWINS.items():
    if not resolve_scene(_twin["scene"]).is_file():
        raise ConfigError(
            f"config validation twin {_name}: scene {_twin['scene']} does not exist "
            "(paths are relative to the working directory; `sample` is the shipped crop)"
        )
    if _twin["observable"] not in _OBSERVABLES:
        raise ConfigError(
            f"config validation twin {_name} is a {_twin['observable']} scene but no "
            f"{_twin['observable']} series is configured; add one to `series` or drop the twin"
        )
#: Hinode targets by report name (observation time and observable read once).
HINODE = {
    target.name: target
    for target in map(read_target, expand_targets(config["validation"]["hinode"]))
}
for _target in HINODE.values():
    acquisition.get_series(config["validation"]["hinode_series"][_target.observable])
#: Every validation report (twins and Hinode targets), for `all` and target lists.
TWIN_TARGETS = [
    f"{OUT}/validation/twin/{name}/{twin['observable']}/report.html"
    for name, twin in TWINS.items()
] + [f"{OUT}/validation/hinode/{name}/report.html" for name in HINODE]


rule validate:
    input:
        unpack(
            lambda wildcards: {
                **report_inputs(wildcards),
                # the twin and Hinode reports of the series' observable
                "twins": [
                    f"{OUT}/validation/twin/{name}/{twin['observable']}/metrics.json"
                    for name, twin in TWINS.items()
                    if twin["observable"] == SERIES[wildcards.series].observable
                ],
                "hinode": [
                    f"{OUT}/validation/hinode/{name}/metrics.json"
                    for name, target in HINODE.items()
                    if target.observable == SERIES[wildcards.series].observable
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
            labels={"series": "{series}", "figure": "quick look"},
        ),
        quality=report(
            f"{OUT}/report/{{series}}/frame_quality.png",
            caption="../report/frame_quality.rst",
            category="Validation",
            subcategory="{series}",
            labels={"series": "{series}", "figure": "frame quality"},
        ),
        out_of_tolerance=report(
            f"{OUT}/report/{{series}}/frames_out_of_tolerance.csv",
            caption="../report/frames_out_of_tolerance.rst",
            category="Validation",
            subcategory="{series}",
            labels={"series": "{series}", "figure": "frames out of tolerance"},
        ),
    log:
        f"{OUT}/logs/validate/{{series}}.log",
    conda:
        "../../envs/enhance.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        raw_dir=lambda wildcards: f"{OUT}/raw/{wildcards.series}",
        tolerances=config["validation"]["frame_quality"],
    script:
        "../scripts/validate.py"


rule validation_twin:
    input:
        scene=lambda wildcards: str(resolve_scene(TWINS[wildcards.twin]["scene"])),
        weights=lambda wildcards: [
            path for path in [config["weights"][wildcards.observable]] if path
        ],
    output:
        # The page embeds its figures as data: URIs (enhance_hmi.validation.report.page):
        # `snakemake --report` shows an HTML result alone in an iframe (a data: URI, or
        # a file in its own folder of a .zip), where links to PNGs beside it break and
        # uncertainty.png, written only with an uncertainty head, cannot be an output.
        html=report(
            f"{OUT}/validation/twin/{{twin}}/{{observable}}/report.html",
            caption="../report/validation_twin.rst",
            category="Validation",
            subcategory="twin {twin} ({observable})",
            labels={"twin": "{twin}", "figure": "report page"},
        ),
        metrics=report(
            f"{OUT}/validation/twin/{{twin}}/{{observable}}/metrics.json",
            caption="../report/validation_twin.rst",
            category="Validation",
            subcategory="twin {twin} ({observable})",
            labels={"twin": "{twin}", "figure": "metrics JSON"},
        ),
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
        symmetries=config["enhance"]["symmetries"],
    script:
        "../scripts/validate.py"


rule validation_hinode:
    input:
        hinode=lambda wildcards: str(HINODE[wildcards.target].path),
        weights=lambda wildcards: [
            path
            for path in [config["weights"][HINODE[wildcards.target].observable]]
            if path
        ],
    output:
        html=report(
            f"{OUT}/validation/hinode/{{target}}/report.html",
            caption="../report/validation_hinode.rst",
            category="Validation",
            subcategory="Hinode {target}",
            labels={"target": "{target}", "figure": "report page"},
        ),
        metrics=report(
            f"{OUT}/validation/hinode/{{target}}/metrics.json",
            caption="../report/validation_hinode.rst",
            category="Validation",
            subcategory="Hinode {target}",
            labels={"target": "{target}", "figure": "metrics JSON"},
        ),
        images=report(
            f"{OUT}/validation/hinode/{{target}}/images.png",
            caption="../report/validation_hinode.rst",
            category="Validation",
            subcategory="Hinode {target}",
            labels={"target": "{target}", "figure": "images"},
        ),
        spectra=report(
            f"{OUT}/validation/hinode/{{target}}/spectra.png",
            caption="../report/validation_hinode.rst",
            category="Validation",
            subcategory="Hinode {target}",
            labels={"target": "{target}", "figure": "power spectra"},
        ),
    log:
        f"{OUT}/logs/validation_hinode/{{target}}.log",
    wildcard_constraints:
        target=r"[A-Za-z0-9_.+-]+",
    conda:
        "../../envs/enhance.yaml"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    params:
        out_dir=lambda wildcards: OUT,
        source=SOURCE,
        series=lambda wildcards: config["validation"]["hinode_series"][
            HINODE[wildcards.target].observable
        ],
        max_minutes=config["validation"]["max_time_difference"],
        strict=config["validation"]["strict"],
        jsoc=config["jsoc"],
        device=config["enhance"]["device"],
        tile=config["enhance"]["tile"],
        symmetries=config["enhance"]["symmetries"],
    script:
        "../scripts/validate.py"
