rule model:
    input:
        config=CONFIG_FILE,
        histograms=rules.merge.output.histograms,
    output:
        **with_scan(patchset=PATCHSET),
        workspace="results/model/workspace.json",
    log:
        "logs/model.log",
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="1Gi",
    shell:
        "python -m steps.model --config {input.config} --workspace {output.workspace}"
        + scan_options(" --patchset {output.patchset}")
        + " --log {log}"
