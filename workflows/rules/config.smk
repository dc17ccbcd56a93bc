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
