"""datasets: the dataset manifest, written from the files themselves and checked before use.

``python -m steps.datasets add FILE...`` records each file's size, checksum and every TTree it
holds with its number of entries; ``verify`` checks a file against its entry before any step
reads it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from steps import cli
from steps.config import load_datasets, load_yaml, validate
from steps.errors import PubflowError, one_line
from steps.io import atomic_path
from steps.layout import is_remote, normalize

log = logging.getLogger(__name__)

#: Format version of the manifest (1 had one ``tree`` with its ``events``, and sha256 only).
VERSION = 2

#: The checksum kinds a manifest entry may record; the first is the default for a new file.
CHECKSUMS = ("sha256", "adler32")

#: Start of every value ``add`` leaves to be written by hand. Every step accepts it, so an
#: analysis runs before its provenance is written; ``steps.validate`` refuses it, so it is
#: never published. No real DOI, URL, licence id or description begins with these words.
PLACEHOLDER = "FILL IN"

#: The hand-written fields of a new entry, with what belongs in them.
PROVENANCE_TEMPLATE = {
    "source": f"{PLACEHOLDER}: where this copy was taken from (URL, package and version, path)",
    "record": f"{PLACEHOLDER}: landing page, e.g. https://opendata.cern.ch/record/N "
              "(or delete this key)",
    "doi": f"{PLACEHOLDER}: DOI of the dataset, 10.xxxx/... (or delete this key)",
    "license": f"{PLACEHOLDER}: SPDX licence identifier, e.g. CC0-1.0",
}
DESCRIPTION_TEMPLATE = f"{PLACEHOLDER}: what the file holds (or delete this key)"

#: The header of a new manifest (an existing manifest keeps its own).
HEADER = """\
# Dataset manifest: every input file the analysis reads that the workflow does not make itself.
# Written by `python -m steps.datasets add FILE...` (size, checksums, trees); `description`
# and `provenance` are written by hand, and `steps.validate` refuses a "FILL IN" left in them.
# Steps verify the size and every checksum recorded (sha256, adler32) before reading a file.
# Schema: steps/schemas/datasets.schema.json
"""

#: ROOT classes read as TTrees (TNtuple and TNtupleD derive from TTree).
TREE_CLASSES = frozenset({"TTree", "TNtuple", "TNtupleD"})

CHUNK = 1 << 22  # 4 MiB: large reads for the network, bounded memory


def entry_for(manifest: dict[str, Any], path: str | Path) -> dict[str, Any] | None:
    """The manifest entry for ``path``, or None when the file is not an input."""
    wanted = normalize(str(path))
    for entry in manifest["files"]:
        if normalize(entry["path"]) == wanted:
            return entry
    return None


class _Checksums:
    """Every requested checksum of one stream, updated together so the data is read once."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = [k for k in CHECKSUMS if k in set(kinds)]
        self._sha256 = hashlib.sha256() if "sha256" in self.kinds else None
        self._adler32 = 1  # adler32's defined starting value

    def update(self, block: bytes) -> None:
        """Add the next block of the stream."""
        if self._sha256 is not None:
            self._sha256.update(block)
        if "adler32" in self.kinds:
            self._adler32 = zlib.adler32(block, self._adler32)

    def hexdigests(self) -> dict[str, str]:
        """``{kind: hex}``; adler32 as 8 lower-case hex digits, as XRootD reports it."""
        out: dict[str, str] = {}
        if self._sha256 is not None:
            out["sha256"] = self._sha256.hexdigest()
        if "adler32" in self.kinds:
            out["adler32"] = f"{self._adler32 & 0xFFFFFFFF:08x}"
        return out


def checksums(path: str | Path, kinds: Iterable[str], chunk: int = CHUNK) -> dict[str, str]:
    """The checksums ``kinds`` (sha256, adler32) of a local file, in one pass over it."""
    sums = _Checksums(kinds)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sums.update(block)
    return sums.hexdigests()


#: What an XRootD server answers for a file it does not have (kXR_NotFound).
_XRD_NOT_FOUND = 3011


def server_checksum(url: str, kind: str) -> tuple[int, str] | None:
    """Size and ``kind`` checksum of a ``root://`` file, as its XRootD server states them
    (``stat`` and ``query checksum``, the ``xrdfs`` commands), without reading the file.

    Returns:
        ``(size, hex)``, or None when the server computes no checksum of that kind (one
        configured without ``xrootd.chksum``, or with another algorithm).

    Raises:
        PubflowError: If the file is not on the server, or the server cannot be reached.
    """
    from XRootD import client
    from XRootD.client.flags import QueryCode

    parsed = client.URL(url)
    fs = client.FileSystem(f"{parsed.protocol}://{parsed.hostid}")
    status, info = fs.stat(parsed.path)
    if not status.ok:
        if status.errno == _XRD_NOT_FOUND:
            raise PubflowError("remote input file not found", path=url)
        raise PubflowError(f"cannot reach the file ({one_line(status.message)})", path=url)
    status, answer = fs.query(QueryCode.CHECKSUM, parsed.path)
    if not status.ok or not answer:
        log.warning("%s: the server computes no checksum (%s); reading the file to check it",
                    url, one_line(status.message))
        return None
    algorithm, _, value = answer.decode("ascii", "replace").strip("\x00 \n").partition(" ")
    if algorithm.lower() != kind:
        log.warning("%s: the server computes %s, not the manifest's %s; reading the file to "
                    "check it", url, algorithm, kind)
        return None
    return int(info.size), value.strip().lower().zfill(8)


def _remote_size_and_checksums(url: str, kinds: Iterable[str], chunk: int = CHUNK
                               ) -> tuple[int, dict[str, str]]:
    """Size and checksums of a remote file (``root://``...), streamed once through fsspec.

    For an adler32-only entry of a ``root://`` file the server is asked instead
    (:func:`server_checksum`): no byte of the file is read. A sha256 (which XRootD servers
    do not compute) needs the whole file.
    """
    kinds = list(kinds)
    if kinds == ["adler32"] and url.startswith(("root://", "roots://")):
        stated = server_checksum(url, "adler32")
        if stated is not None:
            return stated[0], {"adler32": stated[1]}
    import fsspec

    sums = _Checksums(kinds)
    try:
        fs, remote = fsspec.core.url_to_fs(url)
        size = int(fs.size(remote))
        with fs.open(remote, "rb", block_size=chunk) as f:
            while block := f.read(chunk):
                sums.update(block)
    except FileNotFoundError:
        raise PubflowError("remote input file not found", path=url) from None
    except (OSError, ValueError, RuntimeError) as err:
        raise PubflowError(f"cannot read remote file ({one_line(err)})", path=url) from None
    return size, sums.hexdigests()


def recorded(entry: dict[str, Any]) -> list[str]:
    """The checksum kinds a manifest entry records."""
    return [kind for kind in CHECKSUMS if kind in entry]


def verify(entry: dict[str, Any], path: str | Path, source: str | Path) -> None:
    """Check that ``path`` has the size and every checksum the manifest ``source`` records.

    A remote file's adler32 alone is asked of its XRootD server; otherwise the file is
    streamed once through fsspec for all its checksums.

    Raises:
        PubflowError: Naming the file and what differs (or that it cannot be read).
    """
    kinds = recorded(entry)
    if is_remote(str(path)):
        size, digests = _remote_size_and_checksums(str(path), kinds)
    else:
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise PubflowError(f"input file not found (listed in {source})", path=path) from None
        digests = {}
    if size != entry["size"]:
        raise PubflowError(
            f"size {size} bytes differs from {entry['size']} in {source} (truncated or replaced?)",
            path=path,
        )
    # local files are hashed only once their size matches: a wrong size needs no read
    digests = digests or checksums(path, kinds)
    for kind in kinds:
        if digests[kind] != entry[kind]:
            raise PubflowError(
                f"{kind} {digests[kind][:12]}... differs from {entry[kind][:12]}... in {source}",
                path=path,
            )


def verify_input(manifest_path: str | Path, path: str | Path) -> dict[str, Any] | None:
    """Verify ``path`` against the manifest if it is listed there; return its entry."""
    manifest = load_datasets(manifest_path)
    entry = entry_for(manifest, path)
    if entry is not None:
        verify(entry, path, manifest_path)
    return entry


def trees(path: str | Path) -> dict[str, int]:
    """Every TTree in a ROOT file (local or remote), subdirectories included, by path, with
    its entries.

    Only each tree's entry count is read (``uproot.num_entries``), not its branches: for a
    NanoAOD file's 1500 branches that is milliseconds instead of a CPU-second.
    """
    import uproot

    # Anything may surface from a damaged, foreign or unreachable file (uproot raises
    # ValueError, OSError, its own DeserializationError, struct errors...); each is this
    # file's fault, said once.
    try:
        with uproot.open(path) as f:
            names = [name for name, cls in f.classnames(recursive=True, cycle=False).items()
                     if cls in TREE_CLASSES]
        # uproot.num_entries of no tree at all fails as if the file were missing
        found = {tree: int(n) for _, tree, n in uproot.num_entries(
            [{str(path): name} for name in names])} if names else {}
    except Exception as err:
        raise PubflowError(f"not a readable ROOT file ({one_line(err)})", path=path) from None
    if not found:
        raise PubflowError("no TTree in the file (select reads TTrees only; an RNTuple is "
                           "not one)", path=path)
    return found


def measure(path: str, kinds: Iterable[str]) -> dict[str, Any]:
    """What ``add`` records of one local file: size, checksums, trees."""
    if is_remote(path):
        raise PubflowError("remote files cannot be added yet (server-side checksums and "
                           "CERN Open Data file indices: issue 14); add a local copy", path=path)
    if not os.path.exists(path):
        raise PubflowError("file not found", path=path)
    if not os.path.isfile(path):
        raise PubflowError("not a file", path=path)
    found = trees(path)  # first: a file that is not ROOT is refused before it is hashed
    return {"size": os.path.getsize(path), **checksums(path, kinds), "trees": found}


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's keys in the manifest's reading order (measured first, hand-written last)."""
    order = ["path", "size", *CHECKSUMS, "trees", "description", "provenance"]
    return {k: entry[k] for k in sorted(entry, key=lambda k: order.index(k) if k in order
                                         else len(order))}


def _upgrade(manifest: Any) -> Any:
    """A version-1 manifest (one ``tree`` and ``events`` per file) in version 2's terms."""
    if not isinstance(manifest, dict) or "version" in manifest:
        return manifest
    manifest = copy.deepcopy(manifest)
    for entry in manifest.get("files") or []:
        if isinstance(entry, dict) and "tree" in entry and "events" in entry:
            entry["trees"] = {entry.pop("tree"): entry.pop("events")}
    return {"version": VERSION, **manifest}


def add(manifest: dict[str, Any], measured: dict[str, dict[str, Any]],
        description: str | None = None) -> dict[str, Any]:
    """The manifest with the files of ``measured`` (``{path: measure(...)}``) added or updated.

    ``measured`` must hold every checksum kind an updated entry records (none left stale). An
    updated entry keeps its hand-written fields (description, provenance) unless a new
    ``description`` is given; a new entry gets placeholders for them.
    """
    files = [dict(e) for e in manifest.get("files", [])]
    for path, facts in measured.items():
        old = entry_for({"files": files}, path)
        entry = dict(old or {"description": DESCRIPTION_TEMPLATE,
                             "provenance": dict(PROVENANCE_TEMPLATE)})
        entry.update(path=path, **facts)
        if description is not None:
            entry["description"] = description
        if old is None:
            files.append(_ordered(entry))
        else:
            files[files.index(old)] = _ordered(entry)
    return {**manifest, "version": VERSION, "files": files}


def unfilled(manifest: dict[str, Any]) -> list[str]:
    """The hand-written fields still holding ``add``'s placeholder, as key paths."""
    found = []
    for i, entry in enumerate(manifest["files"]):
        fields = {"description": entry.get("description"),
                  **{f"provenance.{k}": v for k, v in entry.get("provenance", {}).items()}}
        found += [f"files[{i}].{key}" for key, value in fields.items()
                  if isinstance(value, str) and value.startswith(PLACEHOLDER)]
    return found


class _Quoted(str):
    """A string written in double quotes (a checksum such as ``00001e10`` is no number)."""


class _Folded(str):
    """A long, single-spaced string written folded (``>-``), as a person would."""


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, as the hand-written manifest was."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        """Never indentless: ``files:`` then ``  - path: ...``."""
        super().increase_indent(flow, False)


_Dumper.add_representer(_Quoted, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", str(s), style='"'))
_Dumper.add_representer(_Folded, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", str(s), style=">"))

WIDTH = 92


def _styled(value: Any) -> Any:
    """``value`` with its strings (not its keys) marked for the style they are written in."""
    if isinstance(value, dict):
        return {k: _styled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_styled(v) for v in value]
    if isinstance(value, str):
        # only single-spaced text folds back to itself when read
        folds = len(value) > WIDTH - 20 and " ".join(value.split()) == value
        return _Folded(value) if folds else _Quoted(value)
    return value


def dump(manifest: dict[str, Any], header: str = HEADER) -> str:
    """The manifest as YAML text, after ``header``; checked to read back as ``manifest``."""
    text = header + yaml.dump(_styled(manifest), Dumper=_Dumper, sort_keys=False,
                              allow_unicode=True, width=WIDTH)
    if yaml.safe_load(text) != manifest:  # never write what would read back differently
        raise PubflowError("internal error: the manifest would not read back as written")
    return text


def header_of(text: str) -> str:
    """The comment lines a YAML file begins with (empty if none)."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)


def read_for_update(manifest_path: Path) -> tuple[str, dict[str, Any]]:
    """The header and the (upgraded, validated) manifest to update; a new one if none."""
    if not manifest_path.exists():
        return HEADER, {"version": VERSION, "files": []}
    manifest = _upgrade(load_yaml(manifest_path))
    validate(manifest, "datasets", manifest_path)
    return header_of(manifest_path.read_text()), manifest


def write_manifest(manifest_path: Path, manifest: dict[str, Any], header: str) -> None:
    """Validate ``manifest`` and write it after ``header``, atomically."""
    validate(manifest, "datasets", manifest_path)
    text = dump(manifest, header)
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(text)


def add_files(manifest_path: str | Path, files: Sequence[str], checksum: str | None = None,
              description: str | None = None) -> dict[str, Any]:
    """Add or update ``files`` in the manifest at ``manifest_path``; write it; return it.

    Every file is measured before anything is written, so a bad one leaves the manifest as
    it was. An updated entry gets every checksum kind it recorded, plus ``checksum``; a new
    one gets ``checksum`` (sha256 by default).
    """
    manifest_path = Path(manifest_path)
    header, manifest = read_for_update(manifest_path)
    measured: dict[str, dict[str, Any]] = {}
    for given in files:
        path = normalize(given)
        if path in measured:
            continue
        old = entry_for(manifest, path)
        # every kind recorded is re-measured (one left as it was would be stale); none added
        # unasked, so re-adding a CERN Open Data file keeps it adler32-only, as its index is
        kinds = ({*recorded(old), *([checksum] if checksum else [])} if old
                 else {checksum or CHECKSUMS[0]})
        measured[path] = measure(path, kinds)
    updated = add(manifest, measured, description)
    write_manifest(manifest_path, updated, header)
    # logged only once written: a failure is then the one line on stderr
    for path, facts in measured.items():
        log.info("%s: %d bytes, %s", path, facts["size"],
                 ", ".join(f"{t} ({n} entries)" for t, n in facts["trees"].items()))
    if pending := unfilled(updated):
        log.warning("%s: fill in %s before publishing (steps.validate refuses placeholders)",
                    manifest_path, ", ".join(pending))
    return updated


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("datasets", "The dataset manifest: every input file with its size, "
                   "checksums, TTrees and provenance.")
    sub = p.add_subparsers(dest="command", required=True)
    a = cli.subcommand(
        sub, "add", help="add files to the manifest, or update their entries",
        description="Record each FILE's size, checksum and every TTree in it (subdirectories "
                    "included) with its number of entries in the manifest. A new entry gets "
                    f"'{PLACEHOLDER}: ...' description and provenance fields to write by hand; "
                    "steps.validate refuses them until they are. Re-adding a file updates its "
                    "size, checksums and trees and keeps what was written by hand. Nothing is "
                    "written if any FILE is missing or not a ROOT file.",
    )
    a.add_argument("files", nargs="+", metavar="FILE",
                   help="local ROOT file, named as the analysis config names it")
    a.add_argument("--manifest", default="inputs/datasets.yaml", type=Path,
                   help="manifest to write or update (default: %(default)s)")
    a.add_argument("--checksum", choices=CHECKSUMS, default=None,
                   help="checksum to record (default: sha256 for a new entry; an existing "
                        "entry keeps the kinds it records, plus this one)")
    a.add_argument("--description", metavar="TEXT",
                   help="what the files hold (replaces an existing description)")
    from steps.opendata import DEFAULT_SERVER  # it imports this module

    o = cli.subcommand(
        sub, "from-opendata", help="add the ROOT files of a CERN Open Data record",
        description="Record each ROOT file of CERN Open Data record RECID (of one of its file "
                    "indices, with --index) as the portal lists it: its root:// URI, size and "
                    "adler32, which its XRootD server verifies before a step reads it, and the "
                    "record's DOI, landing page, licence and citation as provenance. Its TTrees "
                    "and their entries are read from the file's metadata. Other entries are "
                    "kept; nothing is written if the record or any of its files cannot be read.",
    )
    o.add_argument("recid", type=_recid, metavar="RECID",
                   help="the record's id, as in https://opendata.cern.ch/record/RECID")
    o.add_argument("--index", metavar="NAME",
                   help="only the files of this file index (its name on the record's page, "
                        "e.g. CMS_Run2016G_MuOnia_..._70000_file_index.json)")
    o.add_argument("--sample", metavar="NAME",
                   help="the analysis sample the files are for, named in their description")
    o.add_argument("--server", default=DEFAULT_SERVER, metavar="URL",
                   help="the CERN Open Data portal to ask (default: %(default)s)")
    o.add_argument("--manifest", default="inputs/datasets.yaml", type=Path,
                   help="manifest to write or update (default: %(default)s)")
    return p


def _recid(text: str) -> int:
    """A record id: a positive whole number (as cernopendata-client's validate_recid)."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is no record id (a positive whole number)")
    return int(text)


def main(args: argparse.Namespace) -> None:
    if args.command == "from-opendata":
        from steps.opendata import from_opendata

        from_opendata(args.manifest, args.recid, index=args.index, sample=args.sample,
                      server=args.server)
        return
    add_files(args.manifest, args.files, args.checksum, args.description)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
