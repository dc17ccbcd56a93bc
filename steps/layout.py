"""What the workflow's DAG is made of, derived from the analysis config.

Standard library and PyYAML only, and Python 3.8: the Snakefile imports this module, and on
REANA the Snakefile is evaluated by the workflow engine (Python 3.8 on REANA 0.9, 3.12 on
0.95), which has neither numpy nor cabinetry. ``tests/test_engine.py`` checks the floor.
"""

from __future__ import annotations

import copy
import itertools
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


def as_list(value: Any) -> list[Any]:
    """``value`` as a list (cabinetry settings take one name or a list of them)."""
    return list(value) if isinstance(value, list) else [value]


CABINETRY_KEYS = ("General", "Regions", "Samples", "NormFactors", "Systematics")


def cabinetry_config(config: Config) -> Config:
    """The part of the config that is cabinetry's (its schema forbids other top-level keys)."""
    return {k: copy.deepcopy(v) for k, v in config.items() if k in CABINETRY_KEYS}


class ConfigError(ValueError):
    """A config that cannot be resolved: the message is one line naming the file and key."""


def resolve(settings: Config, source: str = "the workflow config",
            base: str | Path = ".") -> Config:
    """The analysis as every step reads it: cabinetry's keys and pubflow's, side by side.

    ``settings`` is pubflow's config: ``Analysis`` names the cabinetry config (a file, loaded
    here, or the config itself), the other keys are pubflow's own (``Datasets``, ``Scan``, ...).
    A cabinetry config given directly (``General`` at the top, no ``Analysis``) is taken as
    it is, with whatever pubflow keys it also holds. A file name is relative to ``base``.
    """
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys")
    if "Analysis" not in settings:
        if "General" not in settings:
            raise ConfigError(f"{source}: Analysis: required key is missing (the cabinetry "
                              "config of the analysis: a file name, or the config itself)")
        return copy.deepcopy(settings)
    analysis = settings["Analysis"]
    origin = source
    if isinstance(analysis, str):
        origin = analysis
        try:
            analysis = load_yaml(Path(base) / analysis)
        except FileNotFoundError:
            raise ConfigError(f"{source}: Analysis: file not found: {origin}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{origin}: invalid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(analysis, dict):
        raise ConfigError(f"{origin}: (top level): expected a cabinetry config (a mapping)")
    extra = sorted(set(analysis) - set(CABINETRY_KEYS))
    if extra:
        raise ConfigError(f"{origin}: {extra[0]}: not a cabinetry key (pubflow's own keys "
                          f"belong in {source}, beside Analysis)")
    clash = sorted(set(settings) & set(CABINETRY_KEYS))
    if clash:
        raise ConfigError(f"{source}: {clash[0]}: cabinetry's keys belong in the config that "
                          "Analysis names")
    out = copy.deepcopy(analysis)
    out.update((k, copy.deepcopy(v)) for k, v in settings.items() if k != "Analysis")
    return out


RESOLVED_CONFIG = "results/config.json"
DEFAULT_CONFIG = "inputs/pubflow.yaml"


def workspace_config(workspace: str | Path) -> Config:
    """The resolved config of a workflow's workspace: the one its steps read if it ran
    (``results/config.json``), else the bundled default resolved; ``{}`` if neither exists."""
    workspace = Path(workspace)
    if (workspace / RESOLVED_CONFIG).is_file():
        return load_yaml(workspace / RESOLVED_CONFIG)  # JSON is YAML
    if (workspace / DEFAULT_CONFIG).is_file():
        return resolve(load_yaml(workspace / DEFAULT_CONFIG), DEFAULT_CONFIG, workspace)
    return {}


def sources(settings: Config, source: str) -> dict[str, str]:
    """Which file each top-level key of the resolved config came from (for error messages)."""
    analysis = settings.get("Analysis") if isinstance(settings, dict) else None
    origin = analysis if isinstance(analysis, str) else source
    own = {k: source for k in settings or {} if k not in CABINETRY_KEYS}
    return {**dict.fromkeys(CABINETRY_KEYS, origin), **own}


def scan_labels(config: Config) -> list[str]:
    """The scan's variables, in order: the labels of its patchset (none without a Scan)."""
    scan = config.get("Scan")
    if not scan:
        return []
    if "Variables" in scan:
        return list(scan["Variables"])
    return list(scan["Grid"]) if "Grid" in scan else list(scan["Points"][0])


def scan_points(config: Config) -> list[dict[str, Any]]:
    """Every point of the scan, ``{variable: value}``: the ``Points``, or the full ``Grid``."""
    scan = config.get("Scan")
    if not scan:
        return []
    if "Points" in scan:
        return [dict(point) for point in scan["Points"]]
    labels = scan_labels(config)
    return [dict(zip(labels, values))
            for values in itertools.product(*(scan["Grid"][k] for k in labels))]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> list[str]:
    """The ``{variable}`` names in a pattern."""
    return _PLACEHOLDER.findall(text)


def fill(pattern: Any, point: dict[str, Any]) -> Any:
    """``pattern`` (a string, or lists and mappings of them) with ``{variable}`` replaced by
    the point's values; other braces are left alone (no ``str.format``)."""
    if isinstance(pattern, str):
        return _PLACEHOLDER.sub(
            lambda m: str(point[m.group(1)]) if m.group(1) in point else m.group(0), pattern)
    if isinstance(pattern, list):
        return [fill(item, point) for item in pattern]
    if isinstance(pattern, dict):
        return {key: fill(value, point) for key, value in pattern.items()}
    return pattern


def patch_name(config: Config, point: dict[str, Any]) -> str:
    """The patch's name of one hypothesis (HEPData addresses likelihoods by these names)."""
    pattern = config["Scan"].get("PatchName")
    if pattern:
        return str(fill(pattern, point))
    return "_".join(f"{label}_{point[label]}" for label in scan_labels(config))


def scan_patches(config: Config) -> list[str]:
    """The patch names of the config's signal scan (one limit job each); none without a Scan."""
    return [patch_name(config, point) for point in scan_points(config)]


def scan_sample(config: Config, point: dict[str, Any]) -> dict[str, Any]:
    """The signal sample of one hypothesis: the scan's ``Sample`` with the point's values."""
    return fill(copy.deepcopy(config["Scan"]["Sample"]), point)


def scan_poi(config: Config) -> str:
    """The parameter the limits are on: the scan's new normfactor, or the POI it replaces."""
    scan = config["Scan"]
    return scan.get("POI") or config["General"]["POI"]


def _refer(setting: dict[str, Any], old: str, new: list[str], keep: bool) -> None:
    """Where ``setting["Samples"]`` names ``old``, name ``new`` there too (or instead)."""
    if "Samples" not in setting:
        return  # unset: every sample, the new ones included (cabinetry's rule)
    names = as_list(setting["Samples"])
    if old in names:
        setting["Samples"] = [n for n in names if keep or n != old] + new


def _add_scan(config: Config, points: list[dict[str, Any]], keep: bool = True) -> Config:
    """``config`` with the signal samples of ``points``; with ``Replaces``, each takes over the
    replaced sample's normfactors, systematics and smoothing (and replaces it unless ``keep``)."""
    out = copy.deepcopy(config)
    if "Scan" not in config or not points:
        return out
    scan = config["Scan"]
    samples = [scan_sample(config, p) for p in points]
    names = [s["Name"] for s in samples]
    replaced = scan.get("Replaces")
    if replaced:
        at = [s["Name"] for s in out["Samples"]].index(replaced)
        out["Samples"][at:at + 1] = ([out["Samples"][at]] if keep else []) + samples
        for setting in out["NormFactors"] + out.get("Systematics", []):
            _refer(setting, replaced, names, keep)
            if isinstance(setting.get("Smoothing"), dict):
                _refer(setting["Smoothing"], replaced, names, keep)
        return out
    out["Samples"] += samples
    normfactor: dict[str, Any] = {"Name": scan["POI"], "Samples": names, "Nominal": 1.0}
    if "Bounds" in scan:
        normfactor["Bounds"] = list(scan["Bounds"])
    out["NormFactors"].append(normfactor)
    relative = scan.get("RelativeTo")
    for other in out["NormFactors"] if relative else []:
        if other["Name"] == relative["NormFactor"]:
            other["Samples"] = as_list(other.get("Samples", [])) + names
    for syst in out.get("Systematics", []):
        if syst["Name"] in scan.get("Systematics", []) and "Samples" in syst:
            syst["Samples"] = as_list(syst["Samples"]) + names
    return out


def histogram_config(config: Config) -> Config:
    """The config with every scan sample added: what the select step fills."""
    return _add_scan(config, scan_points(config))


def scan_config(config: Config, point: dict[str, Any]) -> Config:
    """The config of one signal hypothesis, whose POI is the scan's."""
    out = _add_scan(config, [point], keep=False)
    out["General"]["POI"] = scan_poi(config)
    return out


def limit_figure(config: Config) -> str | None:
    """The figure of the limits: a Brazil band over one variable, exclusion contours over two;
    none for a scan in more variables (its limits are in the table)."""
    return {1: "results/fit/figures/brazil.png",
            2: "results/fit/figures/contour.png"}.get(len(scan_labels(config)))


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
    # an override counts when it is set, even to "" (cabinetry tests "is not None")
    region_path = _override(systematic, template, "RegionPath")
    if region_path is None:
        region_path = region.get("RegionPath")
    if region_path is not None:
        path = path.replace("{RegionPath}", region_path)
    sample_paths = _override(systematic, template, "SamplePath")
    if sample_paths is None:
        sample_paths = sample.get("SamplePath")
    if sample_paths is None:
        return [normalize(path)]
    return [normalize(path.replace("{SamplePath}", p)) for p in as_list(sample_paths)]


def _contains(item: dict[str, Any], setting: dict[str, Any], key: str) -> bool:
    """cabinetry's ``configuration._x_contains_y``: ``setting[key]`` names ``item`` or is unset."""
    names = as_list(setting.get(key, []))
    return not names or item["Name"] in names


def _needs_template(region: dict[str, Any], sample: dict[str, Any],
                    systematic: dict[str, Any], template: str) -> bool:
    """cabinetry's ``configuration.histogram_is_needed`` for an Up/Down template."""
    return (not sample.get("Data")
            and systematic["Type"] == "NormPlusShape"
            and _contains(region, systematic, "Regions")
            and _contains(sample, systematic, "Samples")
            and not systematic.get(template, {}).get("Symmetrize", False))


def sample_paths(config: Config, sample: dict[str, Any]) -> list[str]:
    """Every file a sample's histograms read: nominal and systematic templates, in the
    regions that hold the sample, only where cabinetry makes a histogram."""
    paths: list[str] = []
    for region in config["Regions"]:
        if not _contains(region, sample, "Regions"):
            continue
        paths += template_paths(config, region, sample, {}, None)
        for syst in config.get("Systematics", []):
            for template in ("Up", "Down"):
                if _needs_template(region, sample, syst, template):
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


def unlisted_files(config: Config) -> list[str]:
    """Input files the workflow makes itself, which the dataset manifest need not list: the
    simulate step's, and those of the samples named in ``Unlisted``."""
    names = {entry["Sample"] for entry in config.get("Unlisted", [])}
    full = histogram_config(config)
    made = [p for s in full["Samples"] if s["Name"] in names for p in sample_paths(full, s)]
    return list(dict.fromkeys([*simulated_samples(config), *made]))


#: The floor on a sample's processed fraction when ``InputPolicy`` sets none: simulation that
#: skips unreadable files may lose 5% (it is re-normalised; only its statistics suffer), data
#: nothing (it is never scaled: a shortfall would move the result by its size).
DEFAULT_MIN_PROCESSED_FRACTION = {"data": 1.0, "simulation": 0.95}


def _policy_entry(config: Config, sample: str) -> dict[str, Any]:
    """The ``InputPolicy`` entry of a sample: its own, or that of the scan's ``Sample.Name``
    pattern for a scan hypothesis; empty if there is none."""
    entries = {entry["Sample"]: entry for entry in config.get("InputPolicy", [])}
    if sample in entries:
        return entries[sample]
    scan = config.get("Scan")
    if scan and scan["Sample"]["Name"] in entries:
        names = {scan_sample(config, point)["Name"] for point in scan_points(config)}
        if sample in names:
            return entries[scan["Sample"]["Name"]]
    return {}


def on_unreadable(config: Config, sample: str) -> str:
    """What a select job does with a file of ``sample`` it cannot read: ``fail`` (the
    default) or ``skip``."""
    return str(_policy_entry(config, sample).get("OnUnreadable", "fail"))


def min_processed_fraction(config: Config, sample: str, data: bool) -> float:
    """The smallest fraction of a sample's entries that validation accepts as processed."""
    entry = _policy_entry(config, sample)
    if "MinProcessedFraction" in entry:
        return float(entry["MinProcessedFraction"])
    if entry.get("OnUnreadable", "fail") == "fail":
        return 1.0  # nothing is ever skipped
    return DEFAULT_MIN_PROCESSED_FRACTION["data" if data else "simulation"]


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
    signal = sim.get("Scan")
    if signal and config.get("Scan"):
        for point in scan_points(config):
            sample = scan_sample(config, point)
            [path] = template_paths(config, config["Regions"][0], sample, {}, None)
            mass = float(point[signal["Mass"]])
            out[path] = {
                "Name": sample["Name"],
                "Process": "breit_wigner",
                "Mass": mass,
                "Width": signal["RelativeWidth"] * mass,
                "MassRange": [mass * (1 - 0.25), mass * (1 + 0.25)],
                "CrossSection": config["Scan"]["CrossSection"],
                "Events": signal["Events"],
                "TotalEvents": signal["Events"],
                "File": 0,
                "Files": 1,
            }
    return out
