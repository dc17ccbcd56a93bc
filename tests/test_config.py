"""The config is checked at the door: schema, cross-references, one-line errors."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from steps import config as cfg
from steps.errors import PubflowError

from .conftest import REPO, copy_checkout, step, write_config


def test_bundled_config_and_manifest_are_valid() -> None:
    config = cfg.load_analysis(REPO / "inputs" / "pubflow.yaml")
    manifest = cfg.load_datasets(REPO / "inputs" / "datasets.yaml")
    assert config["General"]["POI"] == "mu_Z"
    assert manifest["files"][0]["trees"] == {"events": 2304}


def test_schema_extends_cabinetrys_verbatim() -> None:
    """Our schema vendors cabinetry's definitions; fail when cabinetry's drift from them."""
    cabinetry_schema = json.loads(
        resources.files("cabinetry").joinpath("schemas/config.json").read_text()
    )
    ours = cfg.schema("analysis")
    assert ours["definitions"] == cabinetry_schema["definitions"]
    for key, value in cabinetry_schema["properties"].items():
        assert ours["properties"][key] == value
    assert set(cabinetry_schema["required"]) <= set(ours["required"])


def test_cabinetry_accepts_the_config(analysis_config: dict) -> None:
    import cabinetry

    from steps.layout import cabinetry_config

    assert cabinetry.configuration.validate(cabinetry_config(analysis_config))
    assert not cfg.schema("analysis").get("additionalProperties", True)


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda c: c["Regions"][0].update(Binnning=c["Regions"][0].pop("Binning")),
         "Regions[0].Binnning", "did you mean 'Binning'"),
        (lambda c: c["Samples"][1].update(Wieght="weight"), "Samples[1].Wieght",
         "did you mean 'Weight'"),
        (lambda c: c["Luminosity"].pop("Value"), "Luminosity.Value", "required key is missing"),
        (lambda c: c["Luminosity"].update(Value=-1), "Luminosity.Value", "-1"),
        (lambda c: c["Samples"][0].update(Data=False), "Samples", "exactly one sample"),
        (lambda c: c["Samples"][2].update(Name="Zmumu"), "Samples[2].Name", "duplicate"),
        (lambda c: c["Scan"]["Systematics"].append("muon_sclae"), "Scan.Systematics[2]",
         "no systematic named 'muon_sclae'"),
        (lambda c: c["Simulation"]["Samples"][0].update(Name="Zmumuu"),
         "Simulation.Samples[0].Name", "no sample named 'Zmumuu'"),
        (lambda c: c["Regions"][0].update(Binning=[60, 70, 65]), "Regions[0].Binning",
         "increase"),
        (lambda c: c["Scan"]["Sample"].update(Tree="events_{mas}"), "Scan.Sample.Tree",
         "{mas} is not a scan variable (the variables: mass)"),
        (lambda c: c["Scan"]["Sample"].update(Name="Resonance"), "Scan.Sample.Name",
         "gives 'Resonance' to both {'mass': 65} and {'mass': 70}"),
        (lambda c: c["Scan"].update(PatchName="resonance"), "Scan.PatchName",
         "put every scan variable in it"),
        (lambda c: c["Scan"]["Sample"].update(Name="Zmumu{mass}"[:5]), "Scan.Sample.Name",
         "gives 'Zmumu', already a sample of Samples"),
        (lambda c: c["Scan"].pop("POI"), "Scan.POI", "required key is missing"),
        (lambda c: c["Scan"].update(POI="mu_Z"), "Scan.POI", "'mu_Z' is already a NormFactor"),
        (lambda c: c["Scan"].update(Replaces="Data"), "Scan.Replaces",
         "'Data' is not a simulated sample of Samples"),
        (lambda c: c["Scan"].update(Points=[{"mass": 70}, {"m": 80}]) or c["Scan"].pop("Grid"),
         "Scan.Points[1]", "has the variables m, the first point has mass"),
        (lambda c: c["Scan"].update(Grid={"mass": [70], "width": [1]}), "Scan.Variables",
         "required key is missing for a scan in 2 variables: their order, e.g. [mass, width]"),
        (lambda c: c["Simulation"]["Scan"].update(Mass="m"), "Simulation.Scan.Mass",
         "'m' is not a scan variable"),
    ],
)
def test_config_errors_name_the_key(config: dict, edit, key: str, message: str) -> None:
    edit(config)
    with pytest.raises(PubflowError) as err:
        cfg.check_analysis(config, "inputs/analysis.yaml")
    text = str(err.value)
    assert text.startswith(f"inputs/analysis.yaml: {key}: "), text
    assert message in text
    assert "\n" not in text


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "analysis.yaml"
    bad.write_text("General:\n  Measurement: [unclosed\n")
    with pytest.raises(PubflowError, match=r"analysis\.yaml: line \d+: invalid YAML"):
        cfg.load_analysis(bad)


def test_cli_typo_gives_one_line_and_no_output(tmp_path: Path, config: dict) -> None:
    work = copy_checkout(tmp_path / "w")
    config["Regions"][0]["Fitler"] = config["Regions"][0].pop("Filter")
    (work / "inputs" / "analysis.yaml").write_text(yaml.safe_dump(config))
    result = step(work, "simulate", "--config", "inputs/analysis.yaml",
                  "--output", "results/simulate/Zmumu.root")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = "inputs/analysis.yaml: Regions[0].Fitler: unknown key (did you mean 'Filter'?)"
    assert expected in lines[0]
    assert not (work / "results").exists()


def test_every_step_has_help() -> None:
    for name in ("simulate", "select", "merge", "model", "fit", "hepdata", "validate"):
        result = step(REPO, name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert f"python -m steps.{name}" in result.stdout


def test_snakemake_schema_validation_at_the_door(tmp_path: Path, config: dict) -> None:
    """The Snakefile itself refuses a bad config before any job runs."""
    from .conftest import run

    work = copy_checkout(tmp_path / "w")
    config["Luminosity"]["Value"] = "lots"
    write_config(work, config)
    result = run(["snakemake", "-n"], work, check=False)
    assert result.returncode != 0
    assert "lots" in result.stderr + result.stdout


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_number_is_named_in_one_line(value: float) -> None:
    """YAML's .nan and .inf: the key and what to write instead, not the schema's bounds."""
    rules = [{"match": "x", "mode": "relative", "tolerance": value, "why": "w"}]
    with pytest.raises(PubflowError) as err:
        cfg.validate({"version": 1, "rules": rules}, "tolerances", "tol.yaml")
    assert str(err.value) == (f"tol.yaml: rules[0].tolerance: {value} is not allowed here: "
                              "give a finite number")
