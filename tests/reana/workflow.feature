# REANA workflow tests (Gherkin): run with `reana-client test -w pubflow` after a run.
Feature: pubflow run

    As a physicist re-running this analysis on REANA,
    I want the key outputs to exist and to have been validated,
    so that I can trust the published record.

    Scenario: The run has finished
        When the workflow is finished
        Then the workflow status should be "finished"

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
        And the file "results/validation/report.json" should contain "\"valid\": true"
