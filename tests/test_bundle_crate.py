"""The crate a deposit bundle carries: exactly the bundle's files, vouched for by the gate.

A small finished run (``test_provenance.make_workspace``, with Snakemake's per-job records)
gets its RO-Crate from ``steps.provenance``; ``write_bundle`` then derives the bundle's own
crate from it. The validator's verdict on a full run's bundle is in
``tests/test_rocrate_validator.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from steps import provenance
from steps.errors import PubflowError
from steps.publish.bundle import RunCrate, write_bundle
from steps.publish.gate import GateResult, check_crate, check_gate

from .test_provenance import make_workspace, record

CRATE = "ro-crate-metadata.json"
ARCHIVE = "pubflow-workflow.tar.gz"
REPORT = "results/validation/report.json"


def finished_run(tmp_path: Path) -> Path:
    """A validated workspace with what the workflow archive needs, per-job records, and its
    crate; the current directory (publishers run in the workspace, as the report's paths
    are relative to it)."""
    ws = make_workspace(tmp_path)
    result = ws / "results" / "fit" / "results.json"
    (ws / REPORT).write_text(json.dumps({"valid": True, "checks": [
        {"artefact": "results/fit/results.json", "valid": True,
         "sha256": hashlib.sha256(result.read_bytes()).hexdigest()}]}))
    (ws / "steps").mkdir()
    (ws / "steps" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (ws / "reana.yaml").write_text("version: 0.9.0\n")
    meta = ws / ".snakemake" / "metadata"
    meta.mkdir(parents=True)
    name = base64.urlsafe_b64encode(b"results/fit/results.json").decode()
    (meta / name).write_text(json.dumps({
        "rule": "fit", "job_hash": 7, "starttime": 1767323045.5, "endtime": 1767323050.1,
        "incomplete": False, "input": ["inputs/data/events.root"], "log": ["logs/fit.log"],
        "shellcmd": "python -m steps.fit"}))
    provenance.record(ws, record(ws), source_repo=ws)
    os.chdir(ws)
    return ws


def sources(ws: Path) -> dict[str, Path]:
    """What the Zenodo target publishes of this run (paths as it gives them: relative)."""
    assert Path.cwd() == ws
    return {"fit-results.json": Path("results/fit/results.json"),
            "validation-report.json": Path(REPORT)}


@pytest.fixture(autouse=True)
def _back_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test may move into its workspace: come back afterwards."""
    monkeypatch.chdir(Path.cwd())


def bundle(ws: Path, out: Path, gate: GateResult | None = None) -> Path:
    """Write the bundle as the Zenodo target does: gate first, then the files and the crate."""
    files = sources(ws)
    gate = gate or check_gate(REPORT, files.values(), complete=True)
    write_bundle(out, files, lambda _files: {}, workflow_root=".",
                 workflow_extra=("inputs/pubflow.yaml", "inputs/datasets.yaml"),
                 crate=RunCrate(Path(CRATE), gate))
    return out / "bundle" / "files"


def graph_of(path: Path) -> dict[str, dict[str, Any]]:
    return {e["@id"]: e for e in json.loads(path.read_text())["@graph"]}


def ids(value: Any) -> list[str]:
    return [v["@id"] for v in (value if isinstance(value, list) else [value])]


def test_the_bundle_crate_lists_exactly_its_files_with_their_digests(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    files = bundle(ws, tmp_path / "out")
    on_disk = sorted(p.name for p in files.iterdir())
    assert on_disk == ["README.md", "fit-results.json", ARCHIVE, CRATE,
                       "validation-report.json"]
    g = graph_of(files / CRATE)
    data = sorted(i for i, e in g.items() if "File" in e["@type"])
    assert data == sorted(set(on_disk) - {CRATE})
    assert sorted(ids(g["./"]["hasPart"])) == data
    for name in data:
        content = (files / name).read_bytes()
        assert g[name]["sha256"] == hashlib.sha256(content).hexdigest()
        assert g[name]["contentSize"] == str(len(content))
    # copies say where they came from (Process Run Crate: a renamed file's alternateName)
    assert g["fit-results.json"]["alternateName"] == "results/fit/results.json"
    assert g["validation-report.json"]["alternateName"] == REPORT
    assert "alternateName" not in g[ARCHIVE]
    assert g["README.md"]["about"] == {"@id": "./"}
    assert g["README.md"]["encodingFormat"] == "text/markdown"
    assert "fit-results.json" in (files / "README.md").read_text()


def test_the_bundle_crate_keeps_the_run_and_leaves_the_jobs_out(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    run_graph = graph_of(ws / CRATE)
    assert "#job-1" in run_graph  # the run's crate has the per-job records
    g = graph_of(bundle(ws, tmp_path / "out") / CRATE)
    root = g["./"]
    assert root["mainEntity"] == {"@id": ARCHIVE}
    assert set(g[ARCHIVE]["@type"]) >= {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
    assert g[ARCHIVE]["encodingFormat"] == "application/gzip"
    assert g[ARCHIVE]["version"] == run_graph["Snakefile"]["version"]
    assert g[ARCHIVE]["softwareRequirements"] == run_graph["Snakefile"]["softwareRequirements"]
    assert g[ARCHIVE]["programmingLanguage"] == run_graph["Snakefile"]["programmingLanguage"]
    run_id = next(i for i in ids(run_graph["./"]["mentions"]) if i.startswith("#run-"))
    action = g[run_id]
    assert action["instrument"] == {"@id": ARCHIVE}
    assert sorted(ids(action["result"])) == ["fit-results.json", "validation-report.json"]
    for key in ("startTime", "endTime", "agent", "description", "actionStatus"):
        assert action[key] == run_graph[run_id][key]
    assert g["#organize"]["result"] == {"@id": run_id}
    assert "object" not in g["#organize"]  # it pointed at the jobs' ControlActions
    # the jobs' inputs and outputs are workspace files: no per-job record, no such profile
    assert not [i for i in g if i.startswith(("#job-", "#control-", "#rule-", "#step-"))]
    assert "https://w3id.org/ro/wfrun/provenance/0.5" not in ids(root["conformsTo"])
    assert set(ids(root["conformsTo"])) == {
        "https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/ro/wfrun/workflow/0.5",
        "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}
    # every reference resolves to an entity of the crate or to the web
    for entity in g.values():
        for key, value in entity.items():
            if key != "@id" and isinstance(value, dict | list):
                for target in (v.get("@id") for v in (value if isinstance(value, list)
                                                      else [value]) if isinstance(v, dict)):
                    assert target in g or target.startswith("https://"), (entity["@id"], key)


def test_the_same_run_gives_the_same_crate(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    first = bundle(ws, tmp_path / "one")
    second = bundle(ws, tmp_path / "two")
    for name in (CRATE, "README.md", ARCHIVE):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_crate_of_another_run_is_refused(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    result = ws / "results" / "fit" / "results.json"
    result.write_text('{"mu": 1.5}\n')  # re-made after the crate, and validated again
    report = json.loads((ws / REPORT).read_text())
    report["checks"][0]["sha256"] = hashlib.sha256(result.read_bytes()).hexdigest()
    (ws / REPORT).write_text(json.dumps(report))
    with pytest.raises(PubflowError, match=r"ro-crate-metadata\.json: results/fit/results\.json"
                                           r"\.sha256: records sha256 .* another run"):
        bundle(ws, tmp_path / "out")
    assert not (tmp_path / "out" / "bundle").exists()  # nothing half-written


def test_an_archive_of_other_code_than_the_run_used_is_refused(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    (ws / "workflows" / "rules" / "fit.smk").write_text("rule fit:\n    shell: 'true'\n")
    with pytest.raises(PubflowError, match=r"workflows/rules/fit\.smk\.sha256: "
                                           r"pubflow-workflow\.tar\.gz would pack"):
        bundle(ws, tmp_path / "out")
    assert not (tmp_path / "out" / "bundle").exists()


def test_without_a_run_crate_the_bundle_carries_none(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ws = finished_run(tmp_path)
    (ws / CRATE).unlink()
    with caplog.at_level(logging.WARNING):
        files = bundle(ws, tmp_path / "out")
    assert sorted(p.name for p in files.iterdir()) == [
        "fit-results.json", ARCHIVE, "validation-report.json"]
    assert "no RO-Crate of the run" in caplog.text


def doctored(crate: dict[str, Any], change: str) -> dict[str, Any]:
    """The crate with one claim the gate did not vouch for."""
    crate = json.loads(json.dumps(crate))
    graph = {e["@id"]: e for e in crate["@graph"]}
    if change == "unlisted":
        crate["@graph"] = [e for e in crate["@graph"] if e["@id"] != "fit-results.json"]
    elif change == "absent":
        crate["@graph"].append({"@id": "extra.json", "@type": "File"})
    elif change == "digest":
        graph["fit-results.json"]["sha256"] = "0" * 64
    elif change == "size":
        graph["fit-results.json"]["contentSize"] = "1"
    elif change == "origin":
        graph["fit-results.json"]["alternateName"] = "inputs/data/events.root"
    elif change == "parts":
        graph["./"]["hasPart"] = [p for p in graph["./"]["hasPart"]
                                  if p["@id"] != "README.md"]
    return crate


@pytest.mark.parametrize(("change", "message"), [
    ("unlisted", r"the bundle's file fit-results\.json is not in the crate"),
    ("absent", r"extra\.json: lists a file the bundle does not hold"),
    ("digest", r"fit-results\.json\.sha256: says '0000"),
    ("size", r"fit-results\.json\.contentSize: says '1'"),
    ("origin", r"fit-results\.json\.alternateName: calls it a copy of inputs/data/events\.root"),
    ("parts", r"\./\.hasPart: the root's parts are not the bundle's files"),
])
def test_the_gate_vouches_only_for_what_it_saw(tmp_path: Path, change: str,
                                               message: str) -> None:
    ws = finished_run(tmp_path)
    files = bundle(ws, tmp_path / "out")
    crate = json.loads((files / CRATE).read_text())
    on_disk = {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
               for p in files.iterdir() if p.name != CRATE}
    gate = check_gate(REPORT, sources(ws).values())
    check_crate(crate, on_disk, gate, workspace=ws, path=CRATE)  # as written, it passes
    with pytest.raises(PubflowError, match=message):
        check_crate(doctored(crate, change), on_disk, gate, workspace=ws, path=CRATE)


def test_a_copy_the_report_does_not_list_is_not_vouched_for(tmp_path: Path) -> None:
    ws = finished_run(tmp_path)
    gate = check_gate(REPORT, [])  # the report vouches for nothing published here
    empty = GateResult(report=gate.report, verified={}, report_sha256=gate.report_sha256)
    with pytest.raises(PubflowError, match=r"fit-results\.json\.alternateName: calls it a "
                                           r"copy of results/fit/results\.json"):
        bundle(ws, tmp_path / "out", gate=empty)
