"""Which of cabinetry's config options pubflow implements, and a one-line refusal for the rest.

pubflow fills cabinetry's histograms itself (``steps.select``, ``steps.merge``: cabinetry's
override rules and naming, then cabinetry's ``templates.postprocess``) and builds the
workspace with ``cabinetry.workspace.build``. An option of cabinetry 0.6.0's schema either
gives exactly cabinetry's histograms and workspace (``tests/test_cabinetry_options.py``
compares them bin by bin) or is refused here, before any step runs, never silently ignored.

Standard library only: every step checks its config at the door, and importing cabinetry
takes seconds.
"""

from __future__ import annotations

import re
from typing import Any

from steps import layout
from steps.errors import PubflowError

Config = dict[str, Any]

# Every key of cabinetry 0.6.0's config schema (``[]`` = each item of a list) and what pubflow
# does with it. tests/test_cabinetry_options.py walks cabinetry's schema and fails on a key
# missing here, so a cabinetry upgrade that adds an option cannot slip through unreviewed.
SUPPORT: dict[str, str] = {
    "General.Measurement": "works",
    "General.POI": "works; refused when missing or not a NormFactor/systematic",
    "General.InputPath": "works; refused with a wildcard or an unfilled placeholder",
    "General.HistogramFolder": "works",
    "General.Fixed": "works",
    "General.Fixed[].Name": "works",
    "General.Fixed[].Value": "works",
    "General.VariationPath": "ignored, as by cabinetry.templates.build (histogram inputs)",
    "Regions[].Name": "works",
    "Regions[].Variable": "works; refused when missing (histogram inputs)",
    "Regions[].Binning": "works; refused when missing (histogram inputs)",
    "Regions[].Filter": "works",
    "Regions[].RegionPath": "works; refused with a wildcard",
    "Samples[].Name": "works",
    "Samples[].Tree": "works; refused when missing (histogram inputs)",
    "Samples[].Filter": "works",
    "Samples[].Weight": "works",
    "Samples[].SamplePath": "works; refused with a wildcard",
    "Samples[].Data": "works",
    "Samples[].DisableStaterror": "works",
    "Samples[].Regions": "works",
    "NormFactors[].Name": "works",
    "NormFactors[].Regions": "works",
    "NormFactors[].Samples": "works",
    "NormFactors[].Nominal": "works",
    "NormFactors[].Bounds": "works",
    "Systematics[].Name": "works",
    "Systematics[].Type": "works",
    "Systematics[].Up": "works",
    "Systematics[].Down": "works",
    "Systematics[].Regions": "works",
    "Systematics[].Samples": "works",
    "Systematics[].Smoothing": "works (cabinetry.templates.postprocess, in the merge step)",
    "Systematics[].Smoothing.Algorithm": "works",
    "Systematics[].Smoothing.Regions": "works",
    "Systematics[].Smoothing.Samples": "works",
    "Systematics[].ModifierName": "works",
    **{f"Systematics[].{side}.{key}": status for side in ("Up", "Down") for key, status in {
        "Tree": "works",
        "Weight": "works",
        "Variable": "works",
        "Filter": "works",
        "RegionPath": "works; refused with a wildcard",
        "SamplePath": "works; refused with a wildcard",
        "Normalization": "works; refused when missing for Type Normalization",
        "Symmetrize": ("works for Down; Up.Symmetrize: true refused" if side == "Down"
                       else "refused when true (cabinetry cannot build it)"),
        "VariationPath": "ignored, as by cabinetry.templates.build (histogram inputs)",
    }.items()},
}

HISTOGRAM_INPUTS = ("required key is missing: pubflow fills histograms from ntuples "
                    "(cabinetry's histogram inputs, templates.collect, are not supported)")
NO_POI = ("required key is missing: pubflow's fit measures the POI (cabinetry's default, "
          "no POI, is not supported)")
UNKNOWN_POI = "{poi!r} is not a NormFactor or systematic of the config (pyhf cannot fit it)"
NO_NORMALIZATION = ("required for Type Normalization (cabinetry's workspace build fails "
                    "without it)")
# cabinetry 0.6.0 then makes no Up template, yet builds the workspace from one
UP_SYMMETRIZE = ("cabinetry symmetrizes only Down, from Up: with Up.Symmetrize it makes no "
                 "Up template and cannot build the workspace; set Down.Symmetrize instead")
WILDCARD = ("wildcard in {path!r}: pubflow reads, checksums and schedules every input file "
            "by name; list the files (SamplePath takes a list)")
# uproot expands these in a path (glob)
_LOCAL_WILDCARD = re.compile(r"[*?\[\]]")
_REMOTE_WILDCARD = re.compile(r"[*\[\]]")  # '?' starts the options of an XRootD URL

Issue = tuple[str, str]  # (key path, reason)


def _wildcards(key: str, value: Any) -> list[Issue]:
    """A path setting (string or list of strings) with a glob pattern in it."""
    found = []
    many = isinstance(value, list)
    for i, path in enumerate(layout.as_list(value)):
        if not isinstance(path, str):
            continue
        pattern = _REMOTE_WILDCARD if "://" in path else _LOCAL_WILDCARD
        if pattern.search(path):
            found.append((f"{key}[{i}]" if many else key, WILDCARD.format(path=path)))
    return found


def _missing_path(key: str, placeholder: str) -> Issue:
    # cabinetry raises "no path setting found for ..."; name the key that is missing
    return key, f"required key is missing: General.InputPath contains {{{placeholder}}}"


def _general(config: Config) -> list[Issue]:
    general = config.get("General", {})
    found = _wildcards("General.InputPath", general.get("InputPath"))
    poi = general.get("POI")
    known = {nf.get("Name") for nf in config.get("NormFactors", [])}
    for syst in config.get("Systematics", []):
        known |= {syst.get("Name"), syst.get("ModifierName", syst.get("Name"))}
    if poi is None:
        found.append(("General.POI", NO_POI))
    elif poi not in known:
        found.append(("General.POI", UNKNOWN_POI.format(poi=poi)))
    return found


def _regions(config: Config) -> list[Issue]:
    input_path = config.get("General", {}).get("InputPath", "")
    found = []
    for i, region in enumerate(config.get("Regions", [])):
        found += [(f"Regions[{i}].{key}", HISTOGRAM_INPUTS)
                  for key in ("Variable", "Binning") if key not in region]
        if "RegionPath" in region:
            found += _wildcards(f"Regions[{i}].RegionPath", region["RegionPath"])
        elif "{RegionPath}" in input_path:
            found.append(_missing_path(f"Regions[{i}].RegionPath", "RegionPath"))
    return found


def _samples(config: Config) -> list[Issue]:
    input_path = config.get("General", {}).get("InputPath", "")
    found = []
    for i, sample in enumerate(config.get("Samples", [])):
        if "Tree" not in sample:
            found.append((f"Samples[{i}].Tree", HISTOGRAM_INPUTS))
        if "SamplePath" in sample:
            found += _wildcards(f"Samples[{i}].SamplePath", sample["SamplePath"])
        elif "{SamplePath}" in input_path:
            found.append(_missing_path(f"Samples[{i}].SamplePath", "SamplePath"))
    return found


def _systematics(config: Config) -> list[Issue]:
    found = []
    for i, syst in enumerate(config.get("Systematics", [])):
        for side in ("Up", "Down"):
            template = syst.get(side, {})
            where = f"Systematics[{i}].{side}"
            if syst.get("Type") == "Normalization" and "Normalization" not in template:
                found.append((f"{where}.Normalization", NO_NORMALIZATION))
            if side == "Up" and template.get("Symmetrize"):
                found.append((f"{where}.Symmetrize", UP_SYMMETRIZE))
            for key in ("RegionPath", "SamplePath"):
                if key in template:
                    found += _wildcards(f"{where}.{key}", template[key])
    return found


def unsupported(config: Config) -> list[Issue]:
    """Every cabinetry option of ``config`` pubflow refuses, as ``(key path, reason)``.

    ``config`` is schema-valid (cabinetry's keys, pubflow's beside them); the list follows
    the config's order (General, Regions, Samples, Systematics) and is empty when pubflow
    gives exactly cabinetry's histograms and workspace for it.

    >>> unsupported({"General": {"POI": "mu", "InputPath": "data/*.root"},
    ...              "NormFactors": [{"Name": "mu"}]})[0][0]
    'General.InputPath'
    """
    return _general(config) + _regions(config) + _samples(config) + _systematics(config)


def check(config: Config, source: object) -> None:
    """Raise ``PubflowError`` naming ``source`` and the first option pubflow refuses."""
    found = unsupported(config)
    if found:
        key, reason = found[0]
        raise PubflowError(reason, path=source, key=key)
