# The gate: the final target exists only if every artefact passes its consumer's validator.
rule validate:
    input:
        **with_scan(patchset=PATCHSET, limits=LIMITS),
        **limit_figure(limit_png=None, limit_pdf=None),
        config=CONFIG_FILE,
        datasets=DATASETS,
        workspace=rules.model.output.workspace,
        archive=rules.hepdata.output.archive,
        # published beside them (Zenodo): the gate needs the report to vouch for every file
        results=rules.fit.output.results,
        fit_figures=rules.fit.output.figures,
    output:
        report="results/validation/report.json",
    log:
        "logs/validate.log",
    container:
        image("analysis")
    resources:
        **job_resources("1Gi", runtime=15),
    shell:
        "python -m steps.validate --config {input.config} --datasets {input.datasets}"
        " --workspace {input.workspace}"
        + scan_options(" --patchset {input.patchset}")
        + " --submission {input.archive} --outputs {input.results} {input.fit_figures}"
        + scan_options(" {input.limits}")
        + (" {input.limit_png} {input.limit_pdf}" if LIMIT_FIGURE else "")
        + " --report {output.report} --log {log}"
