"""Bundles: the exact files (and documents) a publisher sends, written before sending.

A bundle is a directory ``<out>/bundle/`` holding ``files/`` (every file to upload, under the
name it will have remotely), ``manifest.json`` (their sizes, md5 and sha256 digests and where
they came from) and the target's documents (``metadata.json``, ``plan.json``). The dry run
writes it and stops; an upload writes the same bundle and sends from it, so what was
reviewed is what goes out. The whole directory is replaced atomically.

The workflow itself travels as one reproducible archive (sorted members, fixed times, no
owners): the same sources give the same bytes, hence the same checksum on Zenodo.

Given the run's RO-Crate (:class:`RunCrate`), a bundle also carries a crate of its own files,
``ro-crate-metadata.json`` at the root of ``files/`` beside a ``README.md``: a deposit is flat,
and a file of that name at its root is what RO-Crate tools take for the crate
(ResearchObject/ro-crate-inveniordm uploads a crate's files, that one included, flat under
their names: ``deposit.py`` ``main``, ``upload/uploader.py`` ``start_draft_files_upload``).
Its data entities are exactly the bundle's other files, and the gate vouches for it
(:func:`steps.publish.gate.check_crate`) before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steps import provenance
from steps.errors import PubflowError, one_line
from steps.io import DEFAULT_EPOCH, atomic_path, sha256sum, write_json
from steps.publish.gate import GateResult, check_crate

log = logging.getLogger(__name__)

BUNDLE_DIR = "bundle"
FILES_DIR = "files"
MANIFEST = "manifest.json"
WORKFLOW_ARCHIVE = "pubflow-workflow.tar.gz"
WORKFLOW_PREFIX = "pubflow-workflow"
#: The bundle's own crate, and the README beside it (Workflow RO-Crate asks for one).
CRATE_NAME = provenance.CRATE_NAME
README = provenance.README

#: What a re-run of the analysis needs, besides the config and the dataset manifest.
WORKFLOW_REQUIRED = ("Snakefile", "workflows", "steps", "reana.yaml")
#: Taken when present.
WORKFLOW_OPTIONAL = ("environments", "pyproject.toml", "README.md", "LICENSE", "tests/reana")
#: Never packed: caches, editor leftovers, compiled files.
_SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"})
_SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".swp", ".orig", ".rej")


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle.

    Attributes:
        name: Its name remotely (and in ``files/``).
        source: Where it came from (a path, or a description for built files).
        size: Bytes.
        md5: MD5 hex digest (what Zenodo and CAP report).
        sha256: SHA-256 hex digest.
    """

    name: str
    source: str
    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class Bundle:
    """A written bundle.

    Attributes:
        path: The bundle directory.
        files: Its files, sorted by name.
        documents: The JSON documents written beside them (name -> content).
    """

    path: Path
    files: tuple[BundleFile, ...]
    documents: Mapping[str, Any]

    def file_path(self, name: str) -> Path:
        """Where a bundle file is on disk."""
        return self.path / FILES_DIR / name

    def by_name(self) -> dict[str, BundleFile]:
        """The files, keyed by name."""
        return {f.name: f for f in self.files}


@dataclass(frozen=True)
class RunCrate:
    """The run's RO-Crate, which the bundle's own crate is derived from, and the gate's word.

    Attributes:
        path: The run's crate (``<workspace>/ro-crate-metadata.json``): the bundle's files
            that are copies of the workspace's are named by their path relative to its folder.
        gate: What the validation gate vouched for.
    """

    path: Path
    gate: GateResult


def digests(path: str | os.PathLike[str], chunk: int = 1 << 20) -> tuple[int, str, str]:
    """Size, md5 and sha256 of a file, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            size += len(block)
            md5.update(block)
            sha.update(block)
    return size, md5.hexdigest(), sha.hexdigest()


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds convention) or pubflow's fixed default."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))


def _walk(root: Path, relative: str) -> Iterator[str]:
    path = root / relative
    if path.is_file():
        yield relative
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            yield str((Path(dirpath) / name).relative_to(root))


def workflow_members(root: str | Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The files (relative to ``root``) that make up the workflow, sorted.

    Args:
        root: The repository root.
        extra: Further required files (the analysis config and dataset manifest).

    Raises:
        PubflowError: If a required file or directory is missing.
    """
    root = Path(root)
    members: set[str] = set()
    for relative in (*WORKFLOW_REQUIRED, *extra):
        if not (root / relative).exists():
            raise PubflowError("part of the workflow to publish is missing",
                               path=root / relative)
        members.update(_walk(root, relative))
    for relative in WORKFLOW_OPTIONAL:
        if (root / relative).exists():
            members.update(_walk(root, relative))
    return sorted(members)


def write_workflow_archive(root: str | Path, members: list[str], dest: str | Path) -> None:
    """Pack ``members`` (relative to ``root``) reproducibly into a ``.tar.gz``.

    Members go under ``pubflow-workflow/``, sorted, with mode 0644 (0755 if executable),
    owner 0:0 without names and the time ``SOURCE_DATE_EPOCH``; the gzip header has neither
    a name nor a time.
    """
    root = Path(root)
    mtime = source_date_epoch()
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relative in members:
            path = root / relative
            info = tarfile.TarInfo(f"{WORKFLOW_PREFIX}/{relative}")
            info.size = path.stat().st_size
            info.mtime = mtime
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)


def write_bundle(
    out: str | Path,
    sources: Mapping[str, str | Path],
    documents: Callable[[tuple[BundleFile, ...]], Mapping[str, Any]],
    *,
    workflow_root: str | Path | None = None,
    workflow_extra: tuple[str, ...] = (),
    crate: RunCrate | None = None,
) -> Bundle:
    """Write ``<out>/bundle/`` atomically: the files, their manifest and the documents.

    Args:
        out: The target's output directory (``results/publish/<target>``).
        sources: Remote name -> local file to copy.
        documents: Given the bundle's files, the JSON documents to write beside them (name ->
            content); it may raise (e.g. metadata failing its schema), and then nothing is
            written.
        workflow_root: If given, the workflow archive is packed from this repository root
            and added as :data:`WORKFLOW_ARCHIVE`.
        workflow_extra: Further files the workflow archive must hold (config, manifest).
        crate: If given and the run's crate exists, the bundle carries a crate of its own
            files (:data:`CRATE_NAME`, with :data:`README`), derived from the run's; it
            needs the workflow archive.

    Returns:
        The bundle, with every file's digests.

    Raises:
        PubflowError: If a file is missing, a name is taken twice, or the run's crate cannot
            describe these files (another run's, or not vouched for by the gate).
    """
    dest = Path(out) / BUNDLE_DIR
    with atomic_path(dest) as tmp:
        files_dir = tmp / FILES_DIR
        files_dir.mkdir(parents=True)
        origins: dict[str, str] = {}
        members: list[str] = []
        if workflow_root is not None:
            members = workflow_members(workflow_root, workflow_extra)
            write_workflow_archive(workflow_root, members, files_dir / WORKFLOW_ARCHIVE)
            origins[WORKFLOW_ARCHIVE] = f"packed from {len(members)} workflow files"
        own = (CRATE_NAME, README) if crate is not None else ()
        for name, source in sources.items():
            if "/" in name or name in origins or name in own:
                raise PubflowError(f"bad or duplicate bundle file name {name!r}")
            if not Path(source).is_file():
                raise PubflowError("file to publish is missing", path=source)
            shutil.copyfile(source, files_dir / name)
            origins[name] = str(source)
        found = {name: digests(files_dir / name) for name in origins}
        if crate is not None and not Path(crate.path).is_file():
            log.warning("no RO-Crate of the run at %s (`python -m steps.provenance` writes "
                        "it): the bundle carries no crate", crate.path)
        elif crate is not None:
            if workflow_root is None:
                raise PubflowError("a bundle's RO-Crate needs the workflow archive",
                                   path=crate.path)
            _write_crate(files_dir, crate, sources, found, members, Path(workflow_root))
            for name, origin in ((README, "written for the deposit from the run's RO-Crate"),
                                 (CRATE_NAME, f"derived from {crate.path}")):
                origins[name] = origin
                found[name] = digests(files_dir / name)
        files = tuple(BundleFile(name, origins[name], *found[name]) for name in sorted(origins))
        docs = dict(documents(files))
        manifest = {"files": [asdict(f) for f in files],
                    "workflow_members": [f"{WORKFLOW_PREFIX}/{m}" for m in members]}
        for name, content in {MANIFEST: manifest, **docs}.items():
            write_json(tmp / name, content)
    log.info("bundle written: %s (%d files, %.1f kB)", dest, len(files),
             sum(f.size for f in files) / 1e3)
    return Bundle(path=dest, files=files, documents={MANIFEST: manifest, **docs})


def _write_crate(files_dir: Path, crate: RunCrate, sources: Mapping[str, str | Path],
                 found: Mapping[str, tuple[int, str, str]], members: list[str],
                 workflow_root: Path) -> None:
    """Write the README and the crate of the bundle's files, once the gate vouches for it."""
    try:
        run_crate = json.loads(Path(crate.path).read_text())
    except (OSError, ValueError) as err:
        raise PubflowError(f"the run's RO-Crate cannot be read ({one_line(err)}): run "
                           "`python -m steps.provenance`", path=crate.path) from None
    workspace = Path(crate.path).parent.resolve()

    def origin(name: str) -> str | None:
        if name not in sources:
            return None  # made for the bundle: the workflow archive
        resolved = Path(sources[name]).resolve()
        return resolved.relative_to(workspace).as_posix() \
            if resolved.is_relative_to(workspace) else None

    published = [provenance.Published(name, origin(name), size, sha)
                 for name, (size, _md5, sha) in sorted(found.items())]
    readme = provenance.deposit_readme(run_crate, published, workflow=WORKFLOW_ARCHIVE)
    (files_dir / README).write_text(readme)
    size, _md5, sha = digests(files_dir / README)
    published.append(provenance.Published(README, None, size, sha))
    document = provenance.deposit_crate(
        run_crate, published, workflow=WORKFLOW_ARCHIVE,
        members={m: sha256sum(workflow_root / m) for m in members},
        entry=f"{WORKFLOW_PREFIX}/Snakefile", source=crate.path)
    check_crate(document, {f.name: (f.size, f.sha256) for f in published}, crate.gate,
                workspace=workspace, path=f"{FILES_DIR}/{CRATE_NAME} (from {crate.path})")
    write_json(files_dir / CRATE_NAME, document)
