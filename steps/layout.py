"""What the workflow's DAG is made of, derived from the analysis config.

Standard library and PyYAML only, and Python 3.8: the Snakefile imports this module, and on
REANA the Snakefile is evaluated by the workflow engine (Python 3.8 on REANA 0.9, 3.12 on
0.95), which has neither numpy nor cabinetry. ``tests/test_engine.py`` checks the floor.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Dict

import yaml

Config = Dict[str, Any]  # evaluated at import: 3.8 has no dict[...]


def load_yaml(path: str | Path) -> Any:
    """Load a YAML file (no validation: see ``steps.config`` for that)."""
    with open(path) as f:
        return yaml.safe_load(f)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


CABINETRY_KEYS = ("General", "Regions", "Samples", "NormFactors", "Systematics")


def cabinetry_config(config: Config) -> Config:
    """The part of the config that is cabinetry's (its schema forbids other top-level keys)."""
    return {k: copy.deepcopy(v) for k, v in config.items() if k in CABINETRY_KEYS}


def scan_sample_name(config: Config, mass: int) -> str:
    """Name of the resonance sample for one mass hypothesis."""
    return config["Scan"]["SampleName"].format(mass=mass)


def _scan_samples(config: Config, masses: list[int]) -> list[dict[str, Any]]:
    scan = config["Scan"]
    return [
        {
            "Name": scan_sample_name(config, m),
            "Tree": "events",
            "SamplePath": scan["SamplePath"].format(mass=m),
            "Weight": "weight",
        }
        for m in masses
    ]


def _add_scan(config: Config, masses: list[int]) -> Config:
    out = copy.deepcopy(config)
    if "Scan" not in config or not masses:
        return out
    scan = config["Scan"]
    samples = _scan_samples(config, masses)
    names = [s["Name"] for s in samples]
    out["Samples"] += samples
    out["NormFactors"].append(
        {"Name": scan["POI"], "Samples": names, "Nominal": 1.0, "Bounds": list(scan["Bounds"])}
    )
    for syst in out.get("Systematics", []):
        if syst["Name"] in scan.get("Systematics", []):
            syst["Samples"] = _as_list(syst.get("Samples", [])) + names
    return out


def histogram_config(config: Config) -> Config:
    """The config with every scan sample added: what the select step fills."""
    return _add_scan(config, list(config.get("Scan", {}).get("Masses", [])))


def scan_config(config: Config, mass: int) -> Config:
    """The config for one signal hypothesis: background model plus one resonance, its POI."""
    out = _add_scan(config, [mass])
    out["General"]["POI"] = config["Scan"]["POI"]
    return out


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``root://...``) rather than a local file."""
    return "://" in path


def normalize(path: str) -> str:
    """A local path in canonical form; URLs are left as they are (``//`` matters in them)."""
    return path if is_remote(path) else os.path.normpath(path)


def _override(systematic: dict[str, Any], template: str | None, key: str) -> Any:
    return systematic.get(template, {}).get(key) if template else None


def template_paths(config: Config, region: dict[str, Any], sample: dict[str, Any],
                   systematic: dict[str, Any], template: str | None) -> list[str]:
    """The files one histogram is filled from: cabinetry's path rules, as plain strings.

    ``General.InputPath`` with ``{RegionPath}``/``{SamplePath}`` replaced by the region's and
    sample's settings or the systematic template's overrides. Strings rather than
    ``pathlib.Path`` (what cabinetry returns), so that ``root://host//file`` URLs survive.
    """
    path = config["General"]["InputPath"]
    region_path = _override(systematic, template, "RegionPath") or region.get("RegionPath")
    if region_path is not None:
        path = path.replace("{RegionPath}", region_path)
    sample_paths = _override(systematic, template, "SamplePath") or sample.get("SamplePath")
    if sample_paths is None:
        return [normalize(path)]
    return [normalize(path.replace("{SamplePath}", p)) for p in _as_list(sample_paths)]


def sample_paths(config: Config, sample: dict[str, Any]) -> list[str]:
    """Every file a sample reads, nominal and systematic overrides, in every region."""
    paths: list[str] = []
    for region in config["Regions"]:
        paths += template_paths(config, region, sample, {}, None)
        if sample.get("Data"):
            continue
        for syst in config.get("Systematics", []):
            affected = syst.get("Samples")
            if affected is not None and sample["Name"] not in _as_list(affected):
                continue
            for template in ("Up", "Down"):
                paths += template_paths(config, region, sample, syst, template)
    return list(dict.fromkeys(paths))


def input_files(config: Config) -> list[str]:
    """All distinct ntuple files the histograms are filled from, in config order."""
    full = histogram_config(config)
    return list(dict.fromkeys(p for s in full["Samples"] for p in sample_paths(full, s)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "--", text).strip("-")


def select_jobs(config: Config) -> dict[str, str]:
    """Scatter: one select job per input file, ``{job name: file path}``.

    A job is named after its file's stem, or its whole path where stems collide.
    """
    files = input_files(config)
    stems = [Path(p).stem for p in files]
    return {
        _slug(stem if stems.count(stem) == 1 else str(Path(p).with_suffix(""))): p
        for stem, p in zip(stems, files)
    }


def simulated_samples(config: Config) -> dict[str, dict[str, Any]]:
    """``{file path: generator settings}`` for every file the simulate step writes.

    A sample may be split over several files (a list of ``SamplePath``): its ``Events`` are
    shared out, and ``File``/``Files`` give each file its own random stream.
    """
    sim = config.get("Simulation", {})
    by_name = {s["Name"]: s for s in config["Samples"]}
    out: dict[str, dict[str, Any]] = {}
    for entry in sim.get("Samples", []):
        sample = by_name.get(entry["Name"])
        if sample is None:
            raise ValueError(f"Simulation.Samples: {entry['Name']!r} is not a sample in Samples")
        paths = template_paths(config, config["Regions"][0], sample, {}, None)
        total = entry["Events"]
        for i, path in enumerate(paths):
            share = total // len(paths) + (1 if i < total % len(paths) else 0)
            out[path] = {**entry, "Events": share, "TotalEvents": total, "File": i,
                         "Files": len(paths)}
    scan = config.get("Scan")
    if scan:
        for m, sample in zip(scan["Masses"], _scan_samples(config, scan["Masses"])):
            [path] = template_paths(config, config["Regions"][0], sample, {}, None)
            out[path] = {
                "Name": scan_sample_name(config, m),
                "Process": "breit_wigner",
                "Mass": float(m),
                "Width": scan["RelativeWidth"] * m,
                "MassRange": [m * (1 - 0.25), m * (1 + 0.25)],
                "CrossSection": scan["CrossSection"],
                "Events": scan["Events"],
                "TotalEvents": scan["Events"],
                "File": 0,
                "Files": 1,
            }
    return out
