# The gate: the final target exists only if every artefact passes its consumer's validator.
rule validate:
    input:
        **with_scan(patchset=PATCHSET),
        config=CONFIG_FILE,
        datasets=DATASETS,
        workspace=rules.model.output.workspace,
        archive=rules.hepdata.output.archive,
    output:
        report="results/validation/report.json",
    log:
        "logs/validate.log",
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="1Gi",
    shell:
        "python -m steps.validate --config {input.config} --datasets {input.datasets}"
        " --workspace {input.workspace}"
        + scan_options(" --patchset {input.patchset}")
        + " --submission {input.archive} --report {output.report} --log {log}"
