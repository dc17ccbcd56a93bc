"""``steps.datasets from-opendata``: a CERN Open Data record's files, as the portal lists them.

The portal is a local stand-in answering in the real portal's shapes, built from the stored
metadata of record 30527 (tests/data/opendata/SOURCE.md) the way the portal's own code builds
them; cernopendata-client, the portal's own client, is run against it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uproot
import yaml

from steps import cli, datasets, opendata
from steps.config import load_datasets
from steps.validate import check_datasets

from .conftest import REPO, step
from .fake_services import serving
from .test_xrootd import XRootD
from .test_xrootd_checksum import checksumming, no_reads  # noqa: F401 (fixtures)

DATA = Path(__file__).parent / "data" / "opendata"
RECID = 30527
#: The record as the portal is loaded with it (cernopendata/opendata.cern.ch).
SOURCE_RECORD: dict[str, Any] = json.loads((DATA / "record-30527.json").read_text())[0]
BUNDLED = REPO / "inputs" / "datasets.yaml"


def stored_index(name: str) -> list[dict[str, Any]]:
    """A file index as published on EOS beside the data (cernopendata/data-curation)."""
    return json.loads((DATA / name).read_text())


def index_names(record: dict[str, Any]) -> list[str]:
    return [f["uri"].rsplit("/", 1)[1] for f in record["files"] if f.get("type") == "index.json"]


STORED_FILES = [f for name in index_names(SOURCE_RECORD) for f in stored_index(name)]


def _uuid(*parts: object) -> str:
    # the portal's bucket, file and version ids are random UUIDs; these are reproducible
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


def portal_answer(source: dict[str, Any], indices: dict[str, list[dict[str, Any]]],
                  base: str) -> dict[str, Any]:
    """``GET /api/records/<recid>`` of a record loaded from ``source`` (its JSON in the
    content repository) whose index files hold ``indices`` (by file name).

    Follows cernopendata/cernopendata-portal at 5a2afd50a8203b968a75c839b592dd51972cc270:
    """
    recid = source["recid"]
    data = json.loads(json.dumps(source))
    # cernopendata/modules/fixtures/cli.py, _process_fixture_files: the schema is set on load
    data["$schema"] = "https://opendata.cern.ch/schema/records/record-v1.0.0.json"
    # cernopendata/modules/records/minters/recid.py, cernopendata_recid_minter
    data["pids"] = {"oai": {"id": f"oai:cernopendata.cern:{recid}"}}
    bucket = _uuid(recid, "bucket")
    data["_bucket"] = bucket  # invenio-records-files: the record's own bucket
    availability: dict[str, int] = {}
    if "files" in data:
        # cernopendata/modules/fixtures/cli.py, _handle_record_files: an index.json becomes a
        # file index, an index.txt is dropped, any other file stays in "files"
        data["_file_indices"] = []
        real = []
        for file in data["files"]:
            name = file["uri"].rsplit("/", 1)[1]
            if file.get("type") == "index.json":
                data["_file_indices"].append(
                    _file_index(recid, name, file.get("description", name), indices[name]))
            elif file.get("type") != "index.txt":
                real.append({**file, "bucket": bucket, "key": name, "availability": "online",
                             "version_id": _uuid(recid, name, "version")})
        data["files"] = real
        for index in data["_file_indices"]:
            for kind, n in index["availability"].items():
                availability[kind] = availability.get(kind, 0) + n
        for file in real:
            availability[file["availability"]] = availability.get(file["availability"], 0) + 1
    # cernopendata/cold_storage/api.py, ColdRecord.check_availability
    data["_availability_details"] = availability
    data["availability"] = (next(iter(availability)) if len(availability) == 1
                            else "online" if not availability else "partial")
    # invenio-records-rest, invenio_records_rest/schemas/json.py, RecordSchemaJSONV1; the
    # links of cernopendata/modules/records/links.py, links_factory
    return {"created": "2024-04-11T12:00:00.000000+00:00",
            "updated": "2024-04-11T12:00:00.000000+00:00", "id": recid,
            "links": {"self": f"{base}/api/records/{recid}",
                      "bucket": f"{base}/api/files/{bucket}"},
            "metadata": data}


def _file_index(recid: str, name: str, description: str, entries: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """One file index: cernopendata/api.py, FileIndexMetadata.create and .dumps, each entry
    through MultiURIFileObject.dumps over invenio-records-files' FileObject.dumps."""
    bucket = _uuid(recid, name)
    files = []
    for n, entry in enumerate(entries):
        files.append({**entry, "file_id": _uuid(recid, name, n), "bucket": bucket,
                      "key": f"{name}_{n}", "version_id": _uuid(recid, name, n, "version"),
                      "tags": {}, "availability": entry.get("availability", "online")})
    counts: dict[str, int] = {}
    for file in files:
        counts[file["availability"]] = counts.get(file["availability"], 0) + 1
    return {"availability": counts, "key": name, "number_files": len(files),
            "size": sum(f["size"] for f in files), "files": files,
            "description": description, "bucket": bucket}


class Portal:
    """A running stand-in for the portal: its base URL, its records, the paths asked for."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    def add(self, source: dict[str, Any], indices: dict[str, list[dict[str, Any]]]) -> None:
        self.records[source["recid"]] = portal_answer(source, indices, self.url)


@contextlib.contextmanager
def running_portal() -> Iterator[Portal]:
    box: list[Portal] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            portal = box[0]
            portal.requests.append(self.path)
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "records"] and len(parts) == 3:
                answer = portal.records.get(parts[2])
                if answer is None:
                    # invenio-records-rest, errors.py, PIDDoesNotExistRESTError, as the body
                    # invenio-rest's RESTException.get_body writes
                    self._send(404, json.dumps({"status": 404, "message": "PID does not exist."}
                                               ).encode(), "application/json")
                else:
                    self._send(200, json.dumps(answer).encode(), "application/json")
            elif parts[0] == "record" and len(parts) == 2:
                # the record's page (RECORDS_UI_ENDPOINTS recid, record_metadata_view), which
                # cernopendata-client's searcher.verify_recid asks for first
                found = parts[1] in portal.records
                self._send(200 if found else 404,
                           b"<!DOCTYPE html><html><body>record</body></html>", "text/html")
            else:
                self._send(404, b"<!DOCTYPE html><html><body>Not found</body></html>",
                           "text/html")

    with serving(Handler) as url:
        box.append(Portal(url))
        yield box[0]


@pytest.fixture(scope="module")
def portal_server() -> Iterator[Portal]:
    """One stand-in for the module (stopping one takes half a second)."""
    with running_portal() as running:
        running.add(SOURCE_RECORD, {n: stored_index(n) for n in index_names(SOURCE_RECORD)})
        yield running


@pytest.fixture
def portal(portal_server: Portal) -> Portal:
    """The stand-in serving record 30527, with no request counted yet."""
    portal_server.requests.clear()
    return portal_server


def events_by_file(files: list[dict[str, Any]], total: int) -> dict[str, dict[str, int]]:
    """Made-up NanoAOD trees per file whose ``Events`` add up to ``total``."""
    share, rest = divmod(total, len(files))
    return {f["uri"]: {"Events": share + (i < rest), "Runs": 1} for i, f in enumerate(files)}


def read(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def from_opendata_cli(*args: str) -> int:
    """``python -m steps.datasets from-opendata ARGS``, in this process (fast)."""
    return cli.run(datasets.main, datasets.build_parser, ["from-opendata", *args])


def test_the_stored_indices_are_the_ones_the_record_names() -> None:
    """Size and adler32 of each stored index file equal what the record states for it."""
    for file in SOURCE_RECORD["files"]:
        if file["type"] != "index.json":
            continue
        blob = (DATA / file["uri"].rsplit("/", 1)[1]).read_bytes()
        assert (len(blob), f"adler32:{zlib.adler32(blob) & 0xFFFFFFFF:08x}") == (
            file["size"], file["checksum"])
    # the record counts its data files, not the indices listing them
    assert len(STORED_FILES) == SOURCE_RECORD["distribution"]["number_files"]


def test_every_root_file_of_the_record_is_written_with_its_size_adler32_and_provenance(
        portal: Portal, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = tmp_path / "datasets.yaml"
    trees = events_by_file(STORED_FILES, SOURCE_RECORD["distribution"]["number_events"])
    opendata.from_opendata(manifest, RECID, server=portal.url, sample="Data",
                           read_trees=trees.__getitem__)

    written = {e["path"]: e for e in load_datasets(manifest)["files"]}
    assert list(written) == [f["uri"] for f in STORED_FILES]
    for file in STORED_FILES:
        entry = written[file["uri"]]
        assert entry["size"] == file["size"]
        assert "adler32:" + entry["adler32"] == file["checksum"]
        assert "sha256" not in entry  # XRootD is asked for the adler32; nothing else is known
        assert entry["trees"] == trees[file["uri"]]
        assert "Data" in entry["description"]
        assert entry["provenance"]["record"] == f"{portal.url}/record/{RECID}"
        assert entry["provenance"]["doi"] == SOURCE_RECORD["doi"]
        assert entry["provenance"]["license"] == SOURCE_RECORD["license"]["attribution"]
        # the portal page's "Cite as": collaboration (year). title. portal. DOI
        cite = entry["provenance"]["derived_from"]
        assert cite.startswith(f"{SOURCE_RECORD['collaboration']['name']} "
                               f"({SOURCE_RECORD['date_published']}). ")
        assert SOURCE_RECORD["title_additional"] in cite
        assert cite.endswith(f"CERN Open Data Portal. DOI:{SOURCE_RECORD['doi']}")
    indexed = {f["uri"]: name for name in index_names(SOURCE_RECORD)
               for f in stored_index(name)}
    assert all(indexed[p] in e["provenance"]["source"] for p, e in written.items())
    assert check_datasets(manifest).valid  # nothing left to fill in: publishable as it is
    assert portal.requests == [f"/api/records/{RECID}"]
    assert "no tree" not in caplog.text  # the trees add up to the events the record states


def test_a_file_index_is_chosen_by_its_name(portal: Portal, tmp_path: Path) -> None:
    name = index_names(SOURCE_RECORD)[1]
    wanted = [f["uri"] for f in stored_index(name)]
    trees = events_by_file(STORED_FILES, 100)
    # by its name, as the record lists it; without ".json"; or as its .txt twin
    for given in (name, name.removesuffix(".json"), name.replace(".json", ".txt")):
        manifest = tmp_path / f"{given}.yaml"
        opendata.from_opendata(manifest, RECID, index=given, server=portal.url,
                               read_trees=trees.__getitem__)
        assert [e["path"] for e in read(manifest)["files"]] == wanted


def test_the_record_s_events_are_checked_against_the_files_trees(
        portal: Portal, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stated = SOURCE_RECORD["distribution"]["number_events"]
    trees = events_by_file(STORED_FILES, stated - 1)  # one event missing
    opendata.from_opendata(tmp_path / "m.yaml", RECID, server=portal.url,
                           read_trees=trees.__getitem__)
    assert f"the record states {stated} events" in caplog.text


def test_other_entries_are_kept_and_the_record_s_are_updated(portal: Portal, tmp_path: Path
                                                             ) -> None:
    manifest = tmp_path / "datasets.yaml"
    before = read(BUNDLED)
    first = STORED_FILES[0]
    # an older entry of the first file: another size (a new version), a sha256 that no
    # longer holds, a description and a related record written by hand
    old = {"path": first["uri"], "size": 1, "sha256": "0" * 64, "trees": {"Events": 1},
           "description": "written by hand",
           "provenance": {"source": "old", "related": "a note", "license": "CC0-1.0"}}
    header = "# the bundled manifest, and an older entry\n"
    manifest.write_text(header + yaml.safe_dump({**before, "files": [old, *before["files"]]},
                                                sort_keys=False))

    trees = events_by_file(STORED_FILES, SOURCE_RECORD["distribution"]["number_events"])
    opendata.from_opendata(manifest, RECID, server=portal.url, read_trees=trees.__getitem__)

    after = read(manifest)
    assert after["files"][1] == before["files"][0]  # the bundled entry, untouched
    assert manifest.read_text().startswith(header)
    updated = after["files"][0]
    assert (updated["size"], "adler32:" + updated["adler32"]) == (first["size"],
                                                                 first["checksum"])
    assert "sha256" not in updated
    assert updated["description"] == "written by hand"
    assert updated["provenance"]["related"] == "a note"
    assert updated["provenance"]["doi"] == SOURCE_RECORD["doi"]
    assert len(after["files"]) == 1 + len(STORED_FILES)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_index_record() -> dict[str, Any]:
    # a record loaded without "files": _handle_record_files gives it no _file_indices
    return {k: v for k, v in SOURCE_RECORD.items() if k != "files"} | {"recid": "1"}


def _tape_record() -> dict[str, Any]:
    return {**SOURCE_RECORD, "recid": "2"}


def _sha1_record() -> dict[str, Any]:
    return {**SOURCE_RECORD, "recid": "3"}


#: (what is asked, the one line expected after "error: "): each a case of its own
BAD = {
    "unknown-record": (["999"], (r"/api/records/999: no record 999 on this portal "
                                 r"\(HTTP 404: PID does not exist\.\)$")),
    "unknown-index": ([str(RECID), "--index", "nope.json"], (
        rf"/api/records/{RECID}: metadata._file_indices: no file index 'nope.json' in "
        rf"record {RECID} \(it has CMS_Run2016G_MuOnia_\S+_270000_file_index.json, "
        r"CMS_\S+_70000_file_index.json\)$")),
    "no-file-index": (["1"], (r"/api/records/1: metadata._file_indices: record 1 lists no "
                              r"file and no file index$")),
    "on-tape": (["2"], (r"/api/records/2: availability: 1 of the 16 files are on tape "
                        r"\('on demand'\), e\.g\. root://\S+: request them")),
    "no-adler32": (["3"], (r"/api/records/3: metadata._file_indices\[1\].files\[2\]."
                           r"checksum: root://\S+: checksum 'sha1:[0-9a-f]{40}' is no adler32")),
    "unreachable": ([str(RECID)], (r"127\.0\.0\.1:\d+/api/records/30527: cannot reach the "
                                   r"portal \(.*refused")),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_record_or_server_is_one_line_and_the_manifest_is_untouched(
        portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
        ) -> None:
    args, expected = BAD[case]
    indices = {n: stored_index(n) for n in index_names(SOURCE_RECORD)}
    portal.add(_no_index_record(), {})
    tape = json.loads(json.dumps(indices))
    tape[index_names(SOURCE_RECORD)[0]][3]["availability"] = "on demand"
    portal.add(_tape_record(), tape)
    sha1 = json.loads(json.dumps(indices))
    sha1[index_names(SOURCE_RECORD)[1]][2]["checksum"] = "sha1:" + "ab" * 20
    portal.add(_sha1_record(), sha1)
    server = portal.url if case != "unreachable" else f"http://127.0.0.1:{_unused_port()}"
    manifest = tmp_path / "datasets.yaml"
    shutil.copy(BUNDLED, manifest)
    capsys.readouterr()

    code = from_opendata_cli(*args, "--server", server, "--manifest", str(manifest))

    [line] = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("python -m steps.datasets: error: ")
    assert re.search(expected, line), line
    assert manifest.read_bytes() == BUNDLED.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets.yaml"]


def test_the_command_exits_1_with_one_line_for_an_unknown_record(portal: Portal,
                                                                  tmp_path: Path) -> None:
    result = step(tmp_path, "datasets", "from-opendata", "999", "--server", portal.url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (f"python -m steps.datasets: error: {portal.url}/api/records/999: no record 999 on "
         "this portal (HTTP 404: PID does not exist.)")]
    assert not (tmp_path / "inputs").exists()


def test_cernopendata_client_sees_the_files_the_manifest_lists(portal: Portal,
                                                                tmp_path: Path) -> None:
    """The portal's own client, on the same stand-in: the same URIs, sizes and checksums."""
    manifest = tmp_path / "datasets.yaml"
    trees = events_by_file(STORED_FILES, 100)
    opendata.from_opendata(manifest, RECID, server=portal.url, read_trees=trees.__getitem__)
    client = Path(sys.executable).parent / "cernopendata-client"
    result = subprocess.run(
        [str(client), "get-file-locations", "--recid", str(RECID), "--server", portal.url,
         "--protocol", "xrootd", "--verbose"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = [tuple(line.split("\t")) for line in result.stdout.splitlines()]
    written = [(e["path"], str(e["size"]), f"adler32:{e['adler32']}")
               for e in read(manifest)["files"]]
    assert seen == written
    assert len(seen) == len(STORED_FILES)


def _nanoaod_like(path: Path, events: int, seed: int) -> None:
    """A small ROOT file with an ``Events`` and a ``Runs`` tree, as NanoAOD files have."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:
        f.mktree("Events", {"nMuon": "i4"}).extend({"nMuon": rng.integers(0, 4, events)})
        f.mktree("Runs", {"run": "i4"}).extend({"run": np.array([278820], "i4")})


def test_end_to_end_the_manifest_of_a_record_on_xrootd_verifies_without_reading(
        checksumming: XRootD, no_reads: list[str], tmp_path: Path) -> None:  # noqa: F811
    """A record whose files an XRootD server holds: from-opendata writes their entries
    (reading only their trees), and the input check asks the server, reading no byte."""
    events = {"a.root": 1500, "b.root": 700}
    entries = []
    for i, (name, n) in enumerate(events.items()):
        local = checksumming.export / name
        _nanoaod_like(local, n, i)
        os.chmod(local, 0o644)
        blob = local.read_bytes()
        entries.append({"checksum": f"adler32:{zlib.adler32(blob) & 0xFFFFFFFF:08x}",
                        "filename": name, "size": len(blob), "uri": checksumming.url(name)})
    index = "local_file_index.json"
    source = {**SOURCE_RECORD, "recid": "4",
              "distribution": {**SOURCE_RECORD["distribution"], "number_files": 2,
                               "number_events": sum(events.values())},
              "files": [{"checksum": "adler32:00000001", "size": 1, "type": "index.json",
                         "uri": f"root://eospublic.cern.ch//eos/opendata/x/{index}"}]}
    manifest = tmp_path / "datasets.yaml"
    with running_portal() as local_portal:
        local_portal.add(source, {index: entries})
        result = step(tmp_path, "datasets", "from-opendata", "4", "--server", local_portal.url,
                      "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    assert "no tree" not in result.stderr

    written = {e["path"]: e for e in read(manifest)["files"]}
    for entry, n in zip(entries, events.values(), strict=True):
        assert written[entry["uri"]]["trees"] == {"Events": n, "Runs": 1}
    no_reads.clear()  # from-opendata ran in its own process; count from here
    sent = checksumming.bytes_written()
    for entry in entries:
        found = datasets.verify_input(manifest, entry["uri"])
        assert found is not None and found["size"] == entry["size"]
    assert no_reads == []
    # the server's own count: protocol only, far less than the files (it would be all of them)
    assert checksumming.bytes_written() - sent < sum(e["size"] for e in entries) / 20


def test_end_to_end_select_reads_the_record_s_files_once(checksumming: XRootD,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """The workflow's select step on a record's files as from-opendata lists them: each is
    verified by the server's adler32 and then read once, only what the histogram needs. The
    server's own count of bytes sent (about 4 kB of a 24 kB file) stays below half the file,
    which a check that streamed it, as a sha256 does, would exceed on its own; the histogram
    is numpy's count of the same entries."""
    from steps import select
    from steps.config import check_analysis

    events = {"data.root": 3000, "sim.root": 2000}
    entries = []
    for i, (name, n) in enumerate(events.items()):
        local = checksumming.export / name
        _nanoaod_like(local, n, 10 + i)
        os.chmod(local, 0o644)
        blob = local.read_bytes()
        entries.append({"checksum": f"adler32:{zlib.adler32(blob) & 0xFFFFFFFF:08x}",
                        "filename": name, "size": len(blob), "uri": checksumming.url(name)})
    source = {**SOURCE_RECORD, "recid": "5",
              "distribution": {**SOURCE_RECORD["distribution"], "number_files": 2,
                               "number_events": sum(events.values())}, "files": entries}
    manifest = tmp_path / "datasets.yaml"
    with running_portal() as local_portal:
        local_portal.add(source, {})
        result = step(tmp_path, "datasets", "from-opendata", "5", "--server", local_portal.url,
                      "--manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    urls = [e["uri"] for e in entries]
    edges = [0.0, 1.0, 2.0, 3.0, 4.0]
    config = {
        "General": {"Measurement": "m", "POI": "mu", "InputPath": "{SamplePath}",
                    "HistogramFolder": str(tmp_path / "histograms")},
        "Regions": [{"Name": "SR", "Variable": "nMuon", "Binning": edges}],
        "Samples": [{"Name": "Data", "Tree": "Events", "Data": True, "SamplePath": urls[0]},
                    {"Name": "Sim", "Tree": "Events", "SamplePath": urls[1]}],
        "NormFactors": [{"Name": "mu", "Samples": "Sim", "Nominal": 1, "Bounds": [0, 5]}],
        "Datasets": str(manifest),
    }
    check_analysis(config, "the test's config")
    for url, name in zip(urls, events, strict=True):
        before = checksumming.bytes_written()
        assert select.select(config, url, str(tmp_path / f"{name}.npz")) == 1
        sent = checksumming.bytes_written() - before
        size = (checksumming.export / name).stat().st_size
        assert 0 < sent < size / 2, (sent, size)
        values = uproot.open(checksumming.export / name)["Events"]["nMuon"].array(library="np")
        with np.load(tmp_path / f"{name}.npz") as part:
            sumw = next(part[k] for k in part.files if k.endswith("/sumw"))
        assert sumw.tolist() == np.histogram(values, bins=edges)[0].tolist()
