# The first rule: the config Snakemake was given, resolved (the cabinetry config that
# `Analysis` names, loaded, beside pubflow's keys) and checked at the door, written to the one
# file every other rule passes to its step. The settings travel as a parameter, so they reach
# the job however they were given (--configfile, --config, REANA's inputs.parameters), and a
# change to them re-runs the workflow.
rule config:
    input:
        analysis=ANALYSIS_FILE,
    output:
        config=CONFIG_FILE,
    log:
        "logs/config.log",
    container:
        image("analysis")
    resources:
        **job_resources("512Mi", runtime=5),
    params:
        settings=encoded(dict(config)),
        source=CONFIG_SOURCE,
    shell:
        "python -m steps.config --settings-base64 {params.settings} --source {params.source:q}"
        " --output {output.config} --log {log}"


# The histograms the config makes, resolved once with cabinetry for every select job (which
# then does not import it); beside the simulation, off the critical path.
rule templates:
    input:
        config=CONFIG_FILE,
    output:
        templates=TEMPLATES,
    log:
        "logs/templates.log",
    container:
        image("analysis")
    resources:
        **job_resources("512Mi", runtime=5),
    shell:
        "python -m steps.templates --config {input.config} --output {output.templates}"
        " --log {log}"
