"""fit: the POI's maximum-likelihood fit with pulls and plots; CLs limits per hypothesis.

Three sub-commands, one per Snakemake rule:
  mle     maximum-likelihood fit of the workspace's POI (cabinetry), nuisance-parameter
          pulls, pre- and post-fit yields (per bin and summed per region, with their
          uncertainties) and data/simulation plots, Z significance;
  limit   95% CL CLs upper limit (observed, expected +-1/2 sigma) and local significance for
          one patch of any pyhf patchset, chosen by name (or by mass for a one-label
          patchset) (scatter);
  limits  gather the per-patch results, draw the "Brazil band" (one scan variable) or the
          exclusion contours (two).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from steps import cli, layout
from steps.config import load_analysis
from steps.errors import PubflowError, one_line
from steps.io import atomic_path, read_input_json, write_json

log = logging.getLogger(__name__)


def _significance(model: Any, data: Any, result: Any) -> dict[str, float]:
    """cabinetry's discovery significance, with ``Z = sqrt(q0)`` where it is infinite.

    cabinetry turns the asymptotic p-value into Z by ``Φ^-1(1 - p)``; beyond Z ≈ 37.5 the
    p-value underflows to 0 and Z to infinity, which no JSON reader takes. The asymptotic
    formula it inverts is ``p = 1 - Φ(sqrt(q0))`` (Cowan et al., EPJC 71 (2011) 1554), so
    ``sqrt(q0)`` is the same Z, without the underflow: on the data, and (expected) on the
    Asimov dataset of POI = 1, as pyhf's ``hypotest(0, ..., test_stat="q0")`` builds it.
    """
    observed = float(result.observed_significance)
    expected = float(result.expected_significance)
    if not (math.isfinite(observed) and math.isfinite(expected)):
        import pyhf

        init = model.config.suggested_init()
        bounds = model.config.suggested_bounds()
        fixed = model.config.suggested_fixed()

        def z(dataset: Any) -> float:
            q0 = pyhf.infer.test_statistics.q0(0.0, dataset, model, init, bounds, fixed)
            return math.sqrt(max(float(q0), 0.0))

        if not math.isfinite(observed):
            observed = z(data)
        if not math.isfinite(expected):
            asimov = pyhf.infer.calculators.generate_asimov_data(
                1.0, data, model, init, bounds, fixed)
            expected = z(asimov)
        log.info("discovery significance beyond float64 p-values: Z = sqrt(q0) = %.1f "
                 "(expected %.1f)", observed, expected)
    return {"observed": observed, "expected": expected,
            "observed_p_value": float(result.observed_p_value)}


def _save_figure(fig: Any, png: Path) -> None:
    """Save ``fig`` as PNG (for HEPData) and PDF beside it, without timestamps."""
    import matplotlib.pyplot as plt

    for path, meta in ((png, {"Software": None}),
                       (png.with_suffix(".pdf"), {"CreationDate": None, "Producer": None})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], metadata=meta, dpi=120)
    plt.close(fig)


def _prediction_table(prediction: Any) -> dict[str, Any]:
    """Per region, from a cabinetry ModelPrediction: the yields per bin of each sample, their
    ``total`` and its ``total_uncertainty``; and under ``summed``, each sample's and the
    total's yield summed over the region's bins with its uncertainty.

    The uncertainties of the summed yields come from cabinetry, which propagates the
    parameter uncertainties (with their correlations, after a fit) to the sums; they cannot
    be recovered from the per-bin uncertainties, which lack the bin-to-bin correlations.
    """
    model = prediction.model
    names = [*model.config.samples, "total"]
    out: dict[str, Any] = {}
    for i, channel in enumerate(model.config.channels):
        yields = np.asarray(prediction.model_yields[i], dtype=float)  # (sample, bin)
        table: dict[str, Any] = {s: yields[j].tolist() for j, s in enumerate(names[:-1])}
        table["total"] = yields.sum(axis=0).tolist()
        table["total_uncertainty"] = list(map(float, prediction.total_stdev_model_bins[i][-1]))
        # cabinetry: per channel, the stdev of each sample's sum, then of the total's (last)
        sums = [*yields.sum(axis=1), yields.sum()]
        table["summed"] = {
            name: {"yield": float(value), "uncertainty": float(stdev)}
            for name, value, stdev in zip(names, sums,
                                          prediction.total_stdev_model_channels[i], strict=True)
        }
        out[channel] = table
    return out


def mle(config: dict[str, Any], workspace_path: str, output: str, figures: str
        ) -> dict[str, Any]:
    """Fit the workspace's POI; write results JSON and the plots."""
    import cabinetry
    import matplotlib

    matplotlib.use("Agg")
    import pyhf

    spec = read_input_json(workspace_path)
    ws = pyhf.Workspace(spec)
    model, data = cabinetry.model_utils.model_and_data(ws)
    fit = cabinetry.fit.fit(model, data)
    poi = model.config.poi_index
    significance = cabinetry.fit.significance(model, data)
    pre = cabinetry.model_utils.prediction(model)
    post = cabinetry.model_utils.prediction(model, fit_results=fit)
    folder = Path(figures)
    for label, prediction in (("prefit", pre), ("postfit", post)):
        plots = cabinetry.visualize.data_mc(prediction, data, config=config,
                                            save_figure=False, close_figure=False)
        for entry in plots or []:
            _save_figure(entry["figure"], folder / f"data_mc_{label}_{entry['region']}.png")
    _save_figure(cabinetry.visualize.pulls(fit, save_figure=False, close_figure=False),
                 folder / "pulls.png")
    binning = {r["Name"]: r["Binning"] for r in config["Regions"]}
    regions = {}
    pre_table, post_table = _prediction_table(pre), _prediction_table(post)
    for channel in model.config.channels:
        regions[channel] = {
            "bins": list(map(float, binning[channel])),
            "data": [float(x) for x in np.asarray(data)[model.config.channel_slices[channel]]],
            "prefit": pre_table[channel],
            "postfit": post_table[channel],
        }
    results = {
        "workspace_sha256": pyhf.utils.digest(spec),
        "poi": model.config.poi_name,
        "mu": float(fit.bestfit[poi]),
        "mu_uncertainty": float(fit.uncertainty[poi]),
        "twice_nll": float(fit.best_twice_nll),
        "parameters": [
            {"name": name, "bestfit": float(b), "uncertainty": float(u)}
            for name, b, u in zip(fit.labels, fit.bestfit, fit.uncertainty, strict=True)
        ],
        "significance": _significance(model, data, significance),
        "regions": regions,
    }
    write_json(output, results)
    log.info("%s = %.4f +- %.4f", results["poi"], results["mu"], results["mu_uncertainty"])
    return results


def _select_patch(patchset: Any, patchset_path: str, patch: str | None, mass: int | None
                  ) -> Any:
    """The patch named ``patch``, or the one whose single label's value is ``mass``."""
    labels = list(patchset.labels)
    if patch is not None:
        # by name only: pyhf's own lookup mixes names, value tuples and its table's own keys
        by_name = {p.name: p for p in patchset.patches}
        if patch not in by_name:
            raise PubflowError(f"no patch named {patch!r}; it has {len(by_name)}, e.g. "
                               f"{', '.join(list(by_name)[:5])}", path=patchset_path,
                               key="patches")
        return by_name[patch]
    if len(labels) != 1:
        raise PubflowError(f"--mass needs a single-label patchset, this one has the labels "
                           f"{', '.join(labels)}: choose a patch with --patch NAME",
                           path=patchset_path, key="metadata.labels")
    # values as read from JSON (90 or 90.0): compare numbers, not their spelling
    for candidate in patchset.patches:
        if candidate.values[0] == mass:
            return candidate
    values = ", ".join(str(p.values[0]) for p in patchset.patches[:8])
    raise PubflowError(f"no patch with {labels[0]} = {mass} (values: {values})",
                       path=patchset_path, key="patches")


def limit(workspace_path: str, patchset_path: str, output: str, *,
          patch: str | None = None, mass: int | None = None) -> dict[str, Any]:
    """CLs limits and local significance for one patch of a pyhf patchset.

    The patch is chosen by name (``patch``, as HEPData likelihoods are addressed) or, for a
    single-label patchset, by its value (``mass``); exactly one of the two is given.
    """
    import jsonpatch
    import pyhf

    from steps.limits import FitFailure, upper_limit

    if (patch is None) == (mass is None):
        raise PubflowError("give exactly one of a patch name and a mass")
    try:
        patchset = pyhf.PatchSet(read_input_json(patchset_path))
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidPatchSet) as err:
        raise PubflowError(f"not a pyhf patchset ({one_line(err)})", path=patchset_path
                           ) from None
    spec = read_input_json(workspace_path)
    try:
        patchset.verify(spec)
    except pyhf.exceptions.PatchSetVerificationError:
        expected = ", ".join(f"{alg}:{digest}" for alg, digest in patchset.digests.items())
        raise PubflowError(f"not made for the workspace {workspace_path} (its digest is "
                           f"sha256:{pyhf.utils.digest(spec)}, the patchset expects "
                           f"{expected})", path=patchset_path,
                           key="metadata.digests") from None
    chosen = _select_patch(patchset, patchset_path, patch, mass)
    where = f"patches[{patchset.patches.index(chosen)}]"
    try:
        patched = chosen.apply(spec)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
        raise PubflowError(f"patch {chosen.name!r} does not apply to {workspace_path} "
                           f"({one_line(err)})", path=patchset_path, key=where) from None
    # the signal hypothesis decides what is tested, so its POI is the patched workspace's
    measurements = patched.get("measurements") or [{}]
    poi = measurements[0].get("config", {}).get("poi")
    if not poi:
        raise PubflowError(f"patch {chosen.name!r} leaves the workspace without a POI "
                           "(measurements[0].config.poi)", path=patchset_path, key=where)
    try:
        ws = pyhf.Workspace(patched)
        model = ws.model(measurement_name=measurements[0]["name"])
        data = ws.data(model)
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidModel) as err:
        raise PubflowError(f"patch {chosen.name!r} gives an invalid workspace "
                           f"({one_line(err)})", path=patchset_path, key=where) from None
    try:
        result = upper_limit(data, model)
    except FitFailure as err:
        raise PubflowError(f"patch {chosen.name!r}: {err}", path=patchset_path,
                           key=where) from None
    except ValueError as err:  # a POI fixed, unbounded at 0, or a limit beyond its bound
        raise PubflowError(f"no limit on {poi} for patch {chosen.name!r} ({err})",
                           path=patchset_path, key=where) from None
    values = dict(zip(patchset.labels, chosen.values, strict=True))
    point: dict[str, Any] = {
        "patch": chosen.name, "values": values, "poi": poi,
        "observed": result.observed, "expected": list(result.expected),
        "significance": result.significance, "p0": result.p0, "muhat": result.muhat,
        "n_fits": result.n_fits, "minimizer": "minuit",
        # where CLs crosses alpha more than once (a non-monotonic curve): every crossing
        "crossings": result.crossings, "retried_fits": list(result.retries),
        # fixed because float64 cannot resolve -2 ln L along them: the most it can move
        "frozen_parameters": result.frozen,
    }
    write_json(output, point)
    log.info("%s (%s): observed %.3f, expected %.3f on %s", chosen.name,
             ", ".join(f"{k} = {v}" for k, v in values.items()), result.observed,
             result.expected[2], poi)
    return point


def axis_label(label: str, units: dict[str, str], titles: dict[str, str] | None = None
               ) -> str:
    """A scan variable's axis label: its title (or name) and unit, ``m_stop [GeV]``."""
    title = (titles or {}).get(label, label)
    unit = units.get(label)
    return f"{title} [{unit}]" if unit else title


def brazil(points: list[dict[str, Any]], label: str, units: dict[str, str], poi: str,
           png: Path, luminosity: str | None, titles: dict[str, str] | None = None,
           scale: float = 1.0) -> None:
    """The limit against the one scan variable, with the expected +-1/2 sigma bands; the
    limits on ``poi`` times ``scale`` (a ratio to a reference process, say)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    x = np.array([p["values"][label] for p in points], float)
    exp = scale * np.array([p["expected"] for p in points])
    obs = scale * np.array([p["observed"] for p in points])
    with plt.style.context(mplhep.style.CMS):
        fig, ax = plt.subplots(figsize=(10, 8))
        ax.fill_between(x, exp[:, 0], exp[:, 4], color="#F5BB54",
                        label=r"Expected $\pm 2\sigma$")
        ax.fill_between(x, exp[:, 1], exp[:, 3], color="#607641",
                        label=r"Expected $\pm 1\sigma$")
        ax.plot(x, exp[:, 2], "k--", label="Expected")
        ax.plot(x, obs, "ko-", label="Observed")
        ax.set_xlabel(axis_label(label, units, titles))
        ax.set_ylabel(f"95% CL upper limit on {poi}")
        ax.set_ylim(0, 1.6 * max(exp[:, 4].max(), obs.max()))
        ax.legend(loc="upper left", ncol=2, fontsize="small")
        if luminosity:
            ax.set_title(luminosity, loc="right", fontsize="medium")
        fig.tight_layout()
        _save_figure(fig, png)


def _dataset_label(config: dict[str, Any]) -> str | None:
    """The figure's top-right label: luminosity and centre-of-mass energy, those known."""
    parts = []
    lumi = config.get("Luminosity")
    if lumi and lumi.get("Measured", True):
        parts.append(f"{lumi['Value']:g} {lumi['Unit'].replace('^-1', '$^{-1}$')}")
    energies = config.get("Publication", {}).get("Keywords", {}).get("cmenergies", [])
    if len(energies) == 1:
        parts.append(f"({energies[0] / 1000:g} TeV)")
    return " ".join(parts) or None


def limits(config: dict[str, Any], inputs: list[str], output: str, figure: str | None
           ) -> dict[str, Any]:
    """Gather the per-patch limit files into one, in the scan's order; draw its figure (a
    Brazil band for one scan variable, exclusion contours for two)."""
    labels = layout.scan_labels(config)
    order = {name: i for i, name in enumerate(layout.scan_patches(config))}
    points = [read_input_json(p) for p in inputs]
    names = sorted(p.get("patch", "?") for p in points)
    if names != sorted(order):
        missing = sorted(set(order) - set(names)) or sorted(set(names) - set(order))
        raise PubflowError(f"limit files cover {len(names)} patches, the config scans "
                           f"{len(order)} (differing: {', '.join(missing[:5])})", key="Scan")
    points.sort(key=lambda p: tuple(p["values"][label] for label in labels))
    scan = config["Scan"]
    units = dict(scan.get("Units", {}))
    gathered: dict[str, Any] = {"poi": layout.scan_poi(config), "labels": labels,
                                "units": units, "titles": dict(scan.get("Titles", {})),
                                "points": points}
    if "CrossSection" in scan:
        gathered["reference_cross_section"] = scan["CrossSection"]
    if "RelativeTo" in scan:
        gathered["relative_to"] = dict(scan["RelativeTo"])
    write_json(output, gathered)
    relative = scan.get("RelativeTo")
    if figure and len(labels) == 1 and relative:
        ratio = (r"$\sigma \times B\,/\,\sigma \times B$"
                 f"({relative['Name']})")
        brazil(points, labels[0], units, ratio, Path(figure), _dataset_label(config),
               gathered["titles"], scan["CrossSection"] / relative["CrossSection"])
    elif figure and len(labels) == 1:
        brazil(points, labels[0], units, gathered["poi"], Path(figure),
               _dataset_label(config), gathered["titles"])
    elif figure and len(labels) == 2:
        from steps.contour import draw_contours

        draw_contours(points, (labels[0], labels[1]), units, gathered["poi"], Path(figure),
                      _dataset_label(config), gathered["titles"])
    elif figure:
        raise PubflowError(f"no figure for a scan in {len(labels)} variables", key="Scan")
    return gathered


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("fit", __doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = cli.subcommand(sub, "mle", help="fit the POI, pulls, data/MC plots")
    m.add_argument("--config", required=True, help="analysis config")
    m.add_argument("--workspace", required=True, help="pyhf workspace (JSON)")
    m.add_argument("--output", required=True, help="fit results to write (JSON)")
    m.add_argument("--figures", required=True, help="folder for the figures")
    lim = cli.subcommand(sub, "limit", help="CLs limit for one patch of a pyhf patchset")
    lim.add_argument("--workspace", required=True, help="background-only workspace (JSON)")
    lim.add_argument("--patchset", required=True, help="pyhf patchset (JSON)")
    which = lim.add_mutually_exclusive_group(required=True)
    which.add_argument("--patch", metavar="NAME", help="the patch's name (as on HEPData)")
    which.add_argument("--mass", type=int,
                       help="the value of a single-label patchset's label (e.g. mass in GeV)")
    lim.add_argument("--output", required=True, help="result to write (JSON)")
    g = cli.subcommand(sub, "limits", help="gather limits, draw the Brazil band")
    g.add_argument("--config", required=True, help="analysis config")
    g.add_argument("--inputs", nargs="+", required=True, help="per-patch results")
    g.add_argument("--output", required=True, help="limits to write (JSON)")
    g.add_argument("--figure", help="the limits' figure (PNG, a PDF beside): a Brazil band "
                   "for a scan in one variable, exclusion contours for two")
    return p


def main(args: argparse.Namespace) -> None:
    if args.command == "mle":
        mle(load_analysis(args.config), args.workspace, args.output, args.figures)
    elif args.command == "limit":
        limit(args.workspace, args.patchset, args.output, patch=args.patch, mass=args.mass)
    else:
        limits(load_analysis(args.config), args.inputs, args.output, args.figure)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
