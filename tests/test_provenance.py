"""steps.provenance: a Workflow Run RO-Crate with commit, packages, checksums, times, images."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rocrate.rocrate import ROCrate

from steps import provenance
from steps.provenance import Hasher, RunRecord

from .conftest import REPO, run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_workspace(root: Path) -> Path:
    """A finished run's workspace: staged inputs, results, logs, and a .git beside it."""
    ws = root / "ws"
    (ws / "inputs" / "data").mkdir(parents=True)
    (ws / "workflows" / "rules").mkdir(parents=True)
    for name in ("pubflow.yaml", "analysis.yaml"):
        shutil.copy2(REPO / "inputs" / name, ws / "inputs" / name)
    data = b"not really a ROOT file"
    (ws / "inputs" / "data" / "events.root").write_bytes(data)
    manifest = {"version": 2, "files": [{"path": "inputs/data/events.root",
                                         "trees": {"events": 3},
                           "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "provenance": {"source": "test", "license": "CC0-1.0"}}]}
    (ws / "inputs" / "datasets.yaml").write_text(yaml.safe_dump(manifest))
    (ws / "Snakefile").write_text("rule all:\n    input: 'results/fit/results.json'\n")
    (ws / "workflows" / "rules" / "fit.smk").write_text(
        'rule fit:\n    container:\n        image("analysis")\n')
    (ws / "inputs" / "reference").mkdir()
    (ws / "inputs" / "reference" / "fit.json").write_text("{}")
    (ws / "results" / "fit").mkdir(parents=True)
    (ws / "results" / "fit" / "results.json").write_text('{"mu": 1.0}\n')
    (ws / "results" / "histograms").mkdir()
    (ws / "results" / "histograms" / ".snakemake_timestamp").write_text("")
    (ws / "results" / "validation").mkdir()
    workspace_json = ws / "results" / "fit" / "results.json"
    (ws / "results" / "validation" / "report.json").write_text(json.dumps({
        "valid": True, "checks": [{"artefact": "results/fit/results.json",
                                   "sha256": hashlib.sha256(workspace_json.read_bytes())
                                   .hexdigest()}]}))
    (ws / "logs").mkdir()
    (ws / "logs" / "fit.log").write_text("fitted\n")
    git = ws / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(COMMIT + "\n")
    (git / "config").write_text('[remote "origin"]\n\turl = https://user:secret@example.org/'
                                'pubflow.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n')
    return ws


def record(ws: Path, **kwargs: Any) -> RunRecord:
    return RunRecord(mode=kwargs.pop("mode", "local"), command=["snakemake", "--cores", "2"],
                     started=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                     ended=dt.datetime(2026, 1, 2, 3, 5, 6, tzinfo=dt.UTC),
                     status="completed", workspace=str(ws), engine="snakemake 9.27.1",
                     driver=["python", "-m", "steps.reproduce"], **kwargs)


def graph(path: Path) -> dict[str, dict[str, Any]]:
    return {e["@id"]: e for e in json.loads(path.read_text())["@graph"]}


def test_crate_records_code_environment_files_and_times(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    hasher = Hasher()
    path = provenance.record(ws, record(ws), source_repo=ws, hasher=hasher)
    assert path == ws / "ro-crate-metadata.json"  # the workspace is the crate's payload
    g = graph(path)
    root = g["./"]
    # no Snakemake records in this workspace: no Provenance Run Crate
    assert {c["@id"] for c in root["conformsTo"]} == {
        "https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/ro/wfrun/workflow/0.5",
        "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}
    assert {c["@id"] for c in g["ro-crate-metadata.json"]["conformsTo"]} == {
        "https://w3id.org/ro/crate/1.1", "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}
    assert json.loads(path.read_text())["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    assert g[root["author"]["@id"]]["name"] == "pubflow developers"
    assert g[root["publisher"]["@id"]]["@type"] == "Organization"
    assert g["README.md"]["about"] == {"@id": "./"}  # written, as the workspace had none
    assert root["mainEntity"] == {"@id": "Snakefile"}
    assert root["license"] == {"@id": "https://creativecommons.org/publicdomain/zero/1.0/"}
    workflow = g["Snakefile"]
    assert workflow["version"] == COMMIT
    assert workflow["codeRepository"] == "https://example.org/pubflow.git"  # no credentials
    action = next(e for e in g.values() if e["@type"] == "CreateAction")
    assert action["instrument"] == {"@id": "Snakefile"}
    assert action["description"] == "snakemake --cores 2"
    assert (action["startTime"], action["endTime"]) == ("2026-01-02T03:04:05+00:00",
                                                        "2026-01-02T03:05:06+00:00")
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert action["agent"] == root["publisher"]
    objects = {o["@id"] for o in action["object"]}
    assert objects == {"inputs/analysis.yaml", "inputs/pubflow.yaml", "inputs/data/events.root",
                       "inputs/datasets.yaml", "workflows/rules/fit.smk"}
    assert {r["@id"] for r in action["result"]} == {"results/fit/results.json",
                                                    "results/validation/report.json"}
    for name in objects | {"results/fit/results.json"}:
        assert g[name]["sha256"] == hashlib.sha256((ws / name).read_bytes()).hexdigest()
        assert g[name]["contentSize"] == str((ws / name).stat().st_size)
    assert g["logs/fit.log"]["about"] == {"@id": action["@id"]}
    organize = next(e for e in g.values() if e["@type"] == "OrganizeAction")
    assert organize["result"] == {"@id": action["@id"]}
    assert organize["description"] == "python -m steps.reproduce"
    assert "containerImage" not in action  # a local run uses no container
    # the exact version of every package of the environment
    requirements = {r["@id"] for r in workflow["softwareRequirements"]}
    for package in ("pyhf", "snakemake", "rocrate", "numpy"):
        version = importlib.metadata.version(package)
        ident = f"https://pypi.org/project/{package}/{version}/"
        assert ident in requirements
        assert (g[ident]["softwareVersion"], g[ident]["url"]) == (version, ident)
    assert organize["instrument"] == {"@id": "https://pypi.org/project/snakemake/9.27.1/"}
    assert g["Snakefile"]["encodingFormat"] == "text/x-snakemake"


def test_hashing_is_cheap(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    hasher = Hasher()
    provenance.record(ws, record(ws), source_repo=ws, hasher=hasher)
    # inputs (the Snakefile among them), outputs, the log and the README
    listed = len(provenance.input_files(ws)) + len(provenance.output_files(ws)) + 2
    # the data file (verified by the workflow against the manifest) and the validated
    # fit results are not read again; nothing is read twice
    assert hasher.files_read == listed - 2
    provenance.record(ws, record(ws), source_repo=ws, hasher=hasher)
    assert hasher.files_read == listed - 2


def test_a_failed_run_trusts_no_digest(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    same_size = b"NOT REALLY A ROOT FILE"  # as long as the manifest says: only a hash tells
    (ws / "inputs" / "data" / "events.root").write_bytes(same_size)
    failed = dataclasses.replace(record(ws), status="failed", error="rule select failed")
    g = graph(provenance.record(ws, failed, source_repo=ws))
    assert g["inputs/data/events.root"]["sha256"] == hashlib.sha256(same_size).hexdigest()
    action = next(e for e in g.values() if e["@type"] == "CreateAction")
    assert action["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert action["error"] == "rule select failed"


def test_reana_run_names_its_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(tmp_path)
    images = provenance.container_images(ws)
    assert images == ["ghcr.io/pubflow/pubflow-analysis:0.1.0"]
    monkeypatch.setattr(provenance, "image_digest", lambda image: "sha256:" + "e" * 64)
    path = provenance.record(ws, record(ws, mode="reana", reana_workflow="pubflow.3",
                                        reana_server="https://reana.example.org",
                                        client_version="0.9.6"),
                             source_repo=ws, images=images)
    g = graph(path)
    action = next(e for e in g.values() if e["@type"] == "CreateAction")
    image = g[action["containerImage"]["@id"]]  # one: a single value (RO-Crate 1.1)
    assert image["@type"] == "ContainerImage"
    assert (image["registry"], image["name"], image["tag"], image["sha256"]) == (
        "ghcr.io", "pubflow/pubflow-analysis", "0.1.0", "e" * 64)
    assert g["https://reana.io"]["serviceUrl"] == "https://reana.example.org"
    assert g["#organize"]["name"] == "REANA workflow pubflow.3"


def test_the_crate_reads_back_with_rocrate(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    provenance.record(ws, record(ws), source_repo=ws)
    crate = ROCrate(ws)  # at the root of the workspace: an attached crate as it stands
    assert crate.mainEntity.id == "Snakefile"
    assert crate.dereference("results/fit/results.json") is not None
    assert any(a.type == "CreateAction" for a in crate.get_by_type("CreateAction"))


def test_git_commit_from_packed_refs_and_worktrees(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        monkeypatch.delenv(variable, raising=False)
    repo = tmp_path / "repo"
    git = repo / ".git"
    git.mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/release\n")
    (git / "packed-refs").write_text(f"# pack-refs\n{COMMIT} refs/heads/release\n")
    assert provenance.git_source(repo) == {"branch": "release", "commit": COMMIT}
    worktree = tmp_path / "wt"
    worktree.mkdir()
    inner = git / "worktrees" / "wt"
    inner.mkdir(parents=True)
    (inner / "HEAD").write_text("f" * 40 + "\n")
    (inner / "commondir").write_text("../..\n")
    (worktree / ".git").write_text(f"gitdir: {inner}\n")
    assert provenance.git_source(worktree)["commit"] == "f" * 40
    assert provenance.git_source(tmp_path / "nowhere") == {}
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    assert provenance.git_source(tmp_path / "nowhere") == {"commit": "a" * 40}


@pytest.mark.parametrize(("image", "parts"), [
    ("ghcr.io/pubflow/pubflow-analysis:0.1.0", ("ghcr.io", "pubflow/pubflow-analysis",
                                                "0.1.0")),
    ("python:3.11-slim", ("docker.io", "python", "3.11-slim")),
    ("localhost:5000/x/y", ("localhost:5000", "x/y", "latest")),
])
def test_image_names(image: str, parts: tuple[str, str, str]) -> None:
    assert tuple(provenance.split_image(image).values()) == parts


def test_command_line_for_a_plain_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = run([sys.executable, "-m", "steps.provenance", "--workspace", str(ws),
                  "--started", "2026-01-02T03:04:05+00:00"], REPO)
    assert result.returncode == 0
    g = graph(ws / "ro-crate-metadata.json")
    action = next(e for e in g.values() if e["@type"] == "CreateAction")
    assert action["startTime"] == "2026-01-02T03:04:05+00:00"
    assert action["description"] == "snakemake --cores all"
    bad = run([sys.executable, "-m", "steps.provenance", "--workspace", str(tmp_path)], REPO,
              check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("no results/ here: run the workflow first")


def test_snakemake_records_make_a_provenance_run_crate(tmp_path: Path) -> None:
    """One CreateAction per job (from .snakemake/metadata), each with its ControlAction."""
    import base64

    ws = make_workspace(tmp_path)
    (ws / "workflows" / "rules" / "fit.smk").write_text('rule fit:\n    output: "x"\n')
    meta = ws / ".snakemake" / "metadata"
    meta.mkdir(parents=True)
    for output in ("results/fit/results.json", "results/histograms"):
        name = base64.urlsafe_b64encode(output.encode()).decode()
        (meta / name).write_text(json.dumps({
            "rule": "fit", "job_hash": 7, "starttime": 1767323045.5, "endtime": 1767323050.1,
            "incomplete": False, "input": "['inputs/data/events.root']",
            "log": ["logs/fit.log"], "shellcmd": "python -m steps.fit"}))
    (meta / "bm90IGJhc2U2NA").write_text("{}")  # no rule: ignored
    jobs = provenance.snakemake_jobs(ws)
    assert [(j.rule, sorted(j.outputs)) for j in jobs] == [
        ("fit", ["results/fit/results.json", "results/histograms"])]
    g = graph(provenance.record(ws, record(ws), source_repo=ws))
    assert "https://w3id.org/ro/wfrun/provenance/0.5" in {c["@id"] for c in g["./"]["conformsTo"]}
    assert "HowTo" in g["Snakefile"]["@type"]
    job = g["#job-1"]
    assert (job["instrument"], job["object"]) == ({"@id": "#rule-fit"},
                                                 {"@id": "inputs/data/events.root"})
    assert {r["@id"] for r in job["result"]} == {"results/fit/results.json", "logs/fit.log"}
    assert job["startTime"] == "2026-01-02T03:04:05+00:00"
    assert g["#rule-fit"]["url"] == "workflows/rules/fit.smk"
    assert g["#control-1"]["instrument"] == {"@id": "#step-fit"}
    assert g["#control-1"]["object"] == {"@id": "#job-1"}
    assert g["#step-fit"]["workExample"] == {"@id": "#rule-fit"}
    assert g["#organize"]["object"] == {"@id": "#control-1"}
    # a REANA run leaves the records on the cluster: no per-job provenance is claimed
    g = graph(provenance.record(ws, record(ws, mode="reana"), source_repo=ws))
    assert "https://w3id.org/ro/wfrun/provenance/0.5" not in {
        c["@id"] for c in g["./"]["conformsTo"]}


def test_an_affiliation_has_the_url_the_config_gives(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    config = yaml.safe_load((ws / "inputs" / "pubflow.yaml").read_text())
    author = config["Publication"]["Authors"][0]
    author["AffiliationURL"] = "https://home.cern"
    (ws / "inputs" / "pubflow.yaml").write_text(yaml.safe_dump(config))
    g = graph(provenance.record(ws, record(ws), source_repo=ws))
    org = g[g[g["./"]["author"]["@id"]]["affiliation"]["@id"]]
    assert (org["@type"], org["name"], org["url"]) == (
        "Organization", author["Affiliation"], "https://home.cern")
    del author["AffiliationURL"]  # none configured: the organisation is named, with no URL
    (ws / "inputs" / "pubflow.yaml").write_text(yaml.safe_dump(config))
    g = graph(provenance.record(ws, record(ws), source_repo=ws))
    org = g[g[g["./"]["author"]["@id"]]["affiliation"]["@id"]]
    assert org["name"] == author["Affiliation"]
    assert "url" not in org


def test_a_crate_left_in_results_by_an_older_version_is_removed(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    legacy = ws / "results" / "provenance" / "ro-crate-metadata.json"
    legacy.parent.mkdir()
    legacy.write_text("{}")
    provenance.record(ws, record(ws), source_repo=ws)
    assert not legacy.parent.exists()
    assert "results/provenance/ro-crate-metadata.json" not in graph(ws / "ro-crate-metadata.json")
