"""The likelihood: pyhf-valid, the modifiers we promise, and it measures what we inject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest


@pytest.fixture(scope="module")
def workspace(workflow_run: Path) -> dict:
    return json.loads((workflow_run / "results/model/workspace.json").read_text())


@pytest.fixture(scope="module")
def patchset(workflow_run: Path) -> dict:
    return json.loads((workflow_run / "results/model/patchset.json").read_text())


def test_workspace_has_the_usual_modifiers(workspace: dict) -> None:
    pyhf.schema.validate(workspace, "workspace.json")
    types = {(s["name"], m["name"]): m["type"] for c in workspace["channels"]
             for s in c["samples"] for m in s["modifiers"]}
    assert types[("Zmumu", "mu_Z")] == "normfactor"
    assert types[("Continuum", "Continuum_norm")] == "normsys"
    for sample in ("Zmumu", "Continuum"):
        assert types[(sample, "muon_scale")] == "histosys"
        assert types[(sample, "muon_resolution")] == "histosys"
        assert types[(sample, "staterror_Dimuon")] == "staterror"
    # the bundled luminosity only normalises the simulation: it constrains nothing
    assert "lumi" not in {name for _, name in types}
    measurement = workspace["measurements"][0]["config"]
    assert measurement["poi"] == "mu_Z"
    assert "lumi" not in {p["name"] for p in measurement["parameters"]}


def test_a_measured_luminosity_is_a_lumi_modifier_on_every_sample(workspace: dict) -> None:
    from steps.model import add_lumi

    spec = add_lumi(workspace, {"Luminosity": {"Value": 36.0, "Unit": "fb^-1",
                                               "RelativeUncertainty": 0.02}})
    samples = [s for c in spec["channels"] for s in c["samples"]]
    assert all({"name": "lumi", "type": "lumi", "data": None} in s["modifiers"]
               for s in samples)
    [lumi] = [p for p in spec["measurements"][0]["config"]["parameters"]
              if p["name"] == "lumi"]
    assert (lumi["auxdata"], lumi["sigmas"]) == ([1.0], [0.02])
    unmeasured = {"Luminosity": {"Value": 36.0, "Unit": "fb^-1", "Measured": False,
                                 "RelativeUncertainty": 0.02}}
    assert add_lumi(workspace, unmeasured) == workspace


@pytest.mark.parametrize("injected", [1.0, 1.6])
def test_asimov_fit_returns_the_injected_signal_strength(workspace: dict, injected: float
                                                         ) -> None:
    model = pyhf.Workspace(workspace).model()
    pars = model.config.suggested_init()
    pars[model.config.poi_index] = injected
    asimov = model.expected_data(pars)
    bestfit = pyhf.infer.mle.fit(asimov, model)
    assert bestfit[model.config.poi_index] == pytest.approx(injected, abs=2e-3)


def test_patchset_is_the_hepdata_convention(workspace: dict, patchset: dict,
                                            analysis_config: dict) -> None:
    ps = pyhf.PatchSet(patchset)
    assert ps.digests["sha256"] == pyhf.utils.digest(workspace)
    masses = analysis_config["Scan"]["Grid"]["mass"]
    assert ps.labels == ["mass"]
    assert sorted(p.values[0] for p in ps.patches) == sorted(masses)
    assert [p.name for p in ps.patches] == [f"mass_{m}" for m in masses]
    patched = ps.apply(pyhf.Workspace(workspace), [masses[0]])
    model = pyhf.Workspace(patched).model()
    assert model.config.poi_name == "mu_res"
    # the resonance carries the Z's normalisation too: mu_res is a ratio to the Z's rate
    resonance = next(s for s in dict(patched)["channels"][0]["samples"]
                     if s["name"] == f"Resonance_m{masses[0]}")
    assert {m["name"] for m in resonance["modifiers"] if m["type"] == "normfactor"} == {
        "mu_Z", "mu_res"}
    signal = f"Resonance_m{masses[0]}"
    assert signal in model.config.samples
    # the resonance sits where it should: most of its yield within 10% of its mass
    spec = dict(patched)
    yields = np.array(next(s["data"] for s in spec["channels"][0]["samples"]
                           if s["name"] == signal))
    edges = np.array(analysis_config["Regions"][0]["Binning"])
    centres = (edges[:-1] + edges[1:]) / 2
    near = np.abs(centres - masses[0]) < 0.1 * masses[0]
    assert yields[near].sum() > 0.9 * yields.sum()
