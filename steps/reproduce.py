"""reproduce: re-run the analysis from scratch and tell whether the published numbers come out.

Months or years after publication, a scheduled job runs::

    python -m steps.reproduce                       # locally, against inputs/reference/
    python -m steps.reproduce --reana               # the same on REANA (reana-client)
    python -m steps.reproduce --hepdata ins1234567  # against the published HEPData record

1. **Stage** a clean workspace holding only what ``reana.yaml`` declares (an undeclared input
   fails here, not on the cluster) and run the whole workflow there: with Snakemake, or with
   ``--reana`` through ``reana-client`` (``create``, ``upload``, ``start``, ``status`` until it
   ends, ``download``), the server and token coming from ``REANA_SERVER_URL`` and
   ``REANA_ACCESS_TOKEN`` (never logged, never on a command line).
2. **Compare** the new outputs with the reference quantity by quantity (``steps.compare``),
   with the tolerances of ``inputs/reference/tolerances.yaml``. The reference is a previous
   run checked into ``inputs/reference/`` or a HEPData record pulled by id or DOI, whose
   tables are compared with the tables the run would submit.
3. **Report** (``steps.report``): ``results/reproduce/report.json`` and ``report.md``, with
   overlays of the distributions that moved, and the run's Workflow Run RO-Crate
   (``steps.provenance``) at ``<workspace>/ro-crate-metadata.json``: the workspace is its
   payload, so it is kept only with the workspace (``--workdir``, ``--keep-workdir``). Exit
   status 1 when the run fails or any quantity moved beyond its tolerance, so that a scheduler
   alerts.

``--update-reference --reason TEXT`` makes the new outputs the reference (the report then
lists what the update changes); ``--results DIR`` compares the outputs of an existing run
instead of running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps import __version__, cli, layout
from steps.config import load_yaml
from steps.errors import PubflowError
from steps.io import sha256sum

if TYPE_CHECKING:
    from steps.compare import Result, Snapshot, Tolerances
    from steps.provenance import RunRecord

log = logging.getLogger(__name__)

SPEC = "reana.yaml"
DEFAULT_REFERENCE = "inputs/reference"
DEFAULT_OUTPUT = "results/reproduce"
DEFAULT_REANA_CLIENT = ".venv-reana/bin/reana-client"
REANA_DONE = "finished"
REANA_FAILED = ("failed", "stopped", "deleted")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RunFailed(Exception):
    """The workflow did not produce its outputs (the message says why, in one line)."""


# -- staging ------------------------------------------------------------------------------------


def declared_inputs(source: str | Path) -> tuple[list[str], list[str]]:
    """Files and directories ``reana.yaml`` declares: all a REANA workspace will hold.

    The files include ``reana.yaml`` itself and the declared test files.
    """
    spec = load_yaml(Path(source) / SPEC) or {}
    inputs = spec.get("inputs", {})
    files = [*inputs.get("files", []), SPEC, *spec.get("tests", {}).get("files", [])]
    return list(dict.fromkeys(files)), list(inputs.get("directories", []))


def declared_outputs(source: str | Path) -> list[str]:
    """Files and directories ``reana.yaml`` declares as outputs."""
    outputs = (load_yaml(Path(source) / SPEC) or {}).get("outputs", {})
    return [*outputs.get("files", []), *outputs.get("directories", [])]


def stage_workspace(source: str | Path, dest: str | Path) -> Path:
    """Copy only what ``reana.yaml`` declares from ``source`` into the new folder ``dest``.

    Raises:
        PubflowError: If ``dest`` is not empty, or a declared input is missing.
    """
    source, dest = Path(source), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise PubflowError("not empty: the workspace must be clean", path=dest)
    files, dirs = declared_inputs(source)
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        if not (source / name).is_file():
            raise PubflowError(f"declared in {SPEC} but missing", path=source / name)
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, dest / name)
    for name in dirs:
        if not (source / name).is_dir():
            raise PubflowError(f"directory declared in {SPEC} but missing", path=source / name)
        shutil.copytree(source / name, dest / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    log.info("staged %d files and %d directories from %s into %s", len(files), len(dirs),
             source, dest)
    return dest


# -- running locally ----------------------------------------------------------------------------


def _tool(name: str) -> str:
    """A tool of this interpreter's environment (``.venv/bin/snakemake``), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise PubflowError(f"{name} not found (run environments/setup.sh)")
    return found


def tool_env() -> dict[str, str]:
    """The environment in which ``python`` and ``snakemake`` are this interpreter's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)  # the staged workspace's steps/, not this checkout's
    return env


def failure_line(transcript: str, workspace: Path) -> str:
    """One line saying why Snakemake failed: the failing rule and its log's last error."""
    rule = re.search(r"Error in rule (\w+):", transcript)
    if rule:
        message = f"rule {rule.group(1)} failed"
        log_match = re.search(r"Error in rule \w+:.*?\n\s+log: (\S+)", transcript, re.DOTALL)
        log_path = workspace / log_match.group(1) if log_match else None
        if log_path and log_path.is_file():
            lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()
                     if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower()]
            if errors or lines:
                message += f": {(errors or lines)[-1]}"
            message += f" (log {log_match.group(1) if log_match else ''})"
        return message
    missing = re.search(r"Missing input files for rule (\w+):.*?affected files:\n((?:\s+\S+\n?)+)",
                        transcript, re.DOTALL)
    if missing:  # typically an input reana.yaml does not declare, so it was not staged
        files = ", ".join(missing.group(2).split())
        return (f"rule {missing.group(1)}: missing input files {files} (not staged: are they "
                f"declared in {SPEC}?)")
    for line in transcript.splitlines():
        if re.search(r"(Exception|Error)\b", line):
            return " ".join(line.split())
    tail = [ln for ln in transcript.splitlines() if ln.strip()]
    return tail[-1].strip() if tail else "snakemake failed without a message"


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise RunFailed(f"the workflow did not finish within {timeout / 60:.0f} min") from None
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        raise


def run_local(workspace: Path, cores: int, transcript: Path, timeout: float) -> list[str]:
    """Run the whole workflow with Snakemake in ``workspace``; return the command.

    Raises:
        RunFailed: If Snakemake fails or times out.
    """
    command = [_tool("snakemake"), "--cores", str(cores)]
    log.info("running %s in %s", shlex.join(command), workspace)
    transcript.parent.mkdir(parents=True, exist_ok=True)
    with open(transcript, "wb") as out:
        # a session of its own, so that a timeout stops every job, not only Snakemake
        proc = subprocess.Popen(command, cwd=workspace, env=tool_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        code = _wait(proc, timeout)
    if code != 0:
        raise RunFailed(failure_line(transcript.read_text(errors="replace"), workspace))
    return ["snakemake", "--cores", str(cores)]


# -- running on REANA ---------------------------------------------------------------------------


@dataclass
class ReanaSettings:
    """How to reach REANA.

    Attributes:
        client: The ``reana-client`` executable (it lives in its own environment).
        server_url: ``REANA_SERVER_URL``.
        workflow: Name of the workflow to create (REANA numbers its runs: ``name.N``).
        poll_seconds: Pause between two ``status`` calls.
        timeout_seconds: Give up waiting after this long.
    """

    client: Path
    server_url: str
    workflow: str = "pubflow-reproduce"
    poll_seconds: float = 60
    timeout_seconds: float = 6 * 3600


class ReanaClient:
    """``reana-client`` in a workspace, with the server and token in its environment only."""

    def __init__(self, settings: ReanaSettings, workspace: Path, transcript: Path):
        token = os.environ.get("REANA_ACCESS_TOKEN", "")
        if not token:
            raise PubflowError("REANA_ACCESS_TOKEN is not set (in CI, map it from a secret)")
        if not settings.client.is_file():
            raise PubflowError("reana-client not found (environments/setup.sh makes "
                               ".venv-reana; or give --reana-client)", path=settings.client)
        self.settings = settings
        self.workspace = workspace
        self.transcript = transcript
        self._token = token
        self.env = dict(os.environ, REANA_SERVER_URL=settings.server_url,
                        REANA_ACCESS_TOKEN=token)
        self.env.pop("PYTHONPATH", None)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def __call__(self, *args: str, timeout: float = 1800) -> str:
        """Run ``reana-client ARGS``; return its standard output.

        Raises:
            RunFailed: If it fails (with its last error line).
        """
        command = [str(self.settings.client), *args]
        log.info("reana-client %s", shlex.join(args))
        try:
            result = subprocess.run(command, cwd=self.workspace, env=self.env,
                                    capture_output=True, text=True, timeout=timeout,
                                    check=False)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"reana-client {args[0]} did not answer within {timeout:.0f} s"
                            ) from None
        stdout, stderr = self._scrub(result.stdout), self._scrub(result.stderr)
        with open(self.transcript, "a") as out:
            out.write(f"$ reana-client {shlex.join(args)}\n{stdout}{stderr}\n")
        if result.returncode != 0:
            lines = [ln.strip() for ln in _ANSI.sub("", stdout + stderr).splitlines()
                     if ln.strip() and "Warning" not in ln and "import pkg_resources" not in ln]
            raise RunFailed(f"reana-client {args[0]} failed: "
                            f"{lines[-1] if lines else f'exit {result.returncode}'}")
        return _ANSI.sub("", stdout)

    def version(self) -> str | None:
        """reana-client's version (None if it cannot say)."""
        try:
            text = self("version", timeout=120).strip()
        except RunFailed:
            return None
        return text.splitlines()[-1] if text else None

    def create(self) -> str:
        """Create the workflow from the workspace's ``reana.yaml``; return the run's name."""
        out = self("create", "-w", self.settings.workflow, "-f", SPEC)
        names = [ln.strip() for ln in out.splitlines() if re.fullmatch(r"[\w.-]+", ln.strip())]
        if not names:
            raise RunFailed(f"reana-client create named no workflow: {out.strip()[:200]}")
        return names[-1]

    def status(self, workflow: str) -> str:
        """The workflow's status (``created``, ``queued``, ``running``, ``finished`` ...)."""
        out = self("status", "-w", workflow, "--json")
        start = out.find("[")
        try:
            rows = json.loads(out[start:]) if start >= 0 else json.loads(out)
            return str(rows[0]["status"] if isinstance(rows, list) else rows["status"])
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise RunFailed(f"cannot read the status of {workflow}: {out.strip()[:200]}"
                            ) from None

    def wait(self, workflow: str) -> None:
        """Poll ``status`` until the workflow ends.

        Raises:
            RunFailed: If it failed, was stopped, or did not end in time.
        """
        deadline = time.monotonic() + self.settings.timeout_seconds
        while True:
            status = self.status(workflow)
            log.info("REANA workflow %s: %s", workflow, status)
            if status == REANA_DONE:
                return
            if status in REANA_FAILED:
                with contextlib.suppress(RunFailed):
                    self("logs", "-w", workflow)  # into the transcript, for the report
                raise RunFailed(f"REANA workflow {workflow} {status} (its logs are in "
                                f"{self.transcript})")
            if time.monotonic() > deadline:
                raise RunFailed(f"REANA workflow {workflow} still {status} after "
                                f"{self.settings.timeout_seconds / 60:.0f} min")
            time.sleep(self.settings.poll_seconds)

    def download(self, workflow: str, paths: Sequence[str]) -> None:
        """Download ``paths`` of the REANA workspace into the local workspace, in place."""
        for i, path in enumerate(paths):
            scratch = self.workspace / ".reana-download" / str(i)
            scratch.mkdir(parents=True, exist_ok=True)
            try:
                self("download", "-w", workflow, "-o", str(scratch), path)
                _place(scratch, path, self.workspace)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(self.workspace / ".reana-download", ignore_errors=True)


def _safe_extract(archive: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in archive.namelist():
        if not (dest / member).resolve().is_relative_to(root):
            raise RunFailed(f"refusing to extract {member} outside {dest}")
    archive.extractall(dest)


def _place(scratch: Path, path: str, workspace: Path) -> None:
    """Move a downloaded file or directory to ``workspace/path``.

    reana-client writes a file to ``<output>/<path>``; a directory arrives as a zip archive.
    """
    target = workspace / path
    got = scratch / path
    if got.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(got, target)
        return
    archives = sorted(scratch.rglob("*.zip"))
    if not archives:
        raise RunFailed(f"reana-client download gave nothing for {path}")
    with zipfile.ZipFile(archives[0]) as archive:
        names = archive.namelist()
        prefix = path.rstrip("/") + "/"
        if target.is_dir():
            shutil.rmtree(target)
        if names and all(n.startswith(prefix) for n in names):
            _safe_extract(archive, workspace)  # members named from the workspace's root
        else:
            target.mkdir(parents=True, exist_ok=True)
            _safe_extract(archive, target)


def run_reana(client: ReanaClient, outputs: Sequence[str]) -> tuple[str, list[str]]:
    """Create, upload, start, wait, download; return the REANA run name and the command.

    Raises:
        RunFailed: If a step fails or the workflow does not finish.
    """
    workflow = client.create()
    client("upload", "-w", workflow)
    client("start", "-w", workflow)
    client.wait(workflow)
    client.download(workflow, outputs)
    return workflow, ["reana-client", "start", "-w", workflow]


# -- the reference ------------------------------------------------------------------------------


@dataclass
class Reference:
    """What the outputs are compared with."""

    kind: str
    source: str
    snapshot: Snapshot | None
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """For the report."""
        return {"kind": self.kind, "source": self.source, "metadata": self.metadata}


def load_reference(args: argparse.Namespace) -> Reference:
    """The repository's reference or the HEPData record (read before the long run)."""
    from steps import compare

    if args.hepdata:
        record = compare.fetch_record(args.hepdata, args.hepdata_url, args.hepdata_version)
        return Reference("hepdata", record.url, compare.hepdata_snapshot(record.tables),
                         {**record.metadata, "version": record.version,
                          "tables": len(record.tables)})
    folder = Path(args.reference)
    if not (folder / compare.REFERENCE_FILES["histograms"]).is_file() and args.update_reference:
        return Reference("none", str(folder), None, {})
    sections = compare.read_reference(folder)
    return Reference("repository", str(folder), compare.snapshot(sections),
                     compare.reference_metadata(folder))


def _new_snapshot(workspace: Path, hepdata: bool) -> tuple[Snapshot, dict[str, Any]]:
    """The new run's snapshot (and its sections, for a reference update)."""
    from steps import compare

    if hepdata:
        tables = compare.submission_tables(workspace / "results" / "hepdata" / "submission")
        return compare.hepdata_snapshot(tables), {}
    sections = compare.read_run(workspace)
    return compare.snapshot(sections), sections


def update_reference(folder: Path, sections: dict[str, Any], workspace: Path, reason: str,
                     tolerances: Path, provenance: dict[str, Any]) -> None:
    """Make ``sections`` the reference in ``folder``, keeping (or seeding) its tolerances."""
    from steps import compare

    config = workspace / layout.RESOLVED_CONFIG
    metadata = {"reason": reason, "pubflow_version": __version__,
                "config_sha256": sha256sum(config) if config.is_file() else None, **provenance}
    compare.write_reference(sections, folder, metadata)
    if not (folder / compare.TOLERANCES_FILE).is_file():
        shutil.copy2(tolerances, folder / compare.TOLERANCES_FILE)
    log.info("reference updated in %s (%s)", folder, reason)


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("reproduce", __doc__.split("\n")[0])
    p.add_argument("--source", default=".", help="checkout to stage the workspace from")
    p.add_argument("--workdir", help="workspace to create and keep; if not given, a temporary "
                                     "folder, removed afterwards unless --keep-workdir")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary workspace")
    p.add_argument("--results", metavar="DIR",
                   help="compare the outputs of an existing run in DIR (a workspace holding "
                        "results/) instead of running")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", default=DEFAULT_REFERENCE,
                     help="reference folder (a previous run, checked in)")
    ref.add_argument("--hepdata", metavar="RECORD",
                     help="compare with a HEPData record: ins<INSPIRE id>, record id, DOI "
                          "(10.17182/hepdata.<id>.v<version>) or URL")
    p.add_argument("--hepdata-url", default="https://www.hepdata.net", help="HEPData site")
    p.add_argument("--hepdata-version", type=int, help="record version (the latest if not "
                                                         "given)")
    p.add_argument("--tolerances",
                   help="tolerance file (if not given: tolerances.yaml of the --reference "
                        "folder)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="folder for the report")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="cores for a local run")
    p.add_argument("--timeout-minutes", type=float, default=360, help="give up after this long")
    p.add_argument("--max-plots", type=int, default=40, help="most overlays to draw")
    p.add_argument("--reana", action="store_true", help="run on REANA through reana-client")
    p.add_argument("--reana-client", default=DEFAULT_REANA_CLIENT,
                   help="reana-client executable")
    p.add_argument("--reana-server-url", default=os.environ.get("REANA_SERVER_URL"),
                   help="REANA server ($REANA_SERVER_URL if not given); the token is read "
                        "from $REANA_ACCESS_TOKEN only")
    p.add_argument("--reana-workflow", default="pubflow-reproduce", help="REANA workflow name")
    p.add_argument("--reana-poll-seconds", type=float, default=60, help="status polling pause")
    p.add_argument("--update-reference", action="store_true",
                   help="make the new outputs the reference (deliberately: needs --reason)")
    p.add_argument("--reason", help="why the reference changes (recorded with it)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.update_reference and not args.reason:
        raise PubflowError("--update-reference needs --reason \"why the numbers change\"")
    if args.update_reference and args.hepdata:
        raise PubflowError("--update-reference writes a repository reference: not with "
                           "--hepdata")
    if args.results and (args.reana or args.workdir):
        raise PubflowError("--results compares existing outputs: not with --reana/--workdir")
    if args.reana and not args.reana_server_url:
        raise PubflowError("--reana needs REANA_SERVER_URL (or --reana-server-url)")
    if args.reana and not os.environ.get("REANA_ACCESS_TOKEN"):
        raise PubflowError("--reana needs REANA_ACCESS_TOKEN in the environment (in CI, map "
                           "it from a secret; it is never passed on a command line)")
    if args.reana and not Path(args.reana_client).is_file():
        raise PubflowError("reana-client not found (environments/setup.sh makes .venv-reana; "
                           "or give --reana-client)", path=args.reana_client)


def _histogram_folder_of(workspace: Path) -> str:
    config = layout.workspace_config(workspace)
    return str(config.get("General", {}).get("HistogramFolder", "results/histograms")
               ).rstrip("/")


def execute(args: argparse.Namespace, workspace: Path, output: Path, run: RunRecord) -> None:
    """Stage the workspace and run the workflow there; record the outcome in ``run``."""
    from steps.provenance import now

    transcript = output / "workflow.log"
    output.mkdir(parents=True, exist_ok=True)
    transcript.unlink(missing_ok=True)
    timeout = args.timeout_minutes * 60
    try:
        try:
            stage_workspace(args.source, workspace)
        except PubflowError as err:  # a declared input is missing: this run cannot happen
            raise RunFailed(str(err)) from None
        if args.reana:
            settings = ReanaSettings(client=Path(args.reana_client),
                                     server_url=args.reana_server_url,
                                     workflow=args.reana_workflow,
                                     poll_seconds=args.reana_poll_seconds,
                                     timeout_seconds=timeout)
            client = ReanaClient(settings, workspace, transcript)
            run.client_version = client.version()
            run.reana_server = settings.server_url
            run.command = ["reana-client", "start", "-w", settings.workflow]
            outputs = [*declared_outputs(workspace), _histogram_folder_of(workspace)]
            run.reana_workflow, run.command = run_reana(client, list(dict.fromkeys(outputs)))
        else:
            run.command = ["snakemake", "--cores", str(args.cores)]
            run_local(workspace, args.cores, transcript, timeout)
        run.status = "completed"
    except RunFailed as err:
        run.status, run.error = "failed", str(err)
        log.error("the run failed: %s", err)
    run.ended = now()


def write_provenance(args: argparse.Namespace, workspace: Path, output: Path,
                     run: RunRecord, notes: list[str]) -> str | None:
    """The run's RO-Crate at the root of the workspace, its payload (no copy beside the
    report: there it would list files it does not hold)."""
    from steps import provenance

    try:
        images = provenance.container_images(workspace) if args.reana else []
        crate = provenance.record(workspace, run, source_repo=args.source, images=images)
        (output / provenance.CRATE_NAME).unlink(missing_ok=True)  # an orphan of older runs
    except (OSError, ValueError, PubflowError) as err:  # never lose the verdict to this
        notes.append(f"the provenance record could not be written: {err}")
        log.error("provenance: %s", err)
        return None
    return str(crate)


def compare_outputs(workspace: Path, reference: Reference, tolerances: Tolerances,
                    notes: list[str]) -> tuple[Snapshot, dict[str, Any], list[Result]]:
    """Read the new outputs and judge them against the reference.

    Returns:
        The new snapshot, its sections (for a reference update) and the results; empty when
        the outputs cannot be read (which ``notes`` then says).
    """
    from steps import compare

    try:
        new, sections = _new_snapshot(workspace, reference.kind == "hepdata")
    except PubflowError as err:
        notes.append(f"the new outputs could not be read: {err}")
        return {}, {}, []
    if reference.snapshot is None:
        notes.append("there was no reference: these outputs became the reference")
    config = workspace / layout.RESOLVED_CONFIG
    made_with = reference.metadata.get("config_sha256")
    if made_with and config.is_file() and sha256sum(config) != made_with:
        notes.append(f"{layout.RESOLVED_CONFIG} differs from the config the reference was "
                     "made with: differences may be intended")
    return new, sections, compare.compare(reference.snapshot or new, new, tolerances)


def main(args: argparse.Namespace) -> None:
    from steps import compare, provenance, report
    from steps.provenance import RunRecord, now

    _check_args(args)
    output = Path(args.output)
    tolerances_path = Path(args.tolerances or Path(args.reference) / compare.TOLERANCES_FILE)
    tolerances = compare.load_tolerances(tolerances_path)
    reference = load_reference(args)  # before the long run: fail fast if it is unreadable

    temporary = None
    run: RunRecord | None = None
    notes: list[str] = []
    crate_path: str | None = None
    if args.results:
        workspace = Path(args.results)
    else:
        if args.workdir:
            workspace = Path(args.workdir)
            if workspace.exists() and any(workspace.iterdir()):
                raise PubflowError("not empty: the workspace must be clean", path=workspace)
        else:
            temporary = Path(tempfile.mkdtemp(prefix="pubflow-reproduce-"))
            workspace = temporary / "workspace"
        run = RunRecord(mode="reana" if args.reana else "local", command=[], started=now(),
                        workspace=str(workspace.resolve()),
                        driver=["python", "-m", "steps.reproduce", *sys.argv[1:]],
                        engine=("reana-client (REANA)" if args.reana else
                                f"snakemake {importlib.metadata.version('snakemake')}"))
        execute(args, workspace, output, run)
        crate_path = write_provenance(args, workspace, output, run, notes)

        if temporary is not None and not args.keep_workdir and crate_path:
            notes.append("the run's RO-Crate went with its temporary workspace (its payload): "
                         "--workdir or --keep-workdir keeps both")
            crate_path = None

    new, sections, results = ({}, {}, []) if run is not None and run.status != "completed" \
        else compare_outputs(workspace, reference, tolerances, notes)
    updating = args.update_reference and bool(sections)
    if updating:
        notes.append(f"--update-reference: the reference in {args.reference} is replaced by "
                     f"these outputs ({args.reason}); the differences listed are the update")
    body = report.write(
        report.Report(results=results, run=run, reference=reference.as_dict(),
                      tolerances=str(tolerances_path), outputs=str(workspace), notes=notes,
                      provenance=crate_path),
        output, reference.snapshot or new, new, max_plots=args.max_plots)
    if updating:
        update_reference(Path(args.reference), sections, workspace, args.reason,
                         tolerances_path, {
                             "created": body["created"],
                             "commit": provenance.git_source(args.source).get("commit"),
                             "run": run.as_dict() if run else {"outputs": str(workspace)},
                             "changed_quantities": len(body["moved"])})
    if temporary is not None and not args.keep_workdir:
        shutil.rmtree(temporary, ignore_errors=True)
    elif run is not None:
        log.info("workspace kept: %s", workspace)
    where = output / "report.md"
    if run is not None and run.status != "completed":
        raise PubflowError(f"the run failed: {run.error} (report: {where})")
    if not body["passed"] and not updating:
        raise PubflowError(f"{body['verdict']} (report: {where})")
    log.info("%s", body["verdict"])


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser))
