"""Shared fixtures: the repository, a config to edit, and one full workflow run."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def declared_inputs() -> tuple[list[str], list[str]]:
    """Files and directories reana.yaml declares: all a REANA workspace will hold."""
    from steps.reproduce import declared_inputs as declared

    return declared(REPO)


def venv_env() -> dict[str, str]:
    """Environment in which `python` and `snakemake` are this interpreter's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = ""
    return env


def copy_checkout(dest: Path) -> Path:
    """Copy only what reana.yaml declares into ``dest``, as REANA's workspace would hold."""
    from steps.reproduce import stage_workspace

    return stage_workspace(REPO, dest)


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900
        ) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with the test interpreter's tools first on PATH."""
    result = subprocess.run(cmd, cwd=cwd, env=venv_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def step(cwd: Path, name: str, *args: str, check: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m steps.<name> args`` in ``cwd``."""
    return run([sys.executable, "-m", f"steps.{name}", *args], cwd, check=check)


def write_config(work: Path, config: dict) -> None:
    """Write a resolved config as a checkout holds it: cabinetry's keys in
    ``inputs/analysis.yaml``, pubflow's own beside ``Analysis`` in ``inputs/pubflow.yaml``."""
    from steps.layout import CABINETRY_KEYS

    cabinetry = {k: v for k, v in config.items() if k in CABINETRY_KEYS}
    pubflow = {"Analysis": "inputs/analysis.yaml",
               **{k: v for k, v in config.items() if k not in CABINETRY_KEYS}}
    (work / "inputs" / "analysis.yaml").write_text(yaml.safe_dump(cabinetry, sort_keys=False))
    (work / "inputs" / "pubflow.yaml").write_text(yaml.safe_dump(pubflow, sort_keys=False))


def read_config(work: Path) -> dict:
    """The resolved config of a checkout (cabinetry's keys and pubflow's, side by side)."""
    from steps.layout import resolve

    with open(work / "inputs" / "pubflow.yaml") as f:
        return resolve(yaml.safe_load(f), base=work)


@pytest.fixture(scope="session")
def analysis_config() -> dict:
    """The bundled analysis, resolved (never modified in place: deep-copy to edit)."""
    return read_config(REPO)


@pytest.fixture
def config(analysis_config: dict) -> dict:
    """A private copy of the bundled config to edit."""
    return copy.deepcopy(analysis_config)


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workflow, run once with Snakemake on the bundled inputs in a fresh copy."""
    workdir = copy_checkout(tmp_path_factory.mktemp("run") / "pubflow")
    run(["snakemake", "--cores", "2"], workdir)
    return workdir
