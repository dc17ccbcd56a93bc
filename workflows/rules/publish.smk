# Publication bundles: what each archive would receive, and the request plan, as dry runs.
# Never part of the default target: `snakemake --cores all publish`. Real uploads are a
# separate, deliberate command with credentials (see README, "Publishing"):
#   python -m steps.publish {hepdata,zenodo,cap,inveniordm} --upload [--production] [--publish]


rule publish_hepdata:
    input:
        report=rules.validate.output.report,
        archive=rules.hepdata.output.archive,
    output:
        bundle=directory("results/publish/hepdata/bundle"),
    log:
        "logs/publish/hepdata.log",
    container:
        image("publish")
    resources:
        **job_resources("512Mi", runtime=10),
    shell:
        "python -m steps.publish hepdata --dry-run --report {input.report}"
        " --archive {input.archive} --log {log}"


rule publish_zenodo:
    input:
        **with_scan(patchset=PATCHSET, limits=LIMITS, figure=LIMIT_FIGURE),
        config=CONFIG_FILE,
        datasets=DATASETS,
        report=rules.validate.output.report,
        archive=rules.hepdata.output.archive,
        workspace=rules.model.output.workspace,
        results=rules.fit.output.results,
        figures=rules.fit.output.figures,
        workflow=["Snakefile", "reana.yaml"],
    output:
        bundle=directory("results/publish/zenodo/bundle"),
    log:
        "logs/publish/zenodo.log",
    container:
        image("publish")
    resources:
        **job_resources("512Mi", runtime=10),
    shell:
        "python -m steps.publish zenodo --dry-run --config {input.config}"
        " --report {input.report} --log {log}"


rule publish_cap:
    input:
        config=CONFIG_FILE,
        datasets=DATASETS,
        report=rules.validate.output.report,
        workflow=["Snakefile", "reana.yaml"],
    output:
        bundle=directory("results/publish/cap/bundle"),
    log:
        "logs/publish/cap.log",
    container:
        image("publish")
    resources:
        **job_resources("512Mi", runtime=10),
    shell:
        "python -m steps.publish cap --dry-run --config {input.config}"
        " --report {input.report} --log {log}"


# The aggregate target: not the default, and not an input of `all`.
rule publish:
    input:
        hepdata=rules.publish_hepdata.output.bundle,
        zenodo=rules.publish_zenodo.output.bundle,
        cap=rules.publish_cap.output.bundle,
