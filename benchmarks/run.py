"""pubflow benchmarks: measured side by side in one run, reported as ratios against goals.

    .venv/bin/python benchmarks/run.py            # everything, about 8 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # smaller sizes, for a smoke test

Separate from the tests. Each measurement runs in a fresh process (peak RSS from wait4);
input files are read once before timing so every contender reads from the page cache.
Prints a table and writes benchmarks/results.json with the machine's CPU and core count.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent
RUN_FILES = ["Snakefile", "pyproject.toml", "reana.yaml"]
RUN_DIRS = ["steps", "workflows", "inputs"]
BENCH_CONFIG = "inputs/bench.yaml"  # the benchmark's variant of the bundled analysis


# --- helpers -------------------------------------------------------------------------------


def timed_child(args: list[str], cwd: Path) -> tuple[dict[str, Any], float]:
    """Run ``run.py _child ...`` in a fresh process; its JSON result and peak RSS (MB)."""
    proc = subprocess.run([PY, str(Path(__file__).resolve()), "_child", *args], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, result["rss_mb"]


def stage(dest: Path) -> Path:
    """A copy of the repository's workflow files to run in."""
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(REPO / name, dest / name)
    for name in RUN_DIRS:
        shutil.copytree(REPO / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def sh(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    return time.perf_counter() - start


# --- configs -------------------------------------------------------------------------------

BASE_CUT = "(Q1 * Q2 < 0) & (pt1 > 20) & (pt2 > 20) & (abs(eta1) < 2.1) & (abs(eta2) < 2.1)"


def throughput_config(base: dict[str, Any], ntuple: str) -> dict[str, Any]:
    """A weight-systematics analysis: 4 regions x (nominal + 2 weight systematics x 2) from
    one tree: 20 histograms per file, the usual shape of a real selection."""
    c = copy.deepcopy(base)
    binning = base["Regions"][0]["Binning"]
    regions = {
        "BB": "(abs(eta1) < 1.2) & (abs(eta2) < 1.2)",
        "BE": "((abs(eta1) < 1.2) != (abs(eta2) < 1.2))",
        "EE": "(abs(eta1) >= 1.2) & (abs(eta2) >= 1.2)",
        "HighPt": "(pt1 > 40) & (pt2 > 40)",
    }
    c["Regions"] = [{"Name": n, "Variable": "M", "Binning": binning,
                     "Filter": f"{BASE_CUT} & {cut} & (M > 60) & (M < 120)"}
                    for n, cut in regions.items()]
    data = next(s for s in base["Samples"] if s.get("Data"))
    data = {**data, "Filter": f"(Type == 'GG') & {BASE_CUT}"}
    c["Samples"] = [data, {"Name": "Zmumu", "Tree": "events", "SamplePath": ntuple,
                           "Weight": "weight"}]
    c["NormFactors"] = [{"Name": "mu_Z", "Samples": "Zmumu"}]
    c["Systematics"] = [
        {"Name": "trigger", "Type": "NormPlusShape", "Samples": "Zmumu",
         "Up": {"Weight": "weight * 1.01"}, "Down": {"Weight": "weight * 0.99"}},
        {"Name": "efficiency", "Type": "NormPlusShape", "Samples": "Zmumu",
         "Up": {"Weight": "weight * (1 + 0.0005 * (pt1 + pt2))"},
         "Down": {"Weight": "weight * (1 - 0.0005 * (pt1 + pt2))"}},
    ]
    c.pop("Scan", None)
    c["Simulation"]["Samples"] = [s for s in c["Simulation"]["Samples"] if s["Name"] == "Zmumu"]
    return c


def split_config(base: dict[str, Any], files: int) -> dict[str, Any]:
    """The bundled analysis with the Z sample split over ``files`` simulated files."""
    c = copy.deepcopy(base)
    z = next(s for s in c["Samples"] if s["Name"] == "Zmumu")
    z["SamplePath"] = [f"results/simulate/Zmumu_{i:03d}.root" for i in range(files)]
    return c


# --- children (run in a fresh process) -------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, config_path: str, ntuple: str) -> dict[str, Any]:
    sys.path.insert(0, str(Path.cwd()))
    from steps import layout, select
    from steps.config import load_analysis

    config = load_analysis(config_path)
    templates = [t for t in select.templates(config) if ntuple in t.paths]
    # every contender pays its imports before the clock starts: the per-file work is timed
    import boost_histogram  # noqa: F401
    import cabinetry.contrib.histogram_creator
    import tqdm  # noqa: F401
    import uproot
    cpu0 = time.process_time()
    if kind == "select":
        start = time.perf_counter()
        select.fill_file(ntuple, templates)
        seconds = time.perf_counter() - start
    elif kind == "floor":
        import uproot
        from uproot.language.python import python_language

        with uproot.open(ntuple) as f:
            tree = f["events"]
            keys = set(tree.keys())
            branches = sorted({b for t in templates for e in t.expressions().values()
                               for b in python_language.free_symbols(e, keys, {}, "", "")})
            start = time.perf_counter()
            for _ in tree.iterate(branches, step_size=select.DEFAULT_STEP_SIZE, library="np"):
                pass
            seconds = time.perf_counter() - start
    elif kind == "cabinetry":
        import cabinetry

        folder = tempfile.mkdtemp()
        c = layout.cabinetry_config(config)
        c["General"]["HistogramFolder"] = folder
        c["Samples"] = [s for s in c["Samples"] if not s.get("Data")]  # the MC file only
        c["Samples"].insert(0, {"Name": "Data", "Tree": "events", "Data": True,
                                "SamplePath": ntuple, "Filter": "M < 0"})
        start = time.perf_counter()
        cabinetry.templates.build(c, method="uproot")
        seconds = time.perf_counter() - start
        shutil.rmtree(folder)
    else:
        raise ValueError(kind)
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu0, "rss_mb": _rss_mb(),
            "histograms": len(templates)}


def fit_child(kind: str, workspace: str, patchset: str, mass: int) -> dict[str, Any]:
    import pyhf

    sys.path.insert(0, str(Path.cwd()))
    from steps.limits import upper_limit

    ps = pyhf.PatchSet(json.loads(Path(patchset).read_text()))
    ws = pyhf.Workspace(ps.apply(pyhf.Workspace(json.loads(Path(workspace).read_text())),
                                 [mass]))
    model = ws.model()
    data = ws.data(model)
    start = time.perf_counter()
    if kind == "ours":
        r = upper_limit(data, model)
        values = [r.observed, *r.expected]
    else:
        # the reference converged (pyhf's default SLSQP can stop early): Minuit, tight
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-5))
        obs, exp = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None)
        values = [float(obs), *map(float, exp)]
    return {"seconds": time.perf_counter() - start, "values": values,
            "parameters": model.config.npars, "rss_mb": _rss_mb()}


# --- benchmarks ----------------------------------------------------------------------------


def bench_selection(work: Path, base: dict[str, Any], sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        ntuple = f"results/bench/Zmumu_{n}.root"
        config = throughput_config(base, ntuple)
        cfg = work / f"inputs/bench_{n}.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        sh([PY, "-m", "steps.simulate", "--config", str(cfg), "--output", ntuple,
            "--events", str(n), "--nominal-only"], work)
        warm(work / ntuple)
        sel, _ = timed_child(["select", str(cfg), ntuple], work)
        floor, _ = timed_child(["floor", str(cfg), ntuple], work)
        cab, _ = timed_child(["cabinetry", str(cfg), ntuple], work)
        rows.append({"events": n, "histograms": sel["histograms"],
                     "select_s": sel["seconds"], "select_cpu_s": sel["cpu_s"],
                     "floor_s": floor["seconds"], "floor_cpu_s": floor["cpu_s"],
                     "cabinetry_s": cab["seconds"], "select_rss_mb": sel["rss_mb"],
                     "floor_rss_mb": floor["rss_mb"], "cabinetry_rss_mb": cab["rss_mb"]})
        print(f"  {n:>9,} events: select {sel['seconds']:.2f} s, floor {floor['seconds']:.2f} s,"
              f" cabinetry {cab['seconds']:.2f} s, select peak RSS {sel['rss_mb']:.0f} MB",
              flush=True)
        (work / ntuple).unlink()
    return rows


def bench_fits(work: Path, masses: list[int]) -> list[dict]:
    sh(["snakemake", "--cores", "2", "model"], work)
    rows = []
    for m in masses:
        ours, _ = timed_child(["fit", "ours", "results/model/workspace.json",
                               "results/model/patchset.json", str(m)], work)
        ref, _ = timed_child(["fit", "pyhf", "results/model/workspace.json",
                              "results/model/patchset.json", str(m)], work)
        worst = max(abs(a - b) / abs(b) for a, b in zip(ours["values"], ref["values"],
                                                         strict=True))
        rows.append({"mass": m, "parameters": ours["parameters"], "ours_s": ours["seconds"],
                     "pyhf_s": ref["seconds"], "max_rel_diff": worst,
                     "ours": ours["values"], "pyhf": ref["values"]})
        print(f"  m = {m} GeV ({ours['parameters']} parameters): ours {ours['seconds']:.1f} s,"
              f" pyhf {ref['seconds']:.1f} s, max relative difference {worst:.1e}", flush=True)
    return rows


def bench_overhead(root: Path, base: dict[str, Any], counts: list[int]) -> dict[str, Any]:
    dry = {}
    for n in counts:
        work = stage(root / f"dry{n}")
        (work / BENCH_CONFIG).write_text(yaml.safe_dump(split_config(base, n)))
        given = ["--configfile", BENCH_CONFIG]
        sh(["snakemake", "-n", "--cores", "1", *given], work)  # first call compiles caches
        dry[n] = min(sh(["snakemake", "-n", "--cores", "1", *given], work) for _ in range(2))
        print(f"  snakemake -n with {n:>3} input files: {dry[n]:.2f} s", flush=True)
    return {"dry_run_s": dry}


def bench_scaling(root: Path, base: dict[str, Any], files: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cores in (1, 2):
        work = stage(root / f"cores{cores}")
        (work / BENCH_CONFIG).write_text(yaml.safe_dump(split_config(base, files)))
        given = ["--configfile", BENCH_CONFIG]
        out[f"wall_{cores}_core_s"] = sh(["snakemake", "--cores", str(cores), *given], work)
        print(f"  whole run, {files} input files, {cores} core(s): "
              f"{out[f'wall_{cores}_core_s']:.1f} s", flush=True)
    out["noop_rerun_s"] = min(sh(["snakemake", "--cores", "2", *given], work)
                              for _ in range(2))
    print(f"  no-op re-run: {out['noop_rerun_s']:.2f} s", flush=True)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores", "",
             "| measurement | value | goal | met |", "|---|---|---|---|"]

    def row(name: str, value: str, goal: str, ok: bool) -> None:
        lines.append(f"| {name} | {value} | {goal} | {'yes' if ok else 'NO'} |")

    sel = results["selection"]
    for r in sel:
        n = r["events"]
        rate = n / r["select_cpu_s"] / 1e6
        row(f"select {n:.0e} ev: events per CPU-second", f"{rate:.2f} M "
            f"(wall {n / r['select_s'] / 1e6:.2f} M/s with read-ahead)", "-", True)
        row(f"select / floor CPU time at {n:.0e}",
            f"{r['select_cpu_s'] / r['floor_cpu_s']:.2f}x", "-", True)
        row(f"select / floor at {n:.0e}", f"{r['select_s'] / r['floor_s']:.2f}x",
            "<= 1.25x at 1e7", r["select_s"] / r["floor_s"] <= 1.25 or n < max(
                x["events"] for x in sel))
        row(f"cabinetry / select at {n:.0e}", f"{r['cabinetry_s'] / r['select_s']:.1f}x",
            ">= 5x", r["cabinetry_s"] / r["select_s"] >= 5)
    rss = [r["select_rss_mb"] for r in sel]
    if len(rss) >= 2:
        growth = rss[-1] / rss[-2]
        row("select peak RSS, last two sizes", " -> ".join(f"{x:.0f} MB" for x in rss),
            "flat within 20%", growth <= 1.2)
    for f in results["fits"]:
        speed = f["pyhf_s"] / f["ours_s"]
        row(f"limit at m={f['mass']}: pyhf / ours", f"{speed:.1f}x ({f['ours_s']:.1f} s vs "
            f"{f['pyhf_s']:.1f} s)", ">= 10x", speed >= 10)
        row(f"limit at m={f['mass']}: max relative difference", f"{f['max_rel_diff']:.1e}",
            "<= 1e-4", f["max_rel_diff"] <= 1e-4)
    dry = results["overhead"]["dry_run_s"]
    counts = sorted(dry)
    for n in counts:
        row(f"snakemake -n, {n} files", f"{dry[n]:.2f} s", "-", True)
    if len(counts) >= 2:
        lo, hi = counts[0], counts[-1]
        per_file_growth = (dry[hi] - dry[lo]) / (hi - lo)
        mid = counts[len(counts) // 2]
        linear = dry[hi] - dry[mid] <= 1.5 * per_file_growth * (hi - mid) + 0.5
        row("dry-run cost per extra file", f"{per_file_growth * 1000:.0f} ms",
            "no worse than linear", linear)
    sc = results["scaling"]
    row("no-op re-run", f"{sc['noop_rerun_s']:.2f} s", "< 3 s", sc["noop_rerun_s"] < 3)
    speedup = sc["wall_1_core_s"] / sc["wall_2_core_s"]
    row("whole run, 1 core / 2 cores", f"{speedup:.2f}x ({sc['wall_1_core_s']:.0f} s vs "
        f"{sc['wall_2_core_s']:.0f} s)", ">= 1.7x", speedup >= 1.7)
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind = sys.argv[2]
        if kind == "fit":
            result = fit_child(sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
        else:
            result = run_child(kind, sys.argv[3], sys.argv[4])
        print(json.dumps(result))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    p.add_argument("--output", default=str(REPO / "benchmarks/results.json"))
    p.add_argument("--only", nargs="+", choices=["selection", "fits", "overhead", "scaling"])
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from steps.layout import resolve

    # the bundled analysis resolved (cabinetry's keys and pubflow's): a config Snakemake takes
    base = resolve(yaml.safe_load((REPO / "inputs/pubflow.yaml").read_text()), base=REPO)
    sizes = [10**4, 10**5] if args.quick else [10**5, 10**6, 10**7]
    parts = args.only or ["selection", "fits", "overhead", "scaling"]
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="pubflow-bench-") as tmp:
        root = Path(tmp)
        work = stage(root / "main")
        if "selection" in parts:
            print("selection throughput and memory", flush=True)
            results["selection"] = bench_selection(work, base, sizes)
        if "fits" in parts:
            print("limits per mass point", flush=True)
            results["fits"] = bench_fits(work, [70] if args.quick else [70, 80])
        if "overhead" in parts:
            print("workflow overhead", flush=True)
            results["overhead"] = bench_overhead(root, base, [1, 10] if args.quick
                                                 else [1, 10, 100])
        if "scaling" in parts:
            print("scaling across cores", flush=True)
            results["scaling"] = bench_scaling(root, base, 10)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    if set(parts) == {"selection", "fits", "overhead", "scaling"}:
        print()
        print(table(results))


if __name__ == "__main__":
    main()
