# pubflow: ROOT ntuples -> histograms -> pyhf likelihood -> fit and limits -> HEPData record.
#
# Runs unchanged with Snakemake 9 locally and with Snakemake 7.32.4 on REANA: shell rules
# only, each with its container image and a Kubernetes memory limit.
#   snakemake --cores all                 # the whole analysis on the bundled inputs
#   reana-client run -w pubflow           # the same on a REANA cluster (see reana.yaml)


# The config is the one given (`--configfile`, `--config Analysis=...`, or REANA's
# `inputs.parameters.input`), else the bundled analysis's; never both merged, so that nothing
# of the bundled analysis leaks into another one.
if "Analysis" not in config and "General" not in config:

    configfile: "inputs/pubflow.yaml"


include: "workflows/rules/common.smk"
include: "workflows/rules/config.smk"
include: "workflows/rules/simulate.smk"
include: "workflows/rules/select.smk"
include: "workflows/rules/model.smk"
include: "workflows/rules/fit.smk"
include: "workflows/rules/hepdata.smk"
include: "workflows/rules/validate.smk"
include: "workflows/rules/publish.smk"


# the target runs nothing: an executor plugin (Slurm, Kubernetes, HTCondor) submits no job for it
localrules:
    all,


rule all:
    default_target: True
    input:
        rules.validate.output.report,


onsuccess:
    print(
        "\npubflow: done. Results are under results/:\n"
        "  histograms   results/histograms/ (cabinetry format), results/histograms.json\n"
        "  likelihood   results/model/workspace.json, results/model/patchset.json\n"
        "  fit          results/fit/results.json, results/fit/limits.json, results/fit/figures/\n"
        "  HEPData      results/hepdata/submission.tar.gz (validated: results/validation/report.json)"
    )
