"""What REANA's workflow engines run: the Snakefile under their Pythons and their Snakemakes.

REANA 0.9's Snakemake engine is Python 3.8 with Snakemake 7.32.4 (``.venv-reana``); REANA
0.95's is Python 3.12 with Snakemake 8.27.1 (``.venv-snakemake8``); locally it is Snakemake 9
(this interpreter's). The engine evaluates the Snakefile, its ``.smk`` files and whatever they
import, with the standard library and PyYAML only.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, copy_checkout

SNAKEMAKES = {
    "7.32.4": REPO / ".venv-reana" / "bin",
    "8.27.1": REPO / ".venv-snakemake8" / "bin",
    "local": Path(sys.executable).parent,
}
ENGINE_PYTHONS = {"7.32.4": (3, 8), "8.27.1": (3, 12)}

# Runs `snakemake ARGS` in-process and, at exit, prints the repository modules it imported:
# the Snakefile's own imports are what the engine must be able to run.
_PROBE = """
import atexit, sys
repo = sys.argv.pop(1)
def _report():
    mods = sorted(n for n, m in list(sys.modules.items())
                  if (getattr(m, "__file__", None) or "").startswith(repo))
    print("PUBFLOW-MODULES", " ".join(mods))
atexit.register(_report)
try:
    from snakemake.cli import main
except ImportError:  # Snakemake 7
    from snakemake import main
sys.argv = ["snakemake"] + sys.argv[1:]
main()
"""


def _python(version: str) -> Path:
    python = SNAKEMAKES[version] / "python"
    assert python.exists(), f"{python} is missing: run environments/setup.sh"
    return python


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of what reana.yaml declares, as REANA's workspace holds it."""
    return copy_checkout(tmp_path_factory.mktemp("engine") / "pubflow")


def _snakemake(version: str, workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(_python(version)), "-c", _PROBE, str(workspace), *args],
                            cwd=workspace, capture_output=True, text=True, timeout=300,
                            env={"PATH": f"{SNAKEMAKES[version]}:/usr/bin:/bin",
                                 "HOME": str(workspace)})
    assert result.returncode == 0, f"Snakemake {version}: {result.stdout}\n{result.stderr}"
    return result


def job_counts(text: str) -> dict[str, int]:
    """The ``Job stats`` table of a dry run: jobs per rule."""
    lines = text.split("Job stats:", 1)[1].splitlines()
    counts = {}
    for line in lines[3:]:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def planned_outputs(text: str) -> set[tuple[str, str]]:
    """``(rule, output file)`` of every job, from ``--summary`` (its columns vary by version)."""
    rows = [line.split("\t") for line in text.splitlines() if "\t" in line]
    header = rows[0]
    rule, output = header.index("rule"), header.index("output_file")
    return {(row[rule], row[output]) for row in rows[1:]}


def rule_edges(dot: str) -> set[tuple[str, str]]:
    """``(upstream rule, downstream rule)`` pairs of ``--rulegraph``."""
    labels = dict(re.findall(r"^\s*(\d+)\[label = \"([^\"]+)\"", dot, re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}


def _dag(version: str, workspace: Path) -> dict[str, object]:
    dry = _snakemake(version, workspace, "-n", "-F", "--cores", "1")
    summary = _snakemake(version, workspace, "-F", "--cores", "1", "--summary")
    graph = _snakemake(version, workspace, "-F", "--rulegraph")
    return {"jobs": job_counts(dry.stdout + dry.stderr),
            "outputs": planned_outputs(summary.stdout),
            "edges": rule_edges(graph.stdout)}


def test_every_snakemake_reana_ships_builds_the_same_dag(workspace: Path) -> None:
    """Jobs per rule, every job's outputs and the rule graph agree across 7.32.4, 8.27.1, 9."""
    dags = {version: _dag(version, workspace) for version in SNAKEMAKES}
    local = dags.pop("local")
    assert sum(local["jobs"].values()) > 30 and local["edges"]  # the probes really parsed
    assert ("merge", "results/histograms.json") in local["outputs"]
    for version, dag in dags.items():
        for key in ("jobs", "outputs", "edges"):
            assert dag[key] == local[key], f"Snakemake {version} differs in {key}"


def test_engine_pythons_are_reanas() -> None:
    """The venvs that stand in for REANA's engines run the engines' Pythons."""
    for version, expected in ENGINE_PYTHONS.items():
        out = subprocess.run([str(_python(version)), "-c",
                              "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert tuple(map(int, out)) == expected, version


def engine_modules(workspace: Path) -> list[str]:
    """The repository modules the Snakefile imports, seen in REANA 0.9's engine (Python 3.8)."""
    result = _snakemake("7.32.4", workspace, "-n", "--cores", "1", "--quiet")
    [line] = [x for x in result.stdout.splitlines() if x.startswith("PUBFLOW-MODULES")]
    return line.split()[1:]


def test_engine_side_code_is_small_and_stdlib_only(workspace: Path) -> None:
    """The engine imports only ``steps`` and ``steps.layout``, which import no third party
    module but PyYAML (the engine images have nothing else)."""
    modules = engine_modules(workspace)
    assert modules == ["steps", "steps.layout"]
    for name in modules:
        path = REPO / (name.replace(".", "/") + ("/__init__.py" if name == "steps" else ".py"))
        imported = re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.M)
        assert set(imported) - {"__future__", "yaml", "steps"} <= set(sys.stdlib_module_names)


def _compiled_snakefiles(tmp: Path) -> list[Path]:
    """The Snakefile and every .smk file as the Python Snakemake 7.32.4 compiles them to.

    ``--print-compilation`` prints the whole translation, then runs it: a lone ``.smk`` file
    then fails on names its siblings define, which does not matter here.
    """
    out = []
    for source in [REPO / "Snakefile", *sorted((REPO / "workflows" / "rules").glob("*.smk"))]:
        compiled = subprocess.run(
            [str(SNAKEMAKES["7.32.4"] / "snakemake"), "-s", str(source), "--print-compilation"],
            cwd=REPO, capture_output=True, text=True).stdout
        ast.parse(compiled, str(source))
        assert len(compiled.splitlines()) >= len(source.read_text().splitlines()) / 2, source
        target = tmp / f"{source.name}.py"
        target.write_text(compiled)
        out.append(target)
    return out


def vermin_violations(paths: list[Path], eval_annotations: bool = True) -> str:
    """What vermin reports as needing more than Python 3.8 in ``paths`` ('' if nothing).

    Annotations count unless the files postpone them (``from __future__ import annotations``).
    """
    flag = "--eval-annotations" if eval_annotations else "--no-eval-annotations"
    result = subprocess.run([str(Path(sys.executable).parent / "vermin"), "-t=3.8-", "--no-tips",
                             "--violations", flag, *map(str, paths)],
                            capture_output=True, text=True)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_engine_side_code_meets_the_python_38_floor(workspace: Path, tmp_path: Path) -> None:
    """vermin (target 3.8) finds nothing newer in the compiled Snakefile, the .smk files and
    the modules they import; and Python 3.8 itself compiles those modules."""
    modules = [REPO / "steps" / "__init__.py", REPO / "steps" / "layout.py"]
    postponed = [m for m in modules if "from __future__ import annotations" in m.read_text()]
    assert vermin_violations(postponed, eval_annotations=False) == ""
    assert vermin_violations([m for m in modules if m not in postponed]
                             + _compiled_snakefiles(tmp_path)) == ""
    subprocess.run([str(_python("7.32.4")), "-m", "py_compile", *map(str, modules)], check=True)


def test_vermin_sees_code_newer_than_38(tmp_path: Path) -> None:
    """The floor check can fail: ``zip(strict=True)`` (3.10) and ``str.removeprefix`` (3.9)."""
    newer = tmp_path / "newer.py"
    newer.write_text("def f(a, b):\n"
                     "    return list(zip(a, b, strict=True)), 'x'.removeprefix('y')\n")
    report = vermin_violations([newer])
    assert "zip(strict)" in report and "removeprefix" in report
