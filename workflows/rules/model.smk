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
        **job_resources("1Gi", runtime=15),
    shell:
        "python -m steps.model --config {input.config} --workspace {output.workspace}"
        + scan_options(" --patchset {output.patchset}")
        + " --log {log}"
