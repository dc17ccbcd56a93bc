rule model:
    input:
        config=CONFIG_FILE,
        histograms=rules.merge.output.histograms,
    output:
        workspace="results/model/workspace.json",
        patchset="results/model/patchset.json",
    log:
        "logs/model.log",
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="1Gi",
    shell:
        "python -m steps.model --config {input.config} --workspace {output.workspace}"
        " --patchset {output.patchset} --log {log}"
