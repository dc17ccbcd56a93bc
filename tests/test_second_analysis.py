"""The second example analysis, inputs/examples/stop_search/: a cabinetry-style top-squark search.

Unlike the bundled Z->mumu analysis it reads ntuples it does not simulate (made by its own
``make_ntuples.py``), has two regions, smoothing, a weight-based and a symmetrized
systematic, a free background normfactor beside the ``Signal_norm`` POI, and a
two-dimensional signal grid whose points replace the config's ``Signal`` sample. The fast
tests check the committed files; the slow ones run the whole workflow on it and compare
every histogram, the workspace, each patched workspace and the fit with cabinetry's own
chain on the same cabinetry config.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from .conftest import REPO, copy_checkout, run

EXAMPLE = Path("inputs/examples/stop_search")
NTUPLES = EXAMPLE / "ntuples"
PUBFLOW_YAML = EXAMPLE / "pubflow.yaml"
ANALYSIS_YAML = EXAMPLE / "analysis.yaml"
LABELS = ["m_stop", "m_lsp"]


def _trees(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every TTree of a ROOT file with every branch as a numpy array."""
    import uproot

    with uproot.open(path) as f:
        return {name: f[name].arrays(library="np")
                for name in f.keys(filter_classname="TTree", cycle=False)}


def _pubflow() -> dict[str, Any]:
    return yaml.safe_load((REPO / PUBFLOW_YAML).read_text())


def _analysis() -> dict[str, Any]:
    return yaml.safe_load((REPO / ANALYSIS_YAML).read_text())


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


# --- the committed files ---------------------------------------------------------------------


def test_make_ntuples_regenerates_the_committed_ntuples(tmp_path: Path) -> None:
    """The script is deterministic: every tree and branch it writes equals the committed one."""
    script = REPO / EXAMPLE / "make_ntuples.py"
    assert "--output DIR" in run([sys.executable, str(script), "--help"], tmp_path).stdout
    run([sys.executable, str(script), "--output", str(tmp_path / "out")], tmp_path)
    committed = sorted(p.name for p in (REPO / NTUPLES).glob("*.root"))
    assert committed == ["data.root", "prediction.root", "signal_grid.root"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == committed
    for name in committed:
        ours, theirs = _trees(tmp_path / "out" / name), _trees(REPO / NTUPLES / name)
        assert list(ours) == list(theirs), name
        for tree, branches in theirs.items():
            assert list(ours[tree]) == list(branches), f"{name}:{tree}"
            for branch, values in branches.items():
                assert ours[tree][branch].dtype == values.dtype, f"{name}:{tree}.{branch}"
                assert np.array_equal(ours[tree][branch], values), f"{name}:{tree}.{branch}"
    # "a few thousand entries per tree", and small enough to live in the repository
    assert sum((REPO / NTUPLES / n).stat().st_size for n in committed) < 600_000


def test_the_manifest_describes_the_committed_ntuples() -> None:
    """datasets.yaml (written by steps.datasets add) is up to date and filled in by hand."""
    from steps.config import load_datasets

    manifest = load_datasets(REPO / EXAMPLE / "datasets.yaml")
    assert [e["path"] for e in manifest["files"]] == sorted(
        str(p.relative_to(REPO)) for p in (REPO / NTUPLES).glob("*.root"))
    for entry in manifest["files"]:
        data = (REPO / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["trees"] == {t: len(next(iter(b.values())))
                                  for t, b in _trees(REPO / entry["path"]).items()}
        assert "FILL IN" not in json.dumps(entry), entry["path"]


def test_cabinetry_loads_the_config_and_pubflow_resolves_it(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import cabinetry

    from steps import cabinetry_options, layout
    from steps.config import load_analysis

    loaded = cabinetry.configuration.load(REPO / ANALYSIS_YAML)
    assert loaded == _analysis()
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root
    resolved = load_analysis(PUBFLOW_YAML)
    cabinetry_options.check(layout.cabinetry_config(resolved), str(ANALYSIS_YAML))
    assert not {"Luminosity", "Simulation"} & set(resolved)
    assert layout.scan_labels(resolved) == LABELS


def test_every_scan_point_has_its_tree_and_the_benchmark_is_one() -> None:
    """The grid of pubflow.yaml is the grid make_ntuples.py writes; the ``signal`` tree of
    prediction.root is the benchmark point's events, so its patch reproduces the workspace."""
    scan = _pubflow()["Scan"]
    grid = _trees(REPO / NTUPLES / "signal_grid.root")
    assert sorted(scan["Sample"]["Tree"].format(**p) for p in scan["Points"]) == sorted(grid)
    benchmark = _trees(REPO / NTUPLES / "prediction.root")["signal"]
    same = [t for t, b in grid.items()
            if all(np.array_equal(b[k], v) for k, v in benchmark.items())]
    assert same == ["signal_900_100"]


def test_it_exercises_what_the_bundled_analysis_does_not() -> None:
    """The reason for a second example: cabinetry features the bundled analysis leaves out."""
    from steps import layout

    ours, bundled = _analysis(), yaml.safe_load((REPO / "inputs/analysis.yaml").read_text())

    def features(config: dict[str, Any]) -> dict[str, bool]:
        systematics = config.get("Systematics", [])
        sides = [s[side] for s in systematics for side in ("Up", "Down")]
        poi = config["General"]["POI"]
        return {
            "two regions": len(config["Regions"]) >= 2,
            "smoothing": any("Smoothing" in s for s in systematics),
            "weight-based systematic": any("Weight" in side for side in sides),
            "symmetrized systematic": any(side.get("Symmetrize") for side in sides),
            "tree-based systematic in another tree of the file": any(
                "Tree" in s["Up"] and "SamplePath" in s["Up"] for s in systematics),
            "POI Signal_norm on sample Signal": any(
                nf["Name"] == poi == "Signal_norm" and "Signal" in _as_list(nf["Samples"])
                for nf in config["NormFactors"]),
            "a free normfactor besides the POI": len(config["NormFactors"]) >= 2,
        }

    assert all(features(ours).values()), features(ours)
    assert not any(features(bundled).values()), features(bundled)
    # several samples read one file (cabinetry's prediction.root), each from its own tree
    trees = {(s["SamplePath"], s["Tree"]) for s in ours["Samples"]}
    assert len({t for p, t in trees if p == "prediction.root"}) >= 2
    scan, bundled_scan = _pubflow()["Scan"], yaml.safe_load(
        (REPO / "inputs/pubflow.yaml").read_text())["Scan"]
    assert scan["Replaces"] == "Signal" and "Replaces" not in bundled_scan
    # a grid in two variables, where the bundled scan has one (the resonance mass)
    assert len(scan["Points"]) >= 6 and all(list(p) == LABELS for p in scan["Points"])
    assert layout.scan_labels({"Scan": scan}) == LABELS
    assert len(layout.scan_labels({"Scan": bundled_scan})) == 1


# --- the whole workflow, compared with cabinetry's own chain ---------------------------------


def _replaced(config: dict[str, Any], scan: dict[str, Any], point: dict[str, Any]
              ) -> dict[str, Any]:
    """The cabinetry config of one hypothesis, as a cabinetry user would write it: the scan's
    sample (placeholders filled) in place of the replaced one, and every NormFactor,
    Systematic and Smoothing that named the replaced sample naming the new one."""
    out = copy.deepcopy(config)
    sample = {k: v.format(**point) if isinstance(v, str) else v
              for k, v in scan["Sample"].items()}
    old = scan["Replaces"]
    out["Samples"] = [sample if s["Name"] == old else s for s in out["Samples"]]

    def rename(item: dict[str, Any]) -> None:
        if "Samples" in item:
            names = [sample["Name"] if n == old else n for n in _as_list(item["Samples"])]
            item["Samples"] = names if isinstance(item["Samples"], list) else names[0]

    for item in out["NormFactors"] + out.get("Systematics", []):
        rename(item)
        if "Smoothing" in item:
            rename(item["Smoothing"])
    return out


@dataclass
class Run:
    """One workflow run on the example and cabinetry's chain in the same work directory."""

    work: Path
    cabinetry_folder: Path
    workspace: dict[str, Any]  # cabinetry's
    hypotheses: dict[str, dict[str, Any]]  # cabinetry's workspace per patch name
    fit: Any  # cabinetry's FitResults


@pytest.fixture(scope="module")
def stop_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    import cabinetry

    work = copy_checkout(tmp_path_factory.mktemp("stop") / "pubflow")
    run(["snakemake", "--cores", "2", "--configfile", str(PUBFLOW_YAML)], work)
    folder = work / "cabinetry-histograms"
    scan = _pubflow()["Scan"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the config's InputPath is relative to the repository root
        config = cabinetry.configuration.load(ANALYSIS_YAML)
        config["General"]["HistogramFolder"] = f"{folder}/"
        configs = {"": config} | {scan["PatchName"].format(**p): _replaced(config, scan, p)
                                  for p in scan["Points"]}
        built = {}
        for name, each in configs.items():
            cabinetry.templates.build(each, method="uproot")
            cabinetry.templates.postprocess(each)
            built[name] = json.loads(json.dumps(cabinetry.workspace.build(each)))
        model, data = cabinetry.model_utils.model_and_data(built[""])
        fit = cabinetry.fit.fit(model, data)
    return Run(work, folder, built.pop(""), built, fit)


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


def _json(run_: Run, name: str) -> Any:
    return json.loads((run_.work / "results" / name).read_text())


@pytest.mark.slow
def test_workflow_leaves_nothing_of_the_bundled_analysis(stop_run: Run) -> None:
    assert _json(stop_run, "validation/report.json")["valid"] is True
    resolved = _json(stop_run, "config.json")
    assert not {"Luminosity", "Simulation"} & set(resolved)
    assert resolved["Datasets"] == str(EXAMPLE / "datasets.yaml")
    assert not (stop_run.work / "results/simulate").exists()
    assert {s["SamplePath"] for s in resolved["Samples"]} <= {
        "data.root", "prediction.root"}  # no Zmumu, no resonance


@pytest.mark.slow
def test_every_histogram_equals_cabinetrys(stop_run: Run) -> None:
    """Raw and post-processed (``_modified``, smoothed) histograms of the config and of every
    grid point, bin by bin."""
    ours = {p.name: p for p in (stop_run.work / "results/histograms").glob("*.npz")}
    theirs = {p.name: p for p in stop_run.cabinetry_folder.glob("*.npz")}
    assert sorted(ours) == sorted(theirs)
    assert "Signal_region_Background_Modeling_Up_modified.npz" in ours
    assert "Control_region_Signal_1000_300_modified.npz" in ours
    for name, path in theirs.items():
        mine, ref = np.load(ours[name]), np.load(path)
        np.testing.assert_array_equal(mine["bins"], ref["bins"], err_msg=name)
        for key in ("yields", "stdev"):
            np.testing.assert_allclose(mine[key], ref[key], rtol=1e-8, atol=0,
                                       err_msg=f"{name} {key}")
    # the comparison has teeth: smoothing changed the Modeling template
    raw = np.load(theirs["Signal_region_Background_Modeling_Up.npz"])["yields"]
    smooth = np.load(theirs["Signal_region_Background_Modeling_Up_modified.npz"])["yields"]
    assert not np.allclose(raw, smooth, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_workspace_and_every_patched_workspace_equal_cabinetrys(stop_run: Run) -> None:
    """The workspace is cabinetry's; each patch turns it into cabinetry's workspace of the
    config in which that grid point's sample replaces Signal."""
    import pyhf

    workspace = _json(stop_run, "model/workspace.json")
    _assert_close(workspace, stop_run.workspace, rtol=1e-8)
    patchset = pyhf.PatchSet(_json(stop_run, "model/patchset.json"))
    patchset.verify(workspace)
    points = _pubflow()["Scan"]["Points"]
    assert [p.name for p in patchset.patches] == list(stop_run.hypotheses)
    for patch, point in zip(patchset.patches, points, strict=True):
        assert dict(zip(patchset.labels, patch.values, strict=True)) == point, patch.name
        _assert_close(patch.apply(workspace), stop_run.hypotheses[patch.name], rtol=1e-8,
                      where=patch.name)


@pytest.mark.slow
def test_the_patchset_is_labelled_in_the_order_of_the_config(stop_run: Run) -> None:
    """(m_stop, m_lsp) as pubflow.yaml writes them, not alphabetically: HEPData readers and
    pyhf's ``patchset[(m_stop, m_lsp)]`` look-ups rely on the order."""
    assert _json(stop_run, "model/patchset.json")["metadata"]["labels"] == LABELS
    assert _json(stop_run, "fit/limits.json")["labels"] == LABELS


@pytest.mark.slow
def test_fit_equals_cabinetrys(stop_run: Run) -> None:
    """results.json's POI and every parameter are cabinetry's fit of cabinetry's workspace."""
    results = _json(stop_run, "fit/results.json")
    fit = stop_run.fit
    poi = fit.labels.index("Signal_norm")
    assert results["poi"] == "Signal_norm"
    assert results["mu"] == pytest.approx(fit.bestfit[poi], rel=1e-8)
    assert results["mu_uncertainty"] == pytest.approx(fit.uncertainty[poi], rel=1e-8)
    assert [p["name"] for p in results["parameters"]] == list(fit.labels)
    for p, best, unc in zip(results["parameters"], fit.bestfit, fit.uncertainty, strict=True):
        assert p["bestfit"] == pytest.approx(best, rel=1e-8, abs=1e-10), p["name"]
        assert p["uncertainty"] == pytest.approx(unc, rel=1e-8), p["name"]
    # the benchmark is in the pseudo-data: a signal strength near 1, within its uncertainty
    assert abs(results["mu"] - 1) < 2 * results["mu_uncertainty"] < 2


@pytest.mark.slow
def test_limits_per_point_exclude_some_points_and_not_others(stop_run: Run) -> None:
    import pyhf

    scan = _pubflow()["Scan"]
    names = [scan["PatchName"].format(**p) for p in scan["Points"]]
    limits = _json(stop_run, "fit/limits.json")
    assert sorted(p["patch"] for p in limits["points"]) == sorted(names)
    observed = {}
    for name, point in zip(names, scan["Points"], strict=True):
        mine = _json(stop_run, f"fit/limits/{name}.json")
        assert mine["values"] == point and mine["poi"] == "Signal_norm"
        observed[name] = mine["observed"]
    assert {p["patch"]: p["observed"] for p in limits["points"]} == observed
    excluded = {n for n, v in observed.items() if v < 1}
    assert "stop_500_lsp_100" in excluded and "stop_1000_lsp_300" not in excluded
    # the observed limit is where pyhf's own CLs is 5%, on cabinetry's workspace of the point
    ws = pyhf.Workspace(stop_run.hypotheses["stop_700_lsp_300"])
    model = ws.model()
    cls = pyhf.infer.hypotest(observed["stop_700_lsp_300"], ws.data(model), model,
                              test_stat="qtilde")
    assert float(cls) == pytest.approx(0.05, rel=1e-3)
    assert (stop_run.work / "results/fit/figures/contour.png").stat().st_size > 10_000


@pytest.mark.slow
def test_hepdata_limits_table_has_both_scan_variables(stop_run: Run) -> None:
    scan = _pubflow()["Scan"]
    with tarfile.open(stop_run.work / "results/hepdata/submission.tar.gz") as tar:
        tables = [yaml.safe_load(tar.extractfile(m)) for m in tar.getmembers()
                  if m.name.endswith(".yaml") and "limit" in m.name.lower()]
    assert len(tables) == 1
    variables = {v["header"]["name"]: v for v in tables[0]["independent_variables"]}
    titles = scan["Titles"]
    assert sorted(variables) == sorted(titles.values())
    assert all(v["header"]["units"] == "GeV" for v in variables.values())
    rows = zip(*(variables[titles[label]]["values"] for label in LABELS), strict=True)
    assert sorted(tuple(v["value"] for v in row) for row in rows) == sorted(
        tuple(p[label] for label in LABELS) for p in scan["Points"])


@pytest.mark.slow
def test_published_likelihood_says_the_patches_replace_the_signal(stop_run: Run) -> None:
    """Here the patches replace the benchmark ``Signal`` (the POI stays Signal_norm): the
    likelihood's README must not tell a reader that they add a signal to a background-only
    workspace, nor name the POI by a placeholder."""
    with (tarfile.open(stop_run.work / "results/hepdata/submission.tar.gz") as tar,
          tarfile.open(fileobj=tar.extractfile("Likelihoods.tar.gz")) as inner):
        readme = inner.extractfile("README.md").read().decode()
        base = json.load(inner.extractfile("BkgOnly.json"))
    assert base["measurements"][0]["config"]["poi"] == "Signal_norm"
    assert "Signal" in {s["name"] for s in base["channels"][0]["samples"]}
    assert "`the signal strength`" not in readme
    assert "adds\nthe signal sample" not in readme and "adds the signal sample" not in readme
