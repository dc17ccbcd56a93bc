"""simulate: deterministic dimuon ntuples with the data's branches, plus systematic trees.

Physics (pure functions, arrays in, arrays out):
- mass line shape: Breit-Wigner (Z boson, narrow resonances) or a falling exponential
  (Drell-Yan continuum), truncated to the generated mass range;
- production: dimuon pT from a Gamma distribution, rapidity Gaussian, flat azimuth;
- decay: 1 + cos^2(theta*) in the rest frame, boosted to the lab;
- detector: muon pT smeared with sigma/pT = a(eta) (+) b pT, charges opposite.

Every file holds the nominal tree ``events`` and one tree per variation
(``events_muon_scale_up`` ...), built from the same generated muons and the same random
numbers, so the variations differ only by the systematic effect. Random streams are seeded
from (Seed, sample name, chunk index): the bytes written do not depend on anything else.
"""

from __future__ import annotations

import argparse
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from steps import cli, layout
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.io import atomic_path, reproducible_root_writing

log = logging.getLogger(__name__)

MUON_MASS = 0.1056583755  # GeV
CHUNK = 500_000  # events per generated block; part of the seed, so never change it
VARIATIONS = ("nominal", "muon_scale_up", "muon_scale_down", "muon_resolution_up",
              "muon_resolution_down")


@dataclass(frozen=True)
class Detector:
    """Muon momentum resolution and the sizes of its systematic variations."""

    resolution_barrel: float
    resolution_endcap: float
    barrel_eta: float
    resolution_slope: float
    momentum_scale: float
    resolution_scale: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Detector:
        det, var = config["Simulation"]["Detector"], config["Simulation"]["Variations"]
        return cls(det["ResolutionBarrel"], det["ResolutionEndcap"], det["BarrelEta"],
                   det["ResolutionSlope"], var["MomentumScale"], var["ResolutionScale"])


def sample_mass(rng: np.random.Generator, n: int, settings: dict[str, Any]) -> np.ndarray:
    """Dimuon masses (GeV) from the sample's line shape, by inverse transform."""
    lo, hi = settings["MassRange"]
    u = rng.random(n)
    if settings["Process"] == "breit_wigner":
        m0, gamma = settings["Mass"], settings["Width"]
        a, b = np.arctan(2 * (lo - m0) / gamma), np.arctan(2 * (hi - m0) / gamma)
        return m0 + gamma / 2 * np.tan(a + (b - a) * u)
    slope = settings["Slope"]
    ea, eb = np.exp(-slope * lo), np.exp(-slope * hi)
    return -np.log(ea - (ea - eb) * u) / slope


def _cos_theta_1_plus_cos2(u: np.ndarray) -> np.ndarray:
    """Invert the CDF of (1 + c^2) on [-1, 1]: the real root of c^3 + 3c + 4 - 8u = 0."""
    q = 4.0 - 8.0 * u
    disc = np.sqrt(q * q / 4.0 + 1.0)
    return np.cbrt(-q / 2.0 + disc) + np.cbrt(-q / 2.0 - disc)


def _boost(e: np.ndarray, p: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lorentz-boost four-vectors (e, p[n,3]) by velocity beta[n,3]."""
    b2 = np.sum(beta * beta, axis=1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p, axis=1)
    coef = np.where(b2 > 0, (gamma - 1.0) * bp / np.where(b2 > 0, b2, 1.0), 0.0) + gamma * e
    return gamma * (e + bp), p + coef[:, None] * beta


def generate_truth(rng: np.random.Generator, mass: np.ndarray) -> dict[str, np.ndarray]:
    """True muon kinematics (pt, eta, phi per muon, and charges) for dimuon masses."""
    n = len(mass)
    pt_sys = rng.gamma(1.5, 5.0, n)
    y_sys = rng.normal(0.0, 1.6, n)
    phi_sys = rng.uniform(-np.pi, np.pi, n)
    cos_t = _cos_theta_1_plus_cos2(rng.random(n))
    phi_star = rng.uniform(-np.pi, np.pi, n)
    charge = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int32)

    mt = np.sqrt(mass**2 + pt_sys**2)
    e_sys = mt * np.cosh(y_sys)
    p_sys = np.stack([pt_sys * np.cos(phi_sys), pt_sys * np.sin(phi_sys), mt * np.sinh(y_sys)], 1)
    beta = p_sys / e_sys[:, None]

    p_star = np.sqrt(np.maximum(mass**2 / 4 - MUON_MASS**2, 0.0))
    sin_t = np.sqrt(1 - cos_t**2)
    direction = np.stack([sin_t * np.cos(phi_star), sin_t * np.sin(phi_star), cos_t], 1)
    e_star = mass / 2
    out: dict[str, np.ndarray] = {}
    for i, sign in ((1, 1.0), (2, -1.0)):
        _, p = _boost(e_star, sign * p_star[:, None] * direction, beta)
        pt = np.hypot(p[:, 0], p[:, 1])
        out[f"pt{i}"] = pt
        out[f"eta{i}"] = np.arcsinh(p[:, 2] / pt)
        out[f"phi{i}"] = np.arctan2(p[:, 1], p[:, 0])
    out["Q1"], out["Q2"] = charge, -charge
    return out


def relative_resolution(pt: np.ndarray, eta: np.ndarray, det: Detector) -> np.ndarray:
    """sigma(pT)/pT = a(eta) (+) b pT."""
    a = np.where(np.abs(eta) < det.barrel_eta, det.resolution_barrel, det.resolution_endcap)
    return np.hypot(a, det.resolution_slope * pt)


def reconstruct(truth: dict[str, np.ndarray], z: dict[int, np.ndarray], det: Detector,
                variation: str) -> dict[str, np.ndarray]:
    """Smeared muons and dimuon mass, with the data's branch names, for one variation.

    ``z`` holds the standard-normal numbers per muon, shared by all variations.
    """
    scale = {"muon_scale_up": 1 + det.momentum_scale,
             "muon_scale_down": 1 - det.momentum_scale}.get(variation, 1.0)
    width = {"muon_resolution_up": 1 + det.resolution_scale,
             "muon_resolution_down": 1 - det.resolution_scale}.get(variation, 1.0)
    out: dict[str, np.ndarray] = {}
    total_e = 0.0
    total_p = np.zeros((len(truth["pt1"]), 3))
    for i in (1, 2):
        pt_true, eta, phi = truth[f"pt{i}"], truth[f"eta{i}"], truth[f"phi{i}"]
        sigma = relative_resolution(pt_true, eta, det)
        pt = np.abs(pt_true * (1 + width * sigma * z[i])) * scale
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px**2 + py**2 + pz**2 + MUON_MASS**2)
        out.update({f"E{i}": e, f"px{i}": px, f"py{i}": py, f"pz{i}": pz,
                    f"pt{i}": pt, f"eta{i}": eta, f"phi{i}": phi, f"Q{i}": truth[f"Q{i}"]})
        total_e = total_e + e
        total_p += np.stack([px, py, pz], 1)
    out["M"] = np.sqrt(np.maximum(total_e**2 - np.sum(total_p**2, axis=1), 0.0))
    return out


def stream_seed(seed: int, name: str, chunk: int, file: int = 0, files: int = 1) -> list[int]:
    """The seed sequence of one chunk of one file of a sample."""
    head = [seed, zlib.crc32(name.encode())]
    return [*head, file, chunk] if files > 1 else [*head, chunk]


def generate(settings: dict[str, Any], det: Detector, seed: int, weight: float,
             events: int, variations: tuple[str, ...] = VARIATIONS
             ) -> Iterator[dict[str, dict[str, np.ndarray]]]:
    """Yield chunks ``{tree name: branches}`` of a sample, CHUNK events at a time."""
    for chunk, start in enumerate(range(0, events, CHUNK)):
        n = min(CHUNK, events - start)
        rng = np.random.default_rng(stream_seed(seed, settings["Name"], chunk,
                                                settings.get("File", 0), settings.get("Files", 1)))
        truth = generate_truth(rng, sample_mass(rng, n, settings))
        z = {1: rng.standard_normal(n), 2: rng.standard_normal(n)}
        ids = np.arange(start + 1, start + n + 1, dtype=np.int32)
        trees = {}
        for variation in variations:
            branches = reconstruct(truth, z, det, variation)
            branches = {"Run": np.ones(n, np.int32), "Event": ids, **branches,
                        "weight": np.full(n, weight)}
            trees["events" if variation == "nominal" else f"events_{variation}"] = branches
        yield trees


def simulate(config: dict[str, Any], output: str, events: int | None = None,
             seed: int | None = None, nominal_only: bool = False) -> int:
    """Write the simulated sample whose file is ``output``; return the number of events."""
    import uproot
    from tqdm import tqdm

    samples = layout.simulated_samples(config)
    output = layout.normalize(output)
    if output not in samples:
        known = ", ".join(samples) or "none"
        raise PubflowError(f"not a simulated file of this config (known: {known})", path=output)
    settings = samples[output]
    n = events or settings["Events"]
    total = n * settings["Files"] if events else settings["TotalEvents"]
    seed = config["Simulation"]["Seed"] if seed is None else seed
    det = Detector.from_config(config)
    # weight = sigma * L / N: cross-section in pb with L in pb^-1 (fb with fb^-1), N the
    # events of the whole sample, all its files together
    weight = settings["CrossSection"] * config["Luminosity"]["Value"] / total
    log.info("simulating %s: %d events, seed %d", settings["Name"], n, seed)
    with (reproducible_root_writing(seed) as options, atomic_path(output) as tmp,
          uproot.recreate(tmp, **options) as f,
          tqdm(total=n, unit="ev", desc=settings["Name"], disable=None) as bar):
        variations = ("nominal",) if nominal_only else VARIATIONS
        for i, trees in enumerate(generate(settings, det, seed, weight, n, variations)):
            for name, branches in trees.items():
                if i == 0:
                    # mktree: plain assignment would write an RNTuple, which cabinetry's
                    # reader (and uproot's cut= for RNTuples) does not handle like a TTree
                    f.mktree(name, {k: v.dtype for k, v in branches.items()})
                f[name].extend(branches)
            bar.update(len(trees["events"]["M"]))
    return n


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("simulate", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--output", required=True, help="file to write; must be a simulated "
                   "sample's path in the config, which selects the sample")
    p.add_argument("--events", type=int, help="override the number of events (benchmarks)")
    p.add_argument("--seed", type=int, help="override Simulation.Seed")
    p.add_argument("--nominal-only", action="store_true",
                   help="write only the nominal tree (benchmarks of weight-based analyses)")
    return p


def main(args: argparse.Namespace) -> None:
    simulate(load_analysis(args.config), args.output, args.events, args.seed,
             args.nominal_only)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
