# REANA workflow tests (Gherkin), run after a finished run, at the repository root:
#   reana-client test -w pubflow        (reana-client 0.95 pre-releases only; see the README)
# Only steps that reana-commons' Gherkin code implements can be used. They take quoted text
# literally, escapes included: write JSON fragments in a doc string (""") instead. The suite
# runs every scenario with that code on its own finished run (tests/test_reana_gherkin.py).
Feature: pubflow run

    As a physicist re-running this analysis on REANA,
    I want the key outputs to exist and to have been validated,
    so that I can trust the published record.

    Scenario: The run has finished
        When the workflow is finished
        Then the workflow status should be "finished"
        # every file listed under outputs.files of reana.yaml
        And all the outputs should be included in the workspace

    Scenario: The histograms and the likelihood were produced
        When the workflow is finished
        Then the workspace should include "results/histograms.json"
        And the workspace should include "results/model/workspace.json"
        And the workspace should include "results/model/patchset.json"
        And the file "results/model/workspace.json" should contain "staterror_Dimuon"
        And the file "results/model/patchset.json" should contain "mass_70"

    Scenario: The fit and the limits were produced
        When the workflow is finished
        Then the workspace should include "results/fit/results.json"
        And the workspace should include "results/fit/limits.json"
        And the workspace should include "results/fit/figures/brazil.png"
        And the file "results/fit/results.json" should contain "mu_Z"

    Scenario: The HEPData submission passed validation
        When the workflow is finished
        Then the workspace should include "results/hepdata/submission.tar.gz"
        And the workspace should include "results/validation/report.json"
        # The report's own verdict: its last key, at the top level (steps.io.write_json sorts
        # keys and indents by 2), not one of the per-artefact "valid" entries inside "checks".
        And the file "results/validation/report.json" should contain
            """
              "valid": true
            }
            """
