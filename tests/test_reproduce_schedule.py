"""The weekly reproducibility check's schedule: it re-enables itself (GitHub disables the
schedules of a public repository after 60 days without activity), every `uses:` of every
workflow is pinned to a commit, and every file a workflow names exists. Offline."""

from __future__ import annotations

import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO
from .fake_services import serving
from .test_github_workflows import pin_problems

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
REPRODUCE_YML = REPO / ".github" / "workflows" / "reproduce.yml"
SCRIPT = REPO / ".ci" / "keep_schedule_alive.py"


def fake_github(answer: int, calls: list[dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class GitHub(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            calls.append({"path": self.path, "headers": dict(self.headers),
                          "body": self.rfile.read(length)})
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""
    return GitHub


def keep_alive(api: str, *workflows: str, token: str = "t0ken"
               ) -> subprocess.CompletedProcess[str]:
    env = {"GITHUB_TOKEN": token, "GITHUB_REPOSITORY": "someone/analysis",
           "GITHUB_API_URL": api, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT), *workflows], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_script_enables_the_workflow_through_the_rest_api() -> None:
    calls: list[dict[str, Any]] = []
    with serving(fake_github(204, calls)) as api:
        result = keep_alive(api, "reproduce.yml")
    assert result.returncode == 0, result.stderr
    (call,) = calls
    assert call["path"] == "/repos/someone/analysis/actions/workflows/reproduce.yml/enable"
    assert call["headers"]["Authorization"] == "Bearer t0ken"
    assert call["headers"]["Accept"] == "application/vnd.github+json"
    assert "t0ken" not in result.stdout + result.stderr


@pytest.mark.parametrize("status", [403, 404])
def test_a_refusal_fails_the_job_in_one_line(status: int) -> None:
    calls: list[dict[str, Any]] = []
    with serving(fake_github(status, calls)) as api:
        result = keep_alive(api, "reproduce.yml")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("::error::reproduce.yml: GitHub answered HTTP") and str(status) in line


def test_without_a_token_nothing_is_sent() -> None:
    calls: list[dict[str, Any]] = []
    with serving(fake_github(204, calls)) as api:
        result = keep_alive(api, "reproduce.yml", token="")
    assert result.returncode == 1 and calls == []


def test_the_schedule_re_enables_itself_with_the_least_permissions() -> None:
    workflow = yaml.safe_load(REPRODUCE_YML.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key 'on' as true
    assert triggers["schedule"] and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read"}  # the default for every job
    job = workflow["jobs"]["keep-schedule"]
    assert job["permissions"] == {"actions": "write", "contents": "read"}
    (step,) = [s for s in job["steps"] if "keep_schedule_alive.py" in s.get("run", "")]
    # it enables this very file (the API accepts the file name as the workflow id)
    assert step["run"].split()[-1] == REPRODUCE_YML.name
    assert step["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    # no other job holds actions: write
    others = [name for name, j in workflow["jobs"].items()
              if name != "keep-schedule" and "actions" in (j.get("permissions") or {})]
    assert others == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned(path: Path) -> None:
    assert pin_problems(path.read_text()) == []


def referenced_paths(text: str) -> set[str]:
    """Repository files a workflow's text names: scripts it runs, files its comments cite."""
    found = set(re.findall(r"(?<![\w$/.-])((?:\.ci|\.github|\.notes|environments|steps|tests|"
                           r"inputs|workflows)/[\w./-]*\w)", text))
    found |= set(re.findall(r"(?<![\w/.-])([\w-]+\.(?:md|sh|py|yaml|yml|toml))\b", text))
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_file_a_workflow_names_exists(path: Path) -> None:
    text = path.read_text()
    missing = []
    for name in sorted(referenced_paths(text)):
        if "/" in name:
            if not (REPO / name).exists():
                missing.append(name)
        elif not list(REPO.glob(f"**/{name}")) and not name.startswith("report."):
            missing.append(name)  # a bare file name must exist somewhere in the checkout
    assert missing == []


def test_the_path_check_catches_a_dangling_reference() -> None:
    text = REPRODUCE_YML.read_text() + "\n# see .notes/README-reproduce.md\n"
    assert ".notes/README-reproduce.md" in referenced_paths(text)
    assert not (REPO / ".notes" / "README-reproduce.md").exists()


def test_the_script_is_standard_library_only() -> None:
    """It runs on the runner's python3 before any environment exists."""
    imports = re.findall(r"^(?:from|import) (\w+)", SCRIPT.read_text(), re.MULTILINE)
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__"}, imports
