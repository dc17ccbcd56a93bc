"""provenance: a Workflow Run RO-Crate of one run: code, environment, inputs, outputs, times.

Written with every ``python -m steps.reproduce`` run to ``<workspace>/ro-crate-metadata.json``
(and by hand, for a plain ``snakemake`` run, with ``python -m steps.provenance``): the run's
workspace (the directory holding ``Snakefile``, ``inputs/``, ``results/`` and ``logs/``) is the
crate's root and payload, and the ``@id`` of every file is its path relative to it. It is an
RO-Crate 1.1 (the version the Workflow Run Crate profiles 0.5 build on), made with the
``rocrate`` library, conforming to Workflow RO-Crate 1.0 and the Process and Workflow Run Crate
profiles 0.5, and to the Provenance Run Crate profile 0.5 when Snakemake's per-job records
(``.snakemake/metadata``) are in the workspace (a local run; REANA keeps them on the cluster).
It records:

* the workflow (``Snakefile``, the main entity) with the git commit and remote of the source
  checkout, read from ``.git`` without running git (or ``GITHUB_SHA``/``CI_COMMIT_SHA``);
* one ``CreateAction`` for the run: the command line, start and end times, its status, every
  input (the files the run's workspace was staged with) and every output (all of
  ``results/``) with size and sha256, the container images with their registry digests when
  the run used containers (REANA), and the ``SOURCE_DATE_EPOCH`` that pins ROOT timestamps;
* with the engine's records, one ``CreateAction`` per job (rule, times, inputs, outputs and
  log, command), each orchestrated by a ``ControlAction`` of the rule's ``HowToStep``;
* the exact version of every Python package of the environment (``softwareRequirements``),
  and the engine that ran it (Snakemake, or REANA through reana-client) in an
  ``OrganizeAction``; the authors and their organisation (``Publication.Authors``).

A deposit of the results (Zenodo, InvenioRDM: flat, copies under new names, the workflow
packed) carries a crate of its own files derived from the run's (:func:`deposit_crate`), with
what still applies: the workflow, the run, its software and engine, the authors and licence.

The suite checks both with the RO-Crate validator (``tests/test_rocrate_validator.py``).

Hashing is cheap: each file is read at most once per process (:class:`Hasher`), and digests
the run itself established are re-used: the dataset manifest's sha256 of every input the
workflow verified before reading it, and the validation report's sha256 of every artefact it
validated (when the file has not changed since).
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
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
from urllib.parse import quote, unquote

from steps import __version__, cli, layout
from steps.errors import PubflowError
from steps.io import atomic_path, sha256sum

log = logging.getLogger(__name__)

#: The crate's metadata file, at the root of the workspace it describes (the crate's payload).
CRATE_NAME = "ro-crate-metadata.json"
#: Where earlier versions wrote it (a file there is not at the root of its payload).
LEGACY_CRATE = Path("results") / "provenance" / CRATE_NAME
README = "README.md"
#: The RO-Crate version the Workflow Run Crate profiles 0.5 (and Workflow RO-Crate 1.0) build on.
CRATE_VERSION = "1.1"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
#: Claimed only when the engine's per-job records are there (a local Snakemake run).
PROVENANCE_PROFILE = "https://w3id.org/ro/wfrun/provenance/0.5"
BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
#: Directories of a workspace that are neither inputs nor outputs of the workflow (and every
#: hidden file or folder: .snakemake, .git, virtual environments, caches).
NOT_INPUTS = ("results", "logs", "inputs/reference", CRATE_NAME, README)
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
        # hidden: .snakemake, .git, venvs, caches; Snakemake marks directory outputs with an
        # empty .snakemake_timestamp: not a result either
        if not path.is_file() or "__pycache__" in path.parts or \
                any(part.startswith(".") for part in path.relative_to(workspace).parts):
            continue
        if any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skipped):
            continue
        out.append(rel)
    return out


def input_files(workspace: Path) -> list[str]:
    """The files the workspace was staged with: everything but outputs, logs and caches."""
    return workspace_files(workspace, exclude=NOT_INPUTS)


def output_files(workspace: Path) -> list[str]:
    """Every file under ``results/`` (the reproduce report, and a crate left there by an
    earlier version, excepted)."""
    return workspace_files(workspace, "results",
                           exclude=(LEGACY_CRATE.as_posix(), "results/reproduce"))


def _encoding(rel: str) -> str:
    if rel.endswith(".tar.gz"):
        return "application/gzip"
    if Path(rel).name == "Snakefile":
        return ENCODINGS[".smk"]
    suffix = Path(rel).suffix
    return ENCODINGS.get(suffix) or mimetypes.guess_type(rel)[0] or "application/octet-stream"


def _file_props(workspace: Path, rel: str, hasher: Hasher) -> dict[str, Any]:
    path = workspace / rel
    return {"contentSize": str(path.stat().st_size), "sha256": hasher.sha256(path),
            "encodingFormat": _encoding(rel)}


def _add_files(crate: Any, workspace: Path, names: Sequence[str], hasher: Hasher,
               extra: dict[str, Any] | None = None) -> list[Any]:
    entities = []
    for rel in names:
        props = _file_props(workspace, rel, hasher)
        props.update(extra or {})
        entities.append(crate.add_file(source=None, dest_path=rel, properties=props))
    return entities


@dataclass
class Job:
    """One job of a Snakemake run, as the engine recorded it in ``.snakemake/metadata``.

    Attributes:
        rule: The rule it ran.
        started: When it started.
        ended: When it ended.
        inputs: Its input paths (workspace-relative; directories as such).
        outputs: Its output paths.
        logs: Its log files.
        command: The shell command it ran.
    """

    rule: str
    started: dt.datetime
    ended: dt.datetime
    inputs: list[str]
    outputs: list[str]
    logs: list[str]
    command: str = ""


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):  # Snakemake 9 writes some lists as their Python repr
        try:
            value = ast.literal_eval(value) if value.startswith("[") else [value]
        except (ValueError, SyntaxError):
            value = [value]
    return [str(v) for v in value or []]


def snakemake_jobs(workspace: Path) -> list[Job]:
    """The jobs of the last Snakemake run in ``workspace``, from its per-output records.

    Snakemake keeps, for every output file, the rule, job hash, start and end time, inputs,
    logs and shell command of the job that made it (``.snakemake/metadata/<base64 path>``);
    outputs with the same rule, job hash and start time are one job. Incomplete records are
    left out. Empty when there are no records (a REANA run: they stay on the cluster).
    """
    folder = workspace / ".snakemake" / "metadata"
    jobs: dict[tuple[str, Any, float], Job] = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file():
            continue
        try:
            name = base64.urlsafe_b64decode(
                "".join(path.relative_to(folder).parts).encode()).decode()
            meta = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        if meta.get("incomplete") or not meta.get("rule") or not meta.get("starttime") \
                or not meta.get("endtime"):
            continue
        key = (meta["rule"], meta.get("job_hash"), meta["starttime"])
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = Job(
                rule=meta["rule"],
                started=dt.datetime.fromtimestamp(int(meta["starttime"]), dt.UTC),
                ended=dt.datetime.fromtimestamp(int(meta["endtime"]), dt.UTC),
                inputs=_as_list(meta.get("input")), outputs=[], logs=_as_list(meta.get("log")),
                command=str(meta.get("shellcmd") or ""))
        job.outputs.append(name)
    return sorted(jobs.values(), key=lambda j: (j.started, j.rule, sorted(j.outputs)))


def _people(crate: Any, publication: dict[str, Any]) -> tuple[list[Any], Any | None]:
    """The authors (``Person``) and the publisher (the first author's ``Organization``)."""
    from rocrate.model.contextentity import ContextEntity

    authors, publisher = [], None
    for person in publication.get("Authors") or []:
        orcid = person.get("ORCID")
        ident = f"https://orcid.org/{orcid}" if orcid else \
            "#person-" + re.sub(r"[^a-z0-9]+", "-", person["Name"].lower()).strip("-")
        props: dict[str, Any] = {"@type": "Person", "name": person["Name"]}
        affiliation = person.get("Affiliation")
        if affiliation:
            org_id = "#org-" + re.sub(r"[^a-z0-9]+", "-", affiliation.lower()).strip("-")
            org_props = {"@type": "Organization", "name": affiliation}
            if person.get("AffiliationURL"):
                org_props["url"] = person["AffiliationURL"]
            org = crate.get(org_id) or crate.add(ContextEntity(crate, org_id,
                                                               properties=org_props))
            props["affiliation"] = org
            publisher = publisher or org
        authors.append(crate.add(ContextEntity(crate, ident, properties=props)))
    return authors, publisher


def _pypi(crate: Any, name: str, version: str) -> Any:
    from rocrate.model.contextentity import ContextEntity

    ident = f"https://pypi.org/project/{name}/{version}/"
    return crate.get(ident) or crate.add(ContextEntity(crate, ident, properties={
        "@type": "SoftwareApplication", "name": name, "softwareVersion": version,
        "url": ident}))


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

    RO-Crate 1.1 (the version the Workflow Run Crate profiles 0.5 build on), conforming to
    Workflow RO-Crate 1.0 and the Process and Workflow Run Crate profiles 0.5, and to the
    Provenance Run Crate profile 0.5 when Snakemake's per-job records are in the workspace
    (one ``CreateAction`` per job, with a ``ControlAction`` for it and a ``HowToStep`` and
    tool per rule).

    Args:
        workspace: The run's workspace (``inputs/``, ``results/`` ...): the crate's root.
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
    jobs = snakemake_jobs(workspace) if run.mode == "local" else []

    crate = ROCrate(version=CRATE_VERSION)
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
    root = crate.root_dataset
    root["name"] = f"pubflow workflow run, {run.mode}, {iso(run.started)}"
    root["description"] = (
        f"Provenance of one run of the pubflow workflow ({publication.get('Title', '')}): "
        "code, environment, inputs and outputs with their checksums. The crate's root is "
        "the run's workspace (the folder holding inputs/ and results/), where this file is "
        f"{CRATE_NAME}.")
    root["datePublished"] = iso(run.ended or run.started)
    license_ = publication.get("License")
    if license_:
        root["license"] = crate.add(ContextEntity(crate, license_["URL"], properties={
            "@type": "CreativeWork", "name": license_["Name"]}))
    authors, publisher = _people(crate, publication)
    if authors:
        root["author"] = authors
    if publisher is not None:
        root["publisher"] = publisher

    source = git_source(source_repo)
    version = source.get("commit") or __version__
    wf_props: dict[str, Any] = {
        "name": "pubflow workflow (Snakefile)", "version": version,
        "conformsTo": {"@id": BIOSCHEMAS_WORKFLOW}}
    # url: where the code is (the repository, else the file in this crate)
    wf_props["url"] = source.get("remote", "Snakefile")
    if "remote" in source:
        wf_props["codeRepository"] = source["remote"]
    if authors:
        wf_props["creator"] = authors
    if license_:
        wf_props["license"] = root["license"]
    if (workspace / "Snakefile").is_file():
        wf_props.update(_file_props(workspace, "Snakefile", hasher))
    if jobs:  # a workflow that links to its steps is a HowTo too
        wf_props["@type"] = ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"]
    engine_version = run.engine.split()[-1] if run.mode == "local" and run.engine else None
    workflow = crate.add_workflow(source=None, dest_path="Snakefile", main=True,
                                  lang="snakemake", lang_version=engine_version,
                                  properties=wf_props)
    claimed = dict(PROFILES)
    if jobs:
        claimed[PROVENANCE_PROFILE] = "Provenance Run Crate"
    for profile, name in claimed.items():
        entity = crate.add(ContextEntity(crate, profile, properties={
            "@type": "CreativeWork", "name": name, "version": profile.rsplit("/", 1)[-1]}))
        root.append_to("conformsTo", entity)

    requirements = [_pypi(crate, name, pkg_version) for name, pkg_version in packages()]
    python_version = platform.python_version()
    python = crate.add(ContextEntity(
        crate, f"https://www.python.org/downloads/release/python-"
               f"{python_version.replace('.', '')}/",
        properties={"@type": "SoftwareApplication", "name": "Python",
                    "softwareVersion": python_version, "url": "https://www.python.org"}))
    workflow["softwareRequirements"] = [python, *requirements]

    readme = workspace / README
    if readme.is_file():
        props = _file_props(workspace, README, hasher)
        props.update({"about": root, "name": "README"})
        crate.add_file(source=None, dest_path=README, properties=props)
    inputs = [rel for rel in input_files(workspace) if rel != "Snakefile"]
    objects = _add_files(crate, workspace, inputs, hasher)
    results = _add_files(crate, workspace,
                         output_files(workspace) if outputs is None else outputs, hasher)
    agent = publisher or (authors[0] if authors else None)
    status = COMPLETED if run.status == "completed" else FAILED
    run_id = f"#run-{uuid.uuid4()}"
    action_props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"pubflow run ({run.mode}) {iso(run.started)}",
        "description": shlex.join(run.command),
        "startTime": iso(run.started),
        "actionStatus": status,
    }
    if agent is not None:
        action_props["agent"] = agent
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
        props = {"@type": "ContainerImage", "name": parts["name"],
                 "registry": parts["registry"], "tag": parts["tag"],
                 "additionalType": {"@id": "https://w3id.org/ro/terms/workflow-run#DockerImage"}}
        digest = image_digest(image)
        if digest:
            props["sha256"] = digest.removeprefix("sha256:")
        image_entities.append(crate.add(ContextEntity(crate, f"#image-{parts['name']}",
                                                      properties=props)))
    if image_entities:
        action["containerImage"] = image_entities
    logs = workspace_files(workspace, "logs") if (workspace / "logs").is_dir() else []
    _add_files(crate, workspace, logs, hasher, extra={"about": {"@id": run_id}})

    if run.mode == "reana":
        engine = _pypi(crate, "reana-client", run.client_version) if run.client_version else \
            crate.add(ContextEntity(crate, "https://pypi.org/project/reana-client/", properties={
                "@type": "SoftwareApplication", "name": "reana-client",
                "url": "https://pypi.org/project/reana-client/"}))
    else:
        engine = _pypi(crate, "snakemake", engine_version or
                       importlib.metadata.version("snakemake"))
    organize: dict[str, Any] = {"@type": "OrganizeAction", "name": "pubflow reproduce",
                                "instrument": engine, "result": action,
                                "startTime": iso(run.started), "actionStatus": status}
    if agent is not None:
        organize["agent"] = agent
    if run.driver:
        organize["description"] = shlex.join(run.driver)
    if run.ended:
        organize["endTime"] = iso(run.ended)
    if run.error:
        organize["error"] = run.error
    if run.mode == "reana":
        reana = crate.add(ContextEntity(crate, "https://reana.io", properties={
            "@type": "SoftwareApplication", "name": "REANA", "url": "https://reana.io"}))
        organize["object"] = reana
        if run.reana_workflow:
            organize["name"] = f"REANA workflow {run.reana_workflow}"
        if run.reana_server:
            reana["serviceUrl"] = run.reana_server
    organize_entity = crate.add(ContextEntity(crate, "#organize", properties=organize))
    mentions = [action, *_job_actions(crate, workspace, workflow, organize_entity, jobs,
                                      agent, version), organize_entity]
    root["mentions"] = mentions
    for entity in crate.get_entities():  # RO-Crate 1.1: single values, not singleton arrays
        for key, value in entity.properties().items():
            if isinstance(value, list) and len(value) == 1 and key != "@type":
                entity._jsonld[key] = value[0]
    return crate


def _job_actions(crate: Any, workspace: Path, workflow: Any, organize: Any, jobs: list[Job],
                 agent: Any | None, version: str) -> list[Any]:
    """Provenance Run Crate: a tool and a ``HowToStep`` per rule, and for each job a
    ``CreateAction`` (its inputs and outputs that the crate lists) and a ``ControlAction``."""
    from rocrate.model.contextentity import ContextEntity

    def listed(paths: list[str]) -> list[Any]:
        found: dict[str, Any] = {}
        for rel in paths:
            rel = rel.rstrip("/")
            entity = crate.dereference(rel)
            if entity is not None:
                found[rel] = entity
            elif (workspace / rel).is_dir():  # a directory output: the files under it
                for sub in workspace_files(workspace, rel):
                    entity = crate.dereference(sub)
                    if entity is not None:
                        found[sub] = entity
        return list(found.values())

    defined_in: dict[str, str] = {}
    scattered: dict[str, str] = {}  # rules a loop defines, named rule_name("<prefix>", job)
    for rel in ["Snakefile", *workspace_files(workspace, "workflows")]:
        if rel.endswith((".smk", "Snakefile")):
            text = (workspace / rel).read_text()
            # rules inside an `if` are indented
            for name in re.findall(r"^\s*rule\s+(\w+)\s*:", text, re.M):
                defined_in.setdefault(name, rel)
            for prefix in re.findall(r"\brule_name\(\s*[\"'](\w+)[\"']", text):
                scattered.setdefault(prefix, rel)

    def source_of(rule: str) -> str:
        """The file defining a rule (the Snakefile when none says so)."""
        if rule in defined_in:
            return defined_in[rule]
        prefixes = [p for p in scattered if rule.startswith(f"{p}_")]
        return scattered[max(prefixes, key=len)] if prefixes else "Snakefile"
    tools: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    actions: list[Any] = []
    for job in jobs:
        if job.rule not in tools:
            tools[job.rule] = crate.add(ContextEntity(crate, f"#rule-{job.rule}", properties={
                "@type": "SoftwareSourceCode", "name": f"rule {job.rule}", "version": version,
                "programmingLanguage": workflow["programmingLanguage"],
                "url": source_of(job.rule),  # the file defining the rule
                "description": f"the Snakemake rule {job.rule} of the workflow"}))
            steps[job.rule] = crate.add(ContextEntity(crate, f"#step-{job.rule}", properties={
                "@type": "HowToStep", "name": f"rule {job.rule}",
                "position": str(len(steps)), "workExample": tools[job.rule]}))
        number = len(actions) // 2 + 1
        props: dict[str, Any] = {
            "@type": "CreateAction", "name": f"rule {job.rule}, job {number}",
            "startTime": iso(job.started), "endTime": iso(job.ended),
            "actionStatus": COMPLETED}
        if job.command:
            props["description"] = job.command
        if agent is not None:
            props["agent"] = agent
        job_action = crate.add_action(tools[job.rule], identifier=f"#job-{number}",
                                      object=listed(job.inputs),
                                      result=listed(job.outputs + job.logs),
                                      properties=props)
        control = crate.add(ContextEntity(crate, f"#control-{number}", properties={
            "@type": "ControlAction", "name": f"orchestrate rule {job.rule}, job {number}",
            "instrument": steps[job.rule], "object": job_action,
            "actionStatus": COMPLETED}))
        actions += [job_action, control]
    if jobs:
        workflow["hasPart"] = list(tools.values())
        workflow["step"] = list(steps.values())
        organize["object"] = [a for a in actions if a.type == "ControlAction"]
    return actions


def readme_text(workspace: Path, run: RunRecord) -> str:
    """A short README for a workspace that has none: what the crate is and how to read it."""
    title = layout.workspace_config(workspace).get("Publication", {}).get("Title", "")
    heading = f"# pubflow workflow run ({run.mode}, {iso(run.started)})\n\n"
    return heading + (f"{title}\n\n" if title else "") + (
        f"This folder is the workspace of one run of the pubflow workflow and an RO-Crate "
        f"{CRATE_VERSION}: `{CRATE_NAME}` describes the workflow (`Snakefile`), its inputs "
        "(`inputs/`), outputs (`results/`) and logs (`logs/`), with their sizes and sha256, the "
        "software environment, and what ran when (Workflow Run Crate).\n")


def write_crate(crate: Any, path: str | Path) -> Path:
    """Write the crate's metadata file (only the metadata: the files stay where they are)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(crate.metadata.generate(), indent=2, sort_keys=True,
                                  ensure_ascii=False) + "\n")
    return path


def record(workspace: str | Path, run: RunRecord, **kwargs: Any) -> Path:
    """Build and write the crate at ``<workspace>/ro-crate-metadata.json``; return its path.

    The workspace is the crate's root and payload: every file the crate lists is in it. A
    ``README.md`` about the crate is written beside it when the workspace has none; a crate
    an earlier version left in ``results/provenance/`` (not at its payload's root) is removed.
    """
    workspace = Path(workspace)
    hasher = kwargs.pop("hasher", None) or Hasher()
    readme = workspace / README
    if not readme.exists():
        readme.write_text(readme_text(workspace, run))
    (workspace / LEGACY_CRATE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only if nothing else is there
        (workspace / LEGACY_CRATE).parent.rmdir()
    crate = build_crate(workspace, run, hasher=hasher, **kwargs)
    path = write_crate(crate, workspace / CRATE_NAME)
    log.info("provenance: %s (%d files hashed)", path, hasher.files_read)
    return path


# -- the crate of a deposit ---------------------------------------------------------------------
#
# A deposit (Zenodo, InvenioRDM) is flat: it holds copies of some of the run's outputs under new
# names and the workflow packed in one archive, not the workspace. The run's crate listed
# away from its workspace would name files the deposit does not hold, so the deposit carries a
# crate of its own, derived from the run's: what still applies to these files.

#: Entity types of the run's crate that are about single jobs (Provenance Run Crate): a
#: deposit's crate leaves them out, since the jobs' inputs and outputs are workspace files.
_JOB_TYPES = frozenset({"CreateAction", "ControlAction", "HowToStep"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Published:
    """One file of a deposit, as the deposit's crate lists it.

    Attributes:
        name: Its name in the deposit (deposits are flat: no folders).
        origin: The file of the run's workspace it is a copy of (workspace-relative), or
            None for a file made for the deposit (the workflow archive, the README).
        size: Bytes.
        sha256: SHA-256 hex digest.
    """

    name: str
    origin: str | None
    size: int
    sha256: str


def is_local_id(ident: str) -> bool:
    """Whether an ``@id`` names a data entity of the crate's own folder: a relative path,
    neither a local identifier (``#...``), an absolute URI, the root nor the metadata file."""
    return not (ident.startswith("#") or _SCHEME.match(ident) or ident in ("./", CRATE_NAME))


def refs(value: Any) -> list[str]:
    """The ``@id`` of every entity a JSON-LD property value references."""
    return [v["@id"] for v in (value if isinstance(value, list) else [value])
            if isinstance(v, dict) and isinstance(v.get("@id"), str)]


def _types(entity: dict[str, Any]) -> set[str]:
    kind = entity.get("@type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _link(ids: Sequence[str]) -> Any:
    """References, as RO-Crate 1.1 writes them: one value alone, several as an array."""
    linked = [{"@id": i} for i in ids]
    return linked[0] if len(linked) == 1 else linked


def _run_parts(graph: dict[str, dict[str, Any]], source: str | Path
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The root, main workflow and run (its ``CreateAction``) of a run's crate."""
    root = graph.get("./") or {}
    main_ids = refs(root.get("mainEntity"))
    main = graph.get(main_ids[0]) if main_ids else None
    runs = [graph[i] for i in refs(root.get("mentions")) if i in graph
            and "CreateAction" in _types(graph[i]) and main_ids
            and main_ids[0] in refs(graph[i].get("instrument"))]
    if main is None or not runs:
        raise PubflowError("not the RO-Crate of a workflow run (no mainEntity, or no "
                           "CreateAction of it among mentions): run `python -m "
                           "steps.provenance`", path=source)
    return root, main, runs[0]


def _check_origins(by_path: dict[str, dict[str, Any]], files: Sequence[Published],
                   members: dict[str, str], workflow: str, source: str | Path) -> None:
    """Refuse to derive a crate from a run that did not make these files."""
    again = "the crate is of another run (re-run the workflow, then `python -m steps.provenance`)"
    for file in files:
        entity = by_path.get(file.origin or "")
        if entity is not None and (entity.get("sha256") != file.sha256
                                   or entity.get("contentSize") != str(file.size)):
            raise PubflowError(f"records sha256 {str(entity.get('sha256'))[:12]}... for "
                               f"{file.origin}, but the copy published as {file.name} has "
                               f"{file.sha256[:12]}...: {again}", path=source,
                               key=f"{file.origin}.sha256")
    for rel, digest in sorted(members.items()):
        entity = by_path.get(rel)
        if entity is not None and entity.get("sha256") not in (None, digest):
            raise PubflowError(f"{workflow} would pack {rel} with sha256 {digest[:12]}..., "
                               f"not the {str(entity['sha256'])[:12]}... the run used: {again}",
                               path=source, key=f"{rel}.sha256")


def deposit_crate(run_crate: dict[str, Any], files: Sequence[Published], *, workflow: str,
                  members: dict[str, str], entry: str, source: str | Path = CRATE_NAME
                  ) -> dict[str, Any]:
    """The RO-Crate of a flat deposit, derived from the crate of the run that made its files.

    Its data entities are exactly ``files``, by their names in the deposit; a copy of a run's
    file keeps the run crate's description of it, with its workspace path as
    ``alternateName`` (the Process Run Crate's way for a renamed file). The main workflow is
    the workflow archive; the run's ``CreateAction`` (the deposit's outputs as its result),
    ``OrganizeAction``, software, images, authors and licence are the run crate's. The
    per-job records, and with them the Provenance Run Crate profile, are left out: the jobs'
    inputs and outputs are files of the workspace, not of the deposit. The same run and files
    give the same document.

    Args:
        run_crate: The run's crate (its workspace's ``ro-crate-metadata.json``), parsed.
        files: The deposit's files, but the crate itself.
        workflow: The name, among ``files``, of the archive the workflow is packed in.
        members: Workspace-relative path -> sha256 of each file packed in the archive.
        entry: The workflow's entry point inside the archive (``pubflow-workflow/Snakefile``).
        source: Where the run's crate was read, for messages.

    Raises:
        PubflowError: If the run's crate has no workflow run, records another digest for a
            file published, or the archive packs a file other than the one the run used.
    """
    graph = {e["@id"]: e for e in run_crate.get("@graph", [])
             if isinstance(e, dict) and isinstance(e.get("@id"), str)}
    root, main, run = _run_parts(graph, source)
    by_path = {unquote(i): e for i, e in graph.items() if is_local_id(i)}
    named = {f.name: f for f in files}
    if workflow not in named:
        raise PubflowError(f"the deposit holds no workflow archive ({workflow})", path=source)
    _check_origins(by_path, files, members, workflow, source)

    kept: dict[str, dict[str, Any]] = {}
    ids = {f.name: quote(f.name) for f in files}
    for file in files:
        props: dict[str, Any] = {"@type": "File", "encodingFormat": _encoding(file.name)}
        if file.origin in by_path:
            props.update(by_path[file.origin])
            props["alternateName"] = file.origin
        props.update({"@id": ids[file.name], "contentSize": str(file.size),
                      "sha256": file.sha256})
        kept[ids[file.name]] = props
    if README in named:
        kept[ids[README]].update({"name": "README", "about": {"@id": "./"}})

    wf_id = ids[workflow]
    url = main.get("url")
    kept[wf_id].update({k: v for k, v in main.items() if k not in (
        "@id", "@type", "hasPart", "step", "contentSize", "sha256", "encodingFormat", "url")})
    kept[wf_id].update({
        "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
        "name": f"{main.get('name', 'the workflow')}, packed",
        "description": f"the workflow that made the other files, packed: {len(members)} "
                       f"files, its entry point {entry} among them, with its rules, code, the "
                       "config the run read, the dataset manifest and the environments",
        # where the code is: the repository, else this archive
        "url": url if isinstance(url, str) and _SCHEME.match(url) else wf_id})

    by_origin = {quote(f.origin): ids[f.name] for f in files if f.origin in by_path}
    action = {k: v for k, v in run.items() if k not in ("object", "result")}
    action["instrument"] = {"@id": wf_id}
    for key in ("object", "result"):  # the run's inputs and outputs that the deposit holds
        found = [by_origin[i] for i in refs(run.get(key)) if i in by_origin]
        if found:
            action[key] = _link(found)
    kept[run["@id"]] = action
    mentions = [run["@id"]]
    for organize in (graph[i] for i in refs(root.get("mentions")) if i in graph):
        if "OrganizeAction" in _types(organize):
            kept[organize["@id"]] = dict(organize)
            mentions.append(organize["@id"])

    new_root = {k: v for k, v in root.items()
                if k not in ("hasPart", "mainEntity", "mentions", "conformsTo")}
    new_root.update({
        "name": f"Published files of the {root.get('name', 'workflow run')}",
        "description": (
            f"The files of a deposit of pubflow's results: the workflow, packed ({workflow}), "
            "and outputs of one run of it, each with its size and sha256 and, as "
            "alternateName, its path in the run's workspace; the run, its software and its "
            "engine as the run's own RO-Crate recorded them."),
        "hasPart": _link(sorted(ids.values())), "mainEntity": {"@id": wf_id},
        "mentions": _link(mentions),
        "conformsTo": _link([i for i in refs(root.get("conformsTo"))
                             if i != PROVENANCE_PROFILE])})
    kept["./"] = new_root
    if CRATE_NAME in graph:
        kept[CRATE_NAME] = dict(graph[CRATE_NAME])

    # what the kept entities reference: contextual entities of the run's crate come along,
    # references to what the deposit does not hold (workspace files, jobs) are dropped
    pending = list(kept)
    while pending:
        entity = kept[pending.pop()]
        for key, value in list(entity.items()):
            if key.startswith("@") or not refs(value):
                continue
            targets = []
            for target in refs(value):
                if target not in graph or target in kept:
                    targets.append(target)  # a URI the crate does not describe, or kept
                elif not is_local_id(target) and not _types(graph[target]) & _JOB_TYPES:
                    kept[target] = dict(graph[target])
                    pending.append(target)
                    targets.append(target)
            if targets:
                entity[key] = _link(targets) if isinstance(value, list) else {"@id": targets[0]}
            else:
                del entity[key]
    order = [CRATE_NAME, "./", *sorted(i for i in kept if i not in (CRATE_NAME, "./"))]
    return {"@context": run_crate.get("@context"),
            "@graph": [kept[i] for i in order if i in kept]}


def deposit_readme(run_crate: dict[str, Any], files: Sequence[Published], *,
                   workflow: str) -> str:
    """The README of a deposit: what its files are, and that its crate describes them."""
    graph = {e.get("@id"): e for e in run_crate.get("@graph", []) if isinstance(e, dict)}
    run_name = (graph.get("./") or {}).get("name", "a workflow run")
    lines = [
        "# Files of this deposit", "",
        (f"Made by pubflow from one run of its workflow ({run_name}). This folder is an "
         f"RO-Crate {CRATE_VERSION} (Workflow Run Crate 0.5): `{CRATE_NAME}` lists each file "
         "below with its size and sha256, the workflow that made them, the software it ran "
         "with, and when it ran."), "",
        "| file | bytes | in the run's workspace |", "|---|---|---|"]
    for file in sorted(files, key=lambda f: f.name):
        where = f"`{file.origin}`" if file.origin else (
            "the workflow, packed" if file.name == workflow else "")
        lines.append(f"| `{file.name}` | {file.size} | {where} |")
    lines += ["", f"`{workflow}` holds the workflow: unpack it to run the analysis again."]
    return "\n".join(lines) + "\n"


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
