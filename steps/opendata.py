"""opendata: the manifest entries of a CERN Open Data record (``steps.datasets from-opendata``).

The portal serves a record at ``/api/records/<recid>``: its metadata, with each file index
expanded into ``_file_indices[].files`` (uri, size, ``adler32:`` checksum), which is how
cernopendata-client lists a record's files. Each ROOT file becomes an adler32-only entry of
the manifest, which XRootD verifies later without reading the file, and gets the record's DOI,
landing page, licence and citation as its provenance. The portal gives no per-file event
counts, so the TTrees and their entries are read from each file's metadata, not its data.

The portal is asked directly, with the standard library, rather than through
cernopendata-client: its functions print and ``sys.exit`` on any error instead of raising,
and it would bring click and requests. ``tests/test_opendata.py`` runs the client against
the same stand-in for the portal, to check that both see the same files.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps import datasets
from steps.errors import PubflowError, one_line

log = logging.getLogger(__name__)

#: cernopendata-client's SERVER_HTTPS_URI (cernopendata_client/config.py). Its own `--server`
#: default is SERVER_HTTP_URI, the same portal over plain HTTP.
DEFAULT_SERVER = "https://opendata.cern.ch"

#: Seconds to wait for the portal: a record of 20,000 files is a JSON of tens of MB.
TIMEOUT = 120

#: Files whose TTrees are read at once: each read is a few round trips to the server.
READERS = 8

#: A file on disk, readable now; "on demand" is on tape (cernopendata-portal,
#: cernopendata/cold_storage/api.py, FileAvailability).
ONLINE = "online"

#: What the portal's own record loader treats as file indices, not data (cernopendata-portal,
#: cernopendata/modules/fixtures/cli.py, _handle_record_files); older API answers still
#: listed them among the record's files (cernopendata/opendata.cern.ch issue 2252).
INDEX_TYPES = ("index.json", "index.txt")

_HEX = re.compile(r"[0-9a-fA-F]{1,8}")

TreeReader = Callable[[str], dict[str, int]]

#: The header of a manifest this command begins (an existing manifest keeps its own).
HEADER = """\
# Dataset manifest: every input file the analysis reads that the workflow does not make itself.
# Written by `python -m steps.datasets from-opendata RECID` (a CERN Open Data record's files:
# size, adler32, trees and provenance from the portal) and `... add FILE...` (local files).
# `steps.validate` refuses a "FILL IN" left in a description or provenance.
# Steps verify the size and every checksum recorded (sha256, adler32) before reading a file.
# Schema: steps/schemas/datasets.schema.json
"""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a record, as its file index (or the record itself) lists it."""

    uri: str
    size: int
    adler32: str
    index: str | None  # the file index listing it; None for a file of the record itself
    online: bool


def fetch_record(server: str, recid: int) -> tuple[str, dict[str, Any]]:
    """The record as the portal's REST API serves it, and the URL it came from.

    Raises:
        PubflowError: If the portal cannot be reached, has no such record, or answers
            something that is not a record.
    """
    if not server.startswith(("http://", "https://")):
        # as cernopendata-client's validator.validate_server requires
        raise PubflowError(f"not an http(s) URL: {server!r}", key="--server")
    # the record as cernopendata-client reads it (cernopendata_client/searcher.py,
    # get_recid_api): invenio-records-rest's item route, under the portal's /api
    url = f"{server.rstrip('/')}/api/records/{recid}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        raise PubflowError(_refusal(err, recid), path=url) from None
    except urllib.error.URLError as err:  # refused, unknown host
        reason = err.reason if isinstance(err.reason, str) else one_line(err.reason)
        raise PubflowError(f"cannot reach the portal ({reason})", path=url) from None
    except OSError as err:  # a timeout, a connection reset mid-answer
        raise PubflowError(f"cannot reach the portal ({one_line(err)})", path=url) from None
    try:
        record = json.loads(body)
    except ValueError:
        raise PubflowError("the answer is not JSON: is --server a CERN Open Data portal?",
                           path=url) from None
    if not isinstance(record, dict) or not isinstance(record.get("metadata"), dict):
        raise PubflowError("the answer holds no record: is --server a CERN Open Data portal?",
                           path=url, key="metadata")
    return url, record


def _refusal(err: urllib.error.HTTPError, recid: int) -> str:
    """An HTTP error of the portal, in words, with the message its JSON body gives."""
    # invenio-rest, invenio_rest/errors.py, RESTException.get_body: {"status", "message"};
    # e.g. invenio-records-rest's PIDDoesNotExistRESTError (404) for an unknown recid
    try:
        message = str(json.loads(err.read()).get("message", ""))
    except (ValueError, AttributeError, OSError):
        message = ""
    what = {404: f"no record {recid} on this portal",
            410: f"record {recid} has been deleted"}.get(err.code, "the portal refused")
    return f"{what} (HTTP {err.code}{': ' + message if message else ''})"


def _adler32(checksum: Any) -> str | None:
    """The 8 hex digits of an ``adler32:<hex>`` checksum, or None for another kind."""
    if not isinstance(checksum, str):
        return None
    kind, colon, value = checksum.partition(":")
    if not colon:
        # a bare value is an adler32 stored without its prefix (cernopendata-portal,
        # scripts/fix_bare_checksums.py, canonical)
        kind, value = "adler32", checksum
    if kind.lower() != "adler32" or not _HEX.fullmatch(value):
        return None
    return value.lower().zfill(8)


def _remote_file(entry: Any, where: str, index: str | None, source: str) -> RemoteFile:
    """One listed file, checked: a URI, a size and an adler32 (the manifest needs all three)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
        raise PubflowError("a file without a URI", path=source, key=f"{where}.uri")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PubflowError(f"{entry['uri']}: size {size!r} is no number of bytes",
                           path=source, key=f"{where}.size")
    adler32 = _adler32(entry.get("checksum"))
    if adler32 is None:
        raise PubflowError(f"{entry['uri']}: checksum {entry.get('checksum')!r} is no adler32, "
                           "which the manifest needs for a remote file", path=source,
                           key=f"{where}.checksum")
    # without the key, a file is on disk, as the portal's own default has it (cernopendata/
    # api.py, MultiURIFileObject.availability: on demand only once its disk copy is deleted)
    online = entry.get("availability", ONLINE) == ONLINE
    return RemoteFile(entry["uri"], size, adler32, index, online)


def _index_names(indices: Sequence[Any]) -> str:
    names = [str(ix.get("key")) for ix in indices if isinstance(ix, dict)]
    shown = ", ".join(names[:5])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 5 else "")


def _matches(index: Any, name: str) -> bool:
    """Whether ``name`` names this file index: its key, the key without ``.json``, or the
    ``.txt`` index of the same files (as the portal's ``/file_index/<name>`` route takes it:
    cernopendata-portal, cernopendata/modules/records/utils.py, get_file_index)."""
    key = index.get("key") if isinstance(index, dict) else None
    return isinstance(key, str) and name in (key, key.removesuffix(".json"),
                                             key.removesuffix(".json") + ".txt")


def listed_files(record: dict[str, Any], index: str | None, source: str) -> list[RemoteFile]:
    """Every file the record lists (those of file index ``index`` only, if given), in order.

    Raises:
        PubflowError: Naming ``source`` and the key, for an unknown ``index``, a record that
            lists no file, or a file without its URI, size or adler32.
    """
    metadata = record["metadata"]
    # the record's own files, then each index's, as cernopendata-client's searcher.py
    # get_files_list lists them (the portal's cernopendata/api.py, FileIndexMetadata.dumps)
    indices = metadata.get("_file_indices") or []
    own = [f for f in metadata.get("files") or []
           if not (isinstance(f, dict) and f.get("type") in INDEX_TYPES)]
    groups: list[tuple[str, str | None, Any]] = []
    if index is None:
        groups.append(("metadata.files", None, own))
    for i, ix in enumerate(indices):
        if not isinstance(ix, dict):
            raise PubflowError("a file index that is no mapping", path=source,
                               key=f"metadata._file_indices[{i}]")
        if index is None or _matches(ix, index):
            groups.append((f"metadata._file_indices[{i}].files", ix.get("key"), ix.get("files")))
    if index is not None and not groups:
        known = f"it has {_index_names(indices)}" if indices else "it has none"
        raise PubflowError(f"no file index {index!r} in record {metadata.get('recid')} "
                           f"({known})", path=source, key="metadata._file_indices")
    files: dict[str, RemoteFile] = {}
    for where, key, entries in groups:
        for j, entry in enumerate(entries or []):
            found = _remote_file(entry, f"{where}[{j}]", key, source)
            files.setdefault(found.uri, found)  # a file listed twice is one input
    if not files:
        raise PubflowError(f"record {metadata.get('recid')} lists no file and no file index",
                           path=source, key="metadata._file_indices")
    return list(files.values())


def root_files(files: Sequence[RemoteFile], source: str) -> list[RemoteFile]:
    """The ROOT files among ``files`` (select reads nothing else); the others are logged."""
    kept = [f for f in files if f.uri.lower().endswith(".root")]
    if not kept:
        raise PubflowError(f"none of the {len(files)} files is a ROOT file (e.g. "
                           f"{files[0].uri})", path=source)
    if len(kept) < len(files):
        others = [f.uri.rsplit("/", 1)[-1] for f in files if not f.uri.lower().endswith(".root")]
        log.info("%s: %d files that are not ROOT files left out (%s)", source, len(others),
                 ", ".join(others[:3]) + (", ..." if len(others) > 3 else ""))
    return kept


def citation(metadata: dict[str, Any]) -> str | None:
    """The record's "Cite as" text, as the portal's record page writes it; None without a DOI.

    cernopendata-portal, cernopendata/templates/cernopendata_records_ui/records/
    record_detail.html (the ``cite-paragraph``): authors, collaboration, (year).
    title_additional or title. CERN Open Data Portal. DOI:doi
    """
    doi = metadata.get("doi")
    if not doi:
        return None
    authors = "".join(f"{a['name']}; " for a in metadata.get("authors") or []
                      if isinstance(a, dict) and a.get("name"))
    collaboration = (metadata.get("collaboration") or {}).get("name", "")
    year = f" ({metadata['date_published']})." if metadata.get("date_published") else ""
    title = metadata.get("title_additional") or metadata.get("title") or ""
    return " ".join(f"{authors}{collaboration}{year} {title}. CERN Open Data Portal. "
                    f"DOI:{doi}".split())


def provenance(metadata: dict[str, Any], landing: str, index: str | None) -> dict[str, str]:
    """The provenance fields of a file of this record (``index``: the file index listing it)."""
    recid = metadata.get("recid")
    found = {"source": f"CERN Open Data record {recid}"
                       + (f", file index {index}" if index else ", a file of the record itself"),
             "record": landing}
    if cite := citation(metadata):
        found["derived_from"] = cite
    doi = metadata.get("doi")
    if isinstance(doi, str) and doi.startswith("10."):
        found["doi"] = doi
    licence = (metadata.get("license") or {}).get("attribution")
    # the portal's licences are SPDX identifiers (opendata.cern.ch, scripts/check_licenses.py)
    found["license"] = (licence.strip() if isinstance(licence, str) and licence.strip()
                        else datasets.PROVENANCE_TEMPLATE["license"])
    return found


def description(metadata: dict[str, Any], file: RemoteFile, sample: str | None) -> str:
    """What a file of this record holds, in one line."""
    recid = metadata.get("recid")
    title = metadata.get("title_additional") or metadata.get("title") or f"record {recid}"
    where = f"file index {file.index}" if file.index else "the record's own files"
    text = f"{title}: a file of CERN Open Data record {recid} ({where})"
    events = (metadata.get("distribution") or {}).get("number_events")
    if isinstance(events, int):
        text += f"; the record holds {events} events"
    if sample:
        text = f"Sample {sample}. {text}"
    return " ".join(text.split())


def _filled(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith(datasets.PLACEHOLDER)


def _facts(file: RemoteFile, trees: dict[str, int], old: dict[str, Any] | None,
           metadata: dict[str, Any], landing: str, sample: str | None) -> dict[str, Any]:
    """The entry of ``file``: what the record states, over what an old entry had.

    The record's values replace an old entry's; what the record cannot say (a licence it
    lacks, a key it has no value for, a description written by hand) is kept.
    """
    prov = dict(old["provenance"]) if old else {}
    for key, value in provenance(metadata, landing, file.index).items():
        if _filled(value) or not _filled(prov.get(key)):
            prov[key] = value
    old_description = old.get("description") if old else None
    return {"size": file.size, "adler32": file.adler32, "trees": trees,
            "description": old_description if _filled(old_description)
            else description(metadata, file, sample),
            "provenance": prov}


def _without_stale_sha256(manifest: dict[str, Any], files: Sequence[RemoteFile]
                          ) -> dict[str, Any]:
    """The manifest without the sha256 of entries the record now gives another size or
    adler32 (a new version of the file): no checksum is left that the file no longer has."""
    by_uri = {f.uri: f for f in files}
    kept = []
    for entry in manifest["files"]:
        file = by_uri.get(entry["path"])
        if file is not None and "sha256" in entry and (
                entry["size"] != file.size or entry.get("adler32", file.adler32) != file.adler32):
            log.warning("%s: its sha256 is dropped: the record gives it another size or "
                        "adler32 than the manifest (a new version of the file?)", file.uri)
            entry = {k: v for k, v in entry.items() if k != "sha256"}
        kept.append(entry)
    return {**manifest, "files": kept}


def read_trees_of(files: Sequence[RemoteFile], read: TreeReader) -> list[dict[str, int]]:
    """The TTrees of every file with their entries, ``READERS`` files at a time."""
    log.info("reading the TTrees of %d files (their metadata, not their data)", len(files))
    pool = ThreadPoolExecutor(max_workers=max(1, min(READERS, len(files))))
    try:
        return list(pool.map(read, [f.uri for f in files]))
    finally:
        # after a failure, the reads not yet started are not made
        pool.shutdown(cancel_futures=True)


def _check_events(metadata: dict[str, Any], trees: Sequence[dict[str, int]],
                  source: str) -> None:
    """Warn when no tree of the record's files holds the number of events it states."""
    stated = (metadata.get("distribution") or {}).get("number_events")
    if not isinstance(stated, int):
        return
    totals: Counter[str] = Counter()
    for found in trees:
        totals.update(found)
    if stated not in totals.values():
        log.warning("%s: the record states %d events, but no tree of its files holds as many "
                    "(%s)", source, stated,
                    ", ".join(f"{name}: {n}" for name, n in totals.most_common(3)))


def from_opendata(manifest_path: str | Path, recid: int, *, index: str | None = None,
                  sample: str | None = None, server: str = DEFAULT_SERVER,
                  read_trees: TreeReader = datasets.trees) -> dict[str, Any]:
    """Add the ROOT files of record ``recid`` (of its file index ``index``) to the manifest.

    Other entries are kept as they are; an entry of the same file is updated. Nothing is
    written unless every file was listed with its size and adler32, is on disk ("online")
    and has its TTrees read (``read_trees``, a file's URI to ``{tree: entries}``).

    Returns:
        The manifest as written.
    """
    source, record = fetch_record(server, recid)
    metadata = record["metadata"]
    files = root_files(listed_files(record, index, source), source)
    if on_tape := [f for f in files if not f.online]:
        raise PubflowError(f"{len(on_tape)} of the {len(files)} files are on tape ('on "
                           f"demand'), e.g. {on_tape[0].uri}: request them on the record's "
                           "page, then run this again", path=source, key="availability")
    manifest_path = Path(manifest_path)
    begun = not manifest_path.exists()
    header, manifest = datasets.read_for_update(manifest_path)  # a bad one stops us first
    header = HEADER if begun else header
    trees = read_trees_of(files, read_trees)
    if index is None:  # the record's count is of all its files
        _check_events(metadata, trees, source)
    landing = f"{server.rstrip('/')}/record/{recid}"
    existing = {entry["path"]: entry for entry in manifest["files"]}  # URIs: no normalizing
    measured = {f.uri: _facts(f, found, existing.get(f.uri), metadata, landing, sample)
                for f, found in zip(files, trees, strict=True)}
    new = sum(uri not in existing for uri in measured)
    updated = datasets.add(_without_stale_sha256(manifest, files), measured)
    datasets.write_manifest(manifest_path, updated, header)
    log.info("%s: %d files of record %d (%d new, %d updated)", manifest_path, len(measured),
             recid, new, len(measured) - new)
    if pending := datasets.unfilled(updated):
        log.warning("%s: fill in %s before publishing (steps.validate refuses placeholders)",
                    manifest_path, ", ".join(pending))
    return updated
