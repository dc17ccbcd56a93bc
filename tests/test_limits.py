"""Tests for steps.limits: fast asymptotic CLs limits checked against pyhf's own inference.

pyhf's references run with a converged optimiser (Minuit, tight tolerance): pyhf's default,
scipy's SLSQP, is what steps.limits avoids, and comparing with it would compare minimisers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyhf
import pytest

from steps import limits
from steps.limits import CachedAsymptoticCalculator, FitFailure, LimitResult, upper_limit


@pytest.fixture(autouse=True, scope="module")
def converged_pyhf():
    """pyhf's own inference with Minuit at a tolerance well below what moves a limit."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5))
    yield
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())

ALPHA = 0.05


def _simple_model() -> pyhf.pdf.Model:
    return pyhf.simplemodels.uncorrelated_background(
        signal=[5.0, 10.0, 3.0], bkg=[50.0, 40.0, 30.0], bkg_uncertainty=[5.0, 4.0, 3.0]
    )


def _shape_spec() -> dict:
    """One channel, five bins; background with histosys, normsys and staterror."""
    return {
        "channels": [
            {
                "name": "signal_region",
                "samples": [
                    {
                        "name": "signal",
                        "data": [2.0, 5.0, 9.0, 6.0, 2.5],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "background",
                        "data": [60.0, 50.0, 40.0, 30.0, 20.0],
                        "modifiers": [
                            {
                                "name": "bkg_shape",
                                "type": "histosys",
                                "data": {
                                    "hi_data": [63.0, 53.0, 41.0, 30.0, 19.0],
                                    "lo_data": [57.0, 47.5, 39.0, 30.0, 21.0],
                                },
                            },
                            {
                                "name": "bkg_norm",
                                "type": "normsys",
                                "data": {"hi": 1.05, "lo": 0.95},
                            },
                            {
                                "name": "staterror_signal_region",
                                "type": "staterror",
                                "data": [3.0, 2.5, 2.0, 1.8, 1.5],
                            },
                        ],
                    },
                ],
            }
        ]
    }


def _shape_model(parameters: list[dict] | None = None) -> pyhf.pdf.Model:
    spec = _shape_spec()
    if parameters is not None:
        spec["parameters"] = parameters
    return pyhf.Model(spec, poi_name="mu")


# name -> (model factory, observed main-bin counts)
CASES = {
    "simple_excess": (_simple_model, [55.0, 52.0, 33.0]),
    "shape_excess": (_shape_model, [63.0, 55.0, 50.0, 36.0, 21.0]),
    "shape_deficit": (_shape_model, [55.0, 45.0, 36.0, 27.0, 18.0]),
}
EXCESS_CASES = ["simple_excess", "shape_excess"]


@pytest.fixture(scope="module")
def computed() -> dict[str, tuple[pyhf.pdf.Model, list[float], LimitResult]]:
    results = {}
    for name, (make_model, observations) in CASES.items():
        model = make_model()
        data = observations + model.config.auxdata
        results[name] = (model, data, upper_limit(data, model, alpha=ALPHA))
    return results


def _all_limits(result: LimitResult) -> list[float]:
    return [result.observed, *result.expected]


@pytest.mark.parametrize("case", list(CASES))
def test_limits_are_where_pyhf_cls_crosses_alpha(computed, case):
    model, data, result = computed[case]
    assert len(result.expected) == 5
    cls_obs, _ = pyhf.infer.hypotest(
        result.observed, data, model, test_stat="qtilde", return_expected_set=True
    )
    assert float(cls_obs) == pytest.approx(ALPHA, abs=1e-4)
    for band, limit in enumerate(result.expected):
        _, cls_exp = pyhf.infer.hypotest(
            limit, data, model, test_stat="qtilde", return_expected_set=True
        )
        assert float(cls_exp[band]) == pytest.approx(ALPHA, abs=1e-4), band


def test_agrees_with_pyhf_root_finding_upper_limit(computed):
    model, data, result = computed["simple_excess"]
    obs_ref, exp_ref = pyhf.infer.intervals.upper_limits.upper_limit(
        data, model, scan=None, level=ALPHA, rtol=1e-6
    )
    reference = [float(obs_ref), *(float(value) for value in exp_ref)]
    np.testing.assert_allclose(_all_limits(result), reference, rtol=1e-4, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_expected_limits_strictly_ordered_and_finite(computed, case):
    _, _, result = computed[case]
    assert all(math.isfinite(value) and value > 0 for value in _all_limits(result))
    assert all(low < high for low, high in zip(result.expected, result.expected[1:], strict=False))


@pytest.mark.parametrize("case", EXCESS_CASES)
def test_significance_matches_pyhf_q0(computed, case):
    model, data, result = computed[case]
    p0_ref = float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0"))
    assert result.p0 == pytest.approx(p0_ref, abs=1e-6)
    assert result.muhat > 0
    assert result.significance > 0.5  # these data do have an excess
    pars, uncertainties = pyhf.infer.mle.fit(data, model, return_uncertainties=True).T
    poi = model.config.poi_index
    # an EDM of at most 1e-5 (Minuit's goal here) leaves a parameter within
    # sqrt(2 EDM) ~ 0.0045 of its uncertainty from the minimum
    assert result.muhat == pytest.approx(pars[poi], abs=0.005 * uncertainties[poi])


def test_no_excess_gives_zero_significance_and_finite_limits(computed):
    model, data, result = computed["shape_deficit"]
    muhat_ref = float(pyhf.infer.mle.fit(data, model)[model.config.poi_index])
    assert muhat_ref == pytest.approx(0.0, abs=1e-9)  # best fit at the lower bound
    assert result.significance == 0.0
    assert result.p0 == 0.5
    assert all(math.isfinite(value) for value in _all_limits(result))
    assert math.isfinite(result.muhat)
    # a deficit gives an observed limit below the expected median
    assert result.observed < result.expected[2]


@pytest.mark.parametrize("case", list(CASES))
def test_few_fits(computed, case):
    _, _, result = computed[case]
    # pyhf's upper_limit: 5 fits per hypotest call, dozens of calls for 6 limits
    assert 4 < result.n_fits < 80


@pytest.mark.parametrize("poi_value", [0.4, 1.3, 2.7])
def test_calculator_reproduces_pyhf_hypotest(poi_value):
    model = _shape_model()
    data = CASES["shape_excess"][1] + model.config.auxdata
    # pyhf's own optimiser and fits: the calculator is pyhf's hypotest, bit for bit
    calc = CachedAsymptoticCalculator(data, model, warm_start=False, minimizer="pyhf")
    cls_obs_ref, cls_exp_ref = pyhf.infer.hypotest(
        poi_value, data, model, test_stat="qtilde", return_expected_set=True
    )
    assert calc.cls_observed(poi_value) == pytest.approx(float(cls_obs_ref), rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(
        calc.cls_expected(poi_value), [float(v) for v in cls_exp_ref], rtol=1e-8, atol=1e-12
    )
    # POI-independent fits (3) plus two conditional fits, each done once
    assert calc.n_fits == 5
    calc.cls_observed(poi_value)
    calc.cls_expected(poi_value)
    assert calc.n_fits == 5
    calc.cls_expected(poi_value * 1.1)  # a new POI value: only the Asimov conditional fit
    assert calc.n_fits == 6


def test_limit_beyond_poi_upper_bound_raises():
    model = _shape_model([{"name": "mu", "bounds": [[0.0, 0.5]], "inits": [0.3]}])
    data = CASES["shape_excess"][1] + model.config.auxdata
    with pytest.raises(ValueError, match=r"POI upper bound 0\.5"):
        upper_limit(data, model)


def test_poi_not_bounded_at_zero_raises():
    model = _shape_model([{"name": "mu", "bounds": [[-5.0, 10.0]]}])
    data = CASES["shape_excess"][1] + model.config.auxdata
    with pytest.raises(ValueError, match="lower bound"):
        upper_limit(data, model)


@pytest.mark.parametrize(("alpha", "rtol"), [(0.0, 1e-6), (1.0, 1e-6), (0.05, 0.0)])
def test_invalid_arguments_raise(alpha, rtol):
    model = _simple_model()
    data = CASES["simple_excess"][1] + model.config.auxdata
    with pytest.raises(ValueError, match=r"alpha|rtol"):
        upper_limit(data, model, alpha=alpha, rtol=rtol)


def test_result_is_frozen(computed):
    _, _, result = computed["simple_excess"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.observed = 1.0  # type: ignore[misc]


def test_every_fit_is_a_valid_minuit_minimum_and_unconditional_fits_agree_from_two_starts(
        computed):
    model, data, result = computed["shape_excess"]
    assert result.retries == () and result.crossings == {}
    calc = CachedAsymptoticCalculator(data, model)
    free_pars, free_nll = calc.free_fit_data
    # a fit started elsewhere (POI at its bound) reaches the same minimum
    assert calc.n_fits == 2
    init = list(model.config.suggested_init())
    init[model.config.poi_index] = calc.poi_upper_bound
    pars, nll, valid, edm = limits._minuit(data, model, init, calc.par_bounds,
                                           calc.fixed_params, 1)
    assert valid and edm < 2e-3 * limits.MINUIT_TOLERANCE
    assert nll == pytest.approx(float(free_nll), abs=limits.SECOND_START_AGREEMENT)
    assert pars[model.config.poi_index] == pytest.approx(float(free_pars[calc.poi_index]),
                                                         rel=1e-3)


def test_a_fit_that_fails_is_retried_then_named(monkeypatch):
    """The fallback (strategy 2 from the suggested values) is recorded; a fit failing both
    names itself."""
    model = _shape_model()
    data = CASES["shape_excess"][1] + model.config.auxdata
    real = limits._minuit
    calls = []

    def first_fails(*args, **kwargs):
        calls.append(args[5])  # the strategy
        pars, nll, valid, edm = real(*args, **kwargs)
        return pars, nll, valid and len(calls) > 1, edm

    monkeypatch.setattr(limits, "_minuit", first_fails)
    calc = CachedAsymptoticCalculator(data, model)
    calc.fixed_poi_fit_data(1.0)
    assert calls == [1, 2]
    assert calc.retries == ["fit to data at mu = 1"]

    monkeypatch.setattr(limits, "_minuit",
                        lambda *a, **k: (*real(*a, **k)[:2], False, 0.5))
    with pytest.raises(FitFailure, match=r"the unconditional fit to data did not converge "
                                         r"\(EDM 0\.5, .*strategy 2"):
        upper_limit(data, model)


def test_two_minima_from_two_starts_stop_the_limit(monkeypatch):
    model = _shape_model()
    data = CASES["shape_excess"][1] + model.config.auxdata
    real = limits._minuit
    count = iter(range(100))

    def second_lower(*args, **kwargs):
        pars, nll, valid, edm = real(*args, **kwargs)
        return pars, nll - (0.5 if next(count) == 1 else 0.0), valid, edm

    monkeypatch.setattr(limits, "_minuit", second_lower)
    with pytest.raises(FitFailure, match="reached two minima from two starts"):
        upper_limit(data, model)


def test_a_curve_crossing_alpha_three_times_reports_every_crossing():
    """ln(CLs/alpha) that is not monotonic: every crossing the finder saw is returned."""
    roots = (1.0, 2.0, 4.0)

    def curve(mu: float) -> float:
        return -(mu - roots[0]) * (mu - roots[1]) * (mu - roots[2])

    # the search starts beyond the last root and walks down through the others
    root, crossings = limits._find_root(curve, [0.5, 1.5, 3.0, 5.0], 6.0,
                                        lambda mu: mu, 100.0, 1e-9, "observed")
    assert root == pytest.approx(1.0, rel=1e-8)
    assert crossings == pytest.approx(list(roots), rel=1e-8)
    monotonic = limits._find_root(lambda mu: 1.0 - mu, [0.5], 2.0, lambda mu: mu, 100.0,
                                  1e-9, "observed")
    assert monotonic[0] == pytest.approx(1.0) and monotonic[1] == []
