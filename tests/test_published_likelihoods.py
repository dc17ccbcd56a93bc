"""Published ATLAS likelihoods: where pyhf's default fit stops early, and steps.limits on them.

``tests/data/likelihoods/`` holds two of ATLAS's published likelihoods, each with a SOURCE.md
saying where it comes from:

* ``atlas_susy_2018_06_3l_erjr``: the three-lepton eRJR search, 64 signal patches. Its patch
  ``ERJR_500p0_0p0`` (69 parameters, 4 bins, POI ``mu_SIG`` in [0, 10]) is the reviewer's
  likelihood: scipy's SLSQP, pyhf's default optimiser, stops at its starting point (``-2 ln L``
  283.02 where the minimum is 271.55). The cause is one parameter. A ``shapesys`` of 0.001 events
  on 435 events (a placeholder) becomes a Poisson constraint with auxiliary datum 1.9e11, and
  pyhf's ``n ln λ - λ - ln Γ(n+1)`` then sums terms of ~5e12: ``-2 ln L`` is only known to its
  float64 ulp there, ~1e-3, whenever that parameter moves. Finite-difference gradients along it
  are noise; SLSQP stops after one iteration, and MIGRAD's EDM estimates (0.18, 4.5, ...) are
  noise too, far above any EDM goal: pyhf's own Minuit at tolerance 1e-5 refuses the fit
  (FailedMinimization). steps.limits finds such parameters (``frozen_components``: a Poisson
  constraint whose ``tau ln tau`` rounding noise exceeds a tenth of its EDM goal), fixes them at
  their nominal values and reports a bound on what that moves (here below 1e-9 in ``-2 ln L``:
  the constraint is 2.3e-6 wide); a parameter whose bound is not negligible stops the limit.
  With the placeholder fixed, SLSQP converges and pyhf's converged limits exist; they are the
  reference for this likelihood.
* ``atlas_susy_2019_08_1lbb``: the 1Lbb search, 4 of its 125 patches (126 parameters, 14 bins).
  SLSQP converges there; pyhf's converged limits take hours per patch (benchmarks/likelihoods.py
  measures them), so the tests here only check the files.

And a synthetic 4-parameter model on which SLSQP stops early for another reason (a luminosity
constrained to 1e-6: curvatures 1e12 apart, no noise): there steps.limits must, and does, give
pyhf's converged limits while ``minimizer="pyhf"`` (SLSQP) does not.

Expected values are pyhf's own converged inference, never pubflow's: fits with
``pyhf.optimize.minuit_optimizer(tolerance=1e-5)``, limits from
``pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None, rtol=1e-6)``. Those
that take minutes to hours are stored in each folder's ``reference.json`` with the recipe
(``benchmarks/likelihoods.py --write-references`` recomputes them).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import pytest

from steps import limits
from steps.limits import FitFailure, upper_limit

from .conftest import REPO, run

DATA = Path(__file__).resolve().parent / "data" / "likelihoods"
ERJR = "atlas_susy_2018_06_3l_erjr"
LBB = "atlas_susy_2019_08_1lbb"
REVIEWED = "ERJR_500p0_0p0"  # the reviewer's patch: the archive README's example
# the eRJR background's MC-statistics placeholder: 0.001 events on 435.07
PLACEHOLDER = "shape_mcstat_diboson3LISR_CRISR_obs_cuts"
LBB_PATCH = "C1N2_Wh_hbb_500_100"
REL = 1e-4  # limits agree within this (relative)
# Minuit's EDM goal is 0.002 x tolerance x errordef (1 here: the objective is -2 ln L)
PUBFLOW_EDM_GOAL = 0.002 * limits.MINUIT_TOLERANCE


# --- helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def optimizer(opt: Any) -> Iterator[None]:
    """pyhf's numpy backend with ``opt``, the previous backend and optimiser restored after."""
    tensorlib, previous = pyhf.get_backend()
    pyhf.set_backend("numpy", opt)
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, previous)


def converged() -> contextlib.AbstractContextManager[None]:
    """pyhf with Minuit at a tolerance well below what moves a limit: the reference."""
    return optimizer(pyhf.optimize.minuit_optimizer(tolerance=1e-5))


def slsqp() -> contextlib.AbstractContextManager[None]:
    """pyhf's default optimiser, scipy's SLSQP, as pyhf's users get it."""
    return optimizer(pyhf.optimize.scipy_optimizer())


@functools.cache
def _background(name: str) -> dict[str, Any]:
    return json.loads((DATA / name / "BkgOnly.json").read_text())


def background(name: str) -> dict[str, Any]:
    """The stored background-only workspace (a copy, free to edit)."""
    return copy.deepcopy(_background(name))


@functools.cache
def patchset(name: str) -> pyhf.PatchSet:
    """The stored patchset (validated against pyhf's schema once: it can be megabytes)."""
    return pyhf.PatchSet(json.loads((DATA / name / "patchset.json").read_text()))


def patched(name: str, patch: str, fixed: Sequence[str] = ()) -> dict[str, Any]:
    """The signal workspace of ``patch``, with the parameters ``fixed`` fixed at their inits."""
    # a copy: jsonpatch's "add" inserts the patch's own objects into the result
    spec = copy.deepcopy(patchset(name)[patch].apply(background(name)))
    parameters = spec["measurements"][0]["config"]["parameters"]
    for par in fixed:
        parameters.append({"name": par, "fixed": True})
    return spec


@functools.cache
def _model(name: str, patch: str, fixed: tuple[str, ...] = ()) -> tuple[Any, Any]:
    ws = pyhf.Workspace(patched(name, patch, fixed))
    model = ws.model()
    return model, ws.data(model)


def model_and_data(name: str, patch: str, fixed: Sequence[str] = ()) -> tuple[Any, Any]:
    """The pyhf model and full data (main bins and auxiliary data) of a patched workspace."""
    return _model(name, patch, tuple(fixed))


def twice_nll(model: Any, data: Any, pars: Sequence[float]) -> float:
    return float(pyhf.infer.mle.twice_nll(pars, data, model)[0])


def unconditional_2nll(model: Any, data: Any) -> float:
    """``-2 ln L`` at pyhf's unconditional fit with the optimiser in effect."""
    with np.errstate(all="ignore"):  # SLSQP's steps can overflow the Poisson terms
        return float(pyhf.infer.mle.fit(data, model, return_fitted_val=True)[1])


def pyhf_limits(model: Any, data: Any) -> list[float]:
    """pyhf's own converged limits: observed, then expected -2 .. +2 sigma."""
    with converged():
        observed, expected = pyhf.infer.intervals.upper_limits.upper_limit(
            data, model, scan=None, rtol=1e-6)
    return [float(observed), *(float(x) for x in expected)]


def stored_reference(name: str, patch: str) -> dict[str, Any]:
    """pyhf's converged limits for ``patch`` as benchmarks/likelihoods.py stored them, with
    ``limits`` (observed, then expected -2 .. +2 sigma) and the parameters it ``fixed``."""
    references = json.loads((DATA / name / "reference.json").read_text())
    assert references["recipe"]["optimizer"] == "pyhf.optimize.minuit_optimizer(tolerance=1e-5)"
    entry = references["patches"][patch]
    return {**entry, "limits": [entry["observed"], *entry["expected"]]}


def limits_of(result: limits.LimitResult) -> list[float]:
    return [result.observed, *result.expected]


def max_relative_difference(values: Sequence[float], reference: Sequence[float]) -> float:
    assert len(values) == len(reference) == 6
    return max(abs(a - b) / abs(b) for a, b in zip(values, reference, strict=True))


# --- the stored files are the published likelihoods ----------------------------------------


@pytest.mark.parametrize(("name", "patches", "record"), [(ERJR, 64, "ins1771533"),
                                                         (LBB, 4, "ins1755298")])
def test_patchset_is_made_for_its_background_workspace(name: str, patches: int,
                                                       record: str) -> None:
    """The digest in the patchset's metadata is that of the stored BkgOnly.json."""
    ps = patchset(name)
    ps.verify(background(name))  # raises PatchSetVerificationError otherwise
    assert ps.references == {"hepdata": record}
    assert len(ps.patches) == patches

    def scaled_by_mu_sig(spec: dict[str, Any]) -> int:
        return sum(any(m["type"] == "normfactor" and m["name"] == "mu_SIG"
                       for m in sample["modifiers"])
                   for channel in spec["channels"] for sample in channel["samples"])

    assert scaled_by_mu_sig(background(name)) == 0
    for patch in ps.patches:  # each adds a signal, scaled by the POI
        spec = patch.apply(background(name))
        assert spec["measurements"][0]["config"]["poi"] == "mu_SIG"
        assert scaled_by_mu_sig(spec) > 0, patch.name


def test_two_copies_of_the_reviewed_likelihood_agree() -> None:
    """The patchset's patch gives, exactly, the full workspace of an independent copy."""
    other = json.loads((DATA / ERJR / f"{REVIEWED}.json").read_text())
    assert patched(ERJR, REVIEWED) == other


def test_the_reviewed_likelihood_is_the_reviewer_s() -> None:
    """69 parameters, 4 bins, POI mu_SIG in [0, 10], lumi fixed (the measurement also fixes a
    mu_BG that no sample uses)."""
    model, _ = model_and_data(ERJR, REVIEWED)
    config = model.config
    assert (config.npars, config.nmaindata, config.poi_name) == (69, 4, "mu_SIG")
    assert tuple(config.suggested_bounds()[config.poi_index]) == (0, 10)
    fixed = {n for n, f in zip(config.par_names, config.suggested_fixed(), strict=True) if f}
    assert fixed == {"lumi"}


# --- SLSQP stops at its start on the reviewed likelihood, and why -------------------------


def test_slsqp_stops_at_its_starting_point_on_the_reviewed_likelihood() -> None:
    """The reviewer's premise: SLSQP's 2NLL is its start's, 11.5 above the minimum."""
    model, data = model_and_data(ERJR, REVIEWED)
    start = twice_nll(model, data, model.config.suggested_init())
    with slsqp():
        stopped = unconditional_2nll(model, data)
    with converged():
        minimum = unconditional_2nll(model, data)
    assert stopped == pytest.approx(start, abs=1e-4)
    assert stopped - minimum > 10
    assert (stopped, minimum) == (pytest.approx(283.02, abs=0.01),
                                  pytest.approx(271.55, abs=0.01))


def test_the_placeholder_makes_minus_two_ln_l_noisy_far_above_the_edm_goal() -> None:
    """Along the placeholder's gamma, -2 ln L is only known to ~1e-3: no EDM goal is met."""
    model, data = model_and_data(ERJR, REVIEWED)
    config = model.config
    narrow = {n: min(config.param_set(n).width()) for n in config.par_order
              if config.param_set(n).constrained and min(config.param_set(n).width()) < 1e-3}
    assert list(narrow) == [PLACEHOLDER]
    assert narrow[PLACEHOLDER] == pytest.approx(0.001 / 435.065, rel=1e-4)
    assert max(config.auxdata) == pytest.approx((435.065 / 0.001) ** 2, rel=1e-4)

    def noise(par: str) -> float:
        """Scatter of -2 ln L about a parabola over 201 points 1e-10 apart along ``par``."""
        index = config.par_names.index(f"{par}[0]" if par == PLACEHOLDER else par)
        init = np.asarray(config.suggested_init(), dtype=float)
        steps = np.arange(-100, 101)
        values = []
        for k in steps:
            pars = init.copy()
            pars[index] += 1e-10 * k
            values.append(twice_nll(model, data, pars))
        smooth = np.polyval(np.polyfit(steps, values, 2), steps)
        return float(np.std(np.asarray(values) - smooth))

    assert noise(PLACEHOLDER) > 1e-4 > 1e3 * noise("EG_Eff")
    # steps.limits asks MIGRAD for an EDM below 1e-5 (x10 before calling a minimum invalid)
    assert noise(PLACEHOLDER) > 10 * PUBFLOW_EDM_GOAL


def test_slsqp_converges_once_the_placeholder_is_fixed() -> None:
    """Fixing that one parameter (constrained to 2.3e-6 anyway) lets SLSQP reach the minimum,
    which is the free likelihood's minimum: fixing it costs nothing measurable."""
    free_model, free_data = model_and_data(ERJR, REVIEWED)
    model, data = model_and_data(ERJR, REVIEWED, fixed=[PLACEHOLDER])
    with converged():
        minimum = unconditional_2nll(model, data)
        free_minimum = unconditional_2nll(free_model, free_data)
    with slsqp():
        fitted = unconditional_2nll(model, data)
    assert fitted == pytest.approx(minimum, abs=1e-3)
    assert minimum == pytest.approx(free_minimum, abs=1e-3)


def test_fixing_the_placeholder_changes_minus_two_ln_l_by_less_than_1e_9() -> None:
    """So pyhf's limits with it fixed are the published likelihood's, to far better than 1e-4.

    Profiling gamma instead of fixing it at 1 lowers -2 ln L by at most g^2 / (2 c): g the slope
    of the main bins' -2 ln L along gamma (the constraint's own slope is 0 at gamma = 1) and
    c = 2 tau the constraint's curvature. The main bins' term is smooth (no tau in it), so its
    slope is accurate; measured at the best fit and at the observed limit.
    """
    model, data = model_and_data(ERJR, REVIEWED, fixed=[PLACEHOLDER])
    index = model.config.par_names.index(f"{PLACEHOLDER}[0]")
    tau = max(model.config.auxdata)
    main = np.asarray(data[: model.config.nmaindata])

    def main_2nll(pars: Any) -> float:
        return -2 * float(model.main_model.logpdf(main, pars))

    with converged():
        fits = [pyhf.infer.mle.fit(data, model),
                pyhf.infer.mle.fixed_poi_fit(stored_reference(ERJR, REVIEWED)["observed"],
                                             data, model)]
    for pars in fits:
        up, down = np.array(pars, dtype=float), np.array(pars, dtype=float)
        up[index] += 1e-6
        down[index] -= 1e-6
        slope = (main_2nll(up) - main_2nll(down)) / 2e-6
        assert 1 < abs(slope) < 100
        assert slope**2 / (2 * 2 * tau) < 1e-9


def test_steps_limits_with_slsqp_gets_the_reviewed_likelihood_wrong() -> None:
    """``minimizer="pyhf"`` (SLSQP) gives the reviewer's 2.19 where pyhf converged gives 3.38."""
    model, data = model_and_data(ERJR, REVIEWED)
    reference = stored_reference(ERJR, REVIEWED)
    with slsqp(), np.errstate(all="ignore"):
        result = upper_limit(data, model, minimizer="pyhf")
    assert result.observed == pytest.approx(2.19, abs=0.01)
    assert reference["observed"] == pytest.approx(3.38, abs=0.01)
    assert max_relative_difference(limits_of(result), reference["limits"]) > 0.1


# --- a synthetic model where SLSQP stops early and steps.limits must not --------------------


def stiff_spec() -> dict[str, Any]:
    """One channel, 3 bins; a luminosity constrained to 1e-6 (curvature 1e12) beside O(1)
    parameters. SLSQP starts from an identity Hessian: its first steps throw the luminosity
    from bound to bound, the other parameters with it, and it reports success 4.7 above the
    minimum. The objective is smooth (Gaussian constraint): Minuit, which scales each
    parameter by its curvature, converges."""
    bkg = [1000.0, 600.0, 200.0]
    sig = [20.0, 40.0, 60.0]
    return {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": sig, "modifiers": [
                {"name": "mu_SIG", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None}]},
            {"name": "bkg", "data": bkg, "modifiers": [
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": "mu_B", "type": "normfactor", "data": None},
                {"name": "shape", "type": "histosys", "data": {
                    "hi_data": [980.0, 600.0, 204.0], "lo_data": [1020.0, 600.0, 196.0]}}]},
        ]}],
        "observations": [{"name": "SR", "data": [1026.0, 624.0, 222.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu_SIG", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [1e-6], "inits": [1.0],
             "bounds": [[1 - 5e-5, 1 + 5e-5]]}]}}],
        "version": "1.0.0",
    }


@pytest.fixture(scope="module")
def stiff() -> dict[str, Any]:
    """The stiff model, pyhf's converged limits and both of steps.limits' answers."""
    ws = pyhf.Workspace(stiff_spec())
    model = ws.model()
    data = ws.data(model)
    with slsqp(), np.errstate(all="ignore"):
        with_slsqp = upper_limit(data, model, minimizer="pyhf")
    return {"model": model, "data": data, "reference": pyhf_limits(model, data),
            "ours": upper_limit(data, model), "slsqp": with_slsqp}


def test_slsqp_stops_early_on_the_stiff_model(stiff: dict[str, Any]) -> None:
    with slsqp():
        stopped = unconditional_2nll(stiff["model"], stiff["data"])
    with converged():
        minimum = unconditional_2nll(stiff["model"], stiff["data"])
    assert stopped - minimum > 1


def test_upper_limit_is_pyhf_s_converged_one_where_slsqp_stops_early(
        stiff: dict[str, Any]) -> None:
    ours: limits.LimitResult = stiff["ours"]
    assert max_relative_difference(limits_of(ours), stiff["reference"]) < REL
    assert ours.retries == ()
    assert ours.crossings == {}


def test_upper_limit_with_slsqp_differs_where_slsqp_stops_early(stiff: dict[str, Any]) -> None:
    assert max_relative_difference(limits_of(stiff["slsqp"]), stiff["reference"]) > 0.1


# --- what steps.limits fixes, and when it refuses to -------------------------------------------


def test_frozen_components_are_the_placeholder_alone() -> None:
    """Of the 69 parameters, only the 0.001-event placeholder is too narrow for float64; the
    stiff model's 1e-6 luminosity is Gaussian-constrained (no tau ln tau terms): not frozen."""
    model, _ = model_and_data(ERJR, REVIEWED)
    frozen = limits.frozen_components(model)
    assert [name for name, _ in frozen.values()] == [f"{PLACEHOLDER}[0]"]
    assert limits.frozen_components(pyhf.Workspace(stiff_spec()).model()) == {}
    lbb_model, _ = model_and_data(LBB, LBB_PATCH)
    assert limits.frozen_components(lbb_model) == {}


def narrow_spec(sigma: float) -> dict[str, Any]:
    """A background of 1000 events with a shapesys of ``sigma`` events, 1100 observed."""
    return {
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": [50.0], "modifiers": [
                {"name": "mu_SIG", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": [1000.0], "modifiers": [
                {"name": "mcstat", "type": "shapesys", "data": [sigma]}]}]}],
        "observations": [{"name": "SR", "data": [1100.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu_SIG", "parameters": []}}],
        "version": "1.0.0",
    }


def test_a_frozen_parameter_that_matters_stops_the_limit() -> None:
    """tau = (1000 / 0.05)^2 = 4e8: too narrow to fit, yet the observed excess pulls on it with
    a slope g ~ 200, so fixing it could move -2 ln L by g^2 / (4 tau) ~ 2e-5: a FitFailure that
    names the parameter, not a limit that quietly ignores it."""
    ws = pyhf.Workspace(narrow_spec(0.05))
    model = ws.model()
    assert [name for name, _ in limits.frozen_components(model).values()] == ["mcstat[0]"]
    with pytest.raises(FitFailure, match=r"mcstat\[0\] has a constraint float64 cannot "
                       r"resolve \(auxiliary datum tau = 4e\+08\)"):
        upper_limit(ws.data(model), model)
    # a width of 1 event (tau = 1e6) is an ordinary parameter
    assert limits.frozen_components(pyhf.Workspace(narrow_spec(1.0)).model()) == {}


# --- the limit step on the reviewer's likelihood, as published (slow) ------------------------


def cli_limit(name: str, patch: str, output: Path) -> dict[str, Any]:
    """``python -m steps.fit limit`` on the stored files, from the checkout; its result."""
    folder = DATA / name
    result = run([sys.executable, "-m", "steps.fit", "limit",
                  "--workspace", str(folder / "BkgOnly.json"),
                  "--patchset", str(folder / "patchset.json"),
                  "--patch", patch, "--output", str(output)], REPO, check=False, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(output.read_text())


@pytest.mark.slow
def test_limit_step_on_the_reviewed_likelihood_is_pyhf_s_converged_one(tmp_path: Path) -> None:
    """The published workspace and patchset, as HEPData serves them, through the limit step:
    the six limits are pyhf's converged ones (with the placeholder fixed: pyhf's own Minuit
    cannot fit it either) within 1e-4, where SLSQP gave 2.19 for the observed 3.38; the
    placeholder is reported as fixed, with a bound on what that moves, far below the noise."""
    point = cli_limit(ERJR, REVIEWED, tmp_path / "limit.json")
    reference = stored_reference(ERJR, REVIEWED)
    assert reference["fixed"] == [PLACEHOLDER]
    assert max_relative_difference([point["observed"], *point["expected"]],
                                   reference["limits"]) < REL
    assert point["observed"] == pytest.approx(3.385, abs=1e-3)
    assert list(point["frozen_parameters"]) == [f"{PLACEHOLDER}[0]"]
    assert 0 < point["frozen_parameters"][f"{PLACEHOLDER}[0]"] < 1e-9
    assert point["crossings"] == {} and point["retried_fits"] == []
    assert point["poi"] == "mu_SIG" and point["minimizer"] == "minuit"
    assert point["patch"] == REVIEWED and point["values"] == {"mn2": 500.0, "mn1": 0.0}
