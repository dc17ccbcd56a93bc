"""provenance: a Workflow Run RO-Crate of one run: code, environment, inputs, outputs, times.

Written with every ``python -m steps.reproduce`` run to
``<workspace>/results/provenance/ro-crate-metadata.json`` (and by hand, for a plain
``snakemake`` run, with ``python -m steps.provenance``). It records, with the ``rocrate``
library, in the terms of the Workflow Run Crate profile 0.6 (RO-Crate 1.3):

* the workflow (``Snakefile``, the main entity) with the git commit and remote of the source
  checkout, read from ``.git`` without running git (or ``GITHUB_SHA``/``CI_COMMIT_SHA``);
* one ``CreateAction`` for the run: the command line, start and end times, its status, every
  input (the files the run's workspace was staged with) and every output (all of
  ``results/``) with size and sha256, the container images with their registry digests when
  the run used containers (REANA), and the ``SOURCE_DATE_EPOCH`` that pins ROOT timestamps;
* the exact version of every Python package of the environment (``softwareRequirements``),
  and the engine that ran it (Snakemake, or REANA through reana-client) in an
  ``OrganizeAction``.

The ``@id`` of every file is its path relative to the run's workspace (the directory holding
``results/`` and ``inputs/``): a bundle that puts this file at its root beside those folders is
an attached RO-Crate as it stands.

Hashing is cheap: each file is read at most once per process (:class:`Hasher`), and digests
the run itself established are re-used: the dataset manifest's sha256 of every input the
workflow verified before reading it, and the validation report's sha256 of every artefact it
validated (when the file has not changed since).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import mimetypes
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps import __version__, cli, layout
from steps.errors import PubflowError
from steps.io import atomic_path, sha256sum

log = logging.getLogger(__name__)

CRATE_DIR = Path("results") / "provenance"
CRATE_NAME = "ro-crate-metadata.json"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.6": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.6": "Workflow Run Crate",
}
#: Directories of a workspace that are neither inputs nor outputs of the workflow.
NOT_INPUTS = ("results", "logs", ".snakemake", ".reana-download", ".git", "inputs/reference")
ENCODINGS = {".root": "application/x-root", ".npz": "application/x-npz",
             ".yaml": "application/yaml", ".smk": "text/x-snakemake", ".feature": "text/plain",
             ".md": "text/markdown", ".log": "text/plain", ".toml": "application/toml"}
DEFAULT_IMAGE_PREFIX = "ghcr.io/pubflow/pubflow"


def now() -> dt.datetime:
    """The current time, UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime | None) -> str | None:
    """ISO 8601 with the UTC offset, or None."""
    return moment.isoformat() if moment else None


@dataclass
class RunRecord:
    """What happened: one run of the workflow.

    Attributes:
        mode: ``local`` (Snakemake here) or ``reana`` (through reana-client).
        command: The command line that started it.
        started: When it started.
        ended: When it ended (None while running).
        status: ``running``, ``completed`` or ``failed``.
        error: Why it failed (one line).
        workspace: The directory the run happened in (or was staged in, for REANA).
        engine: The workflow engine and its version (``snakemake 9.27.1``).
        reana_workflow: The REANA workflow run (``pubflow-reproduce.12``), for REANA.
        reana_server: The REANA server, for REANA.
        client_version: reana-client's version, for REANA.
        driver: The command that drove the run (``python -m steps.reproduce ...``).
    """

    mode: str
    command: list[str]
    started: dt.datetime
    ended: dt.datetime | None = None
    status: str = "running"
    error: str | None = None
    workspace: str = ""
    engine: str = ""
    reana_workflow: str | None = None
    reana_server: str | None = None
    client_version: str | None = None
    driver: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end."""
        return (self.ended - self.started).total_seconds() if self.ended else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for reports."""
        return {"mode": self.mode, "command": shlex.join(self.command),
                "driver": shlex.join(self.driver),
                "started": iso(self.started), "ended": iso(self.ended),
                "duration_seconds": self.duration, "status": self.status, "error": self.error,
                "workspace": self.workspace, "engine": self.engine,
                "reana_workflow": self.reana_workflow, "reana_server": self.reana_server}


@dataclass
class Hasher:
    """sha256 of files, each read at most once while it does not change.

    Attributes:
        files_read: How many files were actually read (the rest came from the cache).
    """

    files_read: int = 0
    _known: dict[Path, tuple[int, int, str]] = field(default_factory=dict)

    @staticmethod
    def _key(path: Path) -> tuple[Path, int, int]:
        st = path.stat()
        return path.resolve(), st.st_size, st.st_mtime_ns

    def seed(self, path: str | Path, digest: str) -> None:
        """Record a digest established elsewhere for the file as it is now."""
        resolved, size, mtime = self._key(Path(path))
        self._known[resolved] = (size, mtime, digest)

    def sha256(self, path: str | Path) -> str:
        """The file's sha256, read only if not known for its current size and time."""
        resolved, size, mtime = self._key(Path(path))
        known = self._known.get(resolved)
        if known and known[:2] == (size, mtime):
            return known[2]
        digest = sha256sum(resolved)
        self.files_read += 1
        self._known[resolved] = (size, mtime, digest)
        return digest


def seed_from_run(hasher: Hasher, workspace: Path) -> int:
    """Re-use the digests a successful run established; return how many were taken.

    The select step verified every input of the dataset manifest (size and sha256) before
    reading it; the validate step recorded the sha256 of every artefact it validated.
    """
    taken = 0
    config = layout.workspace_config(workspace)
    manifest_path = workspace / config.get("Datasets", "inputs/datasets.yaml")
    if manifest_path.is_file():
        for entry in (layout.load_yaml(manifest_path) or {}).get("files", []):
            path = workspace / entry["path"]
            # an adler32-only entry gives no sha256 to re-use: the file is hashed as any other
            if (entry.get("sha256") and path.is_file()
                    and path.stat().st_size == entry.get("size")):
                hasher.seed(path, entry["sha256"])
                taken += 1
    report_path = workspace / "results" / "validation" / "report.json"
    if report_path.is_file():
        report_time = report_path.stat().st_mtime_ns
        for check in json.loads(report_path.read_text()).get("checks", []):
            path = workspace / check.get("artefact", "")
            if check.get("sha256") and path.is_file() and path.stat().st_mtime_ns <= report_time:
                hasher.seed(path, check["sha256"])
                taken += 1
    return taken


def _git_dir(repo: Path) -> Path | None:
    git = repo / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            git = (repo / text[len("gitdir:"):].strip()).resolve()
    return git if (git / "HEAD").is_file() else None


def git_source(repo: str | Path | None) -> dict[str, str]:
    """The commit (and branch and origin URL) of a checkout, read from ``.git`` directly.

    Falls back on the CI's variables (``GITHUB_SHA``, ``CI_COMMIT_SHA``) when there is no
    ``.git``. Uncommitted changes are not detected (that would need git itself).
    """
    out: dict[str, str] = {}
    git = _git_dir(Path(repo)) if repo else None
    if git is not None:
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref:"):
            ref = head[4:].strip()
            out["branch"] = ref.removeprefix("refs/heads/")
            for base in (git, common):
                if (base / ref).is_file():
                    out["commit"] = (base / ref).read_text().strip()
                    break
            else:
                packed = common / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            out["commit"] = parts[0]
        elif re.fullmatch(r"[0-9a-f]{40,64}", head):
            out["commit"] = head
        config = common / "config"
        if config.is_file():
            match = re.search(r'\[remote "origin"\][^\[]*?url\s*=\s*(\S+)', config.read_text())
            if match:
                out["remote"] = re.sub(r"//[^/@]+@", "//", match.group(1))  # no credentials
    if "commit" not in out:
        for variable in ("GITHUB_SHA", "CI_COMMIT_SHA"):
            if os.environ.get(variable):
                out["commit"] = os.environ[variable]
                break
    return out


def packages() -> list[tuple[str, str]]:
    """``(name, version)`` of every distribution installed in this interpreter's environment."""
    found = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()
             if d.metadata["Name"]}
    return sorted(found, key=lambda p: (p[0].lower(), p[1]))


def container_images(workspace: Path) -> list[str]:
    """The images the workflow's rules name (``container: image("<environment>")``).

    Composed like ``workflows/rules/common.smk`` does: ``<Prefix>-<environment>:<Tag>`` with
    the config's ``Images`` (default prefix ``ghcr.io/pubflow/pubflow``, tag the package
    version of the workspace's ``steps``).
    """
    environments: set[str] = set()
    for rule_file in sorted((workspace / "workflows" / "rules").glob("*.smk")):
        environments |= set(re.findall(r'image\(\s*"([^"]+)"\s*\)', rule_file.read_text()))
    images = layout.workspace_config(workspace).get("Images", {})
    tag = __version__
    init = workspace / "steps" / "__init__.py"
    if init.is_file():
        match = re.search(r'__version__\s*=\s*"([^"]+)"', init.read_text())
        tag = match.group(1) if match else tag
    prefix = images.get("Prefix", DEFAULT_IMAGE_PREFIX)
    return [f"{prefix}-{env}:{images.get('Tag', tag)}" for env in sorted(environments)]


def image_digest(image: str, timeout: float = 20) -> str | None:
    """The registry digest (``sha256:...``) of a locally pulled image, via ``docker``."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        result = subprocess.run([docker, "image", "inspect", "--format",
                                 "{{json .RepoDigests}}", image], capture_output=True,
                                text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        digests = json.loads(result.stdout or "[]") or []
    except json.JSONDecodeError:
        return None
    for entry in digests:
        if "@sha256:" in str(entry):
            return str(entry).split("@", 1)[1]
    return None


def split_image(image: str) -> dict[str, str]:
    """``ghcr.io/a/b:1`` -> registry ``ghcr.io``, name ``a/b``, tag ``1``."""
    name, tag = image.rsplit(":", 1) if ":" in image.rsplit("/", 1)[-1] else (image, "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return {"registry": first, "name": rest, "tag": tag}
    return {"registry": "docker.io", "name": name, "tag": tag}


def workspace_files(workspace: Path, under: str | None = None,
                    exclude: Iterable[str] = ()) -> list[str]:
    """Files of the workspace (or of one folder of it), as sorted workspace-relative paths."""
    top = workspace / under if under else workspace
    skipped = tuple(exclude)
    out = []
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(workspace).as_posix()
        # Snakemake marks directory outputs with an empty .snakemake_timestamp: not a result
        if not path.is_file() or "__pycache__" in path.parts or \
                path.name == ".snakemake_timestamp":
            continue
        if any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skipped):
            continue
        out.append(rel)
    return out


def input_files(workspace: Path) -> list[str]:
    """The files the workspace was staged with: everything but outputs, logs and caches."""
    return workspace_files(workspace, exclude=NOT_INPUTS)


def output_files(workspace: Path) -> list[str]:
    """Every file under ``results/`` (this crate and the reproduce report excepted)."""
    return workspace_files(workspace, "results",
                           exclude=(CRATE_DIR.as_posix(), "results/reproduce"))


def _encoding(rel: str) -> str | None:
    if rel.endswith(".tar.gz"):
        return "application/gzip"
    suffix = Path(rel).suffix
    return ENCODINGS.get(suffix) or mimetypes.guess_type(rel)[0]


def _add_files(crate: Any, workspace: Path, names: Sequence[str], hasher: Hasher,
               extra: dict[str, Any] | None = None) -> list[Any]:
    entities = []
    for rel in names:
        path = workspace / rel
        props: dict[str, Any] = {"contentSize": str(path.stat().st_size),
                                 "sha256": hasher.sha256(path)}
        encoding = _encoding(rel)
        if encoding:
            props["encodingFormat"] = encoding
        props.update(extra or {})
        entities.append(crate.add_file(source=None, dest_path=rel, properties=props))
    return entities


def build_crate(
    workspace: str | Path,
    run: RunRecord,
    *,
    hasher: Hasher | None = None,
    source_repo: str | Path | None = None,
    images: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
) -> Any:
    """The Workflow Run RO-Crate of ``run`` (a ``rocrate.rocrate.ROCrate``), not yet written.

    Args:
        workspace: The run's workspace (``inputs/``, ``results/`` ...).
        run: What happened.
        hasher: Digest cache to use (and fill).
        source_repo: The checkout the workspace was staged from, for its git commit.
        images: Container images the run used (none for a local run).
        outputs: Output files to list (default: all of ``results/``).
    """
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    workspace = Path(workspace)
    hasher = hasher or Hasher()
    if run.status == "completed":
        seed_from_run(hasher, workspace)
    publication = layout.workspace_config(workspace).get("Publication", {})

    crate = ROCrate()
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
    root = crate.root_dataset
    root["name"] = f"pubflow workflow run, {run.mode}, {iso(run.started)}"
    root["description"] = (
        f"Provenance of one run of the pubflow workflow ({publication.get('Title', '')}): "
        "code, environment, inputs and outputs with their checksums. The @id of every file "
        "is its path relative to the run's workspace (the folder holding inputs/ and "
        f"results/); this file is {CRATE_DIR.as_posix()}/{CRATE_NAME} of that workspace.")
    root["datePublished"] = iso(run.ended or run.started)
    license_ = publication.get("License")
    if license_:
        lic = crate.add(ContextEntity(crate, license_["URL"], properties={
            "@type": "CreativeWork", "name": license_["Name"]}))
        root["license"] = lic

    source = git_source(source_repo)
    wf_props: dict[str, Any] = {"name": "pubflow workflow (Snakefile)"}
    if "commit" in source:
        wf_props["version"] = source["commit"]
    if "remote" in source:
        wf_props["codeRepository"] = source["remote"]
    engine_version = run.engine.split()[-1] if run.engine else None
    workflow = crate.add_workflow(source=None, dest_path="Snakefile", main=True,
                                  lang="snakemake", lang_version=engine_version,
                                  properties=wf_props)
    if (workspace / "Snakefile").is_file():
        workflow["sha256"] = hasher.sha256(workspace / "Snakefile")
    for profile, name in PROFILES.items():
        entity = crate.add(ContextEntity(crate, profile, properties={
            "@type": "CreativeWork", "name": name, "version": "0.6"}))
        root.append_to("conformsTo", entity)

    requirements = []
    for name, version in packages():
        requirements.append(crate.add(ContextEntity(
            crate, f"https://pypi.org/project/{name}/{version}/",
            properties={"@type": "SoftwareApplication", "name": name,
                        "softwareVersion": version})))
    python = crate.add(ContextEntity(crate, "#python", properties={
        "@type": "SoftwareApplication", "name": "Python",
        "softwareVersion": platform.python_version(), "url": "https://www.python.org"}))
    workflow["softwareRequirements"] = [python, *requirements]

    inputs = [rel for rel in input_files(workspace) if rel != "Snakefile"]
    objects = _add_files(crate, workspace, inputs, hasher)
    results = _add_files(crate, workspace,
                         output_files(workspace) if outputs is None else outputs, hasher)
    run_id = f"#run-{uuid.uuid4()}"
    action_props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"pubflow run ({run.mode}) {iso(run.started)}",
        "description": shlex.join(run.command),
        "startTime": iso(run.started),
        "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"
                         if run.status == "completed" else
                         "http://schema.org/FailedActionStatus"},
    }
    if run.ended:
        action_props["endTime"] = iso(run.ended)
    if run.error:
        action_props["error"] = run.error
    action = crate.add_action(workflow, identifier=run_id, object=objects, result=results,
                              properties=action_props)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        action["environment"] = [crate.add(ContextEntity(crate, "#SOURCE_DATE_EPOCH", properties={
            "@type": "PropertyValue", "name": "SOURCE_DATE_EPOCH", "value": epoch}))]
    image_entities = []
    for image in images:
        parts = split_image(image)
        props: dict[str, Any] = {"@type": "ContainerImage", "name": parts["name"],
                                 "registry": parts["registry"], "tag": parts["tag"],
                                 "additionalType": {"@id": "https://w3id.org/ro/terms/"
                                                           "workflow-run#DockerImage"}}
        digest = image_digest(image)
        if digest:
            props["sha256"] = digest.removeprefix("sha256:")
        image_entities.append(crate.add(ContextEntity(crate, f"#image-{parts['name']}",
                                                      properties=props)))
    if image_entities:
        action["containerImage"] = image_entities
    logs = workspace_files(workspace, "logs") if (workspace / "logs").is_dir() else []
    _add_files(crate, workspace, logs, hasher, extra={"about": {"@id": run_id}})

    engine_props: dict[str, Any] = {"@type": "SoftwareApplication",
                                    "name": run.engine or "workflow engine"}
    if engine_version:
        engine_props["softwareVersion"] = engine_version
    engine = crate.add(ContextEntity(crate, "#engine", properties=engine_props))
    organize: dict[str, Any] = {"@type": "OrganizeAction", "name": "pubflow reproduce",
                                "instrument": engine, "result": action,
                                "startTime": iso(run.started)}
    if run.driver:
        organize["description"] = shlex.join(run.driver)
    if run.ended:
        organize["endTime"] = iso(run.ended)
    if run.mode == "reana":
        reana = crate.add(ContextEntity(crate, "https://reana.io", properties={
            "@type": "SoftwareApplication", "name": "REANA", "url": "https://reana.io"}))
        organize["object"] = reana
        if run.reana_workflow:
            organize["name"] = f"REANA workflow {run.reana_workflow}"
        if run.reana_server:
            reana["serviceUrl"] = run.reana_server
        if run.client_version:
            engine["softwareVersion"] = run.client_version
    root["mentions"] = [action, crate.add(ContextEntity(crate, "#organize", properties=organize))]
    return crate


def write_crate(crate: Any, path: str | Path) -> Path:
    """Write the crate's metadata file (only the metadata: the files stay where they are)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(crate.metadata.generate(), indent=2, sort_keys=True,
                                  ensure_ascii=False) + "\n")
    return path


def record(workspace: str | Path, run: RunRecord, **kwargs: Any) -> Path:
    """Build and write the crate into ``<workspace>/results/provenance/``; return its path."""
    hasher = kwargs.pop("hasher", None) or Hasher()
    crate = build_crate(workspace, run, hasher=hasher, **kwargs)
    path = write_crate(crate, Path(workspace) / CRATE_DIR / CRATE_NAME)
    log.info("provenance: %s (%d files hashed)", path, hasher.files_read)
    return path


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("provenance", __doc__.split("\n")[0])
    p.add_argument("--workspace", default=".", help="the run's workspace (holds results/)")
    p.add_argument("--source", default=None,
                   help="checkout the workspace came from, for the git commit "
                        "(default: the workspace)")
    p.add_argument("--started", help="start of the run, ISO 8601 (default: oldest log)")
    p.add_argument("--ended", help="end of the run, ISO 8601 (default: newest output)")
    p.add_argument("--command", default="snakemake --cores all",
                   help="the command that ran the workflow")
    return p


def _time(text: str | None, fallback: float) -> dt.datetime:
    if text:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise PubflowError(f"not an ISO 8601 time: {text!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(int(fallback), dt.UTC)


def main(args: argparse.Namespace) -> None:
    workspace = Path(args.workspace)
    results = workspace / "results"
    if not results.is_dir():
        raise PubflowError("no results/ here: run the workflow first", path=workspace)
    outputs = [workspace / rel for rel in output_files(workspace)]
    logs = [workspace / rel for rel in workspace_files(workspace, "logs")] \
        if (workspace / "logs").is_dir() else []
    # without recorded times, the oldest log (a job's start) and the newest output bound it
    oldest = min((p.stat().st_mtime for p in logs or outputs), default=0)
    newest = max((p.stat().st_mtime for p in outputs), default=oldest)
    run = RunRecord(mode="local", command=shlex.split(args.command),
                    started=_time(args.started, oldest), ended=_time(args.ended, newest),
                    status="completed", workspace=str(workspace.resolve()),
                    engine=f"snakemake {importlib.metadata.version('snakemake')}")
    record(workspace, run, source_repo=args.source or workspace)


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser))
