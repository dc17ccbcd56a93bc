"""cabinetry's options through pubflow: cabinetry's own results, or a one-line refusal.

A cabinetry-style analysis written here (two regions with their own files, several trees per
file, a normfactor signal, weight/tree/variable/filter/path variations, smoothing,
symmetrization, ModifierName, Fixed) goes once through pubflow's select + merge and once
through cabinetry's ``templates.build`` + ``templates.postprocess``; every histogram file
and the workspace must agree. The options pubflow does not implement are refused by
``steps.cabinetry_options`` in one line.
"""

from __future__ import annotations

import copy
import doctest
import json
import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uproot

from steps import cabinetry_options, layout, merge, select
from steps.errors import PubflowError

from .conftest import REPO

SMOOTHED = ("Modeling", "WeightBasedModeling", "jes")  # modifiers whose templates are smoothed


def _events(rng: np.random.Generator, n: int, peak: float | None = None) -> dict[str, np.ndarray]:
    """Jet-pT-like events: a falling spectrum, or a peak; with up/down shifts and weights."""
    pt = rng.normal(peak, 180, n) if peak else 200 + rng.exponential(300, n)
    return {
        "jet_pt": pt,
        "jet_pt_up": pt * 1.05 + rng.normal(0, 10, n),
        "jet_pt_down": pt * 0.95 + rng.normal(0, 10, n),
        "n_jets": rng.integers(1, 4, n).astype(np.int32),
        "weight": rng.uniform(0.8, 1.2, n),
        "weight_up": rng.uniform(0.9, 1.4, n),
        "weight_down": rng.uniform(0.6, 1.1, n),
    }


def _write(path: Path, trees: dict[str, dict[str, np.ndarray]]) -> None:
    # mktree, not file[name] = {...}: uproot 5.7 writes a dict as an RNTuple; we need TTrees
    path.parent.mkdir(parents=True, exist_ok=True)
    with uproot.recreate(path) as f:
        for name, branches in trees.items():
            f.mktree(name, {k: v.dtype for k, v in branches.items()})
            f[name].extend(branches)


def _ntuples(root: Path) -> None:
    rng = np.random.default_rng(20240610)
    for region in ("sr", "cr"):
        _write(root / region / "data.root", {"data": _events(rng, 4000)})
        _write(root / region / "prediction.root", {
            "signal": _events(rng, 3000, peak=600),
            "background": _events(rng, 6000),
            "background_varied": _events(rng, 6000),
        })
        for part in ("a", "b"):
            _write(root / region / f"bkg2_{part}.root", {"background2": _events(rng, 2000)})
    _write(root / "sr" / "signal_alt.root", {"signal": _events(rng, 3000, peak=620)})
    _write(root / "sr_alt" / "prediction.root", {"signal": _events(rng, 3000, peak=580)})


def _config(root: Path, folder: Path) -> dict[str, Any]:
    """A cabinetry config using every option pubflow implements (and two it ignores)."""
    return {
        "General": {
            "Measurement": "options", "POI": "Signal_norm",
            "InputPath": f"{root}/{{RegionPath}}/{{SamplePath}}",
            "HistogramFolder": str(folder),
            "Fixed": [{"Name": "Luminosity", "Value": 0.0}],
            "VariationPath": "unused",  # histogram inputs only: templates.build ignores it
        },
        "Regions": [
            {"Name": "Signal region", "Variable": "jet_pt", "Filter": "n_jets >= 2",
             "RegionPath": "sr", "Binning": [200, 300, 400, 500, 600, 700, 800, 900, 1000]},
            {"Name": "CR", "Variable": "jet_pt", "RegionPath": "cr",
             "Binning": [200, 350, 500, 650, 800, 1000]},
        ],
        "Samples": [
            {"Name": "Data", "Tree": "data", "SamplePath": "data.root", "Data": True},
            {"Name": "Signal", "Tree": "signal", "SamplePath": "prediction.root",
             "Weight": "weight", "Regions": "Signal region"},
            {"Name": "Background", "Tree": "background", "SamplePath": "prediction.root",
             "Weight": "weight"},
            {"Name": "Background 2", "Tree": "background2",
             "SamplePath": ["bkg2_a.root", "bkg2_b.root"], "Weight": "0.5",
             "Filter": "jet_pt > 250", "DisableStaterror": True},
        ],
        "NormFactors": [
            {"Name": "Signal_norm", "Samples": "Signal", "Nominal": 1, "Bounds": [-5, 10]},
            {"Name": "Background_norm", "Samples": ["Background", "Background 2"],
             "Regions": ["Signal region", "CR"]},
        ],
        "Systematics": [
            {"Name": "Luminosity", "Type": "Normalization",
             "Up": {"Normalization": 0.02}, "Down": {"Normalization": -0.02}},
            {"Name": "Bkg2_xsec", "Type": "Normalization", "Samples": "Background 2",
             "Regions": "CR", "ModifierName": "bkg2_cross_section",
             "Up": {"Normalization": 0.1}, "Down": {"Normalization": -0.2},
             "Smoothing": {"Algorithm": "353QH, twice"}},  # no template: nothing to smooth
            {"Name": "Modeling", "Type": "NormPlusShape", "Samples": "Background",
             "Up": {"Tree": "background_varied", "Normalization": 0.3},  # ignored for shapes
             "Down": {"Symmetrize": True},
             "Smoothing": {"Algorithm": "353QH, twice"}},
            {"Name": "WeightBasedModeling", "Type": "NormPlusShape", "Samples": ["Background"],
             "Up": {"Weight": "weight_up"},
             "Down": {"Weight": "weight_down", "VariationPath": "unused"},
             "Smoothing": {"Algorithm": "353QH, twice", "Regions": "Signal region"}},
            {"Name": "JetEnergyScale", "Type": "NormPlusShape", "ModifierName": "jes",
             "Samples": ["Signal", "Background"],
             "Up": {"Variable": "jet_pt_up"}, "Down": {"Variable": "jet_pt_down"},
             "Smoothing": {"Algorithm": "353QH, twice", "Samples": "Signal"}},
            {"Name": "Generator", "Type": "NormPlusShape", "Samples": "Signal",
             "Regions": "Signal region",
             "Up": {"SamplePath": "signal_alt.root"}, "Down": {"RegionPath": "sr_alt"}},
            {"Name": "Selection", "Type": "NormPlusShape", "Samples": "Background 2",
             "Up": {"Filter": "jet_pt > 260"}, "Down": {"Filter": "jet_pt > 240"}},
        ],
    }


def _histograms(folder: Path) -> dict[str, Any]:
    return {p.name: dict(np.load(p)) for p in sorted(folder.glob("*.npz"))}


def _assert_close(mine: Any, theirs: Any, rtol: float, where: str = "") -> None:
    """Equal structure; numbers equal to ``rtol`` (sums in another order differ by rounding)."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict) and mine.keys() == theirs.keys(), where
        for key in theirs:
            _assert_close(mine[key], theirs[key], rtol, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list) and len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _assert_close(a, b, rtol, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert mine == pytest.approx(theirs, rel=rtol, abs=0), where
    else:
        assert mine == theirs, where


class Chains:
    """The same analysis through pubflow and through cabinetry."""

    def __init__(self, tmp: Path) -> None:
        import cabinetry

        _ntuples(tmp / "ntuples")
        self.tmp = tmp
        self.ours = _config(tmp / "ntuples", tmp / "ours")
        self.ours["Datasets"] = str(REPO / "inputs" / "datasets.yaml")  # lists none of these
        # ... for the test writes them itself, as a workflow's own rule would
        self.ours["Unlisted"] = [{"Sample": s["Name"], "Reason": "ntuples this test writes"}
                                 for s in self.ours["Samples"]]
        self.theirs = _config(tmp / "ntuples", tmp / "cabinetry")
        # pubflow: one select job per file, then the merge (with cabinetry's postprocess)
        files = dict.fromkeys(p for t in select.templates(self.ours) for p in t.paths)
        partials = {path: str(tmp / "select" / f"{i}.npz") for i, path in enumerate(files)}
        for path, npz in partials.items():
            select.select(self.ours, path, npz)
        merge.merge(self.ours, partials, str(tmp / "ours"), str(tmp / "summary.json"))
        # cabinetry's own chain
        cabinetry.templates.build(self.theirs, method="uproot")
        cabinetry.templates.postprocess(self.theirs)

    def workspaces(self, folder: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        import cabinetry

        ours = layout.cabinetry_config(self.ours)
        if folder is not None:
            ours["General"]["HistogramFolder"] = str(folder)
        return cabinetry.workspace.build(ours), cabinetry.workspace.build(self.theirs)


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Chains:
    return Chains(tmp_path_factory.mktemp("options"))


def test_every_histogram_file_equals_cabinetrys(chains: Chains) -> None:
    ours, theirs = _histograms(chains.tmp / "ours"), _histograms(chains.tmp / "cabinetry")
    assert sorted(ours) == sorted(theirs)
    assert sum(name.endswith("_modified.npz") for name in theirs) == len(theirs) // 2
    for name, hist in theirs.items():
        np.testing.assert_array_equal(ours[name]["bins"], hist["bins"], err_msg=name)
        for key in ("yields", "stdev"):
            np.testing.assert_allclose(ours[name][key], hist[key], rtol=1e-8, atol=0,
                                       err_msg=f"{name} {key}")


def test_smoothing_changed_what_it_should(chains: Chains) -> None:
    """Smoothing acts where its Regions/Samples say, and the test would see it missing."""
    hists = _histograms(chains.tmp / "cabinetry")

    def smoothed(name: str) -> bool:
        raw, modified = hists[f"{name}.npz"], hists[f"{name}_modified.npz"]
        return not np.allclose(modified["yields"], raw["yields"], rtol=1e-12, atol=0)

    assert smoothed("Signal-region_Background_Modeling_Up")
    assert smoothed("CR_Background_Modeling_Up")
    assert smoothed("Signal-region_Background_WeightBasedModeling_Up")
    assert not smoothed("CR_Background_WeightBasedModeling_Up")  # Smoothing.Regions
    assert smoothed("Signal-region_Signal_JetEnergyScale_Up")
    assert not smoothed("Signal-region_Background_JetEnergyScale_Up")  # Smoothing.Samples
    assert "Signal-region_Background_Modeling_Down.npz" not in hists  # Down.Symmetrize


def test_workspace_equals_cabinetrys(chains: Chains) -> None:
    ours, theirs = chains.workspaces()
    _assert_close(ours, theirs, rtol=1e-12)
    modifiers = {m["name"] for c in theirs["channels"] for s in c["samples"]
                 for m in s["modifiers"]}
    assert {"bkg2_cross_section", "jes", "Generator", "Selection"} <= modifiers


def test_without_postprocessing_the_histosys_differ(chains: Chains, tmp_path: Path) -> None:
    """The comparison has teeth: the raw merged histograms give another workspace."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in (chains.tmp / "ours").glob("*.npz"):
        if not path.stem.endswith("_modified"):
            shutil.copy(path, raw / path.name)
    ours, theirs = chains.workspaces(raw)
    differ = set()
    for mine, ref in zip(ours["channels"], theirs["channels"], strict=True):
        for a, b in zip(mine["samples"], ref["samples"], strict=True):
            for m, n in zip(a["modifiers"], b["modifiers"], strict=True):
                if m["type"] == "histosys" and not np.allclose(
                        m["data"]["hi_data"], n["data"]["hi_data"], rtol=1e-8, atol=0):
                    differ.add(m["name"])
    assert differ == set(SMOOTHED)


def test_template_paths_are_cabinetrys(chains: Chains) -> None:
    """The files each histogram reads: layout's rules give cabinetry's ``_ntuple_paths``."""
    from cabinetry import route
    from cabinetry.templates import builder

    config = chains.theirs
    seen = []

    def compare(region: dict, sample: dict, systematic: dict, template: Any) -> None:
        theirs = builder._ntuple_paths(config["General"]["InputPath"], region, sample,
                                       systematic, template)
        ours = layout.template_paths(config, region, sample, systematic, template)
        assert ours == [os.path.normpath(p) for p in theirs]
        seen.append(ours)

    route.apply_to_all_templates(config, compare)
    assert len(seen) == len(select.templates(chains.ours))


def test_select_jobs_read_only_files_of_histograms(chains: Chains) -> None:
    """Every select job's file feeds a histogram (else the job fails: 'no histogram reads')."""
    config = copy.deepcopy(chains.ours)
    config["Systematics"][0]["Up"]["SamplePath"] = "unused.root"  # Normalization: no template
    config["Systematics"][2]["Down"]["SamplePath"] = "unused.root"  # symmetrized: no template
    config["Systematics"][5]["Regions"] = "CR"  # Signal is only in the signal region
    read = {p for t in select.templates(config) for p in t.paths}
    assert set(layout.input_files(config)) == read


def test_empty_path_override_is_cabinetrys(chains: Chains) -> None:
    from cabinetry.templates import builder

    config = chains.theirs
    region, sample = config["Regions"][0], config["Samples"][1]
    systematic = {"Name": "x", "Type": "NormPlusShape", "Up": {"RegionPath": ""}, "Down": {}}
    theirs = builder._ntuple_paths(config["General"]["InputPath"], region, sample, systematic,
                                   "Up")
    assert layout.template_paths(config, region, sample, systematic, "Up") == [
        os.path.normpath(p) for p in theirs]


# --- refusals: one line naming the file and the key ----------------------------------------

Edit = Callable[[dict[str, Any]], Any]
REFUSED: list[tuple[Edit, str, str]] = [
    (lambda c: c["Regions"][1].pop("Binning"), "Regions[1].Binning", "histogram inputs"),
    (lambda c: c["Regions"][0].pop("Variable"), "Regions[0].Variable", "histogram inputs"),
    (lambda c: c["Samples"][2].pop("Tree"), "Samples[2].Tree", "histogram inputs"),
    (lambda c: c["Regions"][1].pop("RegionPath"), "Regions[1].RegionPath",
     "General.InputPath contains {RegionPath}"),
    (lambda c: c["Samples"][0].pop("SamplePath"), "Samples[0].SamplePath",
     "General.InputPath contains {SamplePath}"),
    (lambda c: c["General"].update(InputPath="ntuples/*/{SamplePath}"), "General.InputPath",
     "wildcard"),
    (lambda c: c["Samples"][3].update(SamplePath=["bkg2_a.root", "bkg2_?.root"]),
     "Samples[3].SamplePath[1]", "wildcard"),
    (lambda c: c["Systematics"][5]["Up"].update(SamplePath="signal_[ab].root"),
     "Systematics[5].Up.SamplePath", "wildcard"),
    (lambda c: c["Systematics"][5]["Down"].update(RegionPath="s*"),
     "Systematics[5].Down.RegionPath", "wildcard"),
    (lambda c: c["Systematics"][3]["Up"].update(Symmetrize=True), "Systematics[3].Up.Symmetrize",
     "symmetrizes only Down"),
    (lambda c: c["Systematics"][0]["Down"].pop("Normalization"),
     "Systematics[0].Down.Normalization", "required for Type Normalization"),
    (lambda c: c["General"].pop("POI"), "General.POI", "required key is missing"),
    (lambda c: c["General"].update(POI="Signal_nrom"), "General.POI", "not a NormFactor"),
]


@pytest.mark.parametrize(("edit", "key", "reason"), REFUSED, ids=[k for _, k, _ in REFUSED])
def test_refused_option_gives_one_line(tmp_path: Path, edit: Edit, key: str, reason: str) -> None:
    config = _config(tmp_path / "ntuples", tmp_path / "histograms")
    edit(config)
    assert cabinetry_options.unsupported(config)[0][0] == key
    with pytest.raises(PubflowError) as err:
        cabinetry_options.check(config, "inputs/analysis.yaml")
    text = str(err.value)
    assert text.startswith(f"inputs/analysis.yaml: {key}: "), text
    assert reason in text and "\n" not in text


def test_accepted_configs_have_no_refusal(tmp_path: Path) -> None:
    assert cabinetry_options.unsupported(_config(tmp_path, tmp_path)) == []
    bundled = layout.load_yaml(REPO / "inputs" / "analysis.yaml")
    assert cabinetry_options.unsupported(bundled) == []
    cabinetry_options.check(bundled, "inputs/analysis.yaml")
    remote = _config(tmp_path, tmp_path)
    remote["General"]["InputPath"] = "root://eos.example//store/{RegionPath}/{SamplePath}?x=1"
    assert cabinetry_options.unsupported(remote) == []


def test_cabinetry_itself_cannot_build_what_is_refused(chains: Chains, tmp_path: Path) -> None:
    """Up.Symmetrize and a Normalization without value fail in cabinetry too, less clearly."""
    import cabinetry

    config = copy.deepcopy(chains.theirs)
    config["General"]["HistogramFolder"] = str(tmp_path / "histograms")
    config["Systematics"][3]["Up"] = {"Symmetrize": True}
    cabinetry.templates.build(config, method="uproot")
    with pytest.raises(FileNotFoundError, match="WeightBasedModeling_Up"):
        cabinetry.workspace.build(config)
    config = copy.deepcopy(chains.theirs)
    del config["Systematics"][0]["Up"]["Normalization"]
    with pytest.raises(KeyError, match="Normalization"):
        cabinetry.workspace.build(config)


def _schema_keys(schema: dict[str, Any], node: dict[str, Any], prefix: str) -> list[str]:
    """Every key path of cabinetry's config schema, ``[]`` for the items of a list."""
    if "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    if node.get("type") == "array" and "properties" in node.get("items", {}):
        return _schema_keys(schema, node["items"], f"{prefix}[]")
    if node.get("type") == "array" and "$ref" in node.get("items", {}):
        return _schema_keys(schema, node["items"], f"{prefix}[]")
    keys = []
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        keys += [path] if prefix else []
        keys += _schema_keys(schema, child, path)
    return keys


def test_every_schema_key_has_a_decision() -> None:
    schema = json.loads(resources.files("cabinetry").joinpath("schemas/config.json").read_text())
    keys = _schema_keys(schema, schema, "")
    assert len(keys) == len(set(keys)) > 50
    assert sorted(keys) == sorted(cabinetry_options.SUPPORT)


def test_doctests() -> None:
    result = doctest.testmod(cabinetry_options)
    assert result.attempted > 0 and result.failed == 0
