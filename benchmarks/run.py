"""pubflow benchmarks: measured side by side in one run, reported as ratios against goals.

    .venv/bin/python benchmarks/run.py            # everything but scale, ~10 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # smaller sizes, for a smoke test
    .venv/bin/python benchmarks/run.py --only scale                  # 100 x 10^6 over XRootD
    .venv/bin/python benchmarks/run.py --only scale --files 4 --events-per-file 100000

Separate from the tests. Each measurement runs in a fresh process (peak RSS from wait4);
input files are read once before timing so every contender reads from the page cache.
Selection timings are repeated (``--repeat``, median taken), contenders interleaved, with
the load average at each: on a machine other work shares, wall times and the scaling
across cores say little, CPU times more. Prints a table and writes
benchmarks/results.json (the parts run replace their earlier results; the others stay)
with the machine's CPU and core count.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine  # benchmarks/ is not a package: found by the path above
from xrootd_server import Server

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


def measured(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; its wall time, CPU time (user + system) and peak RSS (MB), from wait4,
    and (``child``) the JSON result a ``_child`` prints."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err,
                                env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{errors[-3000:]}")
    lines = text.strip().splitlines()
    child = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "child": child}


def parallel(jobs: list[Callable[[], Any]], workers: int = 2) -> tuple[list[Any], float]:
    """Run ``jobs`` ``workers`` at a time, as Snakemake's ``--cores 2`` would; results in
    order, and the wall time of the whole."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    return results, time.perf_counter() - start


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
    c["Simulation"].pop("Scan", None)  # no Scan: its resonances are refused
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


def run_child(kind: str, config_path: str, ntuple: str, templates_path: str | None = None
              ) -> dict[str, Any]:
    """One contender on one file; with ``templates_path`` (steps.templates' output) the
    templates are read as a workflow's select job reads them, without importing cabinetry."""
    sys.path.insert(0, str(Path.cwd()))
    from steps import layout, select
    from steps.config import load_analysis

    config = load_analysis(config_path)
    plan = (select.templates(config) if templates_path is None
            else select.load_templates(templates_path, config_path))
    templates = [t for t in plan if ntuple in t.paths]
    # every contender pays its imports before the clock starts: the per-file work is timed
    import boost_histogram  # noqa: F401
    import tqdm  # noqa: F401
    import uproot
    if kind == "cabinetry":
        import cabinetry.contrib.histogram_creator
    cpu0 = time.process_time()
    extra: dict[str, Any] = {}
    if kind == "select":
        start = time.perf_counter()
        select.fill_file(ntuple, templates)
        seconds = time.perf_counter() - start
    elif kind in ("floor", "floor-default"):
        from uproot.language.python import python_language

        if kind == "floor":  # the floor lowered as select's reading is: the same allocator
            select._keep_freed_memory()
        with uproot.open(ntuple) as f:
            tree = f["events"]
            keys = set(tree.keys())
            branches = sorted({b for t in templates for e in t.expressions().values()
                               for b in python_language.free_symbols(e, keys, {}, "", "")})
            start = time.perf_counter()
            for _ in tree.iterate(branches, step_size=select.DEFAULT_STEP_SIZE, library="np"):
                pass
            seconds = time.perf_counter() - start
            extra = {"requested_bytes": f.file.source.num_requested_bytes,
                     "requests": f.file.source.num_requests, "entries": tree.num_entries}
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
            "histograms": len(templates), **extra}


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


def bench_selection(work: Path, base: dict[str, Any], sizes: list[int], repeat: int
                    ) -> list[dict]:
    """select against the read floor (and cabinetry once), ``repeat`` times interleaved."""
    rows = []
    for n in sizes:
        ntuple = f"results/bench/Zmumu_{n}.root"
        config = throughput_config(base, ntuple)
        cfg = work / f"inputs/bench_{n}.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        sh([PY, "-m", "steps.simulate", "--config", str(cfg), "--output", ntuple,
            "--events", str(n), "--nominal-only"], work)
        warm(work / ntuple)
        runs: dict[str, list[dict[str, Any]]] = {"select": [], "floor": [], "floor-default": []}
        for _ in range(repeat):
            for kind, found in runs.items():
                before = load()
                result, _ = timed_child([kind, str(cfg), ntuple], work)
                found.append({**result, "load": before})
        cab, _ = timed_child(["cabinetry", str(cfg), ntuple], work)
        med = {kind: {k: statistics.median(r[k] for r in found)
                      for k in ("seconds", "cpu_s", "rss_mb")} for kind, found in runs.items()}
        ratios = [(s["seconds"] / f["seconds"], s["cpu_s"] / f["cpu_s"])
                  for s, f in zip(runs["select"], runs["floor"], strict=True)]
        rows.append({"events": n, "histograms": runs["select"][0]["histograms"],
                     "select_s": med["select"]["seconds"], "select_cpu_s": med["select"]["cpu_s"],
                     "floor_s": med["floor"]["seconds"], "floor_cpu_s": med["floor"]["cpu_s"],
                     "floor_default_s": med["floor-default"]["seconds"],
                     "floor_default_cpu_s": med["floor-default"]["cpu_s"],
                     "wall_ratio": statistics.median(w for w, _ in ratios),
                     "cpu_ratio": statistics.median(c for _, c in ratios),
                     "cabinetry_s": cab["seconds"], "select_rss_mb": med["select"]["rss_mb"],
                     "floor_rss_mb": med["floor"]["rss_mb"], "cabinetry_rss_mb": cab["rss_mb"],
                     "runs": runs})
        r = rows[-1]
        print(f"  {n:>9,} events: select {r['select_s']:.2f} s (CPU {r['select_cpu_s']:.2f} s),"
              f" floor {r['floor_s']:.2f} s (CPU {r['floor_cpu_s']:.2f} s; default allocator"
              f" {r['floor_default_cpu_s']:.2f} s), ratios {r['wall_ratio']:.2f}x wall,"
              f" {r['cpu_ratio']:.2f}x CPU; cabinetry {cab['seconds']:.2f} s; select peak RSS"
              f" {r['select_rss_mb']:.0f} MB; load {min(x['load'] for x in runs['select']):.1f}"
              f"-{max(x['load'] for x in runs['select']):.1f}", flush=True)
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


def bench_scaling(root: Path, base: dict[str, Any], files: int, repeat: int
                  ) -> dict[str, Any]:
    """The whole run on 1 and 2 cores, ``repeat`` times alternating (median): the speed-up
    is only as good as the second core is free, which the load average says."""
    out: dict[str, Any] = {"runs": []}
    for i in range(repeat):
        for cores in (1, 2):
            work = stage(root / f"cores{cores}-{i}")
            (work / BENCH_CONFIG).write_text(yaml.safe_dump(split_config(base, files)))
            given = ["--configfile", BENCH_CONFIG]
            before = load()
            seconds = sh(["snakemake", "--cores", str(cores), *given], work)
            out["runs"].append({"cores": cores, "seconds": seconds, "load": before,
                                "load_after": load()})
            print(f"  whole run, {files} input files, {cores} core(s): {seconds:.1f} s "
                  f"(load {before:.1f})", flush=True)
    for cores in (1, 2):
        out[f"wall_{cores}_core_s"] = statistics.median(
            r["seconds"] for r in out["runs"] if r["cores"] == cores)
    out["noop_rerun_s"] = min(sh(["snakemake", "--cores", "2", *given], work)
                              for _ in range(2))
    print(f"  no-op re-run: {out['noop_rerun_s']:.2f} s", flush=True)
    return out


def scale_config(base: dict[str, Any], paths: list[str], per_file: int) -> dict[str, Any]:
    """The throughput analysis with its simulated sample split over ``paths``, ``per_file``
    events each (simulate gives each file its own random stream: stream_seed's file index)."""
    c = throughput_config(base, paths[0])
    z = next(s for s in c["Samples"] if s["Name"] == "Zmumu")
    z["SamplePath"] = list(paths)
    c["Simulation"]["Samples"][0]["Events"] = per_file * len(paths)
    return c


def _needed_bytes(paths: list[Path], config: dict[str, Any]) -> dict[str, Any]:
    """Compressed and uncompressed bytes of the branches the selection needs, on disk."""
    import uproot
    from uproot.language.python import python_language

    sys.path.insert(0, str(REPO))
    from steps import select

    templates = select.templates(config)
    compressed = uncompressed = size = 0
    for path in paths:
        exprs = {e for t in templates if str(path) in t.paths for e in t.expressions().values()}
        with uproot.open(path) as f:
            tree = f["events"]
            keys = set(tree.keys())
            needed = sorted({b for e in exprs
                             for b in python_language.free_symbols(e, keys, {}, "", "")})
            compressed += sum(tree[b].compressed_bytes for b in needed)
            uncompressed += sum(tree[b].uncompressed_bytes for b in needed)
        size += path.stat().st_size
    return {"branches": needed, "compressed_bytes": compressed,
            "uncompressed_bytes": uncompressed, "file_bytes": size}


def _phase(name: str, server: Server, jobs: list[list[str]], work: Path, events: int
           ) -> dict[str, Any]:
    """Run ``jobs`` two at a time; wall, CPU, events per second per core, bytes served."""
    before, served = load(), server.bytes_read()
    results, wall = parallel([lambda cmd=cmd: measured(cmd, work) for cmd in jobs])
    out = {"wall_s": wall, "cpu_s": sum(r["cpu_s"] for r in results),
           "max_rss_mb": max(r["rss_mb"] for r in results), "load": before,
           "load_after": load(), "served_bytes": server.bytes_read() - served,
           "jobs": len(jobs)}
    children = [r["child"] for r in results if r["child"] is not None]
    if children:  # the reading alone, timed inside each process (imports excluded)
        out["reading_s"] = sum(c["seconds"] for c in children)
        out["reading_cpu_s"] = sum(c["cpu_s"] for c in children)
        if all("requested_bytes" in c for c in children):
            out["uproot_requested_bytes"] = sum(c["requested_bytes"] for c in children)
    out["events_per_s_per_core"] = events / wall / 2
    out["events_per_cpu_s"] = events / out["cpu_s"]
    out["served_bytes_per_event"] = out["served_bytes"] / events
    print(f"  {name}: {wall:.1f} s wall, {out['cpu_s']:.1f} s CPU, "
          f"{out['events_per_s_per_core'] / 1e6:.2f} M events/s per core, "
          f"{out['served_bytes_per_event']:.1f} bytes served per event "
          f"(load {before:.1f} -> {out['load_after']:.1f})", flush=True)
    return out


def bench_scale(root: Path, base: dict[str, Any], files: int, per_file: int
                ) -> dict[str, Any]:
    """select over XRootD on ``files`` simulated files of ``per_file`` events, then merge.

    The files are made by the simulate step (each its own random stream) in the server's
    export, then read over root:// two jobs at a time: the read floor (uproot reading the
    needed branches, in-process time), select's reading internals (``fill_file``,
    in-process) and the select command as a workflow job runs it (imports, config, checks,
    output included); then the merge of 10, 30, 100 (up to ``files``) partials, whose peak
    memory must not grow with the number of files.
    """
    work = stage(root / "scale")
    server = Server(root / "xrootd")
    local = [server.export / f"Zmumu_{i:03d}.root" for i in range(files)]
    cfg = work / "inputs/scale_local.yaml"
    cfg.write_text(yaml.safe_dump(scale_config(base, [str(p) for p in local], per_file),
                                  sort_keys=False))
    _, seconds = parallel([lambda p=p: sh([PY, "-m", "steps.simulate", "--config", str(cfg),
                                           "--output", str(p), "--nominal-only"], work)
                           for p in local])
    for path in local:
        path.chmod(0o644)  # readable by the xrootd user
        warm(path)
    events = files * per_file
    out: dict[str, Any] = {"files": files, "events_per_file": per_file, "events": events,
                           "generate_s": seconds,
                           "on_disk": _needed_bytes(local, yaml.safe_load(cfg.read_text()))}
    print(f"  generated {files} files x {per_file:,} events in {seconds:.0f} s "
          f"({out['on_disk']['file_bytes'] / 1e9:.2f} GB)", flush=True)
    server.start()
    try:
        urls = [server.url(p) for p in local]
        remote = work / "inputs/scale.yaml"
        remote.write_text(yaml.safe_dump(scale_config(base, urls, per_file), sort_keys=False))
        me = str(Path(__file__).resolve())
        partials = [work / f"results/select/Zmumu_{i:03d}.npz" for i in range(files)]
        # resolved once, as the workflow's templates rule does: no job imports cabinetry
        plan = str(work / "results/templates.json")
        sh([PY, "-m", "steps.templates", "--config", str(remote), "--output", plan], work)
        out["floor"] = _phase("read floor over XRootD", server, [
            [PY, me, "_child", "floor", str(remote), u, plan] for u in urls], work, events)
        out["select_internal"] = _phase("select's fill_file over XRootD", server, [
            [PY, me, "_child", "select", str(remote), u, plan] for u in urls], work, events)
        out["select_job"] = _phase("select jobs (python -m steps.select) over XRootD", server, [
            [PY, "-m", "steps.select", "--config", str(remote), "--templates", plan,
             "--input", u, "--output", str(npz)] for u, npz in zip(urls, partials, strict=True)],
            work, events)
        data = next(s for s in base["Samples"] if s.get("Data"))["SamplePath"]
        data_npz = work / "results/select/data.npz"
        sh([PY, "-m", "steps.select", "--config", str(remote), "--input", data,
            "--output", str(data_npz)], work)
        out["merge"] = []
        for k in sorted({min(k, files) for k in (10, 30, 100)}):
            sub = work / f"inputs/scale_{k}.yaml"
            sub.write_text(yaml.safe_dump(scale_config(base, urls[:k], per_file),
                                          sort_keys=False))
            pairs = [f"{data}={data_npz}", *(f"{u}={n}" for u, n in zip(urls[:k], partials[:k],
                                                                       strict=True))]
            m = measured([PY, "-m", "steps.merge", "--config", str(sub), "--partials", *pairs,
                          "--output", str(work / f"results/histograms-{k}"),
                          "--summary", str(work / f"results/histograms-{k}.json")], work)
            out["merge"].append({"files": k, **m})
            print(f"  merge of {k} files: {m['seconds']:.1f} s, peak RSS {m['rss_mb']:.0f} MB",
                  flush=True)
    finally:
        server.stop()
    disk = out["on_disk"]
    for key in ("floor", "select_internal", "select_job"):
        out[key]["served_per_needed_compressed"] = (out[key]["served_bytes"]
                                                     / disk["compressed_bytes"])
    # whole jobs (each pays its imports: the select command its config, checks and output)
    out["ratio_wall"] = {k: out[k]["wall_s"] / out["floor"]["wall_s"]
                         for k in ("select_internal", "select_job")}
    out["ratio_cpu"] = {k: out[k]["cpu_s"] / out["floor"]["cpu_s"]
                        for k in ("select_internal", "select_job")}
    # the reading alone, in-process, summed over the files
    out["ratio_reading"] = {
        "wall": out["select_internal"]["reading_s"] / out["floor"]["reading_s"],
        "cpu": out["select_internal"]["reading_cpu_s"] / out["floor"]["reading_cpu_s"]}
    for path in [*local, *partials]:
        path.unlink(missing_ok=True)
    return out


def table(results: dict[str, Any]) -> str:
    """The results against their goals, for the parts present."""
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores", "",
             "| measurement | value | goal | met |", "|---|---|---|---|"]

    def row(name: str, value: str, goal: str, ok: bool) -> None:
        lines.append(f"| {name} | {value} | {goal} | {'yes' if ok else 'NO'} |")

    sel = results.get("selection", [])
    for r in sel:
        n, last = r["events"], r["events"] == max(x["events"] for x in sel)
        loads = [x["load"] for x in r.get("runs", {}).get("select", [])] or [float("nan")]
        row(f"select {n:.0e} ev: events per CPU-second", f"{n / r['select_cpu_s'] / 1e6:.2f} M "
            f"(wall {n / r['select_s'] / 1e6:.2f} M/s)", "-", True)
        wall = r.get("wall_ratio", r["select_s"] / r["floor_s"])
        cpu = r.get("cpu_ratio", r["select_cpu_s"] / r["floor_cpu_s"])
        row(f"select / floor at {n:.0e}, wall (load {min(loads):.1f}-{max(loads):.1f})",
            f"{wall:.2f}x", "<= 1.1x at 1e7", wall <= 1.1 or not last)
        row(f"select / floor at {n:.0e}, CPU", f"{cpu:.2f}x", "<= 1.3x at 1e7",
            cpu <= 1.3 or not last)
        if "floor_default_cpu_s" in r:
            row(f"floor CPU at {n:.0e}: glibc's default allocator / select's",
                f"{r['floor_default_cpu_s']:.2f} s / {r['floor_cpu_s']:.2f} s", "-", True)
        row(f"cabinetry / select at {n:.0e}", f"{r['cabinetry_s'] / r['select_s']:.1f}x",
            ">= 5x", r["cabinetry_s"] / r["select_s"] >= 5)
    rss = [r["select_rss_mb"] for r in sel]
    if len(rss) >= 2:
        row("select peak RSS, last two sizes", " -> ".join(f"{x:.0f} MB" for x in rss),
            "flat within 20%", rss[-1] / rss[-2] <= 1.2)
    for f in results.get("fits", []):
        speed = f["pyhf_s"] / f["ours_s"]
        row(f"limit at m={f['mass']}: pyhf / ours", f"{speed:.1f}x ({f['ours_s']:.1f} s vs "
            f"{f['pyhf_s']:.1f} s)", ">= 10x", speed >= 10)
        row(f"limit at m={f['mass']}: max relative difference", f"{f['max_rel_diff']:.1e}",
            "<= 1e-4", f["max_rel_diff"] <= 1e-4)
    dry = {int(k): v for k, v in results.get("overhead", {}).get("dry_run_s", {}).items()}
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
    sc = results.get("scaling")
    if sc:
        row("no-op re-run", f"{sc['noop_rerun_s']:.2f} s", "< 3 s", sc["noop_rerun_s"] < 3)
        speedup = sc["wall_1_core_s"] / sc["wall_2_core_s"]
        loads = [r["load"] for r in sc.get("runs", [])] or [float("nan")]
        row(f"whole run, 1 core / 2 cores (load {min(loads):.1f}-{max(loads):.1f})",
            f"{speedup:.2f}x ({sc['wall_1_core_s']:.0f} s vs {sc['wall_2_core_s']:.0f} s)",
            ">= 1.8x", speedup >= 1.8)
    sc = results.get("scale")
    if sc:
        disk, n = sc["on_disk"], sc["events"]
        what = f"{sc['files']} files x {sc['events_per_file']:.0e} ev over XRootD"
        for key, label in (("floor", "read floor"), ("select_internal", "select fill_file"),
                           ("select_job", "select jobs")):
            ph = sc[key]
            row(f"{what}: {label}", f"{ph['wall_s']:.0f} s wall, "
                f"{ph['events_per_s_per_core'] / 1e6:.2f} M ev/s per core, "
                f"{ph['served_bytes_per_event']:.1f} B/ev served "
                f"(load {ph['load']:.1f})", "-", True)
        row(f"{what}: needed branches on disk (compressed)",
            f"{disk['compressed_bytes'] / n:.1f} B/ev", "-", True)
        served = sc["select_job"]["served_per_needed_compressed"]
        row(f"{what}: bytes served / needed branches' compressed bytes", f"{served:.3f}",
            "<= 1.05", served <= 1.05)
        for key in ("select_internal", "select_job"):
            row(f"{what}: {key} jobs / floor jobs, wall and CPU",
                f"{sc['ratio_wall'][key]:.2f}x, {sc['ratio_cpu'][key]:.2f}x", "-", True)
        row(f"{what}: select / floor, the reading alone (in-process), wall and CPU",
            f"{sc['ratio_reading']['wall']:.2f}x, {sc['ratio_reading']['cpu']:.2f}x", "-",
            True)
        merges = sc["merge"]
        row(f"merge peak RSS at {', '.join(str(m['files']) for m in merges)} files",
            ", ".join(f"{m['rss_mb']:.0f} MB" for m in merges), "flat within 20%",
            merges[-1]["rss_mb"] <= 1.2 * merges[0]["rss_mb"])
    return "\n".join(lines)


PARTS = ["selection", "fits", "overhead", "scaling", "scale"]
DEFAULT_PARTS = ["selection", "fits", "overhead", "scaling"]  # scale: 100 files, on request


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind = sys.argv[2]
        if kind == "fit":
            result = fit_child(sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
        else:
            result = run_child(kind, sys.argv[3], sys.argv[4], *sys.argv[5:6])
        print(json.dumps(result))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    p.add_argument("--output", default=str(REPO / "benchmarks/results.json"))
    p.add_argument("--only", nargs="+", choices=PARTS)
    p.add_argument("--repeat", type=int, default=3,
                   help="selection and scaling measurements each (the median is reported)")
    p.add_argument("--files", type=int, default=100, help="scale: input files")
    p.add_argument("--events-per-file", type=int, default=10**6, help="scale: events each")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from steps.layout import resolve

    # the bundled analysis resolved (cabinetry's keys and pubflow's): a config Snakemake takes
    base = resolve(yaml.safe_load((REPO / "inputs/pubflow.yaml").read_text()), base=REPO)
    sizes = [10**4, 10**5] if args.quick else [10**5, 10**6, 10**7]
    parts = args.only or DEFAULT_PARTS
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="pubflow-bench-") as tmp:
        root = Path(tmp)
        work = stage(root / "main")
        if "selection" in parts:
            print("selection throughput and memory", flush=True)
            results["selection"] = bench_selection(work, base, sizes, args.repeat)
        if "fits" in parts:
            print("limits per mass point", flush=True)
            results["fits"] = bench_fits(work, [70] if args.quick else [70, 80])
        if "overhead" in parts:
            print("workflow overhead", flush=True)
            results["overhead"] = bench_overhead(root, base, [1, 10] if args.quick
                                                 else [1, 10, 100])
        if "scaling" in parts:
            print("scaling across cores", flush=True)
            results["scaling"] = bench_scaling(root, base, 10, args.repeat)
        if "scale" in parts:
            print(f"{args.files} files x {args.events_per_file:,} events over XRootD",
                  flush=True)
            results["scale"] = bench_scale(root, base, args.files, args.events_per_file)
    # the parts not run keep their last results; "measured" says when each part was
    out = Path(args.output)
    previous = json.loads(out.read_text()) if out.exists() else {}
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["measured"] = {**previous.get("measured", {}), **dict.fromkeys(parts, stamp)}
    out.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    print()
    print(table({**previous, **results}))


if __name__ == "__main__":
    main()
