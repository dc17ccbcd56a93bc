"""What a signal scan's config must satisfy beyond its schema (``Scan``, ``Simulation.Scan``).

A scan is a grid of points in any number of variables; each point is a cabinetry sample made
from ``Scan.Sample`` by putting the point's values in for its ``{variable}`` placeholders,
either added to the model with a new normfactor POI, or replacing a sample of it
(``Replaces``). Mistakes are one line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps import layout
from steps.errors import PubflowError

Config = dict[str, Any]

_TEMPLATE_OVERRIDES = ("Tree", "SamplePath")


def _points(scan: Config, labels: list[str], source: str | Path) -> None:
    given = list(scan["Grid"]) if "Grid" in scan else list(scan["Points"][0])
    if "Variables" not in scan and len(given) > 1:
        raise PubflowError(f"required key is missing for a scan in {len(given)} variables: "
                           f"their order, e.g. [{', '.join(given)}] (a mapping's order is "
                           "lost in JSON round trips)", path=source, key="Scan.Variables")
    if "Grid" in scan and sorted(given) != sorted(labels):
        raise PubflowError(f"has the variables {', '.join(given)}, Variables names "
                           f"{', '.join(labels)}", path=source, key="Scan.Grid")
    for i, point in enumerate(scan.get("Points", [])):
        if sorted(point) != sorted(labels):
            what = "Variables names" if "Variables" in scan else "the first point has"
            raise PubflowError(f"has the variables {', '.join(point)}, {what} "
                               f"{', '.join(labels)}", path=source, key=f"Scan.Points[{i}]")


def _placeholders(scan: Config, labels: list[str], source: str | Path) -> None:
    patterns = {f"Sample.{key}": value for key, value in scan["Sample"].items()}
    if "PatchName" in scan:
        patterns["PatchName"] = scan["PatchName"]
    for key, value in patterns.items():
        for name in layout.placeholders(value) if isinstance(value, str) else []:
            if name not in labels:
                raise PubflowError(f"{{{name}}} is not a scan variable (the variables: "
                                   f"{', '.join(labels)})", path=source, key=f"Scan.{key}")


def _unique_names(config: Config, source: str | Path) -> None:
    """Every point gets its own sample and patch name, none a name of Samples."""
    taken = {s["Name"] for s in config["Samples"]}
    samples: dict[str, dict[str, Any]] = {}
    patches: dict[str, dict[str, Any]] = {}
    for point in layout.scan_points(config):
        name = layout.scan_sample(config, point)["Name"]
        if name in taken:
            raise PubflowError(f"gives {name!r}, already a sample of Samples",
                               path=source, key="Scan.Sample.Name")
        for seen, value, key in ((samples, name, "Sample.Name"),
                                 (patches, layout.patch_name(config, point), "PatchName")):
            if value in seen:
                raise PubflowError(f"gives {value!r} to both {seen[value]} and {point}: put "
                                   "every scan variable in it", path=source, key=f"Scan.{key}")
            seen[value] = point


def _replaced(config: Config, source: str | Path) -> None:
    scan = config["Scan"]
    name = scan["Replaces"]
    by_name = {s["Name"]: s for s in config["Samples"]}
    if name not in by_name or by_name[name].get("Data"):
        raise PubflowError(f"{name!r} is not a simulated sample of Samples", path=source,
                           key="Scan.Replaces")
    if scan.get("Systematics"):
        raise PubflowError("with Replaces, the replaced sample's Systematics apply: leave "
                           "this out", path=source, key="Scan.Systematics")
    if "RelativeTo" in scan:
        raise PubflowError("with Replaces, the replaced sample's normfactors apply: leave "
                           "this out", path=source, key="Scan.RelativeTo")
    if "Bounds" in scan:
        raise PubflowError("with Replaces, the POI's bounds are its NormFactor's: leave this "
                           "out", path=source, key="Scan.Bounds")
    poi = layout.scan_poi(config)
    normfactor = next((n for n in config["NormFactors"] if n["Name"] == poi), None)
    if normfactor is None or name not in layout.as_list(normfactor.get("Samples", [name])):
        raise PubflowError(f"the POI {poi!r} must be a NormFactor of {name!r}", path=source,
                           key="Scan.POI")
    for i, syst in enumerate(config.get("Systematics", [])):
        if name not in layout.as_list(syst.get("Samples", [])):
            continue
        for template in ("Up", "Down"):
            for key in _TEMPLATE_OVERRIDES:
                if key in syst.get(template, {}):
                    # the scan's samples have ntuples of their own
                    raise PubflowError(
                        f"reads another {key} for {name!r}, which the scan's samples "
                        "replace: name the systematic's Samples without it, or drop Replaces",
                        path=source, key=f"Systematics[{i}].{template}.{key}")


def _added(config: Config, source: str | Path) -> None:
    scan = config["Scan"]
    if "POI" not in scan:
        raise PubflowError("required key is missing (the new normfactor of the signal "
                           "samples; or give Replaces)", path=source, key="Scan.POI")
    if scan["POI"] in {n["Name"] for n in config["NormFactors"]}:
        raise PubflowError(f"{scan['POI']!r} is already a NormFactor (to scan a sample of the "
                           "model, give Replaces)", path=source, key="Scan.POI")
    relative = scan.get("RelativeTo")
    if relative:
        normfactor = next((n for n in config["NormFactors"]
                           if n["Name"] == relative["NormFactor"]), None)
        if normfactor is None or "Samples" not in normfactor:
            raise PubflowError(f"{relative['NormFactor']!r} is not a NormFactor of named "
                               "samples", path=source, key="Scan.RelativeTo.NormFactor")
        if "CrossSection" not in scan:
            raise PubflowError("required key is missing (the signal's cross section that POI "
                               "= 1 stands for, to give the ratio)", path=source,
                               key="Scan.CrossSection")
    systematics = {s["Name"] for s in config.get("Systematics", [])}
    for i, name in enumerate(scan.get("Systematics", [])):
        if name not in systematics:
            raise PubflowError(f"no systematic named {name!r} in Systematics", path=source,
                               key=f"Scan.Systematics[{i}]")


def _simulation(config: Config, labels: list[str], source: str | Path) -> None:
    signal = config.get("Simulation", {}).get("Scan")
    if not signal:
        return
    if "Scan" not in config:
        raise PubflowError("there is no Scan to simulate", path=source, key="Simulation.Scan")
    if signal["Mass"] not in labels:
        raise PubflowError(f"{signal['Mass']!r} is not a scan variable (the variables: "
                           f"{', '.join(labels)})", path=source, key="Simulation.Scan.Mass")
    if "CrossSection" not in config["Scan"]:
        raise PubflowError("required key is missing (the simulated signal's cross section)",
                           path=source, key="Scan.CrossSection")


def check_scan(config: Config, source: str | Path) -> None:
    """Raise ``PubflowError`` for a scan the schema accepts that cannot be run."""
    scan = config.get("Scan")
    labels = layout.scan_labels(config)
    if scan:
        _points(scan, labels, source)
        _placeholders(scan, labels, source)
        if "Replaces" in scan:
            _replaced(config, source)
        else:
            _added(config, source)
        _unique_names(config, source)
    _simulation(config, labels, source)
