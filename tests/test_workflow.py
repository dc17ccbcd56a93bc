"""The whole workflow on the bundled inputs: outputs, physics checks, idempotence, REANA."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import REPO, run

OUTPUTS = [
    "results/histograms.json",
    "results/model/workspace.json",
    "results/model/patchset.json",
    "results/fit/results.json",
    "results/fit/limits.json",
    "results/fit/figures/brazil.png",
    "results/fit/figures/pulls.png",
    "results/fit/figures/data_mc_postfit_Dimuon.png",
    "results/hepdata/submission.tar.gz",
    "results/validation/report.json",
]


def test_outputs_exist(workflow_run: Path) -> None:
    for name in OUTPUTS:
        assert (workflow_run / name).stat().st_size > 0, name


def test_validation_report(workflow_run: Path) -> None:
    report = json.loads((workflow_run / "results/validation/report.json").read_text())
    assert report["valid"] is True
    assert all(check["valid"] for check in report["checks"])


def test_selected_data_yield(workflow_run: Path) -> None:
    """500 events, one global-global pair each; see test_select for the independent count."""
    summary = json.loads((workflow_run / "results/histograms.json").read_text())
    assert summary["Dimuon_Data"]["yield"] == 500
    results = json.loads((workflow_run / "results/fit/results.json").read_text())
    assert sum(results["regions"]["Dimuon"]["data"]) == 500


def test_z_signal_strength_precision(workflow_run: Path) -> None:
    """~480 Z events: Poisson 4.6%, with the muon and continuum systematics 4.5-7% (no
    luminosity uncertainty: mu_Z is data over a normalised simulation)."""
    results = json.loads((workflow_run / "results/fit/results.json").read_text())
    assert 0.045 < results["mu_uncertainty"] < 0.07
    assert results["significance"]["observed"] > 10


def test_expected_limits_are_ordered_in_their_bands(workflow_run: Path,
                                                    analysis_config: dict) -> None:
    limits = json.loads((workflow_run / "results/fit/limits.json").read_text())
    masses = sorted(analysis_config["Scan"]["Grid"]["mass"])
    assert [p["values"] for p in limits["points"]] == [{"mass": m} for m in masses]
    assert [p["patch"] for p in limits["points"]] == [f"mass_{m}" for m in masses]
    for point in limits["points"]:
        expected = point["expected"]
        assert all(a < b for a, b in itertools.pairwise(expected)), point
        assert 0 < point["observed"] < analysis_config["Scan"]["Bounds"][1]
        assert point["significance"] >= 0 and 0 < point["p0"] <= 0.5


def _hepdata_table(workflow_run: Path, title_start: str) -> dict:
    folder = workflow_run / "results/hepdata/submission"
    docs = list(yaml.safe_load_all((folder / "submission.yaml").read_text()))
    for doc in docs:
        if doc.get("name", "").startswith(title_start):
            return yaml.safe_load((folder / doc["data_file"]).read_text())
    raise AssertionError(f"no table {title_start!r} in {[d.get('name') for d in docs]}")


def test_tabulated_spectrum_sums_to_selected_yield(workflow_run: Path) -> None:
    table = _hepdata_table(workflow_run, "Dimuon mass spectrum")
    data = next(v for v in table["dependent_variables"]
                if "data" in v["header"]["name"].lower()
                or "observed" in v["header"]["name"].lower())
    assert sum(point["value"] for point in data["values"]) == 500
    edges = np.array([[b["low"], b["high"]] for b in
                      (x["values"] for x in table["independent_variables"]).__next__()])
    assert edges[0, 0] == 60 and edges[-1, 1] == 120


def test_limits_are_published_relative_to_the_z_and_no_luminosity_is(workflow_run: Path
                                                                      ) -> None:
    """The bundled luminosity only normalises the simulation: no table carries it, and the
    limits are on the ratio to the Z (mu_res x 10 pb / 970 pb), not in pb."""
    table = _hepdata_table(workflow_run, "Upper limits")
    names = [v["header"]["name"] for v in table["dependent_variables"]]
    assert "Observed upper limit on the ratio of sigma x B to sigma x B(Z)" in names
    assert "Observed upper limit on sigma x B" not in names
    observed = dict(zip(names, table["dependent_variables"], strict=True))
    ratios = [p["value"] for p in observed[
        "Observed upper limit on the ratio of sigma x B to sigma x B(Z)"]["values"]]
    mus = [p["value"] for p in observed["Observed upper limit on mu_res"]["values"]]
    assert ratios == pytest.approx([mu * 10 / 970 for mu in mus], rel=1e-4)
    folder = workflow_run / "results/hepdata/submission"
    for path in folder.glob("*.yaml"):
        assert "LUMINOSITY" not in path.read_text(), path.name


def test_second_run_does_nothing(workflow_run: Path) -> None:
    result = run(["snakemake", "-n", "--cores", "1"], workflow_run)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_snakemake_lint_is_clean(workflow_run: Path) -> None:
    result = run(["snakemake", "--lint"], workflow_run, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_reana_client_validates_the_specification(workflow_run: Path) -> None:
    reana = REPO / ".venv-reana" / "bin" / "reana-client"
    assert reana.exists(), "run environments/setup.sh: it makes .venv-reana"
    result = run([str(reana), "validate", "-f", "reana.yaml"], workflow_run, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Workflow operations appear valid" in out
    assert "job" in out and "simulate" in out  # Snakemake 7.32.4 really built the DAG


def test_reana_specification_shape() -> None:
    spec = yaml.safe_load((REPO / "reana.yaml").read_text())
    assert spec["workflow"] == {"type": "snakemake", "file": "Snakefile"}
    assert spec["inputs"]["parameters"]["input"] == "inputs/pubflow.yaml"
    outputs = set(spec["outputs"]["files"]) | set(spec["outputs"]["directories"])
    assert {"results/hepdata/submission.tar.gz", "results/validation/report.json"} <= outputs
