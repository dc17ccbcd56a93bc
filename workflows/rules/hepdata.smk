rule hepdata:
    input:
        **with_scan(limits=LIMITS, figure=LIMIT_FIGURE, patchset=PATCHSET),
        config=CONFIG_FILE,
        histograms=rules.merge.output.summary,
        results=rules.fit.output.results,
        fit_figures=rules.fit.output.figures,
        workspace=rules.model.output.workspace,
    output:
        submission=directory("results/hepdata/submission"),
        archive="results/hepdata/submission.tar.gz",
    log:
        "logs/hepdata.log",
    container:
        image("analysis")
    resources:
        **job_resources("1Gi", runtime=15),
    shell:
        "python -m steps.hepdata --config {input.config} --histograms {input.histograms}"
        " --fit {input.results} --workspace {input.workspace}"
        + scan_options(" --limits {input.limits} --patchset {input.patchset}")
        + " --figures results/fit/figures --output results/hepdata --log {log}"
