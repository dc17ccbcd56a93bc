rule select:
    input:
        config=CONFIG_FILE,
        datasets=DATASETS,
        # a remote file (root://...) is no local input: Snakemake passes it as a parameter
        ntuple=lambda wildcards: local_file(SELECT_JOBS[wildcards.job]),
    output:
        partial="results/select/{job}.npz",
    log:
        "logs/select/{job}.log",
    wildcard_constraints:
        job="|".join(SELECT_JOBS),
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="2Gi",
    params:
        ntuple=lambda wildcards: SELECT_JOBS[wildcards.job],
    shell:
        "mkdir -p $(dirname {log}) && python -m steps.select --config {input.config} --input {params.ntuple}"
        " --output {output.partial} 2> {log}"


rule merge:
    input:
        config=CONFIG_FILE,
        partials=expand(rules.select.output.partial, job=SELECT_JOBS),
    output:
        histograms=directory(HISTOGRAMS),
        summary="results/histograms.json",
    log:
        "logs/merge.log",
    container:
        image("analysis")
    resources:
        kubernetes_memory_limit="1Gi",
    shell:
        "mkdir -p $(dirname {log}) && python -m steps.merge --config {input.config} --partials {input.partials}"
        " --output {output.histograms} --summary {output.summary} 2> {log}"
