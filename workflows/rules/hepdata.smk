rule hepdata:
    input:
        config=CONFIG_FILE,
        histograms=rules.merge.output.summary,
        results=rules.fit.output.results,
        fit_figures=rules.fit.output.figures,
        limits=rules.limits.output.limits,
        brazil=rules.limits.output.figure,
        workspace=rules.model.output.workspace,
        patchset=rules.model.output.patchset,
    output:
        submission=directory("results/hepdata/submission"),
        archive="results/hepdata/submission.tar.gz",
    log:
        "logs/hepdata.log",
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="1Gi",
    shell:
        "python -m steps.hepdata --config {input.config} --histograms {input.histograms}"
        " --fit {input.results} --limits {input.limits} --workspace {input.workspace}"
        " --patchset {input.patchset} --figures results/fit/figures"
        " --output results/hepdata --log {log}"
