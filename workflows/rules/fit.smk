REGIONS = [region["Name"] for region in ANALYSIS["Regions"]]


rule fit:
    input:
        config=CONFIG_FILE,
        workspace=rules.model.output.workspace,
    output:
        results="results/fit/results.json",
        figures=expand(
            "results/fit/figures/{figure}.{ext}",
            figure=["pulls"]
            + [
                f"data_mc_{stage}_{r}"
                for stage in ("prefit", "postfit")
                for r in REGIONS
            ],
            ext=["png", "pdf"],
        ),
    log:
        "logs/fit/mle.log",
    container:
        image("analysis")
    resources:
        **job_resources("2Gi", runtime=60),
    shell:
        "python -m steps.fit mle --config {input.config} --workspace {input.workspace}"
        " --output {output.results} --figures results/fit/figures --log {log}"


# One limit job per signal hypothesis, for an analysis with a scan only
if PATCHES:

    rule limit:
        input:
            workspace=rules.model.output.workspace,
            patchset=PATCHSET,
        output:
            point="results/fit/limits/{patch}.json",
        log:
            "logs/fit/limit_{patch}.log",
        wildcard_constraints:
            patch="|".join(PATCHES),
        container:
            image("analysis")
        resources:
            **job_resources("2Gi", runtime=60),
        shell:
            "python -m steps.fit limit --workspace {input.workspace} --patchset {input.patchset}"
            " --patch {wildcards.patch} --output {output.point} --log {log}"

    rule limits:
        input:
            config=CONFIG_FILE,
            points=expand(rules.limit.output.point, patch=PATCHES),
        output:
            **limit_figure(figure=None, figure_pdf=None),
            limits=LIMITS,
        log:
            "logs/fit/limits.log",
        container:
            image("analysis")
        resources:
            **job_resources("1Gi", runtime=60),
        shell:
            "python -m steps.fit limits --config {input.config} --inputs {input.points}"
            " --output {output.limits} --log {log}"
            + (" --figure {output.figure}" if LIMIT_FIGURE else "")
