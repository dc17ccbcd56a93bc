"""steps.fit: the prediction tables of the results, against cabinetry's own yield tables."""

from __future__ import annotations

import re
from typing import Any

import pyhf
import pytest

from steps.fit import _prediction_table

#: Events per bin of the order of 1e8: cabinetry's tables print two decimals, which for
#: uncertainties of ~1e4 events (the post-fit total: Poisson) is better than 1e-6 relative.
SCALE = 1e8


def small_workspace() -> dict[str, Any]:
    """Two channels with a shared normalisation, a normalisation and a shape systematic."""
    def channel(name: str, signal: list[float], background: list[float]) -> dict[str, Any]:
        sig = [SCALE * v for v in signal]
        bkg = [SCALE * v for v in background]
        return {"name": name, "samples": [
            {"name": "Signal", "data": sig, "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "shape", "type": "histosys", "data": {
                    "hi_data": [v * (1.02 + 0.01 * i) for i, v in enumerate(sig)],
                    "lo_data": [v * (0.98 - 0.01 * i) for i, v in enumerate(sig)]}},
            ]},
            {"name": "Background", "data": bkg, "modifiers": [
                {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
            ]},
        ]}

    channels = [channel("SR", [2.0, 5.0, 1.5], [1.0, 0.8, 0.6]),
                channel("CR", [0.2, 0.3], [3.0, 2.5])]
    observed = {"SR": [3.1, 6.05, 2.15], "CR": [3.07, 2.56]}
    return {
        "channels": channels,
        "observations": [{"name": c["name"], "data": [round(SCALE * v) for v in observed[
            c["name"]]]} for c in channels],
        "measurements": [{"name": "small", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


def _parse(cell: str) -> tuple[float, float]:
    """``"123.45 ± 6.78"`` of a cabinetry yield table -> (123.45, 6.78)."""
    match = re.fullmatch(r"(\S+) \u00B1 (\S+)", cell)
    assert match, cell
    return float(match[1]), float(match[2])


@pytest.fixture(scope="module")
def predictions() -> dict[str, Any]:
    import cabinetry

    model, data = cabinetry.model_utils.model_and_data(pyhf.Workspace(small_workspace()))
    fit = cabinetry.fit.fit(model, data)
    return {"data": data,
            "prefit": cabinetry.model_utils.prediction(model),
            "postfit": cabinetry.model_utils.prediction(model, fit_results=fit)}


@pytest.mark.parametrize("stage", ["prefit", "postfit"])
def test_summed_yields_are_cabinetry_yield_tables(predictions: dict[str, Any],
                                                  stage: str) -> None:
    """The summed yields and uncertainties, per sample and total, are those cabinetry prints
    per channel (``tabulate.yields``, which reads the prediction's layout on its own)."""
    import cabinetry

    prediction = predictions[stage]
    tables = _prediction_table(prediction)
    printed = cabinetry.tabulate.yields(prediction, predictions["data"], per_bin=False,
                                        per_channel=True, save_tables=False)
    rows = {row["sample"]: row for row in printed["yields_per_channel"]}
    assert list(rows) == ["Background", "Signal", "total", "data"]  # pyhf sorts the samples
    assert list(tables) == ["CR", "SR"]  # and the channels
    for channel, table in tables.items():
        assert list(table["summed"]) == ["Background", "Signal", "total"]
        for name, summed in table["summed"].items():
            value, uncertainty = _parse(rows[name][channel])
            # to 1e-6, or to the two decimals printed (for a small sample's uncertainty)
            assert summed["yield"] == pytest.approx(value, rel=1e-6), (channel, name)
            assert summed["uncertainty"] == pytest.approx(uncertainty, rel=1e-6, abs=0.005), (
                channel, name)
            per_bin = table["total" if name == "total" else name]
            assert summed["yield"] == pytest.approx(sum(per_bin), rel=1e-12)
        # the bins' uncertainties are correlated: the sum is not their quadrature sum
        quadrature = sum(u * u for u in table["total_uncertainty"]) ** 0.5
        assert table["summed"]["total"]["uncertainty"] != pytest.approx(quadrature, rel=1e-3)


def test_postfit_total_uncertainty(predictions: dict[str, Any]) -> None:
    """The number the HEPData yields table shows for the post-fit total, explicitly."""
    import cabinetry

    post = predictions["postfit"]
    printed = cabinetry.tabulate.yields(post, predictions["data"], per_bin=False,
                                        per_channel=True, save_tables=False)
    total = next(r for r in printed["yields_per_channel"] if r["sample"] == "total")
    for channel, table in _prediction_table(post).items():
        expected = _parse(total[channel])[1]
        assert expected > 5e3  # two printed decimals resolve 1e-6 of it
        assert table["summed"]["total"]["uncertainty"] == pytest.approx(expected, rel=1e-6)


def test_a_significance_beyond_float64_p_values_is_sqrt_q0() -> None:
    """1000 events seen over a background of 100: Z = sqrt(2 (n ln(n/b) - (n - b))) = 53.0
    (Cowan et al., EPJC 71 (2011) 1554, eq. 97), where cabinetry's Φ^-1(1 - p) is inf
    (p underflows); the results keep a number JSON can hold. Expected: the Asimov dataset of
    POI = 1 is also 1000 events, so the same. (A 1e-4 normalisation uncertainty gives the fit
    something to float; it moves Z by far less than the tolerance.)"""
    import math

    import cabinetry

    from steps.fit import _significance

    spec = {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": [900.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "background", "data": [100.0], "modifiers": [
                {"name": "bnorm", "type": "normsys", "data": {"hi": 1.0001, "lo": 0.9999}}]}]}],
        "observations": [{"name": "SR", "data": [1000.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    model, data = cabinetry.model_utils.model_and_data(pyhf.Workspace(spec))
    result = cabinetry.fit.significance(model, data)
    assert math.isinf(result.observed_significance)  # the premise
    n, b = 1000.0, 100.0
    z = math.sqrt(2 * (n * math.log(n / b) - (n - b)))
    got = _significance(model, data, result)
    assert got["observed"] == pytest.approx(z, rel=1e-4)
    assert got["expected"] == pytest.approx(z, rel=1e-4)
    assert got["observed_p_value"] == 0.0
