# One select rule per input file, defined in a loop rather than one rule with input functions:
# reana-client copies every rule's `input:` and `params:` into the JSON request it sends, and a
# function there cannot be encoded ("Object of type function is not JSON serializable").
SELECT_PARTIAL = "results/select/{job}.npz"

for _job, _ntuple in SELECT_JOBS.items():

    rule:
        name:
            rule_name("select", _job)
        input:
            config=CONFIG_FILE,
            templates=TEMPLATES,
            datasets=DATASETS,
            ntuple=local_file(_ntuple),
        output:
            partial=SELECT_PARTIAL.format(job=_job),
        log:
            f"logs/select/{_job}.log",
        container:
            image("analysis")
        resources:
            **job_resources("2Gi", runtime=60),
        params:
            # a remote file (root://...) is no local input: the job gets its URL instead
            url=remote_url(_ntuple),
        shell:
            "python -m steps.select --config {input.config} --templates {input.templates}"
            " --input {input.ntuple}{params.url} --output {output.partial} --log {log}"


rule merge:
    input:
        config=CONFIG_FILE,
        partials=expand(SELECT_PARTIAL, job=SELECT_JOBS),
    output:
        histograms=directory(HISTOGRAMS),
        summary="results/histograms.json",
    log:
        "logs/merge.log",
    container:
        image("analysis")
    resources:
        **job_resources("1Gi", runtime=60),
    shell:
        "python -m steps.merge --config {input.config} --partials {input.partials}"
        " --output {output.histograms} --summary {output.summary} --log {log}"
