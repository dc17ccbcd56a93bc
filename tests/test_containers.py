"""The step images and the REANA-like run: what REANA would do, proved before anyone submits.

- Locks: each image's hash-pinned lock agrees with pyproject.toml (offline, no resolver).
- Images (Docker): built from scratch by environments/build-images.sh; they carry exactly the
  lock's packages and the repository's steps/ code (reana-demo-bsm-search's drift check);
  every rule's image imports what the rule's command needs.
- The REANA-like run (environments/reana_local.py with REANA's Snakemake 7.32.4): the whole
  workflow, each job in its rule's image, in a workspace holding only what reana.yaml declares;
  its results equal the plain local run's. An undeclared input, an image missing a module and a
  job over its memory limit each fail naming the rule and the cause.

Tests that need Docker fail in CI (CI set) when it is missing, and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO, copy_checkout, declared_inputs, run

DOCKER = "/usr/bin/docker"
REANA_PYTHON = REPO / ".venv-reana" / "bin" / "python"
RUNNER = REPO / "environments" / "reana_local.py"
HERE = Path(__file__).resolve().parent / "containers"
BROKEN_PREFIX, BROKEN_TAG = "pubflow-test/broken", "test"


def _first_simulated() -> str:
    """The first simulated ntuple (results/simulate/<sample>.root): a one-job target."""
    from steps import layout

    config = yaml.safe_load((REPO / "inputs" / "analysis.yaml").read_text())
    return next(iter(layout.simulated_samples(config)))


SIMULATED = _first_simulated()


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


images = _load("pubflow_images", REPO / "environments" / "images.py")
reana_local = _load("pubflow_reana_local", RUNNER)


# --- Locks ---------------------------------------------------------------------------------


def _lock(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {version, hashes, via} for each pin of a `uv pip compile` lock."""
    pins: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][\w.-]*)==(\S+)", line):
            current = {"version": match.group(2), "hashes": [], "via": []}
            pins[canonicalize_name(match.group(1))] = current
        elif current is not None and (match := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            current["hashes"].append(match.group(1))
        elif (current is not None
              and (match := re.match(r"^\s+#\s+(?:via\s+)?(.+)$", line))
              and match.group(1).strip() != "via"):
            current["via"].append(match.group(1).strip())
    return pins


def _requirements(environment: str) -> tuple[list[Requirement], str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    if environment == "analysis":
        return [Requirement(r) for r in project["project"]["dependencies"]], "pyproject.toml"
    group = project["dependency-groups"][environment]
    return [Requirement(r) for r in group], f"pyproject.toml:{environment}"


@pytest.mark.parametrize("environment", images.environments())
def test_lock_agrees_with_pyproject(environment: str) -> None:
    """Same top-level names, each pin within pyproject's specifier, every pin hash-locked.

    Fails after a change to pyproject.toml until `bash environments/lock.sh` is re-run.
    """
    requirements, origin = _requirements(environment)
    pins = _lock(REPO / "environments" / environment / "requirements.lock")
    fix = "re-run `bash environments/lock.sh`"
    wanted = {canonicalize_name(r.name): r for r in requirements}
    top_level = {name for name, pin in pins.items() if f"pubflow ({origin})" in pin["via"]}
    assert set(wanted) - set(pins) == set(), f"in {origin} but not locked: {fix}"
    assert top_level - set(wanted) == set(), f"locked as from {origin} but not there: {fix}"
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pins[name]["version"], prereleases=True), (
            f"{name}=={pins[name]['version']} is outside {origin}'s {requirement}: {fix}")
    assert [name for name, pin in pins.items() if not pin["hashes"]] == []


def test_lock_parser_sees_a_disagreement(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("pyhf==0.7.5 \\\n    --hash=sha256:" + "0" * 64 + "\n"
                    "    # via pubflow (pyproject.toml)\n")
    pin = _lock(lock)["pyhf"]
    assert pin["via"] == ["pubflow (pyproject.toml)"]
    assert not Requirement("pyhf==0.7.6").specifier.contains(pin["version"])


# --- What the rules and the Dockerfiles say (no Docker) ------------------------------------


def _rules() -> dict[str, str]:
    """rule name -> its text, for every rule of workflows/rules/*.smk and the Snakefile."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflows" / "rules").glob("*.smk"))]:
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(),
                                 re.MULTILINE):
            blocks[match.group(1)] = match.group(2)
    return blocks


def test_every_rule_names_an_image_through_the_helper() -> None:
    """Each shell rule: `container: image("<env>")` for an env with a Dockerfile, and a memory
    limit. One prefix and tag for all of them (common.smk's Images config)."""
    environments = set(images.environments())
    for name, text in _rules().items():
        if "shell:" not in text:
            continue
        match = re.search(r"container:\s*\n\s*image\(\"(\w+)\"\)", text)
        assert match, f"rule {name}: its container: must be image(\"<environment>\")"
        assert match.group(1) in environments, f"rule {name}: no environments/{match.group(1)}/"
        assert "kubernetes_memory_limit=" in text, f"rule {name}: no kubernetes_memory_limit"


def test_image_names_follow_one_prefix_and_tag(tmp_path: Path) -> None:
    """Snakemake 7.32.4 (REANA's) gives every rule <Prefix>-<env>:<Tag>: the defaults by
    default, a fork's registry when the config says so."""
    script = (
        "import sys, json\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import reana_local\n"
        "from pathlib import Path\n"
        "src = Path(sys.argv[2])\n"
        "spec = reana_local.load_spec(src / 'reana.yaml')\n"
        "overrides = json.loads(sys.argv[3])\n"
        "print(json.dumps({r.name: r._container_img for r in "
        "reana_local.load_rules(src, spec, overrides) if r.shellcmd}))\n")
    checkout = copy_checkout(tmp_path)

    def rule_images(overrides: dict[str, Any]) -> dict[str, str]:
        result = run([str(REANA_PYTHON), "-c", script, str(REPO / "environments"),
                      str(checkout), json.dumps(overrides)], checkout)
        return json.loads(result.stdout.strip().splitlines()[-1])

    default = rule_images({})
    assert default, "no shell rule found"
    for name, container in default.items():
        env = re.search(r"-(\w+):", container).group(1)
        assert container == f"docker://{images.image(env)}", name
    assert images.image("analysis") == f"ghcr.io/pubflow/pubflow-analysis:{images.default_tag()}"
    fork = rule_images({"Images": {"Prefix": "registry.example.org/me/pf", "Tag": "x1"}})
    assert all(c.startswith("docker://registry.example.org/me/pf-") and c.endswith(":x1")
               for c in fork.values()), fork


def test_dockerfiles_install_only_their_lock_and_carry_no_local_certificate() -> None:
    for environment in images.environments():
        text = (REPO / "environments" / environment / "Dockerfile").read_text()
        assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE), environment
        assert f"environments/{environment}/requirements.lock" in text
        assert "--require-hashes" in text and "--no-deps" in text
        # The proxy's CA is baked into the locally made base only (build-images.sh).
        assert not re.search(r"ca-certificates/|\.crt\b|PIP_CERT|--trusted-host", text)
        assert "--pull" not in text


def test_runner_units() -> None:
    assert reana_local.memory_bytes("2Gi") == 2 * 2**30
    assert reana_local.memory_bytes("512M") == 512 * 10**6
    assert reana_local.memory_bytes("64Mi") == 64 * 2**20
    with pytest.raises(ValueError, match="memory quantity"):
        reana_local.memory_bytes("2 GB")
    assert "'numpy'" in reana_local.diagnose("ModuleNotFoundError: No module named 'numpy'")
    assert "mkdir" in reana_local.diagnose("bash: line 1: logs/x.log: No such file or directory")
    assert reana_local.python_modules("python -m steps.fit mle --x 1 2> {log}") == ["steps.fit"]
    modules = reana_local.imported_modules(REPO, "steps.fit")
    assert {"numpy", "pyhf", "steps.limits"} <= modules  # imports inside functions count
    assert not modules & {"os", "json", "__future__"}


def test_environment_scripts_pass_ruff() -> None:
    """test_style checks steps/ and tests/; the runner and helpers live in environments/."""
    ruff = Path(sys.executable).parent / "ruff"
    result = run([str(ruff), "check", "environments"], REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Docker: images built once per session -------------------------------------------------


def _docker_problem() -> str | None:
    if not os.access(DOCKER, os.X_OK):
        return f"{DOCKER} is missing (apt-get install docker.io; see environments/build-images.sh)"
    result = subprocess.run([DOCKER, "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return "the Docker daemon does not answer (bash environments/build-images.sh starts it)"
    if not REANA_PYTHON.exists():
        return "no .venv-reana (bash environments/setup.sh makes it)"
    return None


@pytest.fixture(scope="session")
def docker() -> str:
    problem = _docker_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Docker for the container tests: {problem}")
        pytest.skip(f"needs Docker: {problem}")
    return DOCKER


@pytest.fixture(scope="session")
def built_images(docker: str) -> dict[str, str]:
    """Every step image, (re)built from the current code and locks (cached layers reused)."""
    result = subprocess.run(["bash", str(REPO / "environments" / "build-images.sh")],
                            cwd=REPO, capture_output=True, text=True, check=False, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {env: images.image(env) for env in images.environments()}


@pytest.fixture(scope="session")
def broken_image(built_images: dict[str, str]) -> Iterator[str]:
    """An 'analysis' image with the code but without its packages (removed afterwards)."""
    tag = f"{BROKEN_PREFIX}-analysis:{BROKEN_TAG}"
    result = subprocess.run(
        f"tar -c --exclude=__pycache__ steps tests/containers/broken | {DOCKER} build -q "
        f"-f tests/containers/broken/Dockerfile -t {tag} -",
        shell=True, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    yield tag
    _docker("image", "rm", "-f", tag)


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=False)


def _runner(*args: str, cwd: Path = REPO, timeout: float = 900
            ) -> subprocess.CompletedProcess[str]:
    return run([str(REANA_PYTHON), str(RUNNER), *args], cwd, check=False, timeout=timeout)


@pytest.mark.parametrize("environment", images.environments())
def test_image_code_matches_repository(built_images: dict[str, str], environment: str) -> None:
    """The drift check of reana-demo-bsm-search's CI: `diff -r` the baked code and ours."""
    result = _docker("run", "--rm", "--pull=never", "--network=none",
                     "--volume", f"{REPO / 'steps'}:/newcode:ro", built_images[environment],
                     "diff", "-r", "-x", "__pycache__", "-x", "*.pyc",
                     "/opt/pubflow/steps", "/newcode")
    assert result.returncode == 0, (
        f"{built_images[environment]} carries other steps/ code than the repository: rebuild "
        f"with `bash environments/build-images.sh`\n{result.stdout[-3000:]}{result.stderr}")
    labels = json.loads(_docker("image", "inspect", "-f", "{{json .Config.Labels}}",
                                built_images[environment]).stdout)
    assert labels["org.opencontainers.image.version"] == images.default_tag()
    assert labels["pubflow.environment"] == environment


@pytest.mark.parametrize("environment", images.environments())
def test_image_carries_exactly_its_lock(built_images: dict[str, str], environment: str) -> None:
    pins = _lock(REPO / "environments" / environment / "requirements.lock")
    result = _docker("run", "--rm", "--pull=never", "--network=none", built_images[environment],
                     "python", "-c", "import importlib.metadata as m, json; print(json.dumps("
                     "{d.metadata['Name']: d.version for d in m.distributions()}))")
    assert result.returncode == 0, result.stderr
    installed = {canonicalize_name(k): v for k, v in json.loads(result.stdout).items()}
    for name, pin in pins.items():
        assert installed.get(name) == pin["version"], f"{name}: image {installed.get(name)}"


def test_analysis_image_has_bash_and_imagemagick(built_images: dict[str, str]) -> None:
    result = _docker("run", "--rm", "--pull=never", "--network=none", built_images["analysis"],
                     "bash", "-c", "convert -version")
    assert result.returncode == 0 and "ImageMagick" in result.stdout, result.stderr


def test_every_rule_image_imports_what_its_command_needs(built_images: dict[str, str]) -> None:
    result = _runner("check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"check: \d+ rules in \d+ images: OK", result.stderr)


def test_check_names_rule_and_module_an_image_lacks(broken_image: str) -> None:
    result = _runner("check", "--config",
                     f"Images={{Prefix: {BROKEN_PREFIX}, Tag: {BROKEN_TAG}}}")
    assert result.returncode == 1
    assert re.search(rf"rule simulate: {re.escape(broken_image)} cannot import numpy: the image "
                     r"lacks the Python module 'numpy'", result.stderr), result.stderr[-3000:]


# --- Runs like REANA -----------------------------------------------------------------------


def _remove(path: Path) -> None:
    """Remove a workspace whose files the jobs wrote as another uid; fail if that is not
    possible (the runner gives them the invoking user's uid unless that is root)."""
    shutil.rmtree(path)
    assert not path.exists()


@pytest.fixture(scope="session")
def reana_run(built_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """The whole workflow, run like REANA (which creates no directories for a job)."""
    workspace = tmp_path_factory.mktemp("reana") / "workspace"
    result = _runner("run", "--workspace", str(workspace), timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    yield workspace, result
    _remove(workspace)


def _close(a: Any, b: Any, path: str = "") -> None:
    """Equal structure and strings; numbers within floating-point tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (
            math.isnan(a) and math.isnan(b)), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_reana_like_run_used_reanas_snakemake_and_images(
        reana_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workspace, result = reana_run
    assert "Snakemake 7.32.4" in result.stderr
    jobs = re.findall(r"reana-local: job \d+ \((\w+)\) in (\S+),", result.stderr)
    assert {"simulate", "select", "merge", "model", "fit", "limit", "limits", "hepdata",
            "validate"} <= {rule for rule, _ in jobs}
    assert {image for _, image in jobs} == {images.image("analysis")}
    assert len(re.findall(r"exited 0 after", result.stderr)) == len(jobs)
    files, dirs = declared_inputs()
    present = {p.name for p in workspace.iterdir()}
    assert present <= {*(Path(n).parts[0] for n in files + dirs), "results", "logs",
                       ".snakemake"}, present


def test_reana_like_run_equals_local_run(
        reana_run: tuple[Path, subprocess.CompletedProcess[str]], workflow_run: Path) -> None:
    import pyhf

    workspace, _ = reana_run
    spec = yaml.safe_load((REPO / "reana.yaml").read_text())
    for name in spec["outputs"]["files"]:
        assert (workspace / name).is_file(), name
    local_hists = sorted(p.relative_to(workflow_run) for p in
                         (workflow_run / "results" / "histograms").glob("*.npz"))
    assert local_hists
    assert local_hists == sorted(p.relative_to(workspace) for p in
                                 (workspace / "results" / "histograms").glob("*.npz"))
    for name in local_hists:
        with np.load(workflow_run / name) as a, np.load(workspace / name) as b:
            assert a.files == b.files, name
            for key in a.files:
                assert np.array_equal(a[key], b[key]), f"{name}:{key}"
    for name in ["results/histograms.json", "results/model/workspace.json",
                 "results/model/patchset.json"]:
        a, b = (json.loads((root / name).read_text()) for root in (workflow_run, workspace))
        assert pyhf.utils.digest(a) == pyhf.utils.digest(b), name
    for name in ["results/fit/results.json", "results/fit/limits.json"]:
        _close(*(json.loads((root / name).read_text()) for root in (workflow_run, workspace)),
               path=name)
    report = json.loads((workspace / "results/validation/report.json").read_text())
    assert report["valid"] is True


def test_undeclared_input_fails_naming_rule_and_file(tmp_path: Path,
                                                     built_images: dict[str, str]) -> None:
    """reana.yaml declaring inputs/*.yaml but not inputs/data/: the data file never reaches
    the workspace, and the run says which rule needs it and what to declare."""
    source = copy_checkout(tmp_path / "checkout")
    spec = yaml.safe_load((source / "reana.yaml").read_text())
    spec["inputs"]["directories"] = [d for d in spec["inputs"]["directories"] if d != "inputs"]
    spec["inputs"]["files"] += ["inputs/analysis.yaml", "inputs/datasets.yaml"]
    (source / "reana.yaml").write_text(yaml.safe_dump(spec))
    result = _runner("run", "--source", str(source), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 1
    assert re.search(r"FAILED rule select: inputs/data/uproot-Zmumu\.root exists in the "
                     r"checkout but reana\.yaml does not declare it", result.stderr), (
        result.stderr[-3000:])
    _remove(tmp_path / "ws")


def test_image_missing_a_module_fails_naming_rule_and_module(broken_image: str,
                                                             tmp_path: Path) -> None:
    result = _runner("run", "--workspace", str(tmp_path / "ws"), "--config",
                     f"Images={{Prefix: {BROKEN_PREFIX}, Tag: {BROKEN_TAG}}}",
                     SIMULATED)
    assert result.returncode == 1
    assert re.search(rf"FAILED rule simulate \(job \d+\): exit code 1 in "
                     rf"{re.escape(broken_image)}: the image lacks the Python module '\w+'",
                     result.stderr), result.stderr[-3000:]
    _remove(tmp_path / "ws")


def test_memory_limit_exceeded_fails_naming_rule_and_limit(built_images: dict[str, str],
                                                           tmp_path: Path) -> None:
    result = _runner("run", "--source", str(HERE / "oom"), "--workspace", str(tmp_path / "ws"),
                     "--config", f"image=docker://{built_images['analysis']}")
    assert result.returncode == 1
    assert re.search(r"FAILED rule hog \(job \d+\): exceeded its memory limit "
                     r"\(kubernetes_memory_limit=64Mi\)", result.stderr), result.stderr[-3000:]
    assert not (tmp_path / "ws" / "results" / "hog.txt").exists()  # failed output removed
    assert _docker("ps", "-aq", "--filter", "name=pubflow-reana-").stdout.strip() == ""
    _remove(tmp_path / "ws")
