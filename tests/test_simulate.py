"""The simulation: bit-for-bit reproducible, the data's branches, physics that checks out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import uproot

from steps import layout, simulate

from .conftest import REPO


def _write(config: dict, tmp: Path, name: str, events: int, seed: int | None = None) -> Path:
    out = tmp / f"{name}.root"
    for sample in config["Samples"]:
        if sample["Name"] == name:
            sample["SamplePath"] = str(out)
    simulate.simulate(config, str(out), events=events, seed=seed)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bit_for_bit_reproducible(config: dict, tmp_path: Path) -> None:
    a = _write(config, tmp_path / "a", "Zmumu", 3000)
    b = _write(config, tmp_path / "b", "Zmumu", 3000)
    assert _sha(a) == _sha(b)
    c = _write(config, tmp_path / "c", "Zmumu", 3000, seed=1)
    assert _sha(a) != _sha(c)


def test_same_branches_as_data_and_all_variation_trees(config: dict, tmp_path: Path) -> None:
    path = _write(config, tmp_path, "Zmumu", 1000)
    data = uproot.open(REPO / "inputs/data/uproot-Zmumu.root")["events"]
    with uproot.open(path) as f:
        keys = f.keys()
        trees = {k.split(";")[0] for k in keys}
        assert trees == {"events", "events_muon_scale_up", "events_muon_scale_down",
                         "events_muon_resolution_up", "events_muon_resolution_down"}
        sim = f["events"]
        # every numeric branch of the data, with the same type; plus the event weight
        names = data.keys()
        numeric = {k for k in names if k != "Type"}
        assert numeric | {"weight"} == set(sim.keys())
        for key in numeric:
            assert sim[key].interpretation == data[key].interpretation, key
        assert sim.num_entries == 1000


def test_kinematics_are_consistent(config: dict, tmp_path: Path) -> None:
    path = _write(config, tmp_path, "Zmumu", 20000)
    a = uproot.open(path)["events"].arrays(library="np")
    # the stored mass is the invariant mass of the stored four-vectors
    e, px = a["E1"] + a["E2"], a["px1"] + a["px2"]
    py, pz = a["py1"] + a["py2"], a["pz1"] + a["pz2"]
    np.testing.assert_allclose(np.sqrt(e**2 - px**2 - py**2 - pz**2), a["M"], rtol=1e-7)
    np.testing.assert_allclose(np.hypot(a["px1"], a["py1"]), a["pt1"], rtol=1e-12)
    assert np.all(a["Q1"] == -a["Q2"])
    # Breit-Wigner peak at the Z mass: the median is within 0.2 GeV of 91.19 GeV
    assert abs(np.median(a["M"]) - 91.1876) < 0.2
    # sum of weights = cross-section x luminosity
    total = config["Simulation"]["Samples"][0]["CrossSection"] * config["Luminosity"]["Value"]
    assert a["weight"].sum() == pytest.approx(total, rel=1e-12)


def test_variations_shift_and_widen_the_peak(config: dict, tmp_path: Path) -> None:
    path = _write(config, tmp_path, "Zmumu", 20000)
    f = uproot.open(path)
    m = {k: f[k]["M"].array(library="np") for k in
         ("events", "events_muon_scale_up", "events_muon_resolution_up",
          "events_muon_resolution_down")}
    scale = config["Simulation"]["Variations"]["MomentumScale"]
    # scaling both momenta by (1 + s) scales the (nearly massless) dimuon mass by (1 + s)
    np.testing.assert_allclose(m["events_muon_scale_up"] / m["events"], 1 + scale, rtol=1e-5)
    window = (m["events"] > 80) & (m["events"] < 100)
    spread = {k: np.std(v[window]) for k, v in m.items()}
    assert spread["events_muon_resolution_down"] < spread["events"]
    assert spread["events"] < spread["events_muon_resolution_up"]


def test_resonance_scan_files_are_declared(analysis_config: dict) -> None:
    sims = layout.simulated_samples(analysis_config)
    masses = analysis_config["Scan"]["Grid"]["mass"]
    width = analysis_config["Simulation"]["Scan"]["RelativeWidth"]
    for m in masses:
        settings = sims[f"results/simulate/Resonance_m{m}.root"]
        assert settings["Mass"] == m
        assert settings["Width"] == pytest.approx(width * m)
        assert settings["CrossSection"] == analysis_config["Scan"]["CrossSection"]


def test_unknown_output_is_an_error(config: dict, tmp_path: Path) -> None:
    from steps.errors import PubflowError

    with pytest.raises(PubflowError, match="not a simulated file of this config"):
        simulate.simulate(config, str(tmp_path / "nope.root"))
    assert not (tmp_path / "nope.root").exists()
