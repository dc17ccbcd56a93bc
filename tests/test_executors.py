"""Past one machine: the same Snakefile under Snakemake's own executor plugins (Slurm,
Kubernetes, HTCondor) and REANA's engine, each rule's resources stated once.

No scheduler runs here, so each plugin plans the bundled analysis with ``--dry-run``: the
plugin is loaded, its settings parsed, and every job's resources resolved as it would submit
them. The resources must be the same under every engine: the memory REANA limits a job to
(``kubernetes_memory_limit``) and the ``mem_mb`` the plugins ask for, rounded up, and a runtime.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, copy_checkout

SNAKEMAKE8 = REPO / ".venv-snakemake8" / "bin"  # Snakemake 8.27.1 with the three plugins
REANA_ENGINE = REPO / ".venv-reana" / "bin"  # REANA 0.9's engine: Snakemake 7.32.4
UNITS = {"Mi": 2**20, "Gi": 2**30}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("executors") / "pubflow")


def dry_run(bin_dir: Path, workspace: Path, *args: str) -> str:
    snakemake = bin_dir / "snakemake"
    assert snakemake.exists(), f"{snakemake} is missing: run environments/setup.sh"
    result = subprocess.run([str(snakemake), "--dry-run", "--jobs", "8", *args],
                            cwd=workspace, capture_output=True, text=True, timeout=300,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(workspace)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def job_resources(text: str) -> dict[str, dict[str, str]]:
    """rule -> its resources, as the dry run lists them for each job (the last one seen);
    the target ``all`` runs nothing and is a local rule (never submitted), so it is left out."""
    found: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if rule and resources and rule.group(1) != "all":
            found[rule.group(1)] = dict(item.split("=", 1)
                                        for item in resources.group(1).split(", "))
    return found


def check_stated_once(resources: dict[str, dict[str, str]]) -> None:
    assert {"merge", "fit", "limit", "hepdata", "validate"} <= set(resources), resources
    assert any(rule.startswith("select_") for rule in resources), resources
    for rule, res in resources.items():
        limit = re.fullmatch(r"(\d+)([MG]i)", res.get("kubernetes_memory_limit", ""))
        assert limit, f"rule {rule}: no kubernetes_memory_limit for REANA: {res}"
        limit_bytes = int(limit.group(1)) * UNITS[limit.group(2)]
        mem_mb = int(res["mem_mb"])
        # what the plugins request covers REANA's limit, by less than a megabyte
        assert 0 <= mem_mb * 10**6 - limit_bytes < 10**6, f"rule {rule}: {res}"
        assert int(res["runtime"]) > 0, f"rule {rule}: {res}"


@pytest.mark.parametrize("executor", ["slurm", "kubernetes", "htcondor"])
def test_each_executor_plugin_plans_every_job_with_the_stated_resources(
        workspace: Path, executor: str) -> None:
    text = dry_run(SNAKEMAKE8, workspace, "--executor", executor)
    assert "This was a dry-run" in text
    resources = job_resources(text)
    check_stated_once(resources)
    assert int(resources["merge"]["mem_mb"]) == 1074  # 1Gi = 1073.7 MB, rounded up


def test_reanas_engine_reads_the_same_resources(workspace: Path) -> None:
    """REANA 0.9's Snakemake (7.32.4, Python 3.8) resolves each job to the same numbers the
    plugins see under Snakemake 8."""
    reana = job_resources(dry_run(REANA_ENGINE, workspace))
    check_stated_once(reana)
    plugin = job_resources(dry_run(SNAKEMAKE8, workspace, "--executor", "slurm"))
    keys = ("kubernetes_memory_limit", "mem_mb", "runtime")
    assert {rule: tuple(res[k] for k in keys) for rule, res in reana.items()} == \
        {rule: tuple(res[k] for k in keys) for rule, res in plugin.items()}


def test_a_plugin_refuses_an_unknown_executor_with_one_line(workspace: Path) -> None:
    """The plugins are really loaded by name: one that is not installed is refused."""
    result = subprocess.run([str(SNAKEMAKE8 / "snakemake"), "--dry-run", "--executor", "pbs"],
                            cwd=workspace, capture_output=True, text=True, timeout=300,
                            env={"PATH": f"{SNAKEMAKE8}:/usr/bin:/bin", "HOME": str(workspace)})
    assert result.returncode != 0
    assert "pbs" in result.stderr
