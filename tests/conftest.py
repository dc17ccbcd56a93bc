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


@pytest.fixture(scope="session")
def analysis_config() -> dict:
    """The bundled analysis config, loaded (never modified in place: deep-copy to edit)."""
    with open(REPO / "inputs" / "analysis.yaml") as f:
        return yaml.safe_load(f)


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
