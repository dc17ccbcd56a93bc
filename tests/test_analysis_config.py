"""One config, the one the user gave: pubflow's config naming a plain cabinetry config."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from steps import config as cfg
from steps.errors import PubflowError

from .conftest import REPO, copy_checkout, read_config, run, step


def test_bundled_cabinetry_config_is_loaded_by_cabinetry_itself() -> None:
    """``inputs/analysis.yaml`` is a cabinetry config as cabinetry's own loader takes it."""
    import cabinetry

    loaded = cabinetry.configuration.load(REPO / "inputs" / "analysis.yaml")
    assert set(loaded) == {"General", "Regions", "Samples", "NormFactors", "Systematics"}


def test_resolved_config_holds_both_files_keys() -> None:
    """The steps see cabinetry's keys (from the file ``Analysis`` names) beside pubflow's."""
    resolved = cfg.load_analysis(REPO / "inputs" / "pubflow.yaml")
    cabinetry = yaml.safe_load((REPO / "inputs" / "analysis.yaml").read_text())
    pubflow = yaml.safe_load((REPO / "inputs" / "pubflow.yaml").read_text())
    assert {k: resolved[k] for k in cabinetry} == cabinetry
    assert {k: resolved[k] for k in pubflow if k != "Analysis"} == {
        k: v for k, v in pubflow.items() if k != "Analysis"}
    assert "Analysis" not in resolved


@pytest.mark.parametrize(("settings", "expected"), [
    ({"Datasets": "d.yaml"}, "my.yaml: Analysis: required key is missing"),
    ({"Analysis": "nowhere.yaml", "Datasets": "d.yaml"},
     "my.yaml: Analysis: file not found: nowhere.yaml"),
    ({"Analysis": {"General": {}, "Scan": {}}, "Datasets": "d.yaml"},
     "my.yaml: Scan: not a cabinetry key"),
    ({"Analysis": "inputs/analysis.yaml", "Regions": []},
     "my.yaml: Regions: cabinetry's keys belong in the config that Analysis names"),
])
def test_a_config_that_cannot_be_resolved_gets_one_line(settings: dict, expected: str) -> None:
    with pytest.raises(PubflowError) as err:
        cfg.resolve_analysis(settings, "my.yaml")
    assert str(err.value).startswith(expected), err.value
    assert "\n" not in str(err.value)


def test_schema_errors_name_the_file_the_key_is_in(tmp_path: Path) -> None:
    """A cabinetry key's mistake names the cabinetry file; a pubflow key's, pubflow's."""
    cabinetry = yaml.safe_load((REPO / "inputs" / "analysis.yaml").read_text())
    cabinetry["Regions"][0]["Binnning"] = cabinetry["Regions"][0].pop("Binning")
    (tmp_path / "cab.yaml").write_text(yaml.safe_dump(cabinetry))
    settings = {"Analysis": str(tmp_path / "cab.yaml"), "Datasets": "d.yaml"}
    with pytest.raises(PubflowError, match=r"cab\.yaml: Regions\[0\]\.Binnning: unknown key"):
        cfg.resolve_analysis(settings, "my.yaml")
    cabinetry["Regions"][0]["Binning"] = cabinetry["Regions"][0].pop("Binnning")
    (tmp_path / "cab.yaml").write_text(yaml.safe_dump(cabinetry))
    with pytest.raises(PubflowError, match=r"^my\.yaml: Luminosity\.Value: "):
        cfg.resolve_analysis({**settings, "Luminosity": {"Value": "lots", "Unit": "pb^-1",
                                                        "RelativeUncertainty": 0.1}}, "my.yaml")


def test_simulation_needs_a_luminosity() -> None:
    config = read_config(REPO)
    settings = {"Analysis": "inputs/analysis.yaml",
                **{k: v for k, v in config.items() if k in ("Datasets", "Simulation")}}
    with pytest.raises(PubflowError, match=r"^my\.yaml: Luminosity: required by Simulation"):
        cfg.resolve_analysis(settings, "my.yaml")


def test_config_step_resolves_what_snakemake_was_given(tmp_path: Path) -> None:
    """``steps.config`` (the workflow's first rule) writes the resolved config, or one line."""
    settings = yaml.safe_load((REPO / "inputs" / "pubflow.yaml").read_text())
    out = tmp_path / "results" / "config.json"
    result = step(REPO, "config", "--settings", json.dumps(settings), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == read_config(REPO)
    bad = step(REPO, "config", "--settings", json.dumps({"Datasets": "x"}), "--source",
               "my.yaml", "--output", str(tmp_path / "bad.json"))
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("python -m steps.config: error: my.yaml: Analysis: required "
                                  "key is missing (the cabinetry config of the analysis: a file "
                                  "name, or the config itself)")
    assert not (tmp_path / "bad.json").exists()


def test_snakemake_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    """No schema dump and no traceback: the Snakefile's error names the file and the key."""
    work = copy_checkout(tmp_path / "w")
    (work / "my.yaml").write_text(yaml.safe_dump({"Analysis": "inputs/analysis.yaml",
                                                  "Datasets": "inputs/datasets.yaml",
                                                  "Scan": {"Masses": "many"}}))
    result = run(["snakemake", "-n", "--configfile", "my.yaml"], work, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "my.yaml: Scan" in out
    assert "Traceback" not in out and len(out.splitlines()) < 15, out


@pytest.mark.slow
def test_an_analysis_without_scan_luminosity_publication_runs_to_a_validated_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own analysis: their cabinetry file, their ntuples and manifest, no pubflow
    extras. Nothing of the bundled analysis is used: no simulation, no limits, no lumi; the
    workspace is cabinetry's own, and the record validates."""
    import cabinetry
    import uproot

    work = copy_checkout(tmp_path / "w")
    (work / "ntuples").mkdir()
    for name, events in (("Zmumu", 6000), ("Continuum", 3000)):
        step(work, "simulate", "--config", "inputs/pubflow.yaml", "--output",
             f"results/simulate/{name}.root", "--events", str(events), check=True)
        (work / "results" / "simulate" / f"{name}.root").rename(work / "ntuples" / f"{name}.root")
    (work / "results").rename(work / "scratch")  # nothing of the bundled run is left
    analysis = yaml.safe_load((REPO / "inputs" / "analysis.yaml").read_text())
    for sample in analysis["Samples"][1:]:
        sample["SamplePath"] = f"ntuples/{sample['Name']}.root"
    (work / "my-analysis.yaml").write_text(yaml.safe_dump(analysis, sort_keys=False))
    files = ["inputs/data/uproot-Zmumu.root", "ntuples/Zmumu.root", "ntuples/Continuum.root"]
    result = step(work, "datasets", "add", *files, "--manifest", "my-datasets.yaml")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((work / "my-datasets.yaml").read_text())
    for entry in manifest["files"]:  # what a user writes by hand in the FILL IN fields
        assert "FILL IN" in entry["description"]
        entry["description"] = f"test ntuple {entry['path']}"
        entry["provenance"] = {"source": "tests/test_analysis_config.py", "license": "CC0-1.0"}
    (work / "my-datasets.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (work / "my.yaml").write_text(yaml.safe_dump({"Analysis": "my-analysis.yaml",
                                                  "Datasets": "my-datasets.yaml"}))

    run(["snakemake", "--cores", "2", "--configfile", "my.yaml"], work)

    report = json.loads((work / "results/validation/report.json").read_text())
    assert report["valid"] is True
    resolved = json.loads((work / "results/config.json").read_text())
    assert set(resolved) == set(analysis) | {"Datasets"}
    assert not (work / "results/simulate").exists()
    assert not (work / "results/fit/limits.json").exists()
    assert not (work / "results/model/patchset.json").exists()
    ours = json.loads((work / "results/model/workspace.json").read_text())
    with uproot.open(work / "ntuples/Zmumu.root") as f:
        assert f["events"].num_entries == 6000
    monkeypatch.chdir(work)  # cabinetry reads the histograms relative to the working directory
    theirs = cabinetry.workspace.build(cabinetry.configuration.load("my-analysis.yaml"))
    assert ours == json.loads(json.dumps(theirs))  # cabinetry's own, no lumi added
    with tarfile.open(work / "results/hepdata/submission.tar.gz") as tar:
        names = tar.getnames()
    assert "submission.yaml" in names and not any("limit" in n.lower() for n in names)
