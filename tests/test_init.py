"""steps.init: a new analysis repository from the checkout, in one command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steps import init as init_step
from steps.config import load_yaml, resolve_analysis
from steps.errors import PubflowError

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"

EXPECTED = (
    "Snakefile", "workflows/rules/common.smk", "steps/__init__.py", "steps/init.py",
    "steps/schemas/analysis.schema.json", "environments/setup.sh",
    "environments/analysis/Dockerfile", "environments/reana_local.py", "reana.yaml",
    "pyproject.toml", ".github/workflows/tests.yml", ".github/workflows/images.yml", ".ci/run",
    "tests/reana/workflow.feature", ".gitignore", "inputs/pubflow.yaml",
    "inputs/analysis.yaml", "README.md",
)


def run_init(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "steps.init", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, check=False)


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("init") / "new"
    done = run_init(str(dest), "--name", "my_analysis")
    assert done.returncode == 0, done.stderr
    assert "inputs/analysis.yaml" in done.stdout and "snakemake --cores all" in done.stdout
    return dest


def test_tree_has_the_workflow_and_the_example(skeleton: Path) -> None:
    for rel in EXPECTED:
        assert (skeleton / rel).is_file(), rel
    assert os.access(skeleton / ".ci/run", os.X_OK)
    # the copies are the checkout's files, byte for byte
    for rel in ("Snakefile", "workflows/rules/select.smk", "steps/layout.py"):
        assert (skeleton / rel).read_bytes() == (ROOT / rel).read_bytes(), rel


def test_tree_has_no_caches_nor_bundled_data(skeleton: Path) -> None:
    files = tree(skeleton)
    bad = [rel for rel in files
           if any(part in {"__pycache__", ".snakemake", "results", "logs", "data", "reference",
                           ".git"} or part.startswith(".venv") or part.endswith(".egg-info")
                  for part in Path(rel).parts) or rel.endswith(".pyc")]
    assert bad == []
    # the bundled analysis stays behind: no manifest (it lists at least one file), no Z
    assert not (skeleton / "inputs/datasets.yaml").exists()
    assert "Zmumu" not in (skeleton / "inputs/pubflow.yaml").read_text()
    assert "Zmumu" not in (skeleton / "inputs/analysis.yaml").read_text()


def test_reana_yaml_and_feature_fit_an_analysis_without_scan(skeleton: Path) -> None:
    spec = yaml.safe_load((skeleton / "reana.yaml").read_text())
    outputs = spec["outputs"]["files"]
    assert "results/model/workspace.json" in outputs
    assert not set(init_step.SCAN_OUTPUTS) & set(outputs)
    assert spec["inputs"]["parameters"]["input"] == "inputs/pubflow.yaml"
    assert "-w my_analysis" in (skeleton / "reana.yaml").read_text()
    feature = (skeleton / "tests/reana/workflow.feature").read_text()
    assert "Feature: my_analysis run" in feature
    assert "patchset" not in feature and "brazil" not in feature
    assert '"staterror_Signal_region"' in feature and '"Signal_norm"' in feature


def test_analysis_is_a_cabinetry_config(skeleton: Path) -> None:
    import cabinetry

    config = cabinetry.configuration.load(skeleton / "inputs/analysis.yaml")
    assert config["General"]["Measurement"] == "my_analysis"
    assert [s.get("Data", False) for s in config["Samples"]] == [True, False, False]
    assert config["NormFactors"][0]["Samples"] == "Signal"


def test_pubflow_config_resolves(skeleton: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the placeholders are ordinary paths: the config is valid as written, and what is
    # missing (the ntuples, the manifest) is named by the workflow (test below)
    monkeypatch.chdir(skeleton)
    config = resolve_analysis(load_yaml("inputs/pubflow.yaml"), "inputs/pubflow.yaml")
    assert config["Datasets"] == "inputs/datasets.yaml"
    assert {"Scan", "Publication", "Luminosity", "Simulation"}.isdisjoint(config)
    assert config["General"]["POI"] == "Signal_norm"


def snakemake_dry_run(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(VENV_BIN / "snakemake"), "-n"], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)


def test_dry_run_names_the_missing_ntuples(skeleton: Path) -> None:
    done = snakemake_dry_run(skeleton)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in out
    assert "Missing input files" in out
    assert "inputs/data/data.root" in out and "inputs/datasets.yaml" in out


def test_dry_run_builds_the_dag_once_ntuples_are_added(tmp_path: Path) -> None:
    import numpy as np
    import uproot

    repo = tmp_path / "ana"
    assert run_init(str(repo)).returncode == 0
    (repo / "inputs/data").mkdir()
    rng = np.random.default_rng(1)
    for name, tree_name, weighted in (("data", "pseudodata", False),
                                      ("background", "background", True),
                                      ("signal", "signal", True)):
        branches = {"jet_pt": rng.uniform(200, 600, 50)}
        if weighted:
            branches["weight"] = np.ones(50)
        with uproot.recreate(repo / f"inputs/data/{name}.root") as out:
            out.mktree(tree_name, dict.fromkeys(branches, "f8")).extend(branches)
    added = subprocess.run(
        [sys.executable, "-m", "steps.datasets", "add", "inputs/data/data.root",
         "inputs/data/background.root", "inputs/data/signal.root"],
        cwd=repo, capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stderr
    done = snakemake_dry_run(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = set(re.findall(r"^(?:local)?rule (\w+):", done.stdout + done.stderr, re.M))
    assert {"config", "select_data", "select_background", "select_signal", "merge", "model",
            "fit", "hepdata", "validate", "all"} <= rules
    assert not {r for r in rules if r.startswith("limit")}  # no Scan: no limit jobs


def test_second_init_fails_and_changes_nothing(skeleton: Path) -> None:
    before = tree(skeleton)
    done = run_init(str(skeleton))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "not empty" in done.stderr
    assert tree(skeleton) == before
    assert [p.name for p in skeleton.parent.iterdir()] == ["new"]  # no temp folder left


def test_force_rewrites_and_keeps_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "ana"
    assert run_init(str(dest)).returncode == 0
    (dest / "inputs/analysis.yaml").write_text("edited")
    (dest / "notes.txt").write_text("mine")
    done = run_init(str(dest), "--force")
    assert done.returncode == 0, done.stderr
    assert "Measurement: \"ana\"" in (dest / "inputs/analysis.yaml").read_text()
    assert (dest / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ana"]


def test_empty_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert init_step.init(tmp_path / "empty")
    assert (tmp_path / "empty/Snakefile").is_file()


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(init_step.shutil, "copy2", broken)
    with pytest.raises(PubflowError, match="disk full"):
        init_step.init(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_refuses_without_the_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an installed wheel: steps/ alone, without the Snakefile and the rules beside it
    fake = tmp_path / "site-packages" / "steps" / "__init__.py"
    fake.parent.mkdir(parents=True)
    fake.touch()
    monkeypatch.setattr(init_step.steps, "__file__", str(fake))
    with pytest.raises(PubflowError, match="not beside the installed steps package") as err:
        init_step.init(tmp_path / "new")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["my analysis", "1st", "a/b"])
def test_refuses_a_bad_name(tmp_path: Path, name: str) -> None:
    done = run_init(str(tmp_path / "new"), "--name", name)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "--name" in done.stderr
    assert list(tmp_path.iterdir()) == []
