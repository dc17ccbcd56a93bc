"""Run a Gherkin feature file with REANA's own Gherkin code against a finished local workspace.

    .venv-reana95/bin/python tests/reana/run_gherkin.py WORKSPACE FEATURE [--workflow NAME]

reana-commons 0.95 (``reana_commons.gherkin_parser``) parses the feature file, matches each step
to its step implementation and runs them; the implementations ask a ``DataFetcherBase`` for the
workflow's status, specification, files, disk usage and logs. ``reana-client test`` passes one
that calls the REANA server (``reana_client.cli.test.DataFetcherClient``); this script passes
``LocalWorkspace``, which answers the same questions from a finished workspace directory on
this machine, in the shapes reana-client's API functions return, computed where possible with
the reana-commons functions REANA's server side uses.

Prints a JSON list, one object per scenario (``scenario``, ``result``: passed / failed /
skipped, ``failed_testcase``, ``error_log``); exits 1 if a scenario failed, as
``reana-client test`` does. Runs under Python 3.12 in ``.venv-reana95``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import uuid
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from reana_commons import workspace as reana_workspace
from reana_commons.config import WORKFLOW_TIME_FORMAT
from reana_commons.gherkin_parser.data_fetcher import DataFetcherBase
from reana_commons.gherkin_parser.parser import AnalysisTestStatus, parse_and_run_tests
from reana_commons.utils import get_disk_usage, remove_upper_level_references

# Snakemake's own log of the run (the engine log on REANA): jobs start with a time stamp line
# and `rule NAME:` (Snakemake 7) or `localrule NAME:` (8, 9 when run locally); they end with
# `Finished job N.` (7) or `Finished jobid: N (Rule: NAME)` (8, 9), or `Error in rule NAME:`.
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_FIELD = re.compile(r"^ {4}(\w+): (.*)$")
_FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")
_ERROR = re.compile(r"^Error in rule (\S+):$")
_DONE = re.compile(r"^\d+ of \d+ steps \(100%\) done$|^Nothing to be done", re.MULTILINE)
_RAN = re.compile(r"steps \(\d+%\) done|^Error in rule |^Exiting because", re.MULTILINE)


def _human_readable(size: int) -> str:
    """Bytes in binary units, as REANA shows them (reana-db's ``ResourceUnit``, e.g. "12 KiB")."""
    value = float(size)
    for unit in ("Bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "Bytes" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _stamp(when: datetime | None) -> str | None:
    return when.strftime(WORKFLOW_TIME_FORMAT) if when else None


class LocalWorkspace(DataFetcherBase):
    """What a REANA server would answer about a run, read from its finished workspace.

    The workflow's status, times and job logs come from Snakemake's log of the run
    (``.snakemake/log/``, the newest); its specification is the workspace's ``reana.yaml``,
    as REANA stores the specification it was sent.
    """

    def __init__(self, root: Path, name: str) -> None:
        self.root = str(root.resolve())  # no trailing slash: get_disk_usage trims it off names
        self.name = name
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"file://{self.root}"))
        # the run's log: the newest one of a run that executed jobs (a later `snakemake -n`
        # or `--lint` in the same workspace writes a log of its own, of no run)
        logs = [p for p in sorted((root / ".snakemake" / "log").glob("*.snakemake.log"))
                if _RAN.search(p.read_text())]
        self._engine_log_path = logs[-1] if logs else None
        self._engine_log = self._engine_log_path.read_text() if self._engine_log_path else ""
        self._jobs = self._parse_jobs(self._engine_log)

    # -- helpers ----------------------------------------------------------------------------

    def _file_info(self, path: str) -> dict[str, Any]:
        st = reana_workspace.lstat(self.root, path)
        return {
            "name": path,
            "size": {"raw": st.st_size, "human_readable": _human_readable(st.st_size)},
            "last-modified": datetime.fromtimestamp(st.st_mtime).strftime(WORKFLOW_TIME_FORMAT),
        }

    def _parse_jobs(self, text: str) -> dict[str, dict[str, Any]]:
        """The jobs of the run, by Snakemake job id, from Snakemake's log."""
        jobs: dict[str, dict[str, Any]] = {}
        stamp: datetime | None = None
        current: dict[str, Any] | None = None
        for line in text.splitlines():
            if m := _STAMP.match(line):
                stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
                current = None
            elif m := _RULE.match(line):
                current = {"job_name": m.group(1), "status": "running", "started_at": stamp,
                           "finished_at": None, "log": [], "output": ""}
            elif current is not None and (m := _FIELD.match(line)):
                key, value = m.groups()
                if key == "jobid":
                    jobs[value] = current
                elif key == "log":
                    current["log"] = [p.strip() for p in value.split(",")]
                elif key == "output":
                    current["output"] = value
            elif m := _FINISHED.match(line):
                if m.group(1) in jobs:
                    jobs[m.group(1)].update(status="finished", finished_at=stamp)
            elif m := _ERROR.match(line):
                current = {"job_name": m.group(1), "status": "failed", "started_at": None,
                           "finished_at": stamp, "log": [], "output": ""}
        # REANA runs no job for a rule without outputs (the target rule `all` runs in the engine)
        return {jid: job for jid, job in jobs.items() if job["output"]}

    def _status(self) -> str:
        if not self._engine_log:
            return "created"
        if re.search(r"^Exiting because a job execution failed|^Error in rule ",
                     self._engine_log, re.MULTILINE):
            return "failed"
        return "finished" if _DONE.search(self._engine_log) else "running"

    def _job_logs(self, steps: list[str] | None) -> dict[str, dict[str, Any]]:
        logs = {}
        for jid, job in self._jobs.items():
            if steps and job["job_name"] not in steps:
                continue
            text = "".join((Path(self.root) / p).read_text(errors="replace")
                           for p in job["log"] if (Path(self.root) / p).is_file())
            logs[jid] = {
                "workflow_uuid": self.id, "job_name": job["job_name"],
                "compute_backend": "Kubernetes", "backend_job_id": "", "docker_img": "",
                "cmd": "", "status": job["status"], "logs": text,
                "started_at": _stamp(job["started_at"]), "finished_at": _stamp(job["finished_at"]),
            }
        return logs

    def _progress(self) -> dict[str, Any]:
        started = finished = None
        if self._engine_log_path is not None:
            # Snakemake names its log after the start time: 2026-12-01T193259.910531.snakemake.log
            started = datetime.strptime(self._engine_log_path.name.split(".")[0],
                                        "%Y-%m-%dT%H%M%S")
            if self._status() in ("finished", "failed"):
                finished = datetime.fromtimestamp(self._engine_log_path.stat().st_mtime)
        by_status: dict[str, list[str]] = {"finished": [], "failed": [], "running": []}
        for jid, job in self._jobs.items():
            by_status[job["status"]].append(jid)
        progress: dict[str, Any] = {
            "run_started_at": _stamp(started), "run_finished_at": _stamp(finished),
            "run_stopped_at": None, "current_command": None, "current_step_name": None,
            "total": {"total": len(self._jobs), "job_ids": list(self._jobs)},
        }
        for status, ids in by_status.items():
            progress[status] = {"total": len(ids), "job_ids": ids}
        return progress

    # -- DataFetcherBase --------------------------------------------------------------------

    def get_workflow_status(self, workflow: str) -> dict[str, Any]:
        """As ``reana_client.api.client.get_workflow_status``: id, name, status, progress, ..."""
        progress = self._progress()
        return {
            "id": self.id, "name": self.name, "created": progress["run_started_at"],
            "status": self._status(), "progress": progress, "user": "local",
            "logs": json.dumps({"workflow_logs": self._engine_log,
                                "job_logs": self._job_logs(None), "engine_specific": None}),
        }

    def get_workflow_specification(self, workflow: str) -> dict[str, Any]:
        """As ``reana_client.api.client.get_workflow_specification``: the reana.yaml sent."""
        spec = yaml.safe_load((Path(self.root) / "reana.yaml").read_text())
        return {"specification": spec,
                "parameters": (spec.get("inputs") or {}).get("parameters") or {}}

    def list_files(self, workflow: str, file_name: str | None = None, page: int | None = None,
                   size: int | None = None, search: str | None = None) -> list[dict[str, Any]]:
        """As ``reana_client.api.client.list_files``: the ``items`` of the server's page.

        Built as reana-workflow-controller's ``list_directory_files`` and
        ``list_files_recursive_wildcard`` do, with reana-commons' ``workspace`` functions.
        """
        if search is not None:
            raise NotImplementedError("search filters are not used by reana-commons' steps")
        if file_name:
            names = reana_workspace.glob_or_walk_directory(self.root, file_name)
        else:
            names = reana_workspace.walk(self.root, include_dirs=False)
        items = [self._file_info(name) for name in names]
        if size:
            start = ((page or 1) - 1) * size
            items = items[start:start + size]
        return items

    def get_workflow_disk_usage(self, workflow: str, parameters: dict[str, Any]
                                ) -> dict[str, Any]:
        """As ``reana_client.api.client.get_workflow_disk_usage``.

        ``disk_usage_info`` comes from ``reana_commons.utils.get_disk_usage``, which REANA's
        server calls (reana-db's ``Workflow.get_workspace_disk_usage``): ``du`` on the
        workspace, names relative to it with a leading slash.
        """
        info = get_disk_usage(self.root, summarize=bool(parameters.get("summarize", False)),
                              search=parameters.get("search"),
                              to_human_readable_units=_human_readable)
        return {"workflow_id": self.id, "workflow_name": self.name, "user": "local",
                "disk_usage_info": info}

    def get_workflow_logs(self, workflow: str, steps: list[str] | None = None,
                          page: int | None = None, size: int | None = None) -> dict[str, Any]:
        """As ``reana_client.api.client.get_workflow_logs``: ``logs`` is a JSON string.

        The engine log is Snakemake's log of the run; each job's log is its rule's ``log:``
        file (on REANA, the job's stdout and stderr: pubflow's steps write both).
        """
        if steps:
            logs = {"workflow_logs": None, "job_logs": self._job_logs(steps),
                    "engine_specific": None}
        else:
            logs = {"workflow_logs": self._engine_log, "job_logs": self._job_logs(None),
                    "service_logs": {}, "engine_specific": None}
        return {"workflow_id": self.id, "workflow_name": self.name, "logs": json.dumps(logs),
                "user": "local", "live_logs_enabled": False}

    def download_file(self, workflow: str, file_name: str) -> tuple[bytes, str, bool]:
        """As ``reana_client.api.client.download_file``: (content, file name, is a zip).

        As reana-workflow-controller's ``download_files_recursive_wildcard``: one file is sent
        as it is, a directory or several matches as a zip; no match is an error (404).
        The steps ask for "/path": the leading slash disappears in the URL on REANA.
        """
        path = remove_upper_level_references(file_name)
        if reana_workspace.is_directory(self.root, path):
            matches = list(reana_workspace.walk(self.root, path, include_dirs=False))
        else:
            matches = list(reana_workspace.glob(self.root, path, include_dirs=False))
            if len(matches) == 1:
                with reana_workspace.open_file(self.root, matches[0], mode="rb") as f:
                    return f.read(), matches[0], False
        if not matches:
            raise Exception(f"{path} does not exist.")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for match in matches:
                with reana_workspace.open_file(self.root, match, mode="rb") as f:
                    archive.writestr(match, f.read())
        return buffer.getvalue(), f"download_{self.name}_{Path(path).name}.zip", True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path, help="a finished run's workspace directory")
    p.add_argument("feature", type=Path, help="the Gherkin feature file")
    p.add_argument("--workflow", default="pubflow", help="workflow name (as with -w)")
    args = p.parse_args(argv)
    fetcher = LocalWorkspace(args.workspace, args.workflow)
    _feature, results = parse_and_run_tests(str(args.feature), args.workflow, fetcher)
    json.dump([{"scenario": r.scenario, "result": r.result.name,
                "failed_testcase": r.failed_testcase, "error_log": r.error_log}
               for r in results], sys.stdout, indent=2)
    print()
    return 1 if any(r.result == AnalysisTestStatus.failed for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
