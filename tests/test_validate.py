"""steps.validate: every artefact checked by its consumer's tool; a report only if all pass."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonpatch
import pyhf
import pytest
import yaml

from steps import hepdata, validate

from .conftest import read_config

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "inputs" / "datasets.yaml"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")  # hepdata_lib/validator

BACKGROUND = {
    "channels": [{"name": "SR", "samples": [
        {"name": "bkg", "data": [40.0, 30.0, 20.0], "modifiers": [
            {"name": "mu_Z", "type": "normfactor", "data": None},
            {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        ]},
    ]}],
    "observations": [{"name": "SR", "data": [42.0, 28.0, 21.0]}],
    "measurements": [{"name": "m", "config": {"poi": "mu_Z", "parameters": []}}],
    "version": "1.0.0",
}


def make_patchset(background: dict[str, Any]) -> dict[str, Any]:
    patches = []
    for mass, shape in ((70, [3.0, 1.0, 0.1]), (90, [0.1, 1.0, 3.0])):
        signal = copy.deepcopy(background)
        signal["channels"][0]["samples"].append({
            "name": "signal", "data": shape,
            "modifiers": [{"name": "mu_res", "type": "normfactor", "data": None}],
        })
        signal["measurements"][0]["config"]["poi"] = "mu_res"
        patches.append({"metadata": {"name": f"mass_{mass}", "values": [mass]},
                        "patch": jsonpatch.make_patch(background, signal).patch})
    return {
        "metadata": {"name": "scan", "description": "test resonances",
                     "digests": {"sha256": pyhf.utils.digest(background)},
                     "labels": ["mass"], "references": {"hepdata": "ins0000000"}},
        "patches": patches,
        "version": "1.0.0",
    }


def read_in_full(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every sample of the config (scan hypotheses too) with all its input files read, as
    steps.merge.sample_inputs states it (entries unknown: files not in the manifest)."""
    from steps import layout

    return {s["Name"]: {"data": bool(s.get("Data")), "files": 1, "skipped": [],
                        "entries_expected": None, "entries_processed": None,
                        "processed_fraction": 1.0, "scale": 1.0}
            for s in layout.histogram_config(config)["Samples"]}


def make_submission(folder: Path, workspace: Path, patchset: Path) -> Path:
    """A small valid HEPData archive (one table) with the likelihoods as HistFactory resource."""
    from hepdata_lib import Submission, Table, Uncertainty, Variable

    likelihoods = folder / "Likelihoods.tar.gz"
    hepdata.write_likelihoods(likelihoods, read_config(ROOT), workspace, patchset)
    submission = Submission()
    submission.add_additional_resource("likelihoods", str(likelihoods), copy_file=True,
                                       file_type="HistFactory")
    processed = folder / hepdata.PROCESSED_INPUTS
    hepdata.write_processed_inputs(processed, read_in_full(read_config(ROOT)))
    submission.add_additional_resource("processed inputs", str(processed), copy_file=True)
    table = Table("Yields")
    table.description = "Observed events"
    table.location = "Test"
    table.keywords = {"observables": ["N"]}
    x = Variable("Bin", is_independent=True, is_binned=True, units="GeV")
    x.values = [(60, 80), (80, 100), (100, 120)]
    y = Variable("Data", is_independent=False, is_binned=False)
    y.values = [42.0, 28.0, 21.0]
    stat = Uncertainty("stat")
    stat.values = [6.5, 5.3, 4.6]
    y.add_uncertainty(stat)
    table.add_variable(x)
    table.add_variable(y)
    submission.add_table(table)
    out = folder / "submission"
    submission.create_files(str(out), validate=False)  # its tarball goes to the cwd
    archive = folder / "submission.tar.gz"
    hepdata.write_reproducible_tar(archive, {p.name: p.read_bytes() for p in out.iterdir()})
    return archive


@pytest.fixture
def artefacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.json"  # resolved, as the workflow's rule config writes it
    config.write_text(json.dumps(read_config(ROOT)))
    workspace = tmp_path / "workspace.json"
    workspace.write_text(json.dumps(BACKGROUND))
    patchset = tmp_path / "patchset.json"
    patchset.write_text(json.dumps(make_patchset(BACKGROUND)))
    return {
        "config": config,
        "datasets": DATASETS,
        "workspace": workspace,
        "patchset": patchset,
        "submission": make_submission(tmp_path, workspace, patchset),
        "report": tmp_path / "validation" / "report.json",
    }


def run_cli(artefacts: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps.validate",
         *(f"--{key}={path}" for key, path in artefacts.items())],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )


def test_valid_artefacts_give_a_report(artefacts: dict[str, Path]) -> None:
    proc = run_cli(artefacts)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(artefacts["report"].read_text())
    assert report["valid"] is True
    checked = {(c["artefact"], c["tool"].split()[0]) for c in report["checks"]}
    assert checked == {
        (str(artefacts["config"]), "pubflow"), (str(DATASETS), "pubflow"),
        (str(artefacts["workspace"]), "pyhf"), (str(artefacts["patchset"]), "pyhf"),
        (str(artefacts["submission"]), "hepdata-validator"),
        (str(artefacts["submission"]), "pyhf"),
        (str(artefacts["submission"]), "pubflow"),  # what of the inputs was processed
    }
    assert all(c["valid"] and c["messages"] == [] for c in report["checks"])
    assert any(c["tool"] == "hepdata-validator 0.3.6" for c in report["checks"])
    patchset = next(c for c in report["checks"] if c["artefact"] == str(artefacts["patchset"]))
    assert patchset["summary"].startswith("2 patches (mass: 70, 90)")


def broken_table(artefacts: dict[str, Path], tmp_path: Path) -> Path:
    """The archive with 'values' removed from the table's dependent variable."""
    with tarfile.open(artefacts["submission"]) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    table = yaml.safe_load(members["yields.yaml"])
    del table["dependent_variables"][0]["values"]
    members["yields.yaml"] = yaml.safe_dump(table).encode()
    broken = tmp_path / "broken.tar.gz"
    hepdata.write_reproducible_tar(broken, members)
    return broken


def unknown_modifier(artefacts: dict[str, Path], tmp_path: Path) -> Path:
    spec = copy.deepcopy(BACKGROUND)
    spec["channels"][0]["samples"][0]["modifiers"][1]["type"] = "magicsys"
    path = tmp_path / "bad_workspace.json"
    path.write_text(json.dumps(spec))
    return path


def wrong_digest(artefacts: dict[str, Path], tmp_path: Path) -> Path:
    other = copy.deepcopy(BACKGROUND)
    other["observations"][0]["data"][0] += 1  # a patchset made for another workspace
    path = tmp_path / "other_patchset.json"
    path.write_text(json.dumps(make_patchset(other)))
    return path


@pytest.mark.parametrize(
    ("key", "breaker", "expected"),
    [
        ("submission", broken_table, r"yields\.yaml: error: 'values' is a required property"),
        ("workspace", unknown_modifier,
         r"channels\[0\]\.samples\[0\]\.modifiers\[1\]\.type: 'magicsys' is not one of"),
        ("patchset", wrong_digest, r"digest does not match the workspace"),
    ],
)
def test_invalid_artefact_fails_without_report(
    artefacts: dict[str, Path], tmp_path: Path, key: str,
    breaker: Any, expected: str,
) -> None:
    artefacts["report"].parent.mkdir()
    artefacts["report"].write_text("{}")  # a stale report from an earlier, valid run
    broken = {**artefacts, key: breaker(artefacts, tmp_path)}
    proc = run_cli(broken)
    assert proc.returncode == 1
    # the log lines go to stderr too; the error is one line, the last
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("python -m steps.validate: error: ")]
    assert errors == lines[-1:], proc.stderr
    assert errors[0].startswith(f"python -m steps.validate: error: {broken[key]}: "), errors
    assert re.search(expected, errors[0]), errors[0]
    assert not artefacts["report"].exists()


def test_all_problems_are_collected(artefacts: dict[str, Path], tmp_path: Path) -> None:
    bad_workspace = unknown_modifier(artefacts, tmp_path)
    checks = validate.validate_all(**{**{k: v for k, v in artefacts.items() if k != "report"},
                                      "workspace": bad_workspace})
    verdict = {(c.artefact, c.tool.split()[0]): c.valid for c in checks}
    assert verdict == {
        (str(artefacts["config"]), "pubflow"): True, (str(DATASETS), "pubflow"): True,
        (str(bad_workspace), "pyhf"): False,
        # the patchset was made for the good workspace, and so were the published likelihoods
        (str(artefacts["patchset"]), "pyhf"): False,
        (str(artefacts["submission"]), "hepdata-validator"): True,
        (str(artefacts["submission"]), "pubflow"): True,
        (str(artefacts["submission"]), "pyhf"): False,
    }
    likelihoods = checks[-1]
    assert likelihoods.messages == [
        f"Likelihoods.tar.gz: BkgOnly.json differs from {bad_workspace} (pyhf digest)"
    ]


def test_patch_that_breaks_the_workspace(artefacts: dict[str, Path], tmp_path: Path) -> None:
    patchset = json.loads(artefacts["patchset"].read_text())
    patchset["patches"][1]["patch"].append(
        {"op": "replace", "path": "/channels/0/samples/0/data", "value": [1.0]})
    path = tmp_path / "patchset_bad_patch.json"
    path.write_text(json.dumps(patchset))
    check, _ = validate.check_patchset(path, BACKGROUND)
    assert not check.valid
    assert len(check.messages) == 1
    assert check.messages[0].startswith("patch mass_90: ")


def test_broken_config_is_named(artefacts: dict[str, Path], tmp_path: Path) -> None:
    config = read_config(ROOT)
    config["Regions"][0]["Binnning"] = config["Regions"][0].pop("Binning")
    path = tmp_path / "analysis.yaml"
    path.write_text(yaml.safe_dump(config))
    check = validate.check_config(path)
    assert check.messages == ["Regions[0].Binnning: unknown key (did you mean 'Binning'?)"]
