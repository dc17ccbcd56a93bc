"""Signal scans in any number of variables: points, samples, patches, the gathered limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steps import fit, layout
from steps.errors import PubflowError

BASE: dict[str, Any] = {
    "General": {"Measurement": "m", "POI": "Signal_norm", "InputPath": "{SamplePath}",
                "HistogramFolder": "h/"},
    "Regions": [{"Name": "SR", "Variable": "met", "Binning": [0, 1, 2]}],
    "Samples": [
        {"Name": "Data", "Tree": "data", "SamplePath": "data.root", "Data": True},
        {"Name": "Signal", "Tree": "signal", "SamplePath": "prediction.root"},
        {"Name": "Background", "Tree": "background", "SamplePath": "prediction.root"},
    ],
    "NormFactors": [{"Name": "Signal_norm", "Samples": "Signal", "Bounds": [0, 10]}],
    "Systematics": [
        {"Name": "Luminosity", "Type": "Normalization", "Up": {"Normalization": 0.05},
         "Down": {"Normalization": -0.05}},
        {"Name": "SignalModel", "Type": "NormPlusShape", "Samples": ["Signal", "Background"],
         "Up": {"Weight": "w_up"}, "Down": {"Weight": "w_down"},
         "Smoothing": {"Algorithm": "353QH, twice", "Samples": "Signal"}},
    ],
    "Scan": {
        "Name": "Top squarks",
        "Variables": ["m_stop", "m_lsp"],
        "Points": [{"m_stop": 500, "m_lsp": 100}, {"m_stop": 400, "m_lsp": 100},
                   {"m_stop": 400, "m_lsp": 200}],
        "Replaces": "Signal",
        "Sample": {"Name": "Signal_{m_stop}_{m_lsp}", "Tree": "signal_{m_stop}_{m_lsp}",
                   "SamplePath": "grid.root", "Weight": "weight"},
    },
}


def test_grid_is_the_product_in_label_order() -> None:
    config = {"Scan": {"Variables": ["a", "b"], "Grid": {"b": [10, 20, 30], "a": [1, 2]}}}
    assert layout.scan_labels(config) == ["a", "b"]
    assert layout.scan_points(config) == [
        {"a": 1, "b": 10}, {"a": 1, "b": 20}, {"a": 1, "b": 30},
        {"a": 2, "b": 10}, {"a": 2, "b": 20}, {"a": 2, "b": 30}]


def test_patch_names_default_to_every_variable_and_value() -> None:
    config = {**BASE, "Scan": dict(BASE["Scan"])}
    assert layout.scan_patches(config)[0] == "m_stop_500_m_lsp_100"
    config["Scan"]["PatchName"] = "stop_{m_stop}_lsp_{m_lsp}"
    assert layout.scan_patches(config) == ["stop_500_lsp_100", "stop_400_lsp_100",
                                           "stop_400_lsp_200"]


def test_fill_leaves_other_braces_alone() -> None:
    assert layout.fill({"Filter": "x > {m} && {not_a_variable}", "n": 3}, {"m": 7}) == {
        "Filter": "x > 7 && {not_a_variable}", "n": 3}


def test_replaced_sample_hands_over_its_normfactor_systematics_and_smoothing() -> None:
    hypothesis = layout.scan_config(BASE, {"m_stop": 400, "m_lsp": 200})
    names = [s["Name"] for s in hypothesis["Samples"]]
    assert names == ["Data", "Signal_400_200", "Background"]
    sample = hypothesis["Samples"][1]
    assert (sample["Tree"], sample["SamplePath"]) == ("signal_400_200", "grid.root")
    assert hypothesis["NormFactors"] == [
        {"Name": "Signal_norm", "Samples": ["Signal_400_200"], "Bounds": [0, 10]}]
    model = hypothesis["Systematics"][1]
    assert model["Samples"] == ["Background", "Signal_400_200"]
    assert model["Smoothing"]["Samples"] == ["Signal_400_200"]
    assert "Samples" not in hypothesis["Systematics"][0]  # every sample, as in cabinetry
    assert hypothesis["General"]["POI"] == "Signal_norm"
    assert BASE["Samples"][1]["Name"] == "Signal"  # the config itself is left alone


def test_histograms_are_filled_for_the_replaced_sample_and_every_point() -> None:
    full = layout.histogram_config(BASE)
    assert [s["Name"] for s in full["Samples"]] == [
        "Data", "Signal", "Signal_500_100", "Signal_400_100", "Signal_400_200", "Background"]
    assert full["Systematics"][1]["Smoothing"]["Samples"] == [
        "Signal", "Signal_500_100", "Signal_400_100", "Signal_400_200"]
    assert layout.input_files(BASE) == ["data.root", "prediction.root", "grid.root"]


def test_an_added_signal_gets_its_poi_and_only_the_systematics_named() -> None:
    config = {**BASE, "Scan": {"Grid": {"mass": [70, 90]}, "POI": "mu_res",
                               "Bounds": [0, 20], "Systematics": ["SignalModel"],
                               "Sample": {"Name": "Res_{mass}", "Tree": "res_{mass}",
                                          "SamplePath": "res.root"}}}
    hypothesis = layout.scan_config(config, {"mass": 90})
    assert [s["Name"] for s in hypothesis["Samples"]][-1] == "Res_90"
    assert "Signal" in [s["Name"] for s in hypothesis["Samples"]]
    assert hypothesis["NormFactors"][-1] == {"Name": "mu_res", "Samples": ["Res_90"],
                                             "Nominal": 1.0, "Bounds": [0, 20]}
    assert hypothesis["Systematics"][1]["Samples"] == ["Signal", "Background", "Res_90"]
    assert "Samples" not in hypothesis["Systematics"][0]  # still every sample
    assert hypothesis["General"]["POI"] == "mu_res"
    assert layout.limit_figure(config) == "results/fit/figures/brazil.png"
    assert layout.limit_figure(BASE) == "results/fit/figures/contour.png"
    three = {"Scan": {"Grid": {"a": [1], "b": [2], "c": [3]}}}
    assert layout.limit_figure(three) is None


def _point(patch: str, values: dict[str, int], observed: float) -> dict[str, Any]:
    return {"patch": patch, "values": values, "poi": "Signal_norm", "observed": observed,
            "expected": [observed * f for f in (0.5, 0.7, 1.0, 1.4, 1.9)],
            "significance": 0.0, "p0": 0.5, "muhat": 0.0, "n_fits": 10}


def _limit_files(tmp_path: Path, config: dict[str, Any], observed: dict[str, float]
                 ) -> list[str]:
    paths = []
    for point in layout.scan_points(config):
        name = layout.patch_name(config, point)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_point(name, point, observed.get(name, 1.0))))
        paths.append(str(path))
    return paths


def test_limits_gathers_in_the_scans_order_and_draws_the_contours(tmp_path: Path) -> None:
    config = {**BASE, "Scan": {**BASE["Scan"], "Units": {"m_stop": "GeV", "m_lsp": "GeV"}}}
    observed = {"m_stop_400_m_lsp_100": 0.3, "m_stop_400_m_lsp_200": 0.6,
                "m_stop_500_m_lsp_100": 2.0}
    inputs = _limit_files(tmp_path, config, observed)
    figure = tmp_path / "contour.png"
    gathered = fit.limits(config, inputs[::-1], str(tmp_path / "limits.json"), str(figure))
    assert gathered["labels"] == ["m_stop", "m_lsp"]
    assert [p["patch"] for p in gathered["points"]] == [
        "m_stop_400_m_lsp_100", "m_stop_400_m_lsp_200", "m_stop_500_m_lsp_100"]
    assert gathered["units"] == {"m_stop": "GeV", "m_lsp": "GeV"}
    assert "reference_cross_section" not in gathered
    assert json.loads((tmp_path / "limits.json").read_text()) == gathered
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.with_suffix(".pdf").is_file()


def test_limits_refuse_files_that_are_not_the_scans(tmp_path: Path) -> None:
    inputs = _limit_files(tmp_path, BASE, {})
    with pytest.raises(PubflowError, match="cover 2 patches, the config scans 3 "
                                           r"\(differing: m_stop_400_m_lsp_200\)"):
        fit.limits(BASE, inputs[:2], str(tmp_path / "limits.json"), None)
    assert not (tmp_path / "limits.json").exists()
