"""model: the pyhf workspace (Z measurement, background-only for the scan) and the patchset.

cabinetry builds each workspace from the merged histograms (normfactors, normsys,
histosys, staterror); pubflow adds the luminosity modifier cabinetry lacks. The signal
hypotheses of a scan are published the way HEPData expects likelihoods: one workspace plus
a pyhf patchset with one patch per point of the scan, each patch the JSON Patch that turns
the workspace into that signal hypothesis (the resonance added, or the signal replaced).
"""

from __future__ import annotations

import argparse
import copy
import logging
from typing import Any

from steps import cli, layout
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.io import write_json

log = logging.getLogger(__name__)

PATCHSET_VERSION = "1.0.0"


def add_lumi(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Return ``spec`` with a ``lumi`` modifier on every sample and its constraint.

    Only with pubflow's ``Luminosity``: without it the model is cabinetry's as it is, whose
    own systematics then carry any luminosity uncertainty (never a second one on top).
    """
    lumi = config.get("Luminosity")
    if not lumi or not lumi.get("Measured", True):
        return spec  # a value that only normalises the simulation constrains nothing
    rel = lumi.get("RelativeUncertainty", 0.0)
    if rel == 0:
        return spec
    out = copy.deepcopy(spec)
    for channel in out["channels"]:
        for sample in channel["samples"]:
            sample["modifiers"].append({"name": "lumi", "type": "lumi", "data": None})
    for measurement in out["measurements"]:
        measurement["config"]["parameters"].append(
            {"name": "lumi", "auxdata": [1.0], "sigmas": [rel],
             "bounds": [[max(1e-3, 1 - 5 * rel), 1 + 5 * rel]], "inits": [1.0]}
        )
    return out


def build_workspace(config: dict[str, Any]) -> dict[str, Any]:
    """The workspace of ``config`` from the merged histograms, lumi added, schema-checked."""
    import cabinetry
    import pyhf

    try:
        spec = cabinetry.workspace.build(layout.cabinetry_config(config))
    except FileNotFoundError as err:
        raise PubflowError(f"histogram missing, run the merge step first ({err})",
                           path=config["General"]["HistogramFolder"]) from None
    spec = add_lumi(spec, config)
    pyhf.schema.validate(spec, "workspace.json")
    return spec


def build_patchset(config: dict[str, Any], background: dict[str, Any]) -> dict[str, Any]:
    """One JSON Patch per scan point, from ``background`` to that signal hypothesis, labelled
    with the point's values of every scan variable."""
    import jsonpatch
    import pyhf

    scan = config["Scan"]
    labels = layout.scan_labels(config)
    points = layout.scan_points(config)
    patches = []
    for point in points:
        signal = build_workspace(layout.scan_config(config, point))
        patches.append({
            "metadata": {"name": layout.patch_name(config, point),
                         "values": [point[label] for label in labels]},
            "patch": jsonpatch.make_patch(background, signal).patch,
        })
    patchset = {
        "metadata": {
            "name": config["General"]["Measurement"] + "_scan",
            "description": f"{scan.get('Name', 'signal')} hypotheses, POI "
                           f"{layout.scan_poi(config)}",
            "digests": {"sha256": pyhf.utils.digest(background)},
            "labels": labels,
            # the patchset schema demands an INSPIRE id; ins0000000 = not assigned yet
            "references": {"hepdata": config.get("Publication", {}).get("InspireId",
                                                                          "ins0000000")},
        },
        "patches": patches,
        "version": PATCHSET_VERSION,
    }
    checked = pyhf.PatchSet(patchset)  # validates against pyhf's patchset schema
    for patch in patches:
        patched = checked.apply(pyhf.Workspace(background), patch["metadata"]["name"])
        pyhf.schema.validate(dict(patched), "workspace.json")
    return patchset


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("model", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--workspace", required=True, help="workspace to write (JSON)")
    p.add_argument("--patchset", help="patchset to write (JSON); needs a Scan in the config")
    return p


def main(args: argparse.Namespace) -> None:
    config = load_analysis(args.config)
    workspace = build_workspace(config)
    if args.patchset:
        if "Scan" not in config:
            raise PubflowError("no Scan in the config", path=args.config, key="Scan")
        write_json(args.patchset, build_patchset(config, workspace))
    write_json(args.workspace, workspace)
    log.info("workspace: %d channels, %d parameters", len(workspace["channels"]),
             len(workspace["measurements"][0]["config"]["parameters"]))


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
