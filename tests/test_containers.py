"""The step images and the REANA-like run: what REANA would do, proved before anyone submits.

- Locks: each image's hash-pinned lock agrees with pyproject.toml (offline, no resolver).
- Images (Docker): built from scratch by environments/build-images.sh; they carry exactly the
  lock's packages and the repository's steps/ code (reana-demo-bsm-search's drift check);
  every rule's image imports what the rule's command needs.
- The REANA-like run (environments/reana_local.py with REANA's Snakemake 7.32.4): the whole
  workflow, each job in its rule's image, in a workspace holding only what reana.yaml declares;
  its results equal the plain local run's. An undeclared input, an image missing a module and a
  job over its memory limit each fail naming the rule and the cause.
- The runner against REANA's own rules (tiny workflows, except the one full run): jobs run as
  uid 1000, gid 0 with REANA_WORKSPACE, REANA_WORKFLOW_UUID and the --secret variables; the
  workspace holds what reana-client's own upload keeps (.gitignore / .reanaignore); memory
  limits are accepted or refused as reana-commons' tests say REANA does; a failure is read
  from the job's stdout/stderr, never from its log: file.

Tests that need Docker fail in CI (CI set) when it is missing, and are skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO, copy_checkout, declared_inputs, read_config, run, venv_env

DOCKER = "/usr/bin/docker"
REANA_PYTHON = REPO / ".venv-reana" / "bin" / "python"
RUNNER = REPO / "environments" / "reana_local.py"
HERE = Path(__file__).resolve().parent / "containers"
BROKEN_PREFIX, BROKEN_TAG = "pubflow-test/broken", "test"


def _first_simulated() -> str:
    """The first simulated ntuple (results/simulate/<sample>.root): a one-job target."""
    from steps import layout

    return next(iter(layout.simulated_samples(read_config(REPO))))


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
    """Each shell rule: `container: image("<env>")` for an env with a Dockerfile, and its
    memory and runtime stated once through common.smk's job_resources (read by REANA and by
    Snakemake's executor plugins alike: tests/test_executors.py). One prefix and tag for all of
    them (common.smk's Images config)."""
    environments = set(images.environments())
    for name, text in _rules().items():
        if "shell:" not in text:
            continue
        match = re.search(r"container:\s*\n\s*image\(\"(\w+)\"\)", text)
        assert match, f"rule {name}: its container: must be image(\"<environment>\")"
        assert match.group(1) in environments, f"rule {name}: no environments/{match.group(1)}/"
        assert re.search(r'\*\*job_resources\("\d+[MG]i", runtime=\d+\)', text), \
            f"rule {name}: resources must be **job_resources(\"<memory>\", runtime=<minutes>)"


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
    assert "'numpy'" in reana_local.diagnose("ModuleNotFoundError: No module named 'numpy'")
    assert "mkdir" in reana_local.diagnose("bash: line 1: logs/x.log: No such file or directory")
    assert reana_local.python_modules("python -m steps.fit mle --x 1 2> {log}") == ["steps.fit"]
    modules = reana_local.imported_modules(REPO, "steps.fit")
    assert {"numpy", "pyhf", "steps.limits"} <= modules  # imports inside functions count
    assert not modules & {"os", "json", "__future__"}


def test_runner_runs_on_reanas_python() -> None:
    """REANA 0.9's engine runs Python 3.8: so does the runner (.venv-reana); vermin checks the
    floor (it cannot see every method, e.g. str.removeprefix: the runner's own tests run it
    under 3.8 too)."""
    vermin = Path(sys.executable).parent / "vermin"
    result = run([str(vermin), "-t=3.8-", "--no-tips", "--violations", str(RUNNER)], REPO,
                 check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_environment_scripts_pass_ruff() -> None:
    """test_style checks steps/ and tests/; the runner and helpers live in environments/."""
    ruff = Path(sys.executable).parent / "ruff"
    result = run([str(ruff), "check", "environments"], REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- The runner against REANA's own rules (REANA's Python 3.8, no Docker) -----------------


@pytest.fixture(scope="session")
def reana_python() -> Path:
    if not REANA_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs .venv-reana (bash environments/setup.sh makes it)")
        pytest.skip("needs .venv-reana (bash environments/setup.sh makes it)")
    return REANA_PYTHON


def _in_reana_python(script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``script`` with the runner imported as ``r`` in REANA's Python; its printed JSON."""
    prelude = (f"import json, sys\nsys.path.insert(0, {str(RUNNER.parent)!r})\n"
               "import reana_local as r\n")
    result = subprocess.run([str(REANA_PYTHON), "-c", prelude + script, *args],
                            capture_output=True, text=True, check=False, timeout=120,
                            env=env if env is not None else dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# reana-commons 0.9.4 tests/test_job_utils.py, test_validate_kubernetes_memory_format: the
# values REANA's own tests say validate_kubernetes_memory accepts and refuses.
REANA_MEMORY_FORMATS = [
    ("2048", True), ("100K", True), ("8Mi", True), ("1.5Gi", True), ("7Gi", True),
    ("1.9T", True), ("3T", True), ("50Pi", True), ("2Ei", True), ("1E", True),
    ("1.33E", True), ("2KI", False), ("4096KiB", False), ("8Kib", False), ("8Mb", False),
    ("2GB", False), ("50Tb", False), ("24Exabyte", False), ("10i", False)]
# reana-job-controller 0.9.4 kubernetes_job_manager.py, KubernetesJobManager.set_memory_limit:
# refused when kubernetes_memory_to_bytes(value) > kubernetes_memory_to_bytes(maximum); a value
# that is not a string never gets there (schemas.py JobRequest: fields.Str); no value (None,
# "") is not checked at all.
REANA_MEMORY_MAXIMA = [
    ("2Gi", "2Gi", True),        # equal is not above
    ("2147483648", "2Gi", True),  # bytes, equal
    ("2147483649", "2Gi", False),
    ("2049Mi", "2Gi", False),
    ("2G", "2Gi", True),          # 2e9 < 2**31
    ("2.2G", "2Gi", False),       # 2.2e9 > 2**31
    ("1T", "2Gi", False),
    ("64Mi", None, True),
    ("8Ei", None, True),          # no maximum: REANA's default
]


def test_memory_limits_follow_reanas_rules(reana_python: Path) -> None:
    cases = ([[value, None] for value, _ in REANA_MEMORY_FORMATS]
             + [[value, maximum] for value, maximum, _ in REANA_MEMORY_MAXIMA]
             + [[2048, None], [1.5, None], [None, "1Gi"], ["", "1Gi"]])
    script = ("cases = json.loads(sys.argv[1])\n"
              "print(json.dumps([r.memory_limit_problem(v, m) for v, m in cases]))\n")
    problems = _in_reana_python(script, json.dumps(cases))
    formats = problems[:len(REANA_MEMORY_FORMATS)]
    maxima = problems[len(REANA_MEMORY_FORMATS):len(REANA_MEMORY_FORMATS) + len(
        REANA_MEMORY_MAXIMA)]
    for (value, accepted), problem in zip(REANA_MEMORY_FORMATS, formats, strict=True):
        assert (problem is None) == accepted, (value, problem)
        if not accepted:
            assert "wrong format" in problem, problem
    for (value, maximum, accepted), problem in zip(REANA_MEMORY_MAXIMA, maxima, strict=True):
        assert (problem is None) == accepted, (value, maximum, problem)
        if not accepted:
            assert f"exceeds the maximum {maximum}" in problem, problem
    not_strings, unset = problems[-4:-2], problems[-2:]
    assert all(p and "not a string" in p for p in not_strings), not_strings
    assert unset == [None, None]


def test_memory_defaults_are_reanas(reana_python: Path) -> None:
    """No --max-memory: the cluster variable REANA's job controller reads, else no maximum
    (the Helm chart's kubernetes_jobs_max_user_memory_limit: None); a rule without a limit
    gets 4Gi (kubernetes_jobs_memory_limit's default). The refusal names rule and value."""
    script = ("import argparse\n"
              "a = argparse.Namespace(default_memory=None, max_memory=None)\n"
              "b = argparse.Namespace(default_memory=None, max_memory='1Gi')\n"
              "print(json.dumps([r.memory_settings(a), r.memory_settings(b),"
              " r.memory_refusal('hog', '2 GB', None), r.memory_refusal('hog', '3Gi', '2Gi'),"
              " r.memory_refusal('hog', '2Gi', '2Gi')]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REANA_KUBERNETES_")}
    plain, flag, bad, big, fine = _in_reana_python(script, env=env)
    assert plain == ["4Gi", None] and flag == ["4Gi", "1Gi"]
    assert bad.startswith("rule hog: REANA refuses kubernetes_memory_limit='2 GB': wrong format")
    assert big.startswith("rule hog: REANA refuses kubernetes_memory_limit='3Gi': exceeds the "
                          "maximum 2Gi")
    assert fine is None
    cluster = _in_reana_python(script, env={
        **env, "REANA_KUBERNETES_JOBS_MAX_USER_MEMORY_LIMIT": "8Gi",
        "REANA_KUBERNETES_JOBS_MEMORY_LIMIT": "2Gi"})
    assert cluster[0] == ["2Gi", "8Gi"] and cluster[1] == ["2Gi", "1Gi"]


def _tiny_source(root: Path, snakefile: str, directories: tuple[str, ...] = ()) -> Path:
    """A throwaway checkout: a Snakefile and a reana.yaml declaring it (and ``directories``)."""
    root.mkdir(parents=True)
    (root / "Snakefile").write_text(snakefile)
    spec = {"version": "0.9.0", "inputs": {"files": ["Snakefile"]},
            "workflow": {"type": "snakemake", "file": "Snakefile"}}
    if directories:
        spec["inputs"]["directories"] = list(directories)
    (root / "reana.yaml").write_text(yaml.safe_dump(spec))
    return root


def _data_with_ignored_files(source: Path) -> None:
    """``data/`` with a .gitignore'd file, a .reanaignore'd directory and a symbolic link."""
    (source / "data" / "private").mkdir(parents=True)
    (source / "data" / "keep.txt").write_text("keep\n")
    (source / "data" / "scratch.tmp").write_text("scratch\n")
    (source / "data" / "private" / "token.txt").write_text("private\n")
    (source / "data" / "link.txt").symlink_to("keep.txt")
    (source / ".gitignore").write_text("*.tmp\n")
    (source / ".reanaignore").write_text("data/private/\n")


def test_workspace_holds_what_reana_client_uploads(reana_python: Path, tmp_path: Path) -> None:
    """reana-client's own upload command decides: .gitignore and .reanaignore matches in a
    declared directory stay out, symbolic links too; the specification file goes in (as
    `reana-client create` uploads it); files are written as REANA's server writes them, under
    REANA's umask 0002 (group-writable, no executable bit kept)."""
    source = _tiny_source(tmp_path / "src", "rule all:\n    input: []\n", ("data",))
    _data_with_ignored_files(source)
    (source / "data" / "run.sh").write_text("#!/bin/sh\n")
    (source / "data" / "run.sh").chmod(0o755)
    script = ("from pathlib import Path\n"
              "src, ws = Path(sys.argv[1]), Path(sys.argv[2])\n"
              "r.make_workspace(src, r.load_spec(src / 'reana.yaml'), ws)\n"
              "print(json.dumps({str(p.relative_to(ws)): oct(p.stat().st_mode & 0o7777)"
              " for p in ws.rglob('*')}))\n")
    modes = _in_reana_python(script, str(source), str(tmp_path / "ws"))
    assert sorted(modes) == ["Snakefile", "data", "data/keep.txt", "data/run.sh",
                             "reana.yaml"], modes
    assert modes["data"] == "0o775" and modes["data/run.sh"] == "0o664", modes

    # A workflow file that nothing uploads: REANA's engine could not read it.
    (source / "reana.yaml").write_text(yaml.safe_dump({
        "version": "0.9.0", "inputs": {"directories": ["data"]},
        "workflow": {"type": "snakemake", "file": "Snakefile"}}))
    result = subprocess.run(
        [str(REANA_PYTHON), "-c", ("import sys; sys.path.insert(0, sys.argv[1]); "
         "import reana_local as r; from pathlib import Path; src = Path(sys.argv[2]); "
         "r.make_workspace(src, r.load_spec(src / 'reana.yaml'), Path(sys.argv[3]))"),
         str(RUNNER.parent), str(source), str(tmp_path / "ws2")],
        capture_output=True, text=True, check=False, timeout=120)
    assert "does not declare the workflow file Snakefile" in result.stderr, result.stderr[-2000:]


def test_secret_must_be_set_and_is_passed_by_name(reana_python: Path) -> None:
    script = ("args = r.secret_arguments(['PUBFLOW_T', 'PUBFLOW_T'], {'PUBFLOW_T': 'v4lue'})\n"
              "errors = []\n"
              "for name in ['PUBFLOW_MISSING', 'REANA_WORKSPACE', 'A-B']:\n"
              "    try:\n"
              "        r.secret_arguments([name], {'REANA_WORKSPACE': 'x', 'A-B': 'y'})\n"
              "    except r.ReanaLocalError as err:\n"
              "        errors.append(str(err))\n"
              "print(json.dumps([args, errors]))\n")
    args, errors = _in_reana_python(script)
    assert args == ["--env", "PUBFLOW_T"]  # Docker copies the value from its environment
    assert len(errors) == 3 and "not set in this environment" in errors[0], errors


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


def _header(stderr: str) -> tuple[int, int, str]:
    """uid, gid and REANA_WORKFLOW_UUID of a run, from the runner's first line."""
    match = re.search(r"jobs as uid (\d+), gid (\d+).*, REANA_WORKFLOW_UUID=([0-9a-f-]{36})",
                      stderr)
    assert match, stderr[:3000]
    return int(match.group(1)), int(match.group(2)), match.group(3)


def _owners(workspace: Path, under: str) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in (workspace / under).rglob("*")}


def test_reana_like_run_used_reanas_snakemake_and_images(
        reana_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workspace, result = reana_run
    assert "Snakemake 7.32.4" in result.stderr
    uid, gid, workflow_uuid = _header(result.stderr)
    assert (uid, gid) == (1000, 0)  # REANA's runtime user, as root or not
    assert uuid.UUID(workflow_uuid).version == 4
    if os.geteuid() == 0:  # as REANA: the workspace is uid 1000's, group 0, engine's files too
        assert _owners(workspace, ".") == {(1000, 0)}
    jobs = re.findall(r"reana-local: job \d+ \((\w+)\) in (\S+),", result.stderr)
    rules = {rule for rule, _ in jobs}
    assert {"simulate", "merge", "model", "fit", "limit", "limits", "hepdata",
            "validate"} <= rules, rules
    assert any(rule.startswith("select_") for rule in rules), rules  # one rule per sample
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


# Jobs as REANA's runtime user with REANA's variables and a secret; a failure read from the
# job's stderr (what `reana-client logs` shows), not from its log: file. `probe` runs first.
PROBE_SNAKEFILE = """\
rule all:
    default_target: True
    input:
        "results/fail.txt",


rule probe:
    output:
        "results/probe.txt",
    container:
        config["image"]
    resources:
        kubernetes_memory_limit="64Mi",
    shell:
        "mkdir -p results && (id -u; id -g; echo $REANA_WORKSPACE; echo $REANA_WORKFLOW_UUID;"
        " printf %s \\"$PUBFLOW_TEST_SECRET\\" | sha256sum | cut -d' ' -f1; ls -A data)"
        " > {output} && echo 'probe: on stderr' >&2"


rule fail:
    input:
        "results/probe.txt",
    output:
        "results/fail.txt",
    log:
        "logs/fail.log",
    container:
        config["image"]
    resources:
        kubernetes_memory_limit="64Mi",
    shell:
        "mkdir -p logs && echo 'detail only in the log file' > {log}"
        " && echo 'RuntimeError: only on stderr' >&2 && exit 3"
"""


def test_jobs_run_as_reana_user_with_reanas_variables_and_secrets(
        built_images: dict[str, str], tmp_path: Path) -> None:
    source = _tiny_source(tmp_path / "src", PROBE_SNAKEFILE, ("data",))
    _data_with_ignored_files(source)
    secret = f"pubflow-secret-{uuid.uuid4().hex}"
    workspace, logs = tmp_path / "ws", tmp_path / "job-logs"
    result = subprocess.run(
        [str(REANA_PYTHON), str(RUNNER), "run", "--source", str(source), "--workspace",
         str(workspace), "--job-logs", str(logs), "--secret", "PUBFLOW_TEST_SECRET",
         "--config", f"image=docker://{built_images['analysis']}"], cwd=REPO,
        env={**venv_env(), "PUBFLOW_TEST_SECRET": secret}, capture_output=True, text=True,
        check=False, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    uid, gid, workflow_uuid = _header(result.stderr)
    seen = (workspace / "results" / "probe.txt").read_text().splitlines()
    assert seen[:4] == ["1000", "0", str(workspace.resolve()), workflow_uuid], seen
    assert (uid, gid) == (1000, 0) and uuid.UUID(workflow_uuid).version == 4
    assert seen[4] == hashlib.sha256(secret.encode()).hexdigest()  # the job saw the secret
    assert seen[5:] == ["keep.txt"]  # reana-client's upload left the ignored files out
    if os.geteuid() == 0:
        assert _owners(workspace, ".") == {(1000, 0)}
    failed = re.findall(r"FAILED (rule fail .*)", result.stderr)
    assert [re.sub(r" \(job \d+\)", "", line) for line in failed] == [
        f"rule fail: exit code 3 in {built_images['analysis']}: RuntimeError: only on stderr"]
    assert "probe: on stderr" in next(logs.glob("probe-*.log")).read_text()
    assert (workspace / "logs" / "fail.log").read_text() == "detail only in the log file\n"
    snakemake_logs = "".join(p.read_text() for p in (workspace / ".snakemake").rglob("*.log"))
    for text in (result.stdout, result.stderr, snakemake_logs,
                 *(p.read_text() for p in logs.iterdir())):
        assert secret not in text
    _remove(workspace)


MEMORY_SNAKEFILE = "".join(f"""
rule {name}:
    output:
        "results/{name}.txt",
    container:
        config["image"]
    resources:
        kubernetes_memory_limit="{limit}",
    shell:
        "mkdir -p results && touch {{output}}"
""" for name, limit in (("bad", "2 GB"), ("big", "3Gi"), ("fine", "2Gi")))


def test_memory_limit_refused_by_check_and_run(built_images: dict[str, str],
                                               tmp_path: Path) -> None:
    """A limit in the wrong format or above --max-memory: one line naming rule and value, in
    check and when the job is submitted (where REANA's job controller refuses it)."""
    source = _tiny_source(tmp_path / "src", "rule all:\n    input:\n        "
                          "'results/bad.txt', 'results/big.txt'\n" + MEMORY_SNAKEFILE)
    image = ["--config", f"image=docker://{built_images['analysis']}", "--max-memory", "2Gi"]
    bad = "rule bad: REANA refuses kubernetes_memory_limit='2 GB': wrong format"
    big = "rule big: REANA refuses kubernetes_memory_limit='3Gi': exceeds the maximum 2Gi"
    checked = _runner("check", "--source", str(source), *image)
    assert checked.returncode == 1
    assert bad in checked.stderr and big in checked.stderr, checked.stderr[-3000:]
    assert "rule fine" not in checked.stderr
    ran = _runner("run", "--source", str(source), "--workspace", str(tmp_path / "ws"), *image)
    assert ran.returncode == 1
    failed = sorted(re.sub(r" \(job \d+\)", "", line)
                    for line in re.findall(r"FAILED (rule .*)", ran.stderr))
    assert len(failed) == 2 and failed[0].startswith(bad) and failed[1].startswith(big), failed
    _remove(tmp_path / "ws")


def test_undeclared_input_fails_naming_rule_and_file(tmp_path: Path,
                                                     built_images: dict[str, str]) -> None:
    """reana.yaml declaring inputs/*.yaml but not inputs/data/: the data file never reaches
    the workspace, and the run says which rule needs it and what to declare."""
    source = copy_checkout(tmp_path / "checkout")
    spec = yaml.safe_load((source / "reana.yaml").read_text())
    spec["inputs"]["directories"] = [d for d in spec["inputs"]["directories"] if d != "inputs"]
    spec["inputs"]["files"] += ["inputs/pubflow.yaml", "inputs/analysis.yaml",
                               "inputs/datasets.yaml"]
    (source / "reana.yaml").write_text(yaml.safe_dump(spec))
    result = _runner("run", "--source", str(source), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 1
    assert re.search(r"FAILED rule select\w*: inputs/data/uproot-Zmumu\.root exists in the "
                     r"checkout but reana\.yaml does not declare it", result.stderr), (
        result.stderr[-3000:])
    _remove(tmp_path / "ws")


def test_image_missing_a_module_fails_naming_rule_and_module(broken_image: str,
                                                             tmp_path: Path) -> None:
    result = _runner("run", "--workspace", str(tmp_path / "ws"), "--config",
                     f"Images={{Prefix: {BROKEN_PREFIX}, Tag: {BROKEN_TAG}}}",
                     SIMULATED)
    assert result.returncode == 1
    # The first job of the target's chain fails (the workflow's config rule, then simulate).
    assert re.search(rf"FAILED rule \w+ \(job \d+\): exit code 1 in "
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
