"""Fast asymptotic CLs upper limits and local discovery significance for a pyhf model.

The numbers are those of pyhf 0.7.6's own asymptotic hypothesis test
(``pyhf.infer.hypotest(mu, data, model, test_stat="qtilde", return_expected_set=True)``):
the same maximum-likelihood fits (``pyhf.infer.mle.fit`` / ``fixed_poi_fit`` with the model's
suggested initial values, bounds and fixed parameters), the same Asimov dataset (built from the
background-only fit to the observed data, ``asimov_mu=0``) and pyhf's own
:class:`~pyhf.infer.calculators.AsymptoticTestStatDistribution` and p-value code, inherited from
:class:`~pyhf.infer.calculators.AsymptoticCalculator`.

The fits are MIGRAD's (iminuit), the minimiser cabinetry's fit uses too, on pyhf's own
``-2 ln L``; each must be a valid minimum (Minuit's EDM below its goal, no call limit), and
each unconditional fit is repeated from a second start, which must reach the same minimum.
A fit that fails is retried with Minuit's strategy 2 from the model's suggested initial
values; failing that, :class:`FitFailure` names the fit. (``minimizer="pyhf"`` uses pyhf's
configured optimiser instead, as ``hypotest`` does: scipy's SLSQP by default, which can stop
far from the minimum of a large model without saying so.)

What is different from ``hypotest`` is the bookkeeping. ``pyhf.infer.hypotest`` repeats five
fits for every tested POI value, although three of them do not depend on it: the unconditional
fit to the observed data, the background-only fit that defines the Asimov dataset and the
unconditional fit to that Asimov dataset. :class:`CachedAsymptoticCalculator` does those once,
and caches the two conditional fits (observed and Asimov) per tested POI value. The observed
limit needs both; the five expected limits need only the Asimov one. Each limit is a root of
``ln(CLs / alpha)`` (``scipy.optimize.brentq``, which needs fewer evaluations than ``toms748``
on these smooth functions) inside a bracket built around the standard asymptotic formula ``mu ≈
sigma (Φ^-1(1 - alpha Φ(k)) + k)``, so a full set of six limits costs about 40-50 fits where
``pyhf.infer.intervals.upper_limits.upper_limit`` needs a few hundred. """

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyhf
from pyhf.infer.calculators import AsymptoticCalculator, HypoTestFitResults
from scipy.optimize import brentq
from scipy.stats import norm

__all__ = ["CachedAsymptoticCalculator", "FitFailure", "LimitResult", "upper_limit"]

log = logging.getLogger(__name__)

#: Expected-limit bands, in the order pyhf returns them (``-2 sigma`` ... ``+2 sigma``).
BAND_SIGMAS: tuple[int, ...] = (-2, -1, 0, 1, 2)
#: Their names in results (``expected_median`` ...).
BAND_LABELS: tuple[str, ...] = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")

_XTOL = 2e-12  # absolute tolerance of the root finder, as in pyhf's toms748_scan
_TINY = 1e-300  # stands in for a CLs that underflows to 0
_MUHAT_ZERO = 1e-9  # muhat below this fraction of the POI upper bound counts as 0
_MAX_EXPANSIONS = 60  # geometric bracket expansions before giving up

FitResult = tuple[Any, float]  # (fitted parameters tensor, twice the NLL at the minimum)

#: Minuit's tolerance: its EDM goal is 0.002 x this (-2 ln L units), 1e-5 here, far below
#: what moves a limit by 1e-4 (cabinetry's fit uses pyhf's default, 0.1).
MINUIT_TOLERANCE = 0.005
#: The background-only fit, whose parameters define the Asimov dataset, goes 10x further: at
#: the EDM goal of the others its parameters can stay ~4e-3 sigma from the minimum, which moves
#: the expected limits by up to 1e-4.
ASIMOV_TOLERANCE = 0.1 * MINUIT_TOLERANCE
#: Two starts of an unconditional fit agree when their -2 ln L differ by less than this.
SECOND_START_AGREEMENT = 1e-3
MAX_CALLS = 100_000
#: A Poisson-constrained parameter (``shapesys``) with auxiliary datum ``tau`` adds terms of
#: about ``tau ln tau`` to ``-2 ln L``, known only to their float64 rounding, ``2 eps tau ln
#: tau``. Where that noise exceeds a tenth of Minuit's EDM goal (tau above ~1e8, a relative
#: width below ~1e-4, in practice a placeholder for "no uncertainty"), no fit can converge along
#: it: such a parameter is fixed at its initial value (see :func:`frozen_components`).
FROZEN_NOISE = 0.1 * 0.002 * MINUIT_TOLERANCE
#: Fixing one moves ``-2 ln L`` by at most ``g^2 / (4 tau)`` (``g`` the slope of the main bins'
#: ``-2 ln L`` along it); above this bound, the fit stops instead.
FROZEN_MAX_EFFECT = 1e-6


class FitFailure(RuntimeError):
    """A fit that did not converge, after the fallback: the message names the fit."""


def frozen_components(pdf: Any) -> dict[int, tuple[str, float]]:
    """Free Poisson-constrained parameter components too narrow for float64 fits.

    Returns:
        By index in the parameter vector: the component's name and its auxiliary datum ``tau``,
        for every one whose rounding noise ``2 eps tau ln tau`` exceeds :data:`FROZEN_NOISE`.
    """
    config = pdf.config
    fixed = config.suggested_fixed()
    eps = float(np.finfo(float).eps)
    frozen: dict[int, tuple[str, float]] = {}
    for name in config.auxdata_order:
        paramset = config.param_set(name)
        if getattr(paramset, "pdf_type", None) != "poisson":
            continue
        first = config.par_slice(name).start
        for offset, tau in enumerate(paramset.factors):
            index = first + offset
            if not fixed[index] and 2 * eps * tau * math.log(tau) > FROZEN_NOISE:
                frozen[index] = (config.par_names[index], float(tau))
    return frozen


def _minuit(data: Any, pdf: Any, init: Sequence[float], bounds: Sequence[Sequence[float]],
            fixed: Sequence[bool], strategy: int, tolerance: float = MINUIT_TOLERANCE
            ) -> tuple[list[float], float, bool, float]:
    """MIGRAD on pyhf's ``-2 ln L``: parameters, ``-2 ln L``, validity and EDM."""
    import iminuit

    def objective(pars: Any) -> float:
        return float(pyhf.infer.mle.twice_nll(pars, data, pdf)[0])

    minuit = iminuit.Minuit(objective, list(init), name=pdf.config.par_names)
    minuit.errordef = iminuit.Minuit.LEAST_SQUARES  # 1: the objective is -2 ln L
    minuit.limits = [tuple(b) for b in bounds]
    minuit.fixed = list(fixed)
    minuit.strategy = strategy
    minuit.tol = tolerance
    minuit.print_level = 0
    minuit.migrad(ncall=MAX_CALLS)
    return list(minuit.values), float(minuit.fval), bool(minuit.valid), float(minuit.fmin.edm)


@dataclass(frozen=True)
class LimitResult:
    """Asymptotic CLs upper limits and local discovery significance.

    Attributes:
        observed: Observed upper limit on the POI at confidence level ``1 - alpha``.
        expected: Expected upper limits at ``-2, -1, 0, +1, +2`` standard deviations
            (the order of ``pyhf.infer.intervals.upper_limits.upper_limit``).
        significance: Local discovery significance ``Z = sqrt(q0)`` (asymptotic); ``0`` if the
            best-fit POI is at or below zero.
        p0: Local p-value of the background-only hypothesis, ``1 - Φ(Z)``.
        muhat: Best-fit POI value on the observed data.
        n_fits: Number of maximum-likelihood fits performed.
        crossings: For a limit whose CLs curve crosses alpha more than once among the points
            the finder evaluated (a non-monotonic curve), every crossing, by limit
            (``observed``, ``expected_-2sigma`` ...); the limit given is the lowest.
        retries: The fits that needed the fallback (Minuit's strategy 2).
        frozen: Parameters fixed at their initial values because float64 cannot resolve
            ``-2 ln L`` along them (see :func:`frozen_components`), with the largest change
            of ``-2 ln L`` that fixing them can make at the unconditional and the
            background-only fit to the data.
    """

    observed: float
    expected: tuple[float, ...]
    significance: float
    p0: float
    muhat: float
    n_fits: int
    crossings: dict[str, list[float]] = field(default_factory=dict)
    retries: tuple[str, ...] = ()
    frozen: dict[str, float] = field(default_factory=dict)


class CachedAsymptoticCalculator(AsymptoticCalculator):
    """pyhf's asymptotic ``qtilde`` calculator with the POI-independent fits done once.

    It is a drop-in replacement for ``AsymptoticCalculator(data, pdf, test_stat="qtilde")``:
    :meth:`teststatistic` returns the same value and sets the same state (``sqrtqmuA_v`` and
    ``fitted_pars``), so the inherited ``distributions``, ``pvalues`` and ``expected_pvalues``
    give the same CLs values as ``pyhf.infer.hypotest``. All fits are cached, and counted in
    :attr:`n_fits`.

    Args:
        data: Full observed data vector (main bins followed by auxiliary data).
        pdf: The pyhf model; its POI must have lower bound 0.
        init_pars: Initial parameter values (default: the model's suggested ones).
        par_bounds: Parameter bounds (default: the model's suggested ones).
        fixed_params: Fixed-parameter flags (default: the model's suggested ones).
        warm_start: Start each conditional fit from the cached fit (same dataset) at the
            nearest tested POI value instead of the suggested initial values. About 2.5x
            fewer likelihood evaluations per fit; the minima agree within the minimiser's
            tolerance (-2 ln L within ~1e-4), so limits move by far less than 1e-4
            relative. ``False`` reproduces pyhf's own fits bit for bit.

    Raises:
        ValueError: If the model has no POI, the POI is fixed, or its lower bound is not 0.
    """

    def __init__(
        self,
        data: Sequence[float] | Any,
        pdf: pyhf.pdf.Model,
        init_pars: Sequence[float] | None = None,
        par_bounds: Sequence[Sequence[float]] | None = None,
        fixed_params: Sequence[bool] | None = None,
        warm_start: bool = True,
        minimizer: str = "minuit",
    ) -> None:
        if minimizer not in ("minuit", "pyhf"):
            raise ValueError(f"minimizer must be 'minuit' or 'pyhf', got {minimizer!r}")
        super().__init__(
            data,
            pdf,
            init_pars=init_pars,
            par_bounds=par_bounds,
            fixed_params=fixed_params,
            test_stat="qtilde",
            calc_base_dist="normal",
        )
        poi_index = pdf.config.poi_index
        if poi_index is None:
            raise ValueError("the model has no parameter of interest (POI)")
        if self.fixed_params[poi_index]:
            raise ValueError(f"the POI {pdf.config.poi_name!r} is fixed; it must float")
        lower, upper = self.par_bounds[poi_index]
        if lower != 0:
            raise ValueError(
                f"the POI {pdf.config.poi_name!r} has lower bound {lower}; the qtilde test "
                "statistic needs a POI bounded below at 0"
            )
        self.poi_index: int = poi_index
        #: components fixed because float64 cannot resolve -2 ln L along them (Minuit only:
        #: ``minimizer="pyhf"`` keeps pyhf's fits as they are)
        self.frozen: dict[int, tuple[str, float]] = {}
        if minimizer == "minuit" and fixed_params is None:
            self.frozen = frozen_components(pdf)
            self.fixed_params = [bool(f) or i in self.frozen
                                 for i, f in enumerate(self.fixed_params)]
        self.poi_upper_bound: float = float(upper)
        self.n_fits: int = 0
        self.warm_start = warm_start
        self.minimizer = minimizer
        #: per failed first attempt, what was retried (the fallback), for the result's record
        self.retries: list[str] = []
        self._free_fit_data: FitResult | None = None
        self._bkg_fit_data: FitResult | None = None
        self._asimov_data: Any = None
        self._free_fit_asimov: FitResult | None = None
        self._fixed_fits_data: dict[float, FitResult] = {}
        self._fixed_fits_asimov: dict[float, FitResult] = {}

    # -- fits --------------------------------------------------------------------------------

    def _start(self, cache: dict[float, FitResult], poi_value: float) -> Any:
        """Initial parameters for a conditional fit: the nearest cached fit, POI moved."""
        if not self.warm_start or not cache:
            return self.init_pars
        nearest = min(cache, key=lambda mu: abs(mu - poi_value))
        start = [float(x) for x in cache[nearest][0]]
        start[self.poi_index] = poi_value
        return start

    def _fit(self, data: Any, poi_value: float | None = None, init_pars: Any = None,
             what: str = "fit", tolerance: float = MINUIT_TOLERANCE) -> FitResult:
        """One maximum-likelihood fit (conditional at ``poi_value`` if given), converged."""
        init = self.init_pars if init_pars is None else init_pars
        if self.minimizer == "pyhf":
            self.n_fits += 1
            if poi_value is None:
                return pyhf.infer.mle.fit(data, self.pdf, init, self.par_bounds,
                                          self.fixed_params, return_fitted_val=True)
            return pyhf.infer.mle.fixed_poi_fit(poi_value, data, self.pdf, init,
                                                self.par_bounds, self.fixed_params,
                                                return_fitted_val=True)
        fixed = list(self.fixed_params)
        start = [float(x) for x in init]
        if poi_value is not None:
            fixed[self.poi_index] = True
            start[self.poi_index] = float(poi_value)
        attempts = [(start, 1)]
        fallback = [float(x) for x in self.init_pars]
        if poi_value is not None:
            fallback[self.poi_index] = float(poi_value)
        attempts.append((fallback, 2))
        for i, (pars0, strategy) in enumerate(attempts):
            self.n_fits += 1
            pars, twice_nll, valid, edm = _minuit(data, self.pdf, pars0, self.par_bounds,
                                                  fixed, strategy, tolerance)
            if valid:
                tensorlib, _ = pyhf.get_backend()
                return tensorlib.astensor(pars), tensorlib.astensor(twice_nll)
            if i == 0:
                self.retries.append(what)
                log.warning("%s: no valid minimum (EDM %.3g); retrying with strategy 2 from "
                            "the suggested initial values", what, edm)
        raise FitFailure(f"the {what} did not converge (EDM {edm:.3g}, -2 ln L "
                         f"{twice_nll:.6g}), also with Minuit's strategy 2 from the model's "
                         "suggested initial values")

    def _unconditional(self, data: Any, what: str) -> FitResult:
        """The free fit, and a second start that must reach the same minimum."""
        first = self._fit(data, what=what)
        if self.minimizer == "pyhf":
            return first
        # the POI started far from the first start: at a tenth of its bound, or at its bound
        second_init = [float(x) for x in self.init_pars]
        init_poi = second_init[self.poi_index]
        second_init[self.poi_index] = (0.1 * self.poi_upper_bound
                                       if init_poi < 0.05 * self.poi_upper_bound
                                       else 0.0)
        second = self._fit(data, init_pars=second_init, what=f"{what} (second start)")
        gap = float(first[1]) - float(second[1])
        if abs(gap) > SECOND_START_AGREEMENT:
            raise FitFailure(f"the {what} reached two minima from two starts: -2 ln L "
                             f"{float(first[1]):.6g} and {float(second[1]):.6g} (POI "
                             f"{float(first[0][self.poi_index]):.4g} and "
                             f"{float(second[0][self.poi_index]):.4g})")
        return first if gap <= 0 else second

    @property
    def free_fit_data(self) -> FitResult:
        """Unconditional fit to the observed data: ``(parameters, -2 ln L)``."""
        if self._free_fit_data is None:
            self._free_fit_data = self._unconditional(self.data, "unconditional fit to data")
        return self._free_fit_data

    @property
    def background_fit_data(self) -> FitResult:
        """Background-only (POI = 0) fit to the observed data: ``(parameters, -2 ln L)``."""
        if self._bkg_fit_data is None:
            # its parameters make the Asimov dataset, which every expected limit rests on
            self._bkg_fit_data = self._fit(self.data, 0.0, what="background-only fit to data",
                                           tolerance=ASIMOV_TOLERANCE)
        return self._bkg_fit_data

    @property
    def asimov_data(self) -> Any:
        """Asimov dataset of ``generate_asimov_data(0.0, ...)``: expected data at the bkg fit."""
        if self._asimov_data is None:
            self._asimov_data = self.pdf.expected_data(self.background_fit_data[0])
        return self._asimov_data

    @property
    def free_fit_asimov(self) -> FitResult:
        """Unconditional fit to the Asimov dataset: ``(parameters, -2 ln L)``."""
        if self._free_fit_asimov is None:
            self._free_fit_asimov = self._unconditional(self.asimov_data,
                                                        "unconditional fit to Asimov data")
        return self._free_fit_asimov

    def fixed_poi_fit_data(self, poi_test: float) -> FitResult:
        """Conditional fit to the observed data at POI = ``poi_test`` (cached)."""
        key = float(poi_test)
        if key not in self._fixed_fits_data:
            start = self._start(self._fixed_fits_data, key)
            what = f"fit to data at {self.pdf.config.poi_name} = {key:.6g}"
            self._fixed_fits_data[key] = self._fit(self.data, key, start, what=what)
        return self._fixed_fits_data[key]

    def fixed_poi_fit_asimov(self, poi_test: float) -> FitResult:
        """Conditional fit to the Asimov dataset at POI = ``poi_test`` (cached)."""
        key = float(poi_test)
        if key not in self._fixed_fits_asimov:
            start = self._start(self._fixed_fits_asimov, key)
            self._fixed_fits_asimov[key] = self._fit(
                self.asimov_data, key, start,
                what=f"fit to Asimov data at {self.pdf.config.poi_name} = {key:.6g}")
        return self._fixed_fits_asimov[key]

    @property
    def muhat(self) -> float:
        """Best-fit POI value on the observed data."""
        return float(self.free_fit_data[0][self.poi_index])

    def frozen_effects(self) -> dict[str, float]:
        """For each frozen component, the largest drop of ``-2 ln L`` that profiling it could
        give at the unconditional and the background-only fit to the data, ``g^2 / (4 tau)``:
        the constraint's own slope is 0 at its nominal value and its curvature ``2 tau``, and
        ``g``, the slope of the main bins' ``-2 ln L``, holds no tau (a central difference)."""
        if not self.frozen:
            return {}
        tensorlib, _ = pyhf.get_backend()
        main = tensorlib.astensor(self.data[: self.pdf.config.nmaindata])

        def main_2nll(pars: np.ndarray) -> float:
            value = self.pdf.main_model.logpdf(main, tensorlib.astensor(pars))
            return -2.0 * float(np.asarray(tensorlib.tolist(value)).reshape(-1)[0])

        effects: dict[str, float] = {}
        for index, (name, tau) in self.frozen.items():
            worst = 0.0
            for fit in (self.free_fit_data, self.background_fit_data):
                pars = np.asarray(tensorlib.tolist(fit[0]), dtype=float)
                step = 1e-6 * max(1.0, abs(pars[index]))
                up, down = pars.copy(), pars.copy()
                up[index] += step
                down[index] -= step
                slope = (main_2nll(up) - main_2nll(down)) / (2 * step)
                worst = max(worst, slope**2 / (4 * tau))
            effects[name] = worst
            if worst > FROZEN_MAX_EFFECT:
                raise FitFailure(
                    f"{name} has a constraint float64 cannot resolve (auxiliary datum tau = "
                    f"{tau:.3g}), and fixing it would move -2 ln L by up to {worst:.2g}: widen "
                    "its uncertainty in the workspace")
        log.warning("fixed at their initial values, too narrow for float64 fits: %s",
                    ", ".join(f"{n} (-2 ln L moves by at most {e:.1g})"
                              for n, e in effects.items()))
        return effects

    def asimov_points(self) -> list[float]:
        """POI values at which the conditional Asimov fit is cached."""
        return sorted(self._fixed_fits_asimov)

    def observed_points(self) -> list[float]:
        """POI values at which both conditional fits (observed and Asimov) are cached."""
        return sorted(set(self._fixed_fits_data) & set(self._fixed_fits_asimov))

    # -- test statistics ---------------------------------------------------------------------

    def _qmu_tilde(self, poi_test: float, fixed: FitResult, free: FitResult) -> Any:
        """``pyhf.infer.test_statistics.qmu_tilde`` from two fits (same tensor operations)."""
        tensorlib, _ = pyhf.get_backend()
        log_likelihood_ratio = fixed[1] - free[1]
        tmu_like_stat = tensorlib.astensor(
            tensorlib.clip(log_likelihood_ratio, 0.0, max_value=None)
        )
        return tensorlib.where(
            free[0][self.poi_index] > poi_test, tensorlib.astensor(0.0), tmu_like_stat
        )

    def asimov_teststatistic(self, poi_test: float) -> Any:
        """Set and return ``sqrt(qmu_A)``, all that the expected CLs values depend on.

        Args:
            poi_test: Tested POI value.

        Returns:
            ``sqrt(qtilde_mu)`` evaluated on the Asimov dataset (also stored as ``sqrtqmuA_v``).
        """
        tensorlib, _ = pyhf.get_backend()
        qmuA_v = self._qmu_tilde(
            poi_test, self.fixed_poi_fit_asimov(poi_test), self.free_fit_asimov
        )
        self.sqrtqmuA_v = tensorlib.sqrt(qmuA_v)
        return self.sqrtqmuA_v

    def teststatistic(self, poi_test: float) -> Any:
        r"""Observed ``qtilde`` test statistic, as ``AsymptoticCalculator.teststatistic``.

        Args:
            poi_test: Tested POI value.

        Returns:
            The asymptotic test statistic (:math:`\sqrt{q_\mu} - \sqrt{q_{\mu,A}}`, or its
            ``qtilde`` continuation when :math:`\sqrt{q_\mu} > \sqrt{q_{\mu,A}}`).
        """
        tensorlib, _ = pyhf.get_backend()
        fixed_data = self.fixed_poi_fit_data(poi_test)
        qmu_v = self._qmu_tilde(poi_test, fixed_data, self.free_fit_data)
        sqrtqmu_v = tensorlib.sqrt(qmu_v)
        self.asimov_teststatistic(poi_test)
        self.fitted_pars = HypoTestFitResults(
            asimov_pars=self.background_fit_data[0],
            free_fit_to_data=self.free_fit_data[0],
            free_fit_to_asimov=self.free_fit_asimov[0],
            fixed_poi_fit_to_data=fixed_data[0],
            fixed_poi_fit_to_asimov=self.fixed_poi_fit_asimov(poi_test)[0],
        )
        sqrtqmuA_v = self.sqrtqmuA_v

        def _true_case() -> Any:
            return sqrtqmu_v - sqrtqmuA_v

        def _false_case() -> Any:
            qmu = tensorlib.power(sqrtqmu_v, 2)
            qmu_A = tensorlib.power(sqrtqmuA_v, 2)
            return (qmu - qmu_A) / (2 * sqrtqmuA_v)

        teststat = tensorlib.conditional((sqrtqmu_v <= sqrtqmuA_v), _true_case, _false_case)
        return tensorlib.astensor(teststat)

    # -- CLs ---------------------------------------------------------------------------------

    def cls_observed(self, poi_test: float) -> float:
        """Observed CLs at ``poi_test`` (``hypotest(...)[0]``); 2 fits if not cached."""
        with np.errstate(divide="ignore", invalid="ignore"):
            teststat = self.teststatistic(poi_test)
            sb_dist, b_dist = self.distributions(poi_test)
            _, _, cls = self.pvalues(teststat, sb_dist, b_dist)
        return float(cls)

    def cls_expected(self, poi_test: float) -> list[float]:
        """Expected CLs at ``poi_test``, -2 .. +2 sigma (``hypotest(...)[1]``); 1 fit if new."""
        with np.errstate(divide="ignore", invalid="ignore"):
            self.asimov_teststatistic(poi_test)
            sb_dist, b_dist = self.distributions(poi_test)
            _, _, cls_exp = self.expected_pvalues(sb_dist, b_dist)
        return [float(value) for value in cls_exp]

    def sigma(self, poi_test: float) -> float:
        """Asymptotic POI uncertainty ``mu / sqrt(qmu_A)`` at ``poi_test`` (inf if no power)."""
        sqrt_qmu_a = float(self.asimov_teststatistic(poi_test))
        return poi_test / sqrt_qmu_a if sqrt_qmu_a > 0 else math.inf

    def discovery(self) -> tuple[float, float]:
        """Local discovery significance and p-value from the cached observed-data fits.

        ``q0`` is pyhf's (``-2 ln`` of the likelihood ratio of the background-only and the free
        fit, clipped at 0), so ``p0`` equals ``pyhf.infer.hypotest(0.0, data, pdf,
        test_stat="q0")``. A best-fit POI at its lower bound 0 gives ``Z = 0`` and ``p0 = 0.5``;
        "at the bound" allows for the minimizer's precision (``muhat`` below ``1e-9`` times the
        POI upper bound), where pyhf would return the square root of fit noise instead.

        Returns:
            ``(Z, p0)`` with ``Z = sqrt(q0)`` and ``p0 = 1 - Φ(Z)``.
        """
        q0 = max(float(self.background_fit_data[1] - self.free_fit_data[1]), 0.0)
        z = math.sqrt(q0) if self.muhat > _MUHAT_ZERO * self.poi_upper_bound else 0.0
        return z, float(norm.sf(z))


def _asymptotic_factor(alpha: float, k: float) -> float:
    """``Φ^-1(1 - alpha Φ(k)) + k``: limit in units of sigma for a shift of ``k`` sigma."""
    return float(norm.isf(alpha * norm.cdf(k))) + k


def _log_cls_ratio(cls: float, alpha: float) -> float:
    """``ln(CLs / alpha)``: zero at the limit, and closer to linear in the POI than CLs.

    An undefined CLs (no sensitivity at all) counts as not excluded (CLs = 1).
    """
    if not math.isfinite(cls):
        log.debug("undefined CLs (no sensitivity); treated as CLs = 1")
        return -math.log(alpha)
    return math.log(cls / alpha) if cls > 0 else math.log(_TINY / alpha)


def _find_root(
    func: Callable[[float], float],
    known: Sequence[float],
    guess: float,
    refine: Callable[[float], float],
    upper_bound: float,
    rtol: float,
    what: str,
) -> tuple[float, list[float]]:
    """Root of a decreasing ``func`` (``ln(CLs / alpha)``) between 0 and ``upper_bound``.

    The guess is evaluated first; the bracket then grows geometrically from it, towards the
    root, with a first step just beyond the refined guess; finally ``brentq`` polishes the
    narrowest bracket among all evaluated (and already cached) points.

    Args:
        func: ``ln(CLs(mu) / alpha)``; values at ``known`` points cost no fit.
        known: POI values where ``func`` is already cheap to evaluate.
        guess: Starting guess for the root.
        refine: Improved guess from the local sigma at an evaluated point.
        upper_bound: POI upper bound; the bracket never goes beyond it.
        rtol: Relative tolerance of the root.
        what: Name of the limit, for messages.

    Returns:
        The lowest POI value where ``func`` changes sign, and every crossing where the
        evaluated points show more than one (a non-monotonic CLs curve), else ``[]``.

    Raises:
        ValueError: If CLs is still above alpha at the POI upper bound.
    """
    values: dict[float, float] = {mu: func(mu) for mu in known if mu > 0}

    def evaluate(mu: float) -> float:
        values[mu] = func(mu)
        return values[mu]

    def tightest() -> tuple[float, float] | None:
        """Narrowest bracket around the lowest crossing among the evaluated points."""
        below = [mu for mu, value in values.items() if value < 0]
        if not below:
            return None
        upper = min(below)
        above = [mu for mu, value in values.items() if value >= 0 and mu < upper]
        return (max(above), upper) if above else None

    x = min(max(guess, 1e-12 * upper_bound), upper_bound)
    fx = evaluate(x)
    if fx == 0:
        return x, []
    direction = 1.0 if fx > 0 else -1.0
    # first step: a bit beyond the locally refined guess, and at least a few rtol
    step = max(1.5 * abs(math.log(refine(x) / x)), 20 * rtol)
    bracket = tightest()
    expansions = 0
    while bracket is None or math.log(bracket[1] / bracket[0]) > 2 * step:
        if direction > 0 and x >= upper_bound:
            if bracket is not None:
                break
            raise ValueError(
                f"the {what} limit lies beyond the POI upper bound {upper_bound:g} "
                f"(ln(CLs/alpha) = {fx:+.3g} there); widen the POI bounds of the model"
            )
        if expansions == _MAX_EXPANSIONS:
            raise ValueError(f"could not bracket the {what} limit")
        x = min(x * math.exp(direction * step), upper_bound)
        fx = evaluate(x)
        if fx == 0:
            return x, []
        step *= 2.0
        expansions += 1
        new_bracket = tightest()
        if new_bracket is not None and (fx > 0) != (direction > 0):
            bracket = new_bracket
            break
        bracket = new_bracket
    root = float(brentq(evaluate, *bracket, xtol=_XTOL, rtol=rtol))
    return root, _all_crossings(values, evaluate, root, rtol)


def _all_crossings(values: dict[float, float], evaluate: Callable[[float], float],
                   root: float, rtol: float) -> list[float]:
    """Every crossing of zero that the evaluated points show, if more than one."""
    points = sorted(values.items())
    changes = [(a, b) for (a, fa), (b, fb) in itertools.pairwise(points)
               if (fa >= 0) != (fb >= 0)]
    if len(changes) < 2:
        return []
    crossings = []
    for low, high in changes:
        crossings.append(root if low <= root <= high
                         else float(brentq(evaluate, low, high, xtol=_XTOL, rtol=rtol)))
    log.warning("CLs crosses alpha %d times (at %s): not monotonic", len(crossings),
                ", ".join(f"{mu:.6g}" for mu in crossings))
    return crossings


def _initial_sigma(calc: CachedAsymptoticCalculator) -> float:
    """Rough POI uncertainty from signal and background yields (no fit, stats only)."""
    tensorlib, _ = pyhf.get_backend()
    pars = np.asarray(tensorlib.tolist(calc.background_fit_data[0]), dtype=float)
    pars_sig = pars.copy()
    pars_sig[calc.poi_index] = 1.0
    model = calc.pdf
    bkg = np.asarray(tensorlib.tolist(model.expected_data(pars, include_auxdata=False)))
    sig_bkg = np.asarray(tensorlib.tolist(model.expected_data(pars_sig, include_auxdata=False)))
    signal = sig_bkg - bkg
    inv_var = float(np.sum(signal**2 / np.maximum(bkg, 1e-3)))
    return 1.0 / math.sqrt(inv_var) if inv_var > 0 else math.nan


def upper_limit(
    data: Sequence[float] | Any,
    model: pyhf.pdf.Model,
    *,
    alpha: float = 0.05,
    rtol: float = 1e-6,
    warm_start: bool = True,
    minimizer: str = "minuit",
) -> LimitResult:
    """Observed and expected asymptotic CLs upper limits and the local significance.

    The CLs values are those of ``pyhf.infer.hypotest(mu, data, model, test_stat="qtilde",
    return_expected_set=True)``; each limit is where that CLs crosses ``alpha``. Fits not
    depending on the tested POI value are done once, the others cached per POI value.

    Args:
        data: Full data vector, main bins and auxiliary data (``workspace.data(model)``).
        model: The pyhf model; its POI must be bounded below at 0.
        alpha: CLs level (0.05 for 95% CL limits).
        rtol: Relative tolerance of the limits.
        warm_start: Start conditional fits from the nearest cached one (see
            :class:`CachedAsymptoticCalculator`).
        minimizer: ``"minuit"`` (MIGRAD, convergence checked) or ``"pyhf"`` (pyhf's
            configured optimiser, as ``hypotest``).

    Returns:
        The observed limit, the five expected limits (``-2 .. +2 sigma``), the local discovery
        significance and p-value, the best-fit POI and the number of fits performed.

    Raises:
        ValueError: For an invalid ``alpha``/``rtol``, a model whose POI is missing, fixed or
            not bounded at 0, or a limit beyond the POI upper bound.
        FitFailure: For a fit that does not converge (after the fallback).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not rtol >= 4 * np.finfo(float).eps:
        raise ValueError(f"rtol must be >= {4 * np.finfo(float).eps:.3g}, got {rtol}")
    calc = CachedAsymptoticCalculator(data, model, warm_start=warm_start, minimizer=minimizer)
    crossings: dict[str, list[float]] = {}
    muhat = calc.muhat
    frozen = calc.frozen_effects()
    significance, p0 = calc.discovery()
    upper_bound = calc.poi_upper_bound

    # First look at the sensitivity: one Asimov fit near the expected median limit.
    sigma0 = _initial_sigma(calc)
    mu0 = sigma0 * _asymptotic_factor(alpha, 0.0) if math.isfinite(sigma0) else 1.0
    mu0 = min(mu0, upper_bound)
    while not math.isfinite(calc.sigma(mu0)):
        if mu0 >= upper_bound:
            raise ValueError(
                f"no sensitivity up to the POI upper bound {upper_bound:g}: the Asimov test "
                "statistic is 0 there; widen the POI bounds of the model"
            )
        mu0 = min(10.0 * mu0, upper_bound)

    def local_sigma(mu: float) -> float:
        """Sigma at the cached Asimov point closest (in log) to ``mu``."""
        nearest = min(calc.asimov_points(), key=lambda point: abs(math.log(point / mu)))
        sigma = calc.sigma(nearest)
        return sigma if math.isfinite(sigma) else calc.sigma(mu0)

    def guess_from(factor: Callable[[float], float]) -> Callable[[float], float]:
        def guess(mu: float) -> float:
            sigma = local_sigma(mu)
            return sigma * factor(sigma)

        return guess

    def observed_factor(sigma: float) -> float:
        return _asymptotic_factor(alpha, max(muhat, 0.0) / sigma)

    def start(refine: Callable[[float], float]) -> float:
        mu = refine(mu0)
        return refine(mu)  # second pass: sigma from the point nearest to the first guess

    # Observed limit: needs both conditional fits per POI value.
    refine_obs = guess_from(observed_factor)
    observed, crossings["observed"] = _find_root(
        lambda mu: _log_cls_ratio(calc.cls_observed(mu), alpha),
        calc.observed_points(),
        start(refine_obs),
        lambda mu: calc.sigma(mu) * observed_factor(calc.sigma(mu)),
        upper_bound,
        rtol,
        "observed",
    )
    log.debug("observed limit %.6g after %d fits", observed, calc.n_fits)

    # Expected limits: Asimov fits only, shared by all bands.
    expected: list[float] = [math.nan] * len(BAND_SIGMAS)
    for index in sorted(range(len(BAND_SIGMAS)), key=lambda i: abs(BAND_SIGMAS[i])):
        k = BAND_SIGMAS[index]
        band_factor = _asymptotic_factor(alpha, float(k))

        def band_value(mu: float, index: int = index) -> float:
            return _log_cls_ratio(calc.cls_expected(mu)[index], alpha)

        def band_refine(mu: float, band_factor: float = band_factor) -> float:
            return calc.sigma(mu) * band_factor

        expected[index], crossings[f"expected_{BAND_LABELS[index]}"] = _find_root(
            band_value,
            calc.asimov_points(),
            start(guess_from(lambda _sigma, band_factor=band_factor: band_factor)),
            band_refine,
            upper_bound,
            rtol,
            f"expected {k:+d} sigma",
        )
        log.debug("expected %+d sigma limit %.6g after %d fits", k, expected[index], calc.n_fits)

    result = LimitResult(
        observed=observed,
        expected=tuple(expected),
        significance=significance,
        p0=p0,
        muhat=muhat,
        n_fits=calc.n_fits,
        crossings={name: mus for name, mus in crossings.items() if mus},
        retries=tuple(calc.retries),
        frozen=frozen,
    )
    log.info(
        "CLs limits: observed %.4g, expected %s; Z = %.3g (p0 = %.3g), muhat = %.4g, %d fits",
        result.observed,
        ", ".join(f"{value:.4g}" for value in result.expected),
        result.significance,
        result.p0,
        result.muhat,
        result.n_fits,
    )
    return result
