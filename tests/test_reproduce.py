"""steps.reproduce: stage, run (locally or on REANA), compare, report; fail on what moved.

The end-to-end tests run a reduced copy of the analysis (two scan masses, a few thousand
simulated events, 5 GeV bins, no signal systematics: ~40 s a run on two cores) five times:
a baseline that becomes the reference, an unperturbed re-run through a fake reana-client,
and three perturbations (one data event removed, another seed, another binning). The bundled
inputs are checked against the checked-in reference with the session's full workflow run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from steps import compare, reproduce
from steps.errors import PubflowError

from .conftest import REPO, copy_checkout, read_config, venv_env, write_config
from .fake_services import calls, serve_record, write_fake_reana

TOLERANCES = REPO / "inputs" / "reference" / "tolerances.yaml"
TOKEN = "s3cr3t-t0ken-for-tests"
SERVER = "https://reana.example.org"


def reproduce_cli(*args: str | Path, env: dict[str, str] | None = None,
                  cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python -m steps.reproduce ARGS`` with this interpreter's tools first on PATH."""
    return subprocess.run([sys.executable, "-m", "steps.reproduce", *map(str, args)], cwd=cwd,
                          env={**venv_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=900, check=False)


def report_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())


def reduce_config(source: Path) -> None:
    """Two scan masses, a few thousand events, 12 bins: the same workflow in ~40 s."""
    config = read_config(source)
    config["Regions"][0]["Binning"] = [float(edge) for edge in range(60, 121, 5)]
    config["Scan"].update(Grid={"mass": [70, 105]}, Systematics=[])
    config["Simulation"]["Scan"]["Events"] = 1000
    for sample in config["Simulation"]["Samples"]:
        sample["Events"] = 4000 if sample["Name"] == "Zmumu" else 2000
    write_config(source, config)


def edit_config(source: Path, change: Callable[[dict[str, Any]], None]) -> None:
    config = read_config(source)
    change(config)
    write_config(source, config)


def remove_one_event(source: Path) -> None:
    """Drop every muon pair of the first selected data event; update the manifest."""
    import awkward as ak
    import uproot

    path = source / "inputs" / "data" / "uproot-Zmumu.root"
    with uproot.open(path) as f:
        tree = f["events"]
        names = list(tree.keys())
        a = tree.arrays(library="np")
    selected = ((a["Type"] == "GG") & (a["Q1"] * a["Q2"] < 0) & (a["pt1"] > 20)
                & (a["pt2"] > 20) & (np.abs(a["eta1"]) < 2.1) & (np.abs(a["eta2"]) < 2.1)
                & (a["M"] > 60) & (a["M"] < 120))
    first = int(np.flatnonzero(selected)[0])
    drop = (a["Run"] == a["Run"][first]) & (a["Event"] == a["Event"][first])
    kept: dict[str, Any] = {name: a[name][~drop] for name in names}
    kept["Type"] = ak.Array([str(t) for t in kept["Type"]])
    # a TTree like the original (assigning a dict of arrays with strings makes an RNTuple)
    with uproot.recreate(path) as f:
        tree = f.mktree("events", {name: "string" if name == "Type" else
                                   a[name].dtype.newbyteorder("=") for name in names})
        tree.extend(kept)
    manifest_path = source / "inputs" / "datasets.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    entry = next(e for e in manifest["files"] if e["path"] == "inputs/data/uproot-Zmumu.root")
    entry.update(size=path.stat().st_size, trees={"events": int((~drop).sum())},
                 sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))


@dataclass
class Run:
    """One reproduce run of the tests: its exit, report, workspace."""

    result: subprocess.CompletedProcess[str]
    workspace: Path
    output: Path

    @property
    def report(self) -> dict[str, Any]:
        return report_of(self.output)

    @property
    def moved(self) -> list[str]:
        return self.report["moved"]

    def status(self, name: str) -> str:
        return next(q["status"] for q in self.report["quantities"] if q["name"] == name)


# -- fast ---------------------------------------------------------------------------------------


def test_staging_copies_only_what_reana_yaml_declares(tmp_path: Path) -> None:
    source = copy_checkout(tmp_path / "source")
    (source / "notes.txt").write_text("undeclared")
    (source / "steps" / "__pycache__").mkdir()
    (source / "steps" / "__pycache__" / "x.pyc").write_bytes(b"")
    ws = reproduce.stage_workspace(source, tmp_path / "ws")
    files, dirs = reproduce.declared_inputs(source)
    assert "reana.yaml" in files and "tests/reana/workflow.feature" in files
    top = {p.name for p in ws.iterdir()}
    assert top == {Path(n).parts[0] for n in [*files, *dirs]}
    assert not (ws / "notes.txt").exists()
    assert not (ws / "steps" / "__pycache__").exists()
    with pytest.raises(PubflowError, match="not empty"):
        reproduce.stage_workspace(source, ws)
    (source / "pyproject.toml").unlink()
    with pytest.raises(PubflowError, match=r"pyproject\.toml: declared in reana\.yaml but "
                                           "missing"):
        reproduce.stage_workspace(source, tmp_path / "ws2")


def test_an_undeclared_input_fails_in_the_staged_workspace(tmp_path: Path) -> None:
    source = copy_checkout(tmp_path / "source")
    (source / "extra").mkdir()
    shutil.move(source / "inputs" / "data" / "uproot-Zmumu.root", source / "extra")
    for name in ("analysis.yaml", "datasets.yaml"):
        path = source / "inputs" / name
        path.write_text(path.read_text().replace("inputs/data/uproot-Zmumu.root",
                                                 "extra/uproot-Zmumu.root"))
    out = tmp_path / "report"
    result = reproduce_cli("--source", source, "--workdir", tmp_path / "ws",
                           "--output", out)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "python -m steps.reproduce: error: the run failed: rule select_uproot_Zmumu: missing "
        "input files extra/uproot-Zmumu.root (not staged: are they declared in reana.yaml?)")
    report = report_of(out)
    assert report["passed"] is False and report["run"]["status"] == "failed"
    crate = json.loads((tmp_path / "ws" / "ro-crate-metadata.json").read_text())
    action = next(e for e in crate["@graph"] if e["@type"] == "CreateAction")
    assert action["actionStatus"].endswith("FailedActionStatus")


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--update-reference"], {}, "--update-reference needs --reason"),
    (["--hepdata", "ins1", "--update-reference", "--reason", "x"], {},
     "writes a repository reference: not with --hepdata"),
    (["--reana"], {"REANA_SERVER_URL": SERVER, "REANA_ACCESS_TOKEN": ""},
     "--reana needs REANA_ACCESS_TOKEN in the environment"),
    (["--results", ".", "--reana"], {}, "--results compares existing outputs"),
    (["--reference", "/nonexistent"], {}, "/nonexistent/tolerances.yaml: file not found"),
])
def test_argument_errors_are_one_line(args: list[str], env: dict[str, str],
                                      message: str, tmp_path: Path) -> None:
    result = reproduce_cli(*args, "--output", tmp_path, env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_a_failed_reana_workflow_is_reported(tmp_path: Path) -> None:
    client = write_fake_reana(tmp_path / "reana-client")
    state = tmp_path / "state"
    out = tmp_path / "report"
    result = reproduce_cli(
        "--reana", "--reana-client", client, "--reana-poll-seconds", "0.1",
        "--workdir", tmp_path / "ws", "--output", out,
        "--reference", tmp_path / "unused", "--tolerances", TOLERANCES,
        env={"REANA_SERVER_URL": SERVER, "REANA_ACCESS_TOKEN": TOKEN,
             "FAKE_REANA_STATE": str(state), "FAKE_REANA_MODE": "fail"},
        cwd=tmp_path)
    # no reference yet is fine only with --update-reference
    assert result.returncode == 1
    assert "reference file not found" in result.stderr
    compare.write_reference({"histograms": {}, "model": {}, "fit": {}, "limits": {}},
                            tmp_path / "reference", {})
    result = reproduce_cli(
        "--source", REPO, "--reana", "--reana-client", client, "--reana-poll-seconds", "0.1",
        "--workdir", tmp_path / "ws", "--output", out,
        "--reference", tmp_path / "reference", "--tolerances", TOLERANCES,
        env={"REANA_SERVER_URL": SERVER, "REANA_ACCESS_TOKEN": TOKEN,
             "FAKE_REANA_STATE": str(state), "FAKE_REANA_MODE": "fail"},
        cwd=tmp_path)
    assert result.returncode == 1
    assert "the run failed: REANA workflow pubflow-reproduce.1 failed" in result.stderr
    commands = [c["argv"][0] for c in calls(state)]
    assert commands == ["version", "create", "upload", "start", "status", "logs"]
    assert "fake logs of pubflow-reproduce.1" in (out / "workflow.log").read_text()
    assert report_of(out)["run"]["status"] == "failed"


def test_failure_line_names_the_rule_and_its_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "fit.log").write_text(
        "12:00:00 steps.fit INFO fitting\npython -m steps.fit: error: no data\n")
    transcript = ("Building DAG of jobs...\nError in rule fit:\n    jobid: 3\n"
                  "    log: logs/fit.log (check log file(s) for error details)\n")
    assert reproduce.failure_line(transcript, tmp_path) == (
        "rule fit failed: python -m steps.fit: error: no data (log logs/fit.log)")


def test_ci_schedule_runs_the_check_weekly_locally_and_on_reana() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "reproduce.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key 'on' as true
    _minute, _hour, day, month, weekday = triggers["schedule"][0]["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()  # once a week
    assert set(workflow["jobs"]) == {"keep-schedule", "local", "reana"}
    reana_job = workflow["jobs"]["reana"]
    assert reana_job["env"]["REANA_ACCESS_TOKEN"] == "${{ secrets.REANA_ACCESS_TOKEN }}"
    commands = []
    for name in ("local", "reana"):
        steps = workflow["jobs"][name]["steps"]
        assert any(s.get("uses", "").startswith("actions/upload-artifact@")
                   and "!cancelled()" in s["if"] for s in steps)
        for step in steps:
            run = step.get("run", "")
            assert "secrets." not in run  # the token only through the environment
            if "steps.reproduce" in run:
                commands.append(run.split("steps.reproduce", 1)[1])
    assert len(commands) == 3
    parser = reproduce.build_parser()
    parsed = [parser.parse_args(shlex.split(c.replace("$(nproc)", "2"))) for c in commands]
    assert [a.reana for a in parsed] == [False, False, True]
    assert parsed[1].hepdata == "$HEPDATA_RECORD" and parsed[1].results


# -- end to end on a reduced analysis -----------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with the reduced config."""
    src = copy_checkout(tmp_path_factory.mktemp("reduced") / "source")
    reduce_config(src)
    return src


@pytest.fixture(scope="module")
def baseline(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The first run: its outputs become the reference (there is none yet)."""
    base = tmp_path_factory.mktemp("baseline")
    result = reproduce_cli("--source", source, "--workdir", base / "ws",
                           "--reference", base / "reference", "--tolerances", TOLERANCES,
                           "--update-reference", "--reason", "reduced test config",
                           "--output", base / "report", "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return Run(result, base / "ws", base / "report")


def perturbed(source: Path, baseline: Run, folder: Path,
              change: Callable[[Path], None]) -> Run:
    """A run of a changed copy of the reduced checkout, against the baseline reference."""
    src = folder / "source"
    shutil.copytree(source, src)
    change(src)
    result = reproduce_cli("--source", src, "--workdir", folder / "ws",
                           "--reference", baseline.workspace.parent / "reference",
                           "--output", folder / "report", "--cores", "2")
    return Run(result, folder / "ws", folder / "report")


@pytest.fixture(scope="module")
def one_event_removed(source: Path, baseline: Run,
                      tmp_path_factory: pytest.TempPathFactory) -> Run:
    return perturbed(source, baseline, tmp_path_factory.mktemp("event"), remove_one_event)


@pytest.mark.slow
def test_baseline_becomes_the_reference(baseline: Run) -> None:
    reference = baseline.workspace.parent / "reference"
    assert sorted(p.name for p in reference.iterdir()) == [
        "fit.json", "histograms.json", "limits.json", "metadata.json", "model.json",
        "tolerances.yaml"]
    metadata = json.loads((reference / "metadata.json").read_text())
    assert metadata["reason"] == "reduced test config"
    assert metadata["run"]["status"] == "completed"
    report = baseline.report
    assert report["passed"] is True and report["reference"]["kind"] == "none"
    assert "there was no reference: these outputs became the reference" in report["notes"]
    crate = baseline.workspace / "ro-crate-metadata.json"  # at the root of its payload
    assert crate.is_file() and not (baseline.output / "ro-crate-metadata.json").exists()
    assert report["provenance"] == str(crate)


@pytest.mark.slow
def test_unperturbed_rerun_on_reana_is_bit_identical(baseline: Run, source: Path,
                                                     tmp_path: Path) -> None:
    """The same checkout again, through create/upload/start/status/download (a fake REANA)."""
    client = write_fake_reana(tmp_path / "reana-client")
    state = tmp_path / "state"
    rerun = Run(reproduce_cli(
        "--source", source, "--reana", "--reana-client", client, "--reana-poll-seconds", "0.5",
        "--workdir", tmp_path / "ws", "--reference", baseline.workspace.parent / "reference",
        "--output", tmp_path / "report",
        env={"REANA_SERVER_URL": SERVER, "REANA_ACCESS_TOKEN": TOKEN,
             "FAKE_REANA_STATE": str(state)}), tmp_path / "ws", tmp_path / "report")
    assert rerun.result.returncode == 0, rerun.result.stderr[-3000:]
    report = rerun.report
    assert report["passed"] is True
    assert report["summary"]["identical"] == report["summary"]["compared"] > 400
    assert report["run"]["reana_workflow"] == "pubflow-reproduce.1"
    # bit-identical histograms and workspace digests
    assert compare.read_histograms(rerun.workspace) == compare.read_histograms(
        baseline.workspace)
    model = ("results/model/workspace.json", "results/model/patchset.json")
    assert compare.model_digests(*(rerun.workspace / m for m in model)) == \
        compare.model_digests(*(baseline.workspace / m for m in model))
    # the documented commands, the token in the environment only
    log = calls(state)
    commands = [c["argv"][0] for c in log]
    assert commands[:4] == ["version", "create", "upload", "start"]
    assert set(commands[4:]) == {"status", "download"}
    assert log[1]["argv"] == ["create", "-w", "pubflow-reproduce", "-f", "reana.yaml"]
    downloaded = {c["argv"][-1] for c in log if c["argv"][0] == "download"}
    assert downloaded == {*reproduce.declared_outputs(source), "results/histograms"}
    assert all(c["token_set"] and not c["token_in_argv"] and c["server"] == SERVER
               for c in log)
    for path in [*rerun.output.rglob("*"), *(rerun.workspace / "results").rglob("*.json")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    crate = json.loads((rerun.workspace / "ro-crate-metadata.json").read_text())
    graph = {e["@id"]: e for e in crate["@graph"]}
    action = next(e for e in graph.values() if e["@type"] == "CreateAction")
    images = action["containerImage"]  # a single value when there is one (RO-Crate 1.1)
    image = graph[(images[0] if isinstance(images, list) else images)["@id"]]
    assert (image["registry"], image["name"]) == ("ghcr.io", "pubflow/pubflow-analysis")
    assert action["description"] == "reana-client start -w pubflow-reproduce.1"


@pytest.mark.slow
def test_one_event_removed_moves_the_data(one_event_removed: Run) -> None:
    run = one_event_removed
    assert run.result.returncode == 1
    last = run.result.stderr.strip().splitlines()[-1]
    assert "quantities moved beyond tolerance: histograms/Dimuon_Data (3)" in last
    yield_row = next(q for q in run.report["quantities"]
                     if q["name"] == "histograms/Dimuon_Data/yield")
    assert (yield_row["reference"], yield_row["new"], yield_row["status"]) == (
        500.0, 499.0, "failed")
    histograms = {name.split("/")[1] for name in run.moved if name.startswith("histograms/")
                  and name != "histograms/contents_sha256"}
    assert histograms == {"Dimuon_Data"}  # the simulation did not move
    assert sum(name.startswith("histograms/Dimuon_Data/bin[") for name in run.moved) == 1
    assert "fit/regions/Dimuon/data[" in " ".join(run.moved)
    assert run.status("histograms/Dimuon_Zmumu/bin[5]") == "identical"
    figures = [p["figure"] for p in run.report["plots"]]
    assert "histograms/Dimuon_Data" in figures
    assert not any("Zmumu" in f for f in figures)
    assert (run.output / "plots" / "histograms_Dimuon_Data.png").is_file()
    md = (run.output / "report.md").read_text()
    assert "| `histograms/Dimuon_Data/yield` | 500 | 499 | -1 | exact | **FAILED** |" in md


@pytest.mark.slow
def test_changed_seed_moves_the_simulation(source: Path, baseline: Run,
                                           tmp_path: Path) -> None:
    def reseed(src: Path) -> None:
        edit_config(src, lambda c: c["Simulation"].update(Seed=c["Simulation"]["Seed"] + 1))

    run = perturbed(source, baseline, tmp_path, reseed)
    assert run.result.returncode == 1
    moved = set(run.moved)
    assert "histograms/Dimuon_Zmumu/yield" in moved
    assert "model/workspace_sha256_sorted" in moved
    assert not any(name.startswith("histograms/Dimuon_Data/") for name in moved)
    assert run.status("histograms/Dimuon_Data/yield") == "identical"
    assert "histograms/Dimuon_Zmumu" in run.report["moved_groups"]


@pytest.mark.slow
def test_changed_binning_moves_every_histogram(source: Path, baseline: Run,
                                               tmp_path: Path) -> None:
    def rebin(src: Path) -> None:
        edit_config(src, lambda c: c["Regions"][0].update(
            Binning=[float(edge) for edge in range(60, 121, 6)]))

    run = perturbed(source, baseline, tmp_path, rebin)
    assert run.result.returncode == 1
    assert run.status("histograms/Dimuon_Data/bins") == "failed"
    assert run.status("histograms/Dimuon_Data/bin[11]") == "missing"
    assert run.status("histograms/Dimuon_Data/yield") == "identical"  # same events, same window
    assert "histograms/Dimuon_Data/bins" in run.moved


@pytest.mark.slow
def test_published_hepdata_record_as_the_reference(baseline: Run, one_event_removed: Run,
                                                   tmp_path: Path) -> None:
    """The record (served locally in HEPData's format) holds the baseline's tables."""
    tables = compare.submission_tables(baseline.workspace / "results" / "hepdata" /
                                       "submission")
    with serve_record(tables, inspire_id=1234567, recid=4321) as server:
        same = reproduce_cli("--results", baseline.workspace, "--hepdata", "ins1234567",
                             "--hepdata-url", server.url, "--output", tmp_path / "same")
        assert same.returncode == 0, same.stderr
        report = report_of(tmp_path / "same")
        assert report["reference"]["kind"] == "hepdata"
        assert report["reference"]["source"] == f"{server.url}/record/ins1234567?format=json"
        assert report["summary"]["identical"] == report["summary"]["compared"] > 100
        moved = reproduce_cli("--results", one_event_removed.workspace, "--hepdata",
                              "10.17182/hepdata.4321.v1", "--hepdata-url", server.url,
                              "--output", tmp_path / "moved")
    assert moved.returncode == 1
    names = report_of(tmp_path / "moved")["moved"]
    assert "hepdata/Event yields/Pre-fit yield/Data" in names
    assert any(n.startswith("hepdata/Dimuon mass spectrum/Data/") for n in names)
    assert "hepdata/Dimuon mass spectrum/Data" in report_of(tmp_path / "moved")["moved_groups"]


# -- the bundled inputs -------------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_run_reproduces_the_checked_in_reference(workflow_run: Path,
                                                         tmp_path: Path) -> None:
    """The session's fresh run of the bundled inputs against the reference of an earlier one:
    every histogram and both likelihood digests bit-identical, every number identical."""
    result = reproduce_cli("--results", workflow_run, "--reference",
                           REPO / "inputs" / "reference", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    report = report_of(tmp_path)
    assert report["passed"] is True
    not_identical = [q["name"] for q in report["quantities"] if q["status"] != "identical"]
    assert not [n for n in not_identical if n.startswith(("histograms/", "model/"))]
    assert report["summary"]["compared"] > 2500
    assert os.path.basename(report["tolerances"]) == "tolerances.yaml"
