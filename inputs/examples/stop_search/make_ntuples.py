"""Make the ntuples of the top-squark search example: toy events, deterministic.

Writes three ROOT files of TTrees (``--output``, default: ``ntuples/`` beside this script):

- ``prediction.root``: ``signal`` (the benchmark point, m_stop = 900 GeV, m_lsp = 100 GeV:
  the very events of ``signal_grid.root``'s ``signal_900_100``), ``background`` (ttbar) and
  ``background_varied`` (ttbar from an "alternative generator": the Modeling systematic);
- ``signal_grid.root``: one tree per grid point, ``signal_{m_stop}_{m_lsp}`` (masses in GeV);
- ``data.root``: ``data``, pseudo-data drawn from the background plus the benchmark signal.

The events are one-lepton events after a preselection (at least two jets, missing transverse
momentum ``met`` > 250 GeV), with branches ``met`` and ``mt`` (lepton-MET transverse mass,
GeV), ``njet``, and for simulation ``weight`` (cross-section x luminosity x preselection
efficiency / events) and ``weight_up`` (a MET-dependent reweighting, the weight-based
systematic). Toy physics, simple but of the right shape: ttbar MET falls steeply and its
``mt`` stops near the W mass except for dilepton events; the signal's MET and ``mt`` get
harder with the mass splitting dm = m_stop - m_lsp, and its cross-section falls
exponentially with m_stop, roughly as the 13 TeV top-squark pair cross-section does.

Deterministic: one ``numpy.random.default_rng(SEED)`` stream drawn in a fixed order, so the
same numpy gives the same arrays; the files are written with pubflow's
``steps.io.reproducible_root_writing`` (fixed timestamps and UUIDs), so with the same uproot
they are the same bytes and ``datasets.yaml``'s checksums stay valid after a re-run.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import uproot

from steps.io import reproducible_root_writing

SEED = 20240917
LUMINOSITY = 140_000.0  # pb^-1: the LHC's Run 2 at 13 TeV
# the grid, (m_stop, m_lsp) in GeV; must stay in step with pubflow.yaml's Scan.Points
GRID = ((500, 100), (500, 300), (700, 100), (700, 300), (700, 450),
        (900, 100), (900, 400), (1000, 100), (1000, 300))
BENCHMARK = (900, 100)
MET_CUT = 250.0  # GeV, the preselection

# ttbar: cross-section (pb) and the fraction passing the preselection
TTBAR_XSEC, TTBAR_EFFICIENCY = 832.0, 2.2e-5
TTBAR_DILEPTON = {"background": 0.20, "background_varied": 0.23}  # fraction of 2-lepton events
TTBAR_MET_SCALE = {"background": 90.0, "background_varied": 100.0}  # GeV
# signal: lepton + jets acceptance before the MET cut
SIGNAL_ACCEPTANCE = 0.02

BACKGROUND_EVENTS, SIGNAL_EVENTS = 5000, 2000  # simulated entries per tree


def stop_cross_section(m_stop: float) -> float:
    """Top-squark pair cross-section (pb): an exponential of the size of the 13 TeV
    NNLO+NNLL values (0.6 pb at 500 GeV, a few fb at 1 TeV)."""
    # math.exp, glibc's, not np.exp: numpy's own exp changed in its last bit between releases
    # (2.4.6), and the committed ntuples must come out again bit for bit
    return 0.61 * math.exp(-(m_stop - 500.0) / 111.0)


def signal_met_scale(dm: float) -> float:
    """Slope (GeV) of the signal's exponential MET spectrum: harder for a larger splitting."""
    return 60.0 + 0.35 * dm


def _reweighting(met: np.ndarray, weight: float) -> np.ndarray:
    """``weight_up``: +15% per 250 GeV of MET above the cut (e.g. a top-pT reweighting)."""
    return (weight * (1.0 + 0.15 * (met - MET_CUT) / 250.0)).astype(np.float32)


def background(rng: np.random.Generator, n: int, variant: str) -> dict[str, np.ndarray]:
    """ttbar events after the preselection (``variant``: nominal or alternative generator)."""
    # above the cut an exponential stays an exponential of the same slope
    met = MET_CUT + rng.exponential(TTBAR_MET_SCALE[variant], n)
    dilepton = rng.random(n) < TTBAR_DILEPTON[variant]
    # one lepton: mT up to about the W mass (Jacobian edge), smeared; two: a long tail
    mt = np.where(dilepton, 30.0 + rng.exponential(110.0, n),
                  np.abs(85.0 * rng.beta(4.0, 1.5, n) + rng.normal(0.0, 12.0, n)))
    njet = 2 + rng.poisson(1.3, n)
    weight = TTBAR_XSEC * LUMINOSITY * TTBAR_EFFICIENCY / n
    return _branches(met, mt, njet, weight)


def signal_efficiency(m_stop: float, m_lsp: float) -> float:
    """Fraction of produced signal events in the preselection."""
    return SIGNAL_ACCEPTANCE * math.exp(-MET_CUT / signal_met_scale(m_stop - m_lsp))


def signal(rng: np.random.Generator, n: int, m_stop: float, m_lsp: float
           ) -> dict[str, np.ndarray]:
    """Top-squark pair events (stop -> top neutralino) after the preselection."""
    dm = m_stop - m_lsp
    met = MET_CUT + rng.exponential(signal_met_scale(dm), n)
    mt = rng.gamma(2.0, 50.0 + 0.25 * dm, n)  # two invisible particles: no W edge
    njet = 2 + rng.poisson(2.2, n)
    weight = stop_cross_section(m_stop) * LUMINOSITY * signal_efficiency(m_stop, m_lsp) / n
    return _branches(met, mt, njet, weight)


def _branches(met: np.ndarray, mt: np.ndarray, njet: np.ndarray, weight: float
              ) -> dict[str, np.ndarray]:
    # float32 kinematics keep the files small; the weight stays float64 (constant per tree,
    # so it compresses to nothing) so that "0.7*weight" is computed in double precision
    return {"met": met.astype(np.float32), "mt": mt.astype(np.float32),
            "njet": njet.astype(np.int32), "weight": np.full(len(met), weight),
            "weight_up": _reweighting(met, weight)}


def expected_events(tree: dict[str, np.ndarray]) -> float:
    """The events a simulated tree predicts: the sum of its weights."""
    return float(np.sum(tree["weight"]))


def pseudo_data(rng: np.random.Generator, model: list[tuple[str, float]]
                ) -> dict[str, np.ndarray]:
    """Data: a Poisson number of events of each (process, expected events), shuffled."""
    parts = []
    for process, expected in model:
        n = int(rng.poisson(expected))
        if process == "background":
            parts.append(background(rng, n, "background"))
        else:
            parts.append(signal(rng, n, *BENCHMARK))
    order = rng.permutation(sum(len(p["met"]) for p in parts))
    return {k: np.concatenate([p[k] for p in parts])[order] for k in ("met", "mt", "njet")}


def make(output: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Generate every tree (in a fixed order: the stream decides the events) and write the
    files; returns ``{file name: {tree: {branch: array}}}``."""
    rng = np.random.default_rng(SEED)
    prediction = {v: background(rng, BACKGROUND_EVENTS, v) for v in TTBAR_DILEPTON}
    grid = {f"signal_{stop}_{lsp}": signal(rng, SIGNAL_EVENTS, stop, lsp) for stop, lsp in GRID}
    benchmark = grid["signal_{}_{}".format(*BENCHMARK)]
    data = pseudo_data(rng, [("background", expected_events(prediction["background"])),
                             ("signal", expected_events(benchmark))])
    files = {
        "data.root": {"data": data},
        "prediction.root": {"signal": benchmark, **prediction},
        "signal_grid.root": grid,
    }
    output.mkdir(parents=True, exist_ok=True)
    for i, (name, trees) in enumerate(files.items()):
        with (reproducible_root_writing(SEED + i) as options,
              uproot.recreate(output / name, **options) as f):
            for tree, branches in trees.items():
                # mktree: assigning a dict would write an RNTuple, which cabinetry cannot read
                f.mktree(tree, {k: v.dtype for k, v in branches.items()})
                f[tree].extend(branches)
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "ntuples",
                        metavar="DIR", help="folder to write data.root, prediction.root and "
                        "signal_grid.root to (default: %(default)s)")
    args = parser.parse_args(argv)
    for name, trees in make(args.output).items():
        summary = ", ".join(f"{t} ({len(b['met'])})" for t, b in trees.items())
        print(f"{args.output / name}: {summary}")


if __name__ == "__main__":
    main()
