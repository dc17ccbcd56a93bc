"""Published likelihoods: steps.limits against pyhf's converged limits, patch by patch.

    .venv/bin/python benchmarks/likelihoods.py                 # the default patches (long)
    .venv/bin/python benchmarks/likelihoods.py --likelihoods atlas_susy_2018_06_3l_erjr \\
        --patches ERJR_500p0_0p0 --timeout 900
    .venv/bin/python benchmarks/likelihoods.py --reuse-references   # pyhf's side from the store
    .venv/bin/python benchmarks/likelihoods.py --write-references   # refresh the store

For each published likelihood stored under tests/data/likelihoods/<name>/ (its SOURCE.md says
where from) and each chosen patch: the number of parameters; pyhf's converged limits,
``pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None, rtol=1e-6)`` with
``pyhf.optimize.minuit_optimizer(tolerance=1e-5)``, and their time; pubflow's,
``steps.limits.upper_limit(data, model)`` on the likelihood as published, and their time; the
ratio of the two times; how far above the converged minimum pyhf's default fit (scipy's SLSQP)
stops (-2 ln L of the unconditional fit); the largest relative difference of the six limits;
every crossing of a non-monotonic CLs curve that pubflow reports; and the parameters pubflow
fixed because float64 cannot resolve -2 ln L along them (steps.limits.frozen_components).

A likelihood with such a parameter (FIXES) cannot be fitted by pyhf's Minuit either
(FailedMinimization): pyhf's reference is then computed with it fixed, which the table says.

Separate from the tests. Each measurement runs in a fresh process under a time limit
(``--timeout``); one that fails (a fit refused, a time limit reached) is a table entry, not a
crash. ``--write-references`` stores pyhf's converged limits in
tests/data/likelihoods/<name>/reference.json, which tests/test_published_likelihoods.py
compares steps.limits with; ``--reuse-references`` takes pyhf's side (limits and time) from
there instead of recomputing it (the table marks it "stored": not side by side). Prints a
table and writes JSON (``--output``) with the machine's CPU and core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402 (benchmarks/ is not a package)

PY = sys.executable
DATA = REPO / "tests" / "data" / "likelihoods"

#: Patches measured by default: the reviewer's and two more per likelihood.
DEFAULT_PATCHES: dict[str, list[str]] = {
    # ERJR_110p0_20p0 is the one patch of the scan where SLSQP reaches the minimum
    "atlas_susy_2018_06_3l_erjr": ["ERJR_500p0_0p0", "ERJR_250p0_100p0", "ERJR_110p0_20p0"],
    "atlas_susy_2019_08_1lbb": ["C1N2_Wh_hbb_350_100", "C1N2_Wh_hbb_500_100",
                                "C1N2_Wh_hbb_650_100"],
}
#: Parameters pyhf's own Minuit cannot fit (its reference fixes them), and why (SOURCE.md).
FIXES: dict[str, tuple[list[str], str]] = {
    "atlas_susy_2018_06_3l_erjr": (
        ["shape_mcstat_diboson3LISR_CRISR_obs_cuts"],
        ("a shapesys of 0.001 events on 435 (auxiliary datum 1.9e11): float64 -2 ln L is noisy "
         "at ~1e-3 along its gamma; fixed at 1 it changes -2 ln L by < 1e-9 (width 2.3e-6)")),
}
RECIPE = {
    "limits": "pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None, rtol=1e-6)",
    "optimizer": "pyhf.optimize.minuit_optimizer(tolerance=1e-5)",
    "backend": "numpy",
}


# --- children (run in a fresh process) -------------------------------------------------------


def load(likelihood: str, patch: str, fixed: list[str]) -> tuple[Any, Any]:
    """The pyhf model and data of ``patch`` applied to the stored background-only workspace,
    with the parameters ``fixed`` fixed at their suggested initial values."""
    import pyhf

    folder = DATA / likelihood
    background = json.loads((folder / "BkgOnly.json").read_text())
    patchset = pyhf.PatchSet(json.loads((folder / "patchset.json").read_text()))
    spec = patchset[patch].apply(background)
    spec["measurements"][0]["config"]["parameters"].extend(
        {"name": name, "fixed": True} for name in fixed)
    ws = pyhf.Workspace(spec)
    model = ws.model()
    return model, ws.data(model)


def child(kind: str, likelihood: str, patch: str, fixed: list[str]) -> dict[str, Any]:
    """One measurement: ``ref`` (pyhf's converged limits), ``ours`` (steps.limits) or ``gap``
    (SLSQP's unconditional fit against the converged one)."""
    import numpy as np
    import pyhf

    sys.path.insert(0, str(REPO))
    from steps.limits import FitFailure, upper_limit

    model, data = load(likelihood, patch, fixed)
    out: dict[str, Any] = {"parameters": model.config.npars, "bins": model.config.nmaindata}
    # every contender pays its imports and model building before the clock starts
    start = time.perf_counter()
    if kind == "ref":
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5))
        try:
            obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None,
                                                                     rtol=1e-6)
            out.update(status="ok", limits=[float(obs), *(float(x) for x in exp)])
        except pyhf.exceptions.FailedMinimization as err:
            fmin = err.result.minuit.fmin
            out.update(status="failed", error=f"FailedMinimization (EDM {fmin.edm:.3g}, "
                       f"-2 ln L {fmin.fval:.6g})")
    elif kind == "ours":
        try:
            r = upper_limit(data, model)
            out.update(status="ok", limits=[r.observed, *r.expected], n_fits=r.n_fits,
                       crossings=r.crossings, retries=list(r.retries))
            out["frozen"] = r.frozen
        except (FitFailure, ValueError) as err:
            out.update(status="failed", error=f"{type(err).__name__}: {err}")
    elif kind == "gap":
        init = float(pyhf.infer.mle.twice_nll(model.config.suggested_init(), data, model)[0])
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
        with np.errstate(all="ignore"):  # SLSQP's steps can overflow the Poisson terms
            stopped = float(pyhf.infer.mle.fit(data, model, return_fitted_val=True)[1])
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5))
        try:
            minimum = float(pyhf.infer.mle.fit(data, model, return_fitted_val=True)[1])
            valid = True
        except pyhf.exceptions.FailedMinimization as err:  # its -2 ln L is still a bound
            minimum, valid = float(err.result.fun), False
        out.update(status="ok", start=init, slsqp=stopped, converged=minimum,
                   converged_valid=valid, gap=stopped - minimum)
    else:
        raise ValueError(kind)
    out["seconds"] = time.perf_counter() - start
    return out


def timed_child(kind: str, likelihood: str, patch: str, fixed: list[str], timeout: float
                ) -> dict[str, Any]:
    """Run one measurement in a fresh process; its JSON result, or why there is none."""
    args = [PY, str(Path(__file__).resolve()), "_child", kind, likelihood, patch,
            ",".join(fixed)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": time.perf_counter() - start,
                "error": f"no result within {timeout:g} s"}
    if proc.returncode != 0:
        return {"status": "crashed", "seconds": time.perf_counter() - start,
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the benchmark ---------------------------------------------------------------------------


def _patch_names(likelihood: str) -> set[str]:
    patchset = json.loads((DATA / likelihood / "patchset.json").read_text())
    return {p["metadata"]["name"] for p in patchset["patches"]}


def stored_references(likelihood: str) -> dict[str, Any]:
    path = DATA / likelihood / "reference.json"
    return json.loads(path.read_text()) if path.exists() else {"patches": {}}


def measure(likelihood: str, patch: str, timeout: float, reuse: bool) -> dict[str, Any]:
    """One row: pyhf's reference (with FIXES), steps.limits and SLSQP's gap (as published),
    and how they compare."""
    fixed = FIXES.get(likelihood, ([], ""))[0]
    row: dict[str, Any] = {"likelihood": likelihood, "patch": patch, "fixed": fixed}
    stored = stored_references(likelihood)["patches"].get(patch)
    if reuse and stored is not None and stored.get("fixed", []) == fixed:
        row["pyhf"] = {"status": "ok", "limits": [stored["observed"], *stored["expected"]],
                       "seconds": stored["seconds"], "stored": True}
    else:
        row["pyhf"] = timed_child("ref", likelihood, patch, fixed, timeout)
    row["ours"] = timed_child("ours", likelihood, patch, [], timeout)
    row["slsqp"] = timed_child("gap", likelihood, patch, [], timeout)
    for side in ("ours", "slsqp", "pyhf"):
        if "parameters" in row[side]:
            row["parameters"] = row[side]["parameters"]
    ref, ours = row["pyhf"], row["ours"]
    if ref["status"] == ours["status"] == "ok":
        row["max_rel_diff"] = max(abs(a - b) / abs(b) for a, b in
                                  zip(ours["limits"], ref["limits"], strict=True))
        row["ratio"] = ref["seconds"] / ours["seconds"]
    return row


def write_references(rows: list[dict[str, Any]]) -> None:
    """Store, per patch, pyhf's limits; a patch whose reference was reused keeps the stored
    one."""
    import iminuit
    import pyhf

    for likelihood in sorted({r["likelihood"] for r in rows}):
        store = stored_references(likelihood)
        store["recipe"] = {**RECIPE, "pyhf": pyhf.__version__, "iminuit": iminuit.__version__}
        store["generated_by"] = "benchmarks/likelihoods.py --write-references"
        done: set[str] = set()
        for row in rows:
            ref = row["pyhf"]
            if row["likelihood"] != likelihood or row["patch"] in done or ref["status"] != "ok":
                continue
            done.add(row["patch"])
            if ref.get("stored"):
                continue
            entry: dict[str, Any] = {"observed": ref["limits"][0], "expected": ref["limits"][1:],
                                     "fixed": row["fixed"], "seconds": ref["seconds"]}
            if row["fixed"]:
                entry["why_fixed"] = FIXES[likelihood][1]
            store["patches"][row["patch"]] = entry
        store["patches"] = dict(sorted(store["patches"].items()))
        path = DATA / likelihood / "reference.json"
        path.write_text(json.dumps(store, indent=2) + "\n")
        print(f"wrote {path.relative_to(REPO)}", flush=True)


def _cell(side: dict[str, Any]) -> str:
    """A time, or why there is none."""
    if side["status"] == "ok":
        return f"{side['seconds']:.1f} s" + (" (stored)" if side.get("stored") else "")
    return f"{side['status']} after {side['seconds']:.0f} s"


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores", "",
             ("| likelihood | patch | parameters | pyhf | pubflow | pyhf / pubflow | "
              "SLSQP 2NLL gap | max rel. diff | crossings | fixed by pubflow |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for row in results["rows"]:
        patch = row["patch"] + (" (pyhf: " + ", ".join(row["fixed"]) + " fixed)"
                                if row["fixed"] else "")
        gap = row["slsqp"]
        gap_cell = (f"{gap['gap']:.3g}" + ("" if gap["converged_valid"] else " (Minuit invalid)")
                    if gap["status"] == "ok" else gap["status"])
        ours = row["ours"]
        crossings = (", ".join(f"{k}: {len(v)}" for k, v in ours["crossings"].items()) or "none"
                     if ours["status"] == "ok" else "-")
        ratio = f"{row['ratio']:.1f}x" if "ratio" in row else "-"
        diff = f"{row['max_rel_diff']:.1e}" if "max_rel_diff" in row else "-"
        frozen = (", ".join(f"{k} (2NLL moves < {v:.0e})" for k, v in ours["frozen"].items())
                  or "none" if ours["status"] == "ok" else "-")
        lines.append(f"| {row['likelihood']} | {patch} | {row.get('parameters', '?')} | "
                     f"{_cell(row['pyhf'])} | {_cell(ours)} | {ratio} | {gap_cell} | {diff} | "
                     f"{crossings} | {frozen} |")
        for side, name in ((row["pyhf"], "pyhf"), (ours, "pubflow")):
            if side["status"] != "ok":
                notes.append(f"- {row['patch']}{' (fixed)' if row['fixed'] else ''}, {name}: "
                             f"{side['error'][:300]}")
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, likelihood, patch, fixed = sys.argv[2:6]
        print(json.dumps(child(kind, likelihood, patch, [f for f in fixed.split(",") if f])))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("--likelihoods", nargs="+", choices=sorted(DEFAULT_PATCHES),
                   default=sorted(DEFAULT_PATCHES), help="stored likelihoods to measure")
    p.add_argument("--patches", nargs="+",
                   help="patch names (default: three per likelihood, see DEFAULT_PATCHES)")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds allowed per measurement (default 3600)")
    p.add_argument("--reuse-references", action="store_true",
                   help="take pyhf's limits and time from reference.json where stored")
    p.add_argument("--write-references", action="store_true",
                   help="store pyhf's converged limits in tests/data/likelihoods/*/"
                   "reference.json")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "likelihoods.json"),
                   help="results to write (JSON; default benchmarks/likelihoods.json)")
    args = p.parse_args()
    chosen = {likelihood: ([n for n in args.patches if n in _patch_names(likelihood)]
                           if args.patches else DEFAULT_PATCHES[likelihood])
              for likelihood in args.likelihoods}
    unknown = set(args.patches or []) - {n for names in chosen.values() for n in names}
    if unknown:
        p.error(f"no such patch in {', '.join(args.likelihoods)}: {', '.join(sorted(unknown))}")
    rows = []
    for likelihood, names in chosen.items():
        for patch in names:
            print(f"{likelihood} {patch}", flush=True)
            row = measure(likelihood, patch, args.timeout, args.reuse_references)
            print(f"  pyhf {_cell(row['pyhf'])}, pubflow {_cell(row['ours'])}, "
                  f"max relative difference {row.get('max_rel_diff', '-')}", flush=True)
            rows.append(row)
    results = {"machine": machine(), "recipe": RECIPE, "timeout_s": args.timeout, "rows": rows}
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    if args.write_references:
        write_references(rows)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
