"""Style gates that CI runs with the tests: ruff for Python, snakefmt for the workflow."""

from __future__ import annotations

import sys
from pathlib import Path

from .conftest import REPO, run

BIN = Path(sys.executable).parent


def test_ruff() -> None:
    result = run([str(BIN / "ruff"), "check", "steps", "tests"], REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt() -> None:
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in
                                  (REPO / "workflows").rglob("*.smk"))]
    result = run([str(BIN / "snakefmt"), "--check", *files], REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
