"""The GitHub Actions workflows: images a cluster can pull, and the test suite on every push.

- `.github/workflows/images.yml` builds every step image with `environments/build-images.sh`
  and pushes it to ghcr.io under the owner's prefix at the package version. Its `plan` step,
  the one that reads the version, checks the tag and lists the environments, is executed here
  as GitHub's runner would (bash, its GITHUB_* variables), on this checkout and on mutated
  copies; its version is compared with the tag Snakemake gives every rule's `container:`.
- `.github/workflows/tests.yml` runs `.ci/run` on push and pull request, with the Pythons that
  `environments/setup.sh` asks for.
- Every `uses:` of both is pinned to a full commit SHA, with its version in a comment.

Offline, no Docker; a few seconds (Snakemake 7.32.4 reads the rules once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, copy_checkout, run

WORKFLOWS = REPO / ".github" / "workflows"
IMAGES_YML = WORKFLOWS / "images.yml"
TESTS_YML = WORKFLOWS / "tests.yml"
REANA_PYTHON = REPO / ".venv-reana" / "bin" / "python"
BUILD_SCRIPT = REPO / "environments" / "build-images.sh"
# What the plan step reads: the files a checkout of the repository holds for it.
PLAN_INPUTS = ["environments/images.py", "steps/__init__.py", "pyproject.toml",
               "workflows/rules/common.smk"]
# "owner/name@<40 hex>  # v1.2.3"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S.*))?$")


# --- helpers -------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    """A workflow file, with `on:` under "on" (YAML 1.1 reads the bare key as True)."""
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def step(workflow: dict[str, Any], job: str, step_id: str) -> dict[str, Any]:
    """The step of ``job`` whose ``id`` is ``step_id``."""
    matches: list[dict[str, Any]] = [s for s in workflow["jobs"][job]["steps"]
                                     if s.get("id") == step_id]
    assert len(matches) == 1, f"job {job}: no single step with id {step_id}"
    return matches[0]


def runs(workflow: dict[str, Any], job: str) -> list[str]:
    """The `run:` scripts of ``job``, in order."""
    return [s["run"] for s in workflow["jobs"][job]["steps"] if "run" in s]


def run_plan(checkout: Path, tmp_path: Path, *, owner: str = "pubflow",
             ref_type: str = "branch", ref_name: str = "main"
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Execute images.yml's `plan` step in ``checkout`` as a runner would (`shell: bash`):
    the process, and what it wrote to $GITHUB_OUTPUT."""
    workflow = load(IMAGES_YML)
    script = step(workflow, "plan", "plan")["run"]
    assert "${{" not in script, "the plan step must read only environment variables"
    assert workflow["defaults"]["run"]["shell"] == "bash"
    (tmp_path / "plan.sh").write_text(script)
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    output.write_text("")
    env = {
        # python3 is the test interpreter (3.11), as setup-python makes it on the runner
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONDONTWRITEBYTECODE": "1",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_REPOSITORY_OWNER": owner,
        "GITHUB_REF_TYPE": ref_type,
        "GITHUB_REF_NAME": ref_name,
    }
    # GitHub's command line for `shell: bash`
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                             str(tmp_path / "plan.sh")], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if line)
    return result, outputs


def plan_checkout(dest: Path, version: str | None = None,
                  project_version: str | None = None) -> Path:
    """A copy of what the plan step reads (and the Dockerfiles), optionally with
    ``steps.__version__`` and pyproject.toml's version changed."""
    for name in [*PLAN_INPUTS, *(str(p.relative_to(REPO)) for p in
                                 (REPO / "environments").glob("*/Dockerfile"))]:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    if version is not None:
        init = dest / "steps" / "__init__.py"
        text, n = re.subn(r'^__version__ = "[^"]+"', f'__version__ = "{version}"',
                          init.read_text(), flags=re.MULTILINE)
        assert n == 1
        init.write_text(text)
    if project_version is not None:
        pyproject = dest / "pyproject.toml"
        text, n = re.subn(r'^version = "[^"]+"', f'version = "{project_version}"',
                          pyproject.read_text(), count=1, flags=re.MULTILINE)
        assert n == 1
        pyproject.write_text(text)
    return dest


def pin_problems(text: str) -> list[str]:
    """Every `uses:` of a workflow's text that is not `owner/repo@<40-hex SHA>  # vX...`."""
    problems = []
    lines = [m for line in text.splitlines() if (m := USES_LINE.match(line))]
    parsed = yaml.safe_load(text)
    every_uses = [s["uses"] for job in parsed["jobs"].values() for s in job.get("steps", [])
                  if "uses" in s]
    every_uses += [job["uses"] for job in parsed["jobs"].values() if "uses" in job]
    if sorted(m["ref"] for m in lines) != sorted(every_uses):
        problems.append(f"uses: lines {[m['ref'] for m in lines]} != parsed {every_uses}")
    for m in lines:
        if not PINNED.match(m["ref"]):
            problems.append(f"{m['ref']}: not pinned to a full commit SHA")
        if not (m["comment"] and re.match(r"v\d+(\.\d+)*$", m["comment"])):
            problems.append(f"{m['ref']}: no version comment (# vX.Y.Z)")
    return problems


RULE_IMAGES = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import reana_local\n"
    "src = Path(sys.argv[2])\n"
    "spec = reana_local.load_spec(src / 'reana.yaml')\n"
    "print(json.dumps({r.name: r._container_img for r in "
    "reana_local.load_rules(src, spec, {}) if r.shellcmd}))\n")


def rule_images(tmp_path: Path) -> dict[str, str]:
    """Every shell rule's `container:`, as Snakemake 7.32.4 (REANA 0.9's) gives it in the
    REANA workspace of this checkout: tests/test_containers.py's mechanism."""
    assert REANA_PYTHON.exists(), "no .venv-reana: run `bash environments/setup.sh`"
    checkout = copy_checkout(tmp_path / "workspace")
    result = run([str(REANA_PYTHON), "-c", RULE_IMAGES, str(REPO / "environments"),
                  str(checkout)], checkout)
    images: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert images, "no shell rule found"
    return images


@pytest.fixture(scope="module")
def images_yml() -> dict[str, Any]:
    """images.yml, parsed."""
    return load(IMAGES_YML)


@pytest.fixture(scope="module")
def tests_yml() -> dict[str, Any]:
    """tests.yml, parsed."""
    return load(TESTS_YML)


# --- images.yml: what it pushes ------------------------------------------------------------


def test_images_yml_pushes_the_image_every_rule_names(tmp_path: Path) -> None:
    """The plan step, run on this checkout for the upstream owner, gives the exact prefix and
    tag of every rule's `container:` as Snakemake builds it from common.smk: what the
    workflow pushes is what the rules pull."""
    result, plan = run_plan(REPO, tmp_path, owner="PubFlow")
    assert result.returncode == 0, result.stdout + result.stderr
    containers = rule_images(tmp_path)
    for name, container in containers.items():
        match = re.fullmatch(r"docker://(?P<prefix>.+)-(?P<env>\w+):(?P<tag>[^:]+)", container)
        assert match, f"rule {name}: {container}"
        assert match["tag"] == plan["version"], (
            f"rule {name} names tag {match['tag']}, images.yml pushes {plan['version']}")
        assert match["prefix"] == plan["prefix"], (
            f"rule {name} names {match['prefix']}, images.yml pushes to {plan['prefix']}")
        assert match["env"] in json.loads(plan["environments"]), f"rule {name}: {container}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert plan["version"] == project


def test_images_yml_reads_the_version_from_the_checkout(tmp_path: Path) -> None:
    """Nothing in the workflow types the version: a checkout at 9.8.7 plans 9.8.7 (and
    accepts the tag v9.8.7)."""
    current = run_plan(REPO, tmp_path)[1]["version"]
    assert current not in IMAGES_YML.read_text(), "the version is typed in images.yml"
    checkout = plan_checkout(tmp_path / "bumped", version="9.8.7", project_version="9.8.7")
    result, plan = run_plan(checkout, tmp_path, ref_type="tag", ref_name="v9.8.7")
    assert result.returncode == 0, result.stdout + result.stderr
    assert plan["version"] == "9.8.7"


def test_images_yml_refuses_a_tag_that_is_not_the_version(tmp_path: Path) -> None:
    """A tag v<version> plans a push; any other tag fails the plan job (on which the build
    and push job depends) with an error naming both, and plans nothing."""
    version = run_plan(REPO, tmp_path)[1]["version"]
    result, plan = run_plan(REPO, tmp_path, ref_type="tag", ref_name=f"v{version}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert plan["version"] == version
    for wrong in (f"v{version}.1", f"v{version}rc1", "v0.0.0"):
        result, plan = run_plan(REPO, tmp_path, ref_type="tag", ref_name=wrong)
        assert result.returncode != 0, wrong
        assert f"::error::tag {wrong} is not v{version}" in result.stdout
        assert plan == {}
    assert load(IMAGES_YML)["jobs"]["build"]["needs"] == "plan"


def test_images_yml_refuses_when_pyproject_disagrees_with_the_rules(tmp_path: Path) -> None:
    """pyproject.toml's version and steps.__version__ (the rules' tag) must be one version:
    a checkout where they differ plans nothing."""
    checkout = plan_checkout(tmp_path / "split", version="9.8.7")
    result, plan = run_plan(checkout, tmp_path)
    assert result.returncode != 0
    assert "pyproject.toml's version is" in result.stdout and "9.8.7" in result.stdout
    assert plan == {}


def test_images_yml_prefix_is_the_lower_cased_owner(tmp_path: Path) -> None:
    """A fork publishes under its own owner, lower-cased (ghcr.io refuses capitals), and the
    build job hands that prefix and the version to build-images.sh."""
    result, plan = run_plan(REPO, tmp_path, owner="Some-Fork")
    assert result.returncode == 0, result.stdout + result.stderr
    assert plan["prefix"] == "ghcr.io/some-fork/pubflow"
    workflow = load(IMAGES_YML)
    assert workflow["jobs"]["plan"]["outputs"] == {
        key: f"${{{{ steps.plan.outputs.{key} }}}}" for key in ("version", "prefix",
                                                                "environments")}
    env = workflow["jobs"]["build"]["env"]
    assert env["PUBFLOW_IMAGE_PREFIX"] == "${{ needs.plan.outputs.prefix }}"
    assert env["PUBFLOW_IMAGE_TAG"] == "${{ needs.plan.outputs.version }}"


def test_images_yml_builds_every_environment_with_a_dockerfile(tmp_path: Path) -> None:
    """The build matrix is the plan's list, which is every environments/<env>/Dockerfile:
    here, and in a copy with one more environment (a folder without a Dockerfile is none)."""
    expected = sorted(p.parent.name for p in (REPO / "environments").glob("*/Dockerfile"))
    assert expected, "no environments/<env>/Dockerfile"
    result, plan = run_plan(REPO, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(plan["environments"]) == expected
    checkout = plan_checkout(tmp_path / "more")
    (checkout / "environments" / "extra").mkdir()
    (checkout / "environments" / "extra" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (checkout / "environments" / "notes").mkdir()
    assert json.loads(run_plan(checkout, tmp_path)[1]["environments"]) == sorted(
        [*expected, "extra"])
    build = load(IMAGES_YML)["jobs"]["build"]
    assert build["strategy"]["matrix"] == {
        "environment": "${{ fromJSON(needs.plan.outputs.environments) }}"}
    assert build["env"]["ENVIRONMENT"] == "${{ matrix.environment }}"
    scripts = runs(load(IMAGES_YML), "build")
    assert 'bash environments/build-images.sh "$ENVIRONMENT"' in scripts
    assert any(re.search(r'docker push "\$IMAGE"', s) for s in scripts)


def test_images_yml_builds_on_the_official_base_with_the_drift_labels() -> None:
    """The base is pulled before build-images.sh runs, and the script makes its own base only
    when none is there (so nothing built from the locally made, proxy-CA-carrying base is
    pushed); the labels the drift check reads are those the script sets, checked again before
    the push."""
    scripts = runs(load(IMAGES_YML), "build")
    pull = next(i for i, s in enumerate(scripts) if "docker pull python:3.11-slim" in s)
    build = scripts.index('bash environments/build-images.sh "$ENVIRONMENT"')
    push = next(i for i, s in enumerate(scripts) if "docker push" in s)
    assert pull < build < push
    script = BUILD_SCRIPT.read_text()
    assert 'if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then' in script
    assert "BASE=python:3.11-slim" in script
    labels = set(re.findall(r'--label "([\w.-]+)=', script))
    drift_check = (REPO / "tests" / "test_containers.py").read_text()
    read = set(re.findall(r'labels\["([\w.-]+)"\]', drift_check))
    assert read, "tests/test_containers.py reads no label"
    assert read <= labels, f"the drift check reads {read - labels}, which the script never sets"
    check = scripts[build + 1]
    assert all(label in check for label in read), "the pre-push check misses a label"


def test_images_yml_triggers_and_permissions(images_yml: dict[str, Any]) -> None:
    """On every v* tag and by hand, nothing else; read-only by default, `packages: write` for
    the build job only, logged in with GITHUB_TOKEN through stdin."""
    on = images_yml["on"]
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"] == {"tags": ["v*"]}
    assert images_yml["permissions"] == {"contents": "read"}
    assert images_yml["jobs"]["plan"].get("permissions") is None
    assert images_yml["jobs"]["build"]["permissions"] == {"contents": "read",
                                                          "packages": "write"}
    login = next(s for s in images_yml["jobs"]["build"]["steps"] if "docker login" in
                 s.get("run", ""))
    assert login["env"] == {"TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    assert "--password-stdin" in login["run"] and "ghcr.io" in login["run"]
    assert "${{" not in login["run"]


# --- tests.yml -----------------------------------------------------------------------------


def test_tests_yml_runs_ci_on_push_and_pull_request(tests_yml: dict[str, Any]) -> None:
    """On every push and pull request, unfiltered, within CI's 90 minutes, the job runs the
    repository's `.ci/run` as root with the runner's PATH (sudo would reset it)."""
    assert set(tests_yml["on"]) == {"push", "pull_request"}
    assert all(not v for v in tests_yml["on"].values()), "no branch or path filters"
    (job,) = tests_yml["jobs"].values()
    assert 60 <= job["timeout-minutes"] <= 90
    ci = [s for s in job["steps"] if ".ci/run" in s.get("run", "")]
    assert len(ci) == 1
    assert re.fullmatch(r'sudo --preserve-env env "PATH=\$PATH" bash \.ci/run\s*', ci[0]["run"])
    assert (REPO / ".ci" / "run").is_file()
    if "--fresh" in (REPO / ".ci" / "run").read_text():
        # build-images.sh --fresh makes the base with mmdebstrap: on Ubuntu it needs Debian's keys
        assert any("debian-archive-keyring" in s.get("run", "") for s in job["steps"])


def test_tests_yml_offers_every_python_setup_sh_asks_for(tests_yml: dict[str, Any]) -> None:
    """setup-python installs each X.Y that environments/setup.sh looks for (python_for X.Y),
    with 3.11, the analysis environment's, last, which makes it `python3`."""
    (job,) = tests_yml["jobs"].values()
    (setup,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    versions = setup["with"]["python-version"].split()
    wanted = set(re.findall(r"python_for (\d\.\d+)", (REPO / "environments" / "setup.sh")
                            .read_text()))
    assert wanted <= set(versions), f"setup.sh asks for {wanted}, setup-python has {versions}"
    assert versions[-1] == "3.11"
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]
    assert target["target-version"] == "py311"


# --- pinning -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [IMAGES_YML, TESTS_YML], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    """Each `uses:` names a full 40-hex commit SHA, with the version it is in a comment."""
    text = path.read_text()
    assert "uses:" in text
    assert pin_problems(text) == []


def test_pin_check_catches_a_tag_and_a_missing_comment() -> None:
    """The pin check fails on a copy of images.yml that names a tag, or drops a comment."""
    text = IMAGES_YML.read_text()
    sha = re.search(r"actions/checkout@([0-9a-f]{40})", text)
    assert sha
    by_tag = text.replace(f"actions/checkout@{sha[1]}", "actions/checkout@v7", 1)
    assert any("actions/checkout@v7: not pinned" in p for p in pin_problems(by_tag))
    no_comment = re.sub(r"(actions/checkout@[0-9a-f]{40})\s+#\s*\S+", r"\1", text, count=1)
    assert any("no version comment" in p for p in pin_problems(no_comment))
