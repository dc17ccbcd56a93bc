"""REANA's own Gherkin code runs ``tests/reana/workflow.feature`` on the suite's finished run.

``reana-client test`` (reana-client 0.95 pre-releases) parses the feature file and runs its steps
with reana-commons' ``gherkin_parser``, asking the REANA server about the run. Here the same
reana-commons code (0.95, in ``.venv-reana95``, Python 3.12) runs through
``tests/reana/run_gherkin.py``, which answers those questions from a finished workspace on this
machine instead of a server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from steps.io import read_json, write_json

from .conftest import REPO

REANA95_PYTHON = REPO / ".venv-reana95" / "bin" / "python"
DRIVER = REPO / "tests" / "reana" / "run_gherkin.py"
FEATURE = REPO / "tests" / "reana" / "workflow.feature"
REPORT = "results/validation/report.json"
HEPDATA_SCENARIO = "The HEPData submission passed validation"
FINISHED_SCENARIO = "The run has finished"


def scenario_names() -> list[str]:
    """The scenarios of the feature file, in order, read without REANA's parser."""
    return re.findall(r"^\s*Scenario:\s*(.+?)\s*$", FEATURE.read_text(), re.MULTILINE)


def run_feature(workspace: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run every scenario with reana-commons 0.95 on ``workspace``: exit code, results by name."""
    assert REANA95_PYTHON.exists(), "no .venv-reana95: run `bash environments/setup.sh`"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([str(REANA95_PYTHON), "-I", str(DRIVER), str(workspace), str(FEATURE)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), f"the driver crashed:\n{proc.stdout}\n{proc.stderr}"
    results = {r["scenario"]: r for r in json.loads(proc.stdout)}
    assert list(results) == scenario_names(), "REANA's parser did not run every scenario"
    return proc.returncode, results


def not_passed(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scenarios that did not pass (failed, or skipped because a `When` step did not hold)."""
    return {name: r for name, r in results.items() if r["result"] != "passed"}


@pytest.mark.slow
def test_reana_gherkin_passes_every_scenario_on_the_finished_run(workflow_run: Path) -> None:
    """Every scenario of the feature file passes, as ``reana-client test`` would report.

    Proves the steps exist in reana-commons (an unknown step fails the parse), that their
    quoted arguments mean what they say (escapes would be taken literally) and that the outputs
    they name and the text they look for are what the workflow writes. Skipped scenarios
    count as failures here: ``reana-client test`` would count them as passed.
    """
    code, results = run_feature(workflow_run)
    assert not not_passed(results)
    assert code == 0


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["report missing", "report says invalid"])
def test_reana_gherkin_fails_without_a_valid_validation_report(
        workflow_run: Path, tmp_path: Path, damage: str) -> None:
    """On a copy of the run whose validation report is missing, or whose verdict is false while
    each check inside it still says valid, the HEPData scenario fails.

    Proves the scenario reads the report's own top-level verdict, not any ``"valid": true``
    in it. The scenarios about the histograms, likelihood and fit still pass; a missing report
    also fails "The run has finished", whose step checks every output reana.yaml declares.
    """
    workspace = tmp_path / "pubflow"
    shutil.copytree(workflow_run, workspace, symlinks=True)
    report = workspace / REPORT
    expected = {HEPDATA_SCENARIO: 'the workspace should include "results/validation/report.json"'}
    if damage == "report missing":
        report.unlink()
        expected[FINISHED_SCENARIO] = "all the outputs should be included in the workspace"
    else:
        verdict = read_json(report)
        assert all(check["valid"] for check in verdict["checks"])
        write_json(report, {**verdict, "valid": False})
        expected[HEPDATA_SCENARIO] = (
            'the file "results/validation/report.json" should contain "  "valid": true\n}"')

    code, results = run_feature(workspace)

    failed = not_passed(results)
    assert {name: r["result"] for name, r in failed.items()} == dict.fromkeys(expected, "failed")
    assert {name: r["failed_testcase"] for name, r in failed.items()} == expected
    assert code == 1
