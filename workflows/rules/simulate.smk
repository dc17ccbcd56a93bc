rule simulate:
    input:
        config=CONFIG_FILE,
    output:
        ntuple="results/simulate/{sample}.root",
    log:
        "logs/simulate/{sample}.log",
    wildcard_constraints:
        sample="|".join(SIMULATED) or "NONE",
    container:
        image("analysis")
    resources:
        **job_resources("1Gi", runtime=30),
    shell:
        "python -m steps.simulate --config {input.config}"
        " --output {output.ntuple} --log {log}"
