"""hepdata: the HEPData submission (tables, figures, likelihoods) from the fit results.

Tables, one per result the record publishes, made with hepdata_lib:

* the distribution of each region's observable (``Publication.Observables`` names it, e.g.
  ``Dimuon mass spectrum``): observed events per bin with their Poisson uncertainty, the post-fit
  total prediction with its uncertainty and each post-fit sample (one table per region);
* ``Event yields``: pre- and post-fit yields per sample, summed over the bins, with the
  uncertainties the fit step propagated to the sums (bin-to-bin correlations; per region);
* ``Signal strength and nuisance parameters``: best-fit values and uncertainties;
* ``Upper limits: <the scan's name>``: observed and expected (±1σ, ±2σ) CLs limits on the
  signal strength, the observed limit on the cross section times branching fraction (with a
  reference cross section) and the local significance, per hypothesis of the scan, with one
  independent variable per scan variable.

Nothing is refitted: every number comes from the inputs, which are checked against each other
(the fit results name the sha256 digest of the workspace they were fitted from, as the
patchset does).

The likelihoods go in as a HistFactory resource: ``Likelihoods.tar.gz`` with the background-only
workspace (``BkgOnly.json``), the signal patchset and a README, packed reproducibly.

What of the inputs was processed goes in as ``processed_inputs.json`` (per sample: entries
expected by the dataset manifest and processed, the processed fraction, every file skipped as
unreadable with its reason, the scale applied to simulation); the ``Event yields`` tables state
the processed fraction of each sample, and a sample not processed in full carries it as a
qualifier of its columns in the distribution tables.

hepdata_lib's ``Submission.create_files`` writes the YAML, images and thumbnails into a folder,
but its tarball into the *current directory*, from files in walk order with their own times. So
the folder is written into a temporary directory (which is also the working directory while
hepdata_lib runs), the PNGs are stripped of ImageMagick's time stamps, the archive is packed
again reproducibly (sorted members, fixed times and owners) and checked with hepdata-validator,
and only then is the whole output folder moved into place.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import itertools
import json
import logging
import math
import os
import re
import tarfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import numpy as np
import yaml

from steps import cli, layout
from steps.config import _describe, key_path, load_analysis
from steps.errors import PubflowError, one_line
from steps.io import atomic_path, read_json
from steps.merge import sample_inputs

if TYPE_CHECKING:
    from hepdata_lib import Submission, Table

log = logging.getLogger(__name__)

LIKELIHOOD_ARCHIVE = "Likelihoods.tar.gz"
BKG_ONLY_NAME = "BkgOnly.json"
PATCHSET_NAME = "patchset.json"
README_NAME = "README.md"
SUBMISSION_DIR = "submission"
SUBMISSION_ARCHIVE = "submission.tar.gz"
PROCESSED_INPUTS = "processed_inputs.json"
PROCESSED_INPUTS_FORMAT = "pubflow-processed-inputs/1"
#: The qualifier of a column whose sample was not processed in full.
PROCESSED_QUALIFIER = "Processed fraction of input entries"

#: The figure each table shows, in the figures folder (PNG: ImageMagick may not read PDF).
FIGURES = {
    "spectrum": "data_mc_postfit_{region}.png",
    "yields": "data_mc_prefit_{region}.png",
    "parameters": "pulls.png",
    "limits": "{limits}.png",
}
#: The limits' figure by the number of scan variables (none for more than two).
LIMIT_FIGURES = {1: "brazil", 2: "contour"}

CONFIDENCE_LEVEL = "95%"
#: Keys of a region's ``prefit``/``postfit`` block that are not samples.
TOTAL_KEYS = ("total", "total_uncertainty", "summed")

_NUMBERS = {"type": "array", "items": {"type": "number"}}
_PREDICTION = {
    "type": "object",
    "required": list(TOTAL_KEYS),
    "properties": {
        # yields summed over the region's bins, per sample and "total", with uncertainties
        "summed": {
            "type": "object",
            "required": ["total"],
            "additionalProperties": {
                "type": "object",
                "required": ["yield", "uncertainty"],
                "properties": {"yield": {"type": "number"},
                               "uncertainty": {"type": "number", "minimum": 0}},
            },
        },
    },
    "additionalProperties": _NUMBERS,
}
FIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["workspace_sha256", "poi", "mu", "mu_uncertainty", "parameters", "regions"],
    "properties": {
        "workspace_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "poi": {"type": "string"},
        "mu": {"type": "number"},
        "mu_uncertainty": {"type": "number"},
        "parameters": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "bestfit", "uncertainty"],
                "properties": {
                    "name": {"type": "string"},
                    "bestfit": {"type": "number"},
                    "uncertainty": {"type": "number", "minimum": 0},
                },
            },
        },
        "significance": {
            "type": "object",
            "properties": {"observed": {"type": "number"}, "expected": {"type": "number"}},
        },
        "regions": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["bins", "data", "prefit", "postfit"],
                "properties": {
                    "bins": {**_NUMBERS, "minItems": 2},
                    "data": {"type": "array", "items": {"type": "number", "minimum": 0}},
                    "prefit": _PREDICTION,
                    "postfit": _PREDICTION,
                },
            },
        },
    },
}
LIMITS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["poi", "labels", "points"],
    "properties": {
        "poi": {"type": "string"},
        "labels": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "units": {"type": "object", "additionalProperties": {"type": "string"}},
        "titles": {"type": "object", "additionalProperties": {"type": "string"}},
        "reference_cross_section": {"type": "number", "exclusiveMinimum": 0},
        "points": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["patch", "values", "observed", "expected", "significance", "p0"],
                "properties": {
                    "patch": {"type": "string"},
                    "values": {"type": "object", "additionalProperties": {"type": "number"}},
                    "observed": {"type": "number"},
                    "expected": {**_NUMBERS, "minItems": 5, "maxItems": 5},
                    "significance": {"type": "number"},
                    "p0": {"type": "number", "minimum": 0, "maximum": 1},
                    "crossings": {"type": "object", "additionalProperties": _NUMBERS},
                },
            },
        },
    },
}
_COUNT = {"type": ["integer", "null"], "minimum": 0}
HISTOGRAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["yield", "bins", "sample", "inputs"],
        "properties": {
            "yield": {"type": "number"},
            "bins": _NUMBERS,
            "sample": {"type": "string"},
            # what the histogram was filled from (steps.merge.histogram_inputs)
            "inputs": {
                "type": "object",
                "required": ["tree", "data", "nominal", "entries", "skipped",
                             "entries_expected", "entries_processed", "processed_fraction",
                             "scale"],
                "properties": {
                    "tree": {"type": "string"},
                    "data": {"type": "boolean"},
                    "nominal": {"type": "boolean"},
                    "entries": {"type": "object", "additionalProperties": _COUNT},
                    "skipped": {"type": "array", "items": {
                        "type": "object", "required": ["file", "reason", "entries"],
                        "properties": {"file": {"type": "string"},
                                       "reason": {"type": "string"},
                                       "entries": {"type": "integer", "minimum": 0}}}},
                    "entries_expected": _COUNT,
                    "entries_processed": _COUNT,
                    "processed_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                    "scale": {"type": "number", "minimum": 1},
                },
            },
        },
    },
}


# -- reading the inputs -------------------------------------------------------------------------


def _read(path: str | Path, schema: dict[str, Any] | None = None) -> Any:
    """Read a JSON input of an earlier step and check its shape against one of the above."""
    try:
        obj = read_json(path)
    except FileNotFoundError:
        raise PubflowError("file not found (run the earlier steps first)", path=path) from None
    except json.JSONDecodeError as err:
        raise PubflowError(f"invalid JSON ({err})", path=path) from None
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            where, message = _describe(error)
            raise PubflowError(message, path=path, key=where)
    return obj


@dataclass(frozen=True)
class RegionResult:
    """One region of the fit results, checked for consistent lengths and sums.

    Attributes:
        name: Region (channel) name.
        bins: Bin edges.
        data: Observed events per bin.
        prefit: Pre-fit yields per bin, by sample (without totals).
        postfit: Post-fit yields per bin, by sample (without totals).
        totals: ``{"prefit"|"postfit": (total per bin, its uncertainty per bin)}``.
        summed: ``{"prefit"|"postfit": {sample or "total": (yield, uncertainty)}}``, summed
            over the bins (the uncertainties with the bin-to-bin correlations).
    """

    name: str
    bins: list[float]
    data: list[float]
    prefit: dict[str, list[float]]
    postfit: dict[str, list[float]]
    totals: dict[str, tuple[list[float], list[float]]]
    summed: dict[str, dict[str, tuple[float, float]]]

    @property
    def samples(self) -> list[str]:
        """Sample names, in the order of the config's Samples."""
        return list(self.postfit)


def _region_result(
    name: str, block: dict[str, Any], sample_order: Sequence[str], source: str | Path
) -> RegionResult:
    def error(message: str, *where: str) -> PubflowError:
        return PubflowError(message, path=source, key=key_path(["regions", name, *where]))

    nbins = len(block["bins"]) - 1
    edges = block["bins"]
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise error("bin edges must increase", "bins")
    if len(block["data"]) != nbins:
        raise error(f"{len(block['data'])} values for {nbins} bins", "data")
    rank = {s: i for i, s in enumerate(sample_order)}
    stages: dict[str, dict[str, list[float]]] = {}
    totals: dict[str, tuple[list[float], list[float]]] = {}
    summed: dict[str, dict[str, tuple[float, float]]] = {}
    for stage in ("prefit", "postfit"):
        per_bin = {k: v for k, v in block[stage].items() if k != "summed"}
        for key, values in per_bin.items():
            if len(values) != nbins:
                raise error(f"{len(values)} values for {nbins} bins", stage, key)
        samples = sorted((s for s in per_bin if s not in TOTAL_KEYS),
                         key=lambda s: (rank.get(s, len(rank)), s))
        stages[stage] = {s: [float(v) for v in per_bin[s]] for s in samples}
        total = np.asarray(per_bin["total"], dtype=float)
        added = np.sum([stages[stage][s] for s in samples], axis=0) if samples else 0 * total
        if not np.allclose(added, total, rtol=1e-6, atol=1e-9):
            raise error("the samples do not add up to the total (max difference "
                        f"{np.max(np.abs(added - total)):.3g})", stage, "total")
        totals[stage] = (total.tolist(), [float(v) for v in per_bin["total_uncertainty"]])
        # the yields summed over the bins: those of the bins, for the samples and the total
        sums = {**{s: sum(stages[stage][s]) for s in samples}, "total": float(total.sum())}
        given = block[stage]["summed"]
        if set(given) != set(sums):
            raise error(f"summed yields for {sorted(given)}, but the samples and total are "
                        f"{sorted(sums)}", stage, "summed")
        for key, value in sums.items():
            if not math.isclose(given[key]["yield"], value, rel_tol=1e-6, abs_tol=1e-9):
                raise error(f"{given[key]['yield']:g}, but the bins add up to {value:g}",
                            stage, "summed", key, "yield")
        summed[stage] = {k: (float(given[k]["yield"]), float(given[k]["uncertainty"]))
                         for k in sums}
    if list(stages["prefit"]) != list(stages["postfit"]):
        raise error(f"pre-fit samples {list(stages['prefit'])} differ from post-fit samples "
                    f"{list(stages['postfit'])}")
    return RegionResult(
        name=name,
        bins=[float(b) for b in edges],
        data=[float(v) for v in block["data"]],
        prefit=stages["prefit"],
        postfit=stages["postfit"],
        totals=totals,
        summed=summed,
    )


def data_sample(config: dict[str, Any]) -> str:
    """Name of the sample with ``Data: true``."""
    return next(s["Name"] for s in config["Samples"] if s.get("Data"))


def check_data_yields(
    regions: Sequence[RegionResult],
    histograms: dict[str, Any],
    config: dict[str, Any],
    histograms_path: str | Path,
    fit_path: str | Path,
) -> None:
    """The fit's observed events are binned like, and add up to, the data histograms.

    Raises:
        PubflowError: If a data histogram is missing, binned differently or sums differently.
    """
    data_name = data_sample(config)
    for region in regions:
        key = f"{region.name}_{data_name}"
        if key not in histograms:
            raise PubflowError(f"no data histogram for region {region.name!r}",
                               path=histograms_path, key=key)
        hist = histograms[key]
        if not np.allclose(hist["bins"], region.bins, rtol=1e-12, atol=0):
            raise PubflowError(f"binning differs from {key} in {histograms_path}",
                               path=fit_path, key=f"regions.{region.name}.bins")
        if not math.isclose(sum(region.data), hist["yield"], rel_tol=1e-9, abs_tol=1e-9):
            raise PubflowError(
                f"data sum to {sum(region.data):g} events, but {histograms_path} has "
                f"{hist['yield']:g} in {key}", path=fit_path, key=f"regions.{region.name}.data",
            )


def check_limit_patches(
    limits: dict[str, Any],
    patchset: dict[str, Any],
    limits_path: str | Path,
    patchset_path: str | Path,
) -> None:
    """Every limit is for a patch of the published patchset, with that patch's values.

    Raises:
        PubflowError: If a limit names no patch of the patchset, or other labels or values.
    """
    labels = patchset.get("metadata", {}).get("labels", [])
    if list(limits["labels"]) != list(labels):
        raise PubflowError(f"limits over {', '.join(limits['labels'])}, the patchset's "
                           f"labels are {', '.join(labels)}", path=limits_path, key="labels")
    patches = {p["metadata"]["name"]: p["metadata"]["values"]
               for p in patchset.get("patches", [])}
    for i, point in enumerate(limits["points"]):
        if point["patch"] not in patches:
            raise PubflowError(f"patch {point['patch']!r} is not in {patchset_path}",
                               path=limits_path, key=f"points[{i}].patch")
        values = [point["values"].get(label) for label in labels]
        if values != patches[point["patch"]]:
            raise PubflowError(f"values {values} differ from the patch's "
                               f"{patches[point['patch']]} in {patchset_path}",
                               path=limits_path, key=f"points[{i}].values")


def check_fit_workspace(
    fit_results: dict[str, Any],
    regions: Sequence[RegionResult],
    workspace: dict[str, Any],
    workspace_path: str | Path,
    fit_path: str | Path,
) -> None:
    """The fit results were fitted from this workspace, which is a valid pyhf workspace.

    The fit step records the workspace's digest (``pyhf digest``); each region must also be a
    channel of the workspace with its observations as data and (some of) its samples.

    Raises:
        PubflowError: If the workspace is invalid or the fit results do not belong to it.
    """
    import pyhf

    try:
        pyhf.Workspace(workspace)
    except pyhf.exceptions.InvalidSpecification as err:
        raise PubflowError(f"invalid workspace ({one_line(err, 300)})",
                           path=workspace_path) from None
    digest = pyhf.utils.digest(workspace)
    if fit_results["workspace_sha256"] != digest:
        raise PubflowError(f"results not fitted from {workspace_path} (its sha256 digest is "
                           f"{digest})", path=fit_path, key="workspace_sha256")
    samples = {c["name"]: {s["name"] for s in c["samples"]} for c in workspace["channels"]}
    observed = {o["name"]: o["data"] for o in workspace["observations"]}
    for region in regions:
        if region.name not in samples:
            raise PubflowError(f"no channel {region.name!r} in {workspace_path}",
                               path=fit_path, key=key_path(["regions", region.name]))
        data = observed.get(region.name, [])
        if len(data) != len(region.data) or not np.allclose(data, region.data, rtol=1e-9,
                                                            atol=1e-9):
            raise PubflowError(f"data differ from the observations in {workspace_path}",
                               path=fit_path, key=key_path(["regions", region.name, "data"]))
        missing = set(region.samples) - samples[region.name]
        if missing:
            raise PubflowError(f"samples {sorted(missing)} are not in {workspace_path}",
                               path=fit_path, key=key_path(["regions", region.name, "postfit"]))


# -- the likelihood archive ---------------------------------------------------------------------


def write_reproducible_tar(path: str | Path, members: Mapping[str, bytes]) -> None:
    """Write a ``.tar.gz`` whose bytes depend only on ``members``, atomically.

    Members are sorted by name, with mode 0644, owner 0:0 (no names) and time 0; the gzip
    header carries neither a file name nor a time.
    """
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))


def record_title(config: dict[str, Any]) -> str:
    """The record's title: the ``Publication`` one, else the cabinetry measurement's name."""
    return config.get("Publication", {}).get("Title") or config["General"]["Measurement"]


def _workspace_readme(config: dict[str, Any], workspace: dict[str, Any]) -> str:
    """The likelihood archive's README when there is no signal scan (no patchset)."""
    measurement = workspace["measurements"][0]
    channels = ", ".join(f"`{c['name']}`" for c in workspace["channels"])
    return "\n".join([
        f"# Likelihood: {record_title(config)}",
        "",
        "The statistical model of this record as pyhf JSON (HistFactory), made by the pubflow",
        "workflow.",
        "",
        f"- `{BKG_ONLY_NAME}`: pyhf workspace, measurement `{measurement['name']}`, POI",
        f"  `{measurement['config']['poi']}`, channels {channels}.",
        "",
        "```sh",
        f"pyhf inspect {BKG_ONLY_NAME}",
        f"pyhf fit --value {BKG_ONLY_NAME}",
        "```",
        "",
    ])


def likelihood_readme(
    config: dict[str, Any], workspace: dict[str, Any], patchset: dict[str, Any] | None
) -> str:
    """The README of the likelihood archive: what the files are and how to use them."""
    import pyhf

    if patchset is None:
        return _workspace_readme(config, workspace)
    measurement = workspace["measurements"][0]
    poi = measurement["config"]["poi"]
    channels = ", ".join(f"`{c['name']}`" for c in workspace["channels"])
    patches = patchset["patches"]
    labels = patchset["metadata"]["labels"]
    first = patches[0]["metadata"] if patches else {"name": "<name>", "values": ["..."]}
    scan = config.get("Scan", {})
    search = scan.get("Name", "signal")
    signal_poi = layout.scan_poi(config) if scan else poi
    replaced = scan.get("Replaces")
    listing = "\n".join(
        f"- `{p['metadata']['name']}`: "
        + ", ".join(f"{label} = {value:g}"
                    for label, value in zip(labels, p["metadata"]["values"], strict=True))
        for p in patches
    )
    lines = [
        f"# Likelihoods: {record_title(config)}",
        "",
        "The statistical model of this record as pyhf JSON (HistFactory), made by the pubflow",
        "workflow.",
        "",
        f"- `{BKG_ONLY_NAME}`: pyhf workspace, measurement `{measurement['name']}`, POI `{poi}`,",
        f"  channels {channels}: the measurement likelihood, which is also the",
        *((f"  base of the search ({search}), with its benchmark signal `{replaced}`.",
           f"- `{PATCHSET_NAME}`: pyhf patchset `{patchset['metadata'].get('name', '')}`,",
           f"  {len(patches)} patches, one per signal hypothesis ({', '.join(labels)}); each",
           f"  replaces `{replaced}` in `{BKG_ONLY_NAME}` by that hypothesis's signal, whose",
           f"  strength `{signal_poi}` is the POI.") if replaced else
          (f"  background-only model of the search ({search}).",
           f"- `{PATCHSET_NAME}`: pyhf patchset `{patchset['metadata'].get('name', '')}`,",
           f"  {len(patches)} patches, one per signal hypothesis ({', '.join(labels)}); each",
           f"  adds the signal sample to `{BKG_ONLY_NAME}` and makes `{signal_poi}` the POI.")),
        "",
        f"The patchset records the sha256 digest of `{BKG_ONLY_NAME}`",
        f"(`pyhf digest {BKG_ONLY_NAME}`):",
        f"`{pyhf.utils.digest(workspace)}`.",
        "",
        "## With the pyhf command line (pyhf >= 0.7)",
        "",
        "```sh",
        f"pyhf inspect {BKG_ONLY_NAME}",
        f"pyhf fit --value {BKG_ONLY_NAME}",
        f"pyhf patchset inspect {PATCHSET_NAME}",
        f"pyhf patchset verify {BKG_ONLY_NAME} {PATCHSET_NAME}",
        f"pyhf patchset apply {BKG_ONLY_NAME} {PATCHSET_NAME} --name {first['name']} \\",
        f"    --output-file {first['name']}.json",
        f"pyhf cls --test-poi 1.0 {first['name']}.json",
        "```",
        "",
        f"`pyhf cls` gives the observed and expected CLs values of `{signal_poi}` = 1 for that",
        "hypothesis.",
        "",
        "## In Python",
        "",
        "```python",
        "import json",
        "",
        "import pyhf",
        "",
        f'background = pyhf.Workspace(json.load(open("{BKG_ONLY_NAME}")))',
        f'patchset = pyhf.PatchSet(json.load(open("{PATCHSET_NAME}")))',
        f"# the patch by name, or by values: {list(first['values'])}",
        f'workspace = patchset.apply(background, "{first["name"]}")',
        "model = workspace.model()",
        "data = workspace.data(model)",
        "cls_obs, cls_exp = pyhf.infer.hypotest(",
        '    1.0, data, model, test_stat="qtilde", return_expected_set=True',
        ")",
        "```",
        "",
        "The upper limits of the record are asymptotic CLs limits",
        f"({CONFIDENCE_LEVEL} CL, `qtilde` test statistic) on `{signal_poi}`, one per patch:",
        "",
        listing,
        "",
    ]
    return "\n".join(lines)


def write_likelihoods(
    path: str | Path,
    config: dict[str, Any],
    workspace_path: str | Path,
    patchset_path: str | Path | None,
) -> None:
    """Pack ``BkgOnly.json`` (the workspace file as is), the patchset (if any) and a README.

    Raises:
        PubflowError: If the patchset was not made for this workspace (digest mismatch).
    """
    import pyhf

    workspace_bytes = Path(workspace_path).read_bytes()
    workspace = json.loads(workspace_bytes)
    if patchset_path is None:
        write_reproducible_tar(path, {
            BKG_ONLY_NAME: workspace_bytes,
            README_NAME: likelihood_readme(config, workspace, None).encode(),
        })
        return
    patchset_bytes = Path(patchset_path).read_bytes()
    patchset = json.loads(patchset_bytes)
    try:
        pyhf.PatchSet(patchset).verify(workspace)
    except pyhf.exceptions.PatchSetVerificationError as err:
        raise PubflowError(f"not made for {workspace_path} ({err})", path=patchset_path) from None
    except pyhf.exceptions.InvalidSpecification as err:
        raise PubflowError(f"invalid patchset ({one_line(err, 300)})",
                           path=patchset_path) from None
    write_reproducible_tar(path, {
        BKG_ONLY_NAME: workspace_bytes,
        PATCHSET_NAME: patchset_bytes,
        README_NAME: likelihood_readme(config, workspace, patchset).encode(),
    })


# -- what of the inputs was processed ----------------------------------------------------------


def _fraction(value: float) -> str:
    return f"{value:.4g}"


def processed_statement(samples: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence per record: each sample's processed fraction, with what was skipped."""
    fractions = ", ".join(f"{name} {_fraction(s['processed_fraction'])}"
                          for name, s in samples.items())
    text = (f"Processed fraction of the input entries (as the dataset manifest counts them) "
            f"per sample: {fractions}.")
    for name, s in samples.items():
        if not s["skipped"]:
            continue
        correction = ("the data are not scaled, and are short by "
                      f"{1 - s['processed_fraction']:.2%}" if s["data"] else
                      f"its prediction is scaled by {s['entries_expected']}/"
                      f"{s['entries_processed']} = {s['scale']:.4g}")
        text += (f" {name}: {s['entries_processed']} of {s['entries_expected']} entries "
                 f"processed, {len(s['skipped'])} of {s['files']} files skipped as "
                 f"unreadable ({PROCESSED_INPUTS} lists them); {correction}.")
    return text


def write_processed_inputs(path: Path, samples: Mapping[str, Mapping[str, Any]]) -> None:
    """The record's resource on what of the inputs was processed, per sample."""
    path.write_text(json.dumps({"format": PROCESSED_INPUTS_FORMAT, "samples": samples},
                               indent=2, sort_keys=True) + "\n")


def _qualify_processed(variable: Any, sample: Mapping[str, Any] | None) -> None:
    """A column of a sample not processed in full says how much was."""
    if sample is not None and sample["skipped"]:
        variable.add_qualifier(PROCESSED_QUALIFIER, _fraction(sample["processed_fraction"]))


# -- the tables ---------------------------------------------------------------------------------


def _keywords(config: dict[str, Any]) -> dict[str, list[Any]]:
    keywords = config.get("Publication", {}).get("Keywords", {})
    return {name: list(values) for name, values in keywords.items() if values}


def _license(config: dict[str, Any]) -> dict[str, str] | None:
    """The config's licence as hepdata_lib takes it (``name``, ``url``), if it names one."""
    license_ = config.get("Publication", {}).get("License")
    return {"name": license_["Name"], "url": license_["URL"]} if license_ else None


def _new_table(name: str, description: str, location: str, config: dict[str, Any]) -> Table:
    from hepdata_lib import Table

    table = Table(name)
    table.description = description
    table.location = location
    table.keywords = _keywords(config)
    license_ = _license(config)
    if license_:
        table.add_data_license(license_["name"], license_["url"])
    return table


def _qualify(variable: Any, config: dict[str, Any], region: str | None = None) -> None:
    """HEPData qualifiers of a dependent variable: energy, luminosity, region."""
    energies = config.get("Publication", {}).get("Keywords", {}).get("cmenergies", [])
    if len(energies) == 1:
        variable.add_qualifier("SQRT(S)", energies[0], "GeV")
    lumi = config.get("Luminosity")
    if lumi and lumi.get("Measured", True):  # never a value that only normalises simulation
        variable.add_qualifier("LUMINOSITY", lumi["Value"], lumi["Unit"])
    if region is not None:
        variable.add_qualifier("Region", region)


def _attach_figure(table: Table, figure: Path) -> None:
    """Add the PNG figure to the table, and the PDF beside it (if any) as a resource."""
    if not figure.is_file():
        raise PubflowError("figure not found (run the plotting step first)", path=figure)
    table.add_image(str(figure.resolve()))
    pdf = figure.with_suffix(".pdf")
    if pdf.is_file():
        table.add_additional_resource(f"{figure.stem} as PDF", str(pdf.resolve()),
                                      copy_file=True)


def _region_name(base: str, region: str, n_regions: int) -> str:
    return base if n_regions == 1 else f"{base} in region {region}"


def observable_names(config: dict[str, Any], region: str) -> dict[str, str]:
    """How the record names a region's observable: ``Publication.Observables``, else after
    the region's cabinetry ``Variable``."""
    variable = next((r.get("Variable", region) for r in config["Regions"]
                     if r["Name"] == region), region)
    given = config.get("Publication", {}).get("Observables", {}).get(region, {})
    return {"Title": f"Distribution of {variable}", "Description": f"Distribution of {variable}",
            "Variable": variable, "Unit": "", **given}


def spectrum_table(
    region: RegionResult, config: dict[str, Any], figure: Path, n_regions: int = 1,
    processed: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """Observed events, post-fit total (with uncertainty) and post-fit samples per bin; the
    columns of a sample not processed in full (``processed``) say how much was."""
    from hepdata_lib import Uncertainty, Variable

    observable = observable_names(config, region.name)
    table = _new_table(
        _region_name(observable["Title"], region.name, n_regions),
        f"{observable['Description']} in region {region.name}: observed events per "
        "bin with their Poisson uncertainty, and the prediction after the binned "
        "maximum-likelihood fit, in total (with its uncertainty) and per sample.",
        f"Figure {figure.name}",
        config,
    )
    bins = Variable(observable["Variable"], is_independent=True, is_binned=True,
                    units=observable["Unit"])
    bins.values = list(itertools.pairwise(region.bins))
    table.add_variable(bins)

    data = Variable("Data", is_independent=False, is_binned=False, units="events",
                    zero_uncertainties_warning=False)
    data.values = region.data
    stat = Uncertainty("stat", is_symmetric=True)
    stat.values = [math.sqrt(n) for n in region.data]
    data.add_uncertainty(stat)
    _qualify(data, config, region.name)
    _qualify_processed(data, (processed or {}).get(data_sample(config)))
    table.add_variable(data)

    total_values, total_uncertainty = region.totals["postfit"]
    total = Variable("Post-fit total", is_independent=False, is_binned=False, units="events",
                     zero_uncertainties_warning=False)
    total.values = total_values
    unc = Uncertainty("post-fit", is_symmetric=True)
    unc.values = total_uncertainty
    total.add_uncertainty(unc)
    _qualify(total, config, region.name)
    table.add_variable(total)

    for sample, values in region.postfit.items():
        variable = Variable(f"Post-fit {sample}", is_independent=False, is_binned=False,
                            units="events")
        variable.values = values
        _qualify(variable, config, region.name)
        _qualify_processed(variable, (processed or {}).get(sample))
        table.add_variable(variable)
    _attach_figure(table, figure)
    return table


def yields_table(
    region: RegionResult, config: dict[str, Any], figure: Path, n_regions: int = 1,
    processed: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """Pre- and post-fit yields per sample, summed over the bins, with data and total; the
    description states the processed fraction of each sample's inputs (``processed``)."""
    from hepdata_lib import Uncertainty, Variable

    table = _new_table(
        _region_name("Event yields", region.name, n_regions),
        f"Event yields in region {region.name}, summed over the bins, before and after the "
        "fit. The uncertainties of the predictions are those of the model (statistical "
        "uncertainty of the simulation and systematic uncertainties; after the fit with the "
        "correlations of the fitted parameters); the data have their Poisson uncertainty."
        + (f" {processed_statement(processed)}" if processed else ""),
        f"Figure {figure.name}",
        config,
    )
    rows = [*region.samples, "Total", "Data"]
    label = Variable("Sample", is_independent=True, is_binned=False)
    label.values = rows
    table.add_variable(label)
    n_data = sum(region.data)
    for stage, title in (("prefit", "Pre-fit yield"), ("postfit", "Post-fit yield")):
        summed = [region.summed[stage][s] for s in [*region.samples, "total"]]
        variable = Variable(title, is_independent=False, is_binned=False, units="events",
                            zero_uncertainties_warning=False)
        variable.values = [value for value, _ in summed] + [n_data]
        model = Uncertainty("model", is_symmetric=True)
        model.values = [uncertainty for _, uncertainty in summed] + [None]
        stat = Uncertainty("stat", is_symmetric=True)
        stat.values = [None] * (len(rows) - 1) + [math.sqrt(n_data)]
        variable.add_uncertainty(model)
        variable.add_uncertainty(stat)
        _qualify(variable, config, region.name)
        table.add_variable(variable)
    _attach_figure(table, figure)
    return table


def parameters_table(fit: dict[str, Any], config: dict[str, Any], figure: Path) -> Table:
    """Best-fit values and uncertainties of all parameters of the fit."""
    from hepdata_lib import Uncertainty, Variable

    significance = fit.get("significance", {})
    signif_text = ""
    if "observed" in significance:
        signif_text = f" Observed significance of the signal: {significance['observed']:.3g}"
        if "expected" in significance:
            signif_text += f" (expected {significance['expected']:.3g})"
        signif_text += " standard deviations."
    table = _new_table(
        "Signal strength and nuisance parameters",
        f"Best-fit values and uncertainties of the parameters of the binned maximum-likelihood "
        f"fit; the parameter of interest is {fit['poi']} = {fit['mu']:.4g} +- "
        f"{fit['mu_uncertainty']:.2g}.{signif_text}",
        f"Figure {figure.name}",
        config,
    )
    names = Variable("Parameter", is_independent=True, is_binned=False)
    names.values = [p["name"] for p in fit["parameters"]]
    table.add_variable(names)
    value = Variable("Best-fit value", is_independent=False, is_binned=False,
                     zero_uncertainties_warning=False)
    value.values = [float(p["bestfit"]) for p in fit["parameters"]]
    unc = Uncertainty("fit", is_symmetric=True)
    unc.values = [float(p["uncertainty"]) for p in fit["parameters"]]
    value.add_uncertainty(unc)
    _qualify(value, config)
    table.add_variable(value)
    _attach_figure(table, figure)
    return table


def limits_table_name(config: dict[str, Any]) -> str:
    """The limits table's name: after the scan's hypotheses, where the config names them."""
    name = config.get("Scan", {}).get("Name")
    return f"Upper limits: {name}" if name else "Upper limits"


def _frozen_sentence(points: list[dict[str, Any]]) -> str:
    """What the limits' fits held fixed (``frozen_parameters``): each parameter with the
    largest change of -2 ln L fixing it can make at any point; nothing if none was."""
    largest: dict[str, float] = {}
    for p in points:
        for name, effect in (p.get("frozen_parameters") or {}).items():
            largest[name] = max(float(effect), largest.get(name, 0.0))
    if not largest:
        return ""
    return (" The fits hold fixed at their initial values the parameters along which float64 "
            "cannot resolve -2 ln L, each with the largest change of -2 ln L that fixing it can "
            "make at any hypothesis: "
            + ", ".join(f"{name} ({effect:.1e})" for name, effect in sorted(largest.items()))
            + ".")


def limits_table(limits: dict[str, Any], config: dict[str, Any], figure: Path | None
                 ) -> Table:
    """Per hypothesis (one independent variable per scan variable): the observed and
    expected limits, the observed limit on sigma x B (with a reference cross section) and
    the local significance."""
    from hepdata_lib import Uncertainty, Variable

    labels = list(limits["labels"])
    points = sorted(limits["points"], key=lambda p: tuple(p["values"][k] for k in labels))
    poi = limits["poi"]
    xsec = limits.get("reference_cross_section")
    relative = limits.get("relative_to")
    reference = (f", relative to a reference cross section times branching fraction of "
                 f"{xsec:g} pb" if xsec else "")
    if relative:
        ratio = f"the ratio of sigma x B to sigma x B({relative['Name']})"
        reference += (f"; the signal samples also carry {relative['NormFactor']}, the "
                      f"normalisation of the {relative['Name']} measured in the same data, so "
                      f"that {poi} x {xsec:g} pb / {relative['CrossSection']:g} pb is "
                      f"{ratio}, in which the luminosity and common efficiencies cancel")
    scan = config.get("Scan", {})
    what = scan.get("Name", "the signal hypotheses")
    table = _new_table(
        limits_table_name(config),
        f"{CONFIDENCE_LEVEL} CL upper limits (asymptotic CLs) on the signal strength {poi} "
        f"of {what} ({', '.join(labels)}){reference}, observed and expected (median, with "
        "the ranges containing 68% and 95% of the expected limits)"
        + ("; the limits on that ratio" if relative else
           "; the observed limit on the cross section times branching fraction" if xsec
           else "")
        + "; the local significance of the signal." + _frozen_sentence(points),
        f"Figure {figure.name}" if figure else "Table",
        config,
    )
    titles, units = limits.get("titles", {}), limits.get("units", {})
    for label in labels:
        variable = Variable(titles.get(label, label), is_independent=True, is_binned=False,
                            units=units.get(label, ""))
        variable.values = [p["values"][label] for p in points]
        table.add_variable(variable)

    observed = Variable(f"Observed upper limit on {poi}", is_independent=False,
                        is_binned=False)
    observed.values = [float(p["observed"]) for p in points]
    expected = Variable(f"Expected upper limit on {poi}", is_independent=False,
                        is_binned=False)
    median = [float(p["expected"][2]) for p in points]
    expected.values = median
    for label, (low, high) in (("1 sigma", (1, 3)), ("2 sigma", (0, 4))):
        band = Uncertainty(label, is_symmetric=False)
        band.set_values_from_intervals(
            [(float(p["expected"][low]), float(p["expected"][high])) for p in points], median
        )
        expected.add_uncertainty(band)
    limits_columns = [observed, expected]
    if relative:
        scale = float(xsec) / float(relative["CrossSection"])
        ratio_observed = Variable(f"Observed upper limit on {ratio}", is_independent=False,
                                  is_binned=False)
        ratio_observed.values = [float(p["observed"]) * scale for p in points]
        ratio_expected = Variable(f"Expected upper limit on {ratio}", is_independent=False,
                                  is_binned=False)
        ratio_median = [value * scale for value in median]
        ratio_expected.values = ratio_median
        for label, (low, high) in (("1 sigma", (1, 3)), ("2 sigma", (0, 4))):
            band = Uncertainty(label, is_symmetric=False)
            band.set_values_from_intervals(
                [(float(p["expected"][low]) * scale, float(p["expected"][high]) * scale)
                 for p in points], ratio_median)
            ratio_expected.add_uncertainty(band)
        limits_columns += [ratio_observed, ratio_expected]
    elif xsec:
        cross_section = Variable("Observed upper limit on sigma x B", is_independent=False,
                                 is_binned=False, units="pb")
        cross_section.values = [float(p["observed"]) * float(xsec) for p in points]
        limits_columns.append(cross_section)
    flagged = [sum(1 for mus in p.get("crossings", {}).values() if mus) for p in points]
    if any(flagged):
        # a CLs curve crossing alpha more than once: the limit given is its lowest crossing
        crossing = Variable("Limits with a non-monotonic CLs curve", is_independent=False,
                            is_binned=False, zero_uncertainties_warning=False)
        crossing.values = flagged
        limits_columns.append(crossing)
    significance = Variable("Local significance", is_independent=False, is_binned=False)
    significance.values = [float(p["significance"]) for p in points]
    p0 = Variable("Local p-value", is_independent=False, is_binned=False)
    p0.values = [float(p["p0"]) for p in points]
    for variable in (*limits_columns, significance, p0):
        _qualify(variable, config)
        if any(variable is column for column in limits_columns):
            variable.add_qualifier("CL", CONFIDENCE_LEVEL)
        table.add_variable(variable)
    if figure:
        _attach_figure(table, figure)
    return table


# -- the submission -----------------------------------------------------------------------------


def _submission(config: dict[str, Any]) -> Submission:
    """A hepdata_lib Submission whose record licence is the config's (not always CC0)."""
    from hepdata_lib import Submission

    license_ = _license(config)

    class _Submission(Submission):
        def get_license(self) -> dict[str, str]:  # type: ignore[override]
            return license_ or Submission.get_license()

    submission = _Submission()
    abstract = config.get("Publication", {}).get("Abstract") or record_title(config)
    submission.comment = " ".join(abstract.split())
    return submission


def strip_png_metadata(path: str | Path) -> None:
    """Drop a PNG's text and time chunks (ImageMagick stamps the time of conversion)."""
    png = Path(path)
    data = png.read_bytes()
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        return
    kept = [signature]
    pos = len(signature)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
            kept.append(data[pos:end])
        pos = end
    png.write_bytes(b"".join(kept))


def _spectrum_data_sum(folder: Path, table: Table) -> float:
    """Sum of the ``Data`` column as written in the table's YAML file."""
    docs = yaml.safe_load_all((folder / "submission.yaml").read_text())
    entry = next(d for d in docs if d and d.get("name") == table.name)
    content = yaml.safe_load((folder / entry["data_file"]).read_text())
    column = next(v for v in content["dependent_variables"] if v["header"]["name"] == "Data")
    return float(sum(float(v["value"]) for v in column["values"]))


_EXPECTED_SCHEMA = re.compile(r" \(expected: \{.*\}\)$")


def hepdata_messages(archive: str | Path) -> list[str]:
    """hepdata-validator's messages for a submission archive (empty if it is valid)."""
    from hepdata_validator.full_submission_validator import FullSubmissionValidator

    validator = FullSubmissionValidator(autoload_remote_schemas=False)
    with warnings.catch_warnings():
        # hepdata-validator 0.3.6 opens every data file without closing it
        warnings.simplefilter("ignore", ResourceWarning)
        valid = validator.validate(archive=str(archive))
    messages: list[str] = []
    for file, entries in validator.get_messages().items():
        # the validator appends the whole schema section it expected: noise on one line
        found = [(m.level, _EXPECTED_SCHEMA.sub("", " ".join(m.message.split())))
                 for m in entries]
        # "x.yaml is invalid HEPData YAML." heads the specific messages of a data file
        specific = [(lv, t) for lv, t in found if not t.endswith(" is invalid HEPData YAML.")]
        messages += [f"{file}: {level}: {text}" for level, text in specific or found]
    if not valid and not messages:
        messages.append("hepdata-validator rejects the archive without a message")
    return messages


def write_hepdata(
    config: dict[str, Any],
    *,
    histograms: str | Path,
    fit: str | Path,
    limits: str | Path | None,
    workspace: str | Path,
    patchset: str | Path | None,
    figures: str | Path,
    output: str | Path,
) -> None:
    """Build, check and write the HEPData submission folder and archive into ``output``.

    ``output`` gets ``submission/`` (YAML, images, thumbnails, resources) and
    ``submission.tar.gz`` (reproducible, accepted by hepdata-validator); it is replaced as
    a whole, and only once everything has succeeded. Without a signal scan (no ``limits``,
    no ``patchset``) the record has no limits table and the likelihood is the workspace alone.

    Raises:
        PubflowError: For a missing or malformed input, inconsistent inputs (data that do not
            sum to the histograms' yield, fit results not from this workspace, a patchset
            made for another workspace), a failed image conversion or an invalid archive.
    """
    figures = Path(figures)
    hist = _read(histograms, HISTOGRAMS_SCHEMA)
    fit_results = _read(fit, FIT_SCHEMA)
    if (limits is None) != (patchset is None):
        raise PubflowError("limits and patchset go together: give both or neither",
                           path=limits or patchset)
    limit_results = _read(limits, LIMITS_SCHEMA) if limits else None
    workspace_spec = _read(workspace)
    patchset_spec = _read(patchset) if patchset else None

    sample_order = [s["Name"] for s in config["Samples"]]
    region_names = [r["Name"] for r in config["Regions"]]
    for name in region_names:
        if name not in fit_results["regions"]:
            raise PubflowError(f"no results for region {name!r} of the config", path=fit,
                               key="regions")
    regions = [_region_result(name, fit_results["regions"][name], sample_order, fit)
               for name in region_names]
    check_data_yields(regions, hist, config, histograms, fit)
    if limit_results is not None:
        check_limit_patches(limit_results, patchset_spec, limits, patchset)
    check_fit_workspace(fit_results, regions, workspace_spec, workspace, fit)
    stated = sample_inputs(hist)
    order = [s["Name"] for s in layout.histogram_config(config)["Samples"]]
    processed = {name: stated[name] for name in sorted(
        stated, key=lambda n: (order.index(n) if n in order else len(order), n))}

    n_regions = len(regions)
    with atomic_path(output) as out:
        out.mkdir()
        # hepdata_lib runs in scratch (absolute paths from here on: it changes directory)
        scratch = (out.parent / "scratch").resolve()
        scratch.mkdir()
        likelihoods = scratch / LIKELIHOOD_ARCHIVE
        write_likelihoods(likelihoods, config, workspace, patchset)

        submission = _submission(config)
        signal = f", signal patchset ({PATCHSET_NAME})" if patchset else ""
        submission.add_additional_resource(
            "Likelihoods in pyhf JSON format (HistFactory): workspace "
            f"({BKG_ONLY_NAME}){signal} and a {README_NAME} on their use",
            str(likelihoods),
            copy_file=True,
            file_type="HistFactory",
            resource_license=_license(config),
        )
        write_processed_inputs(scratch / PROCESSED_INPUTS, processed)
        submission.add_additional_resource(
            "Input files processed, per sample: entries expected (dataset manifest counts) and "
            "processed, the processed fraction, every file skipped as unreadable with the "
            "reason, and the scale applied to simulation (data are never scaled)",
            str(scratch / PROCESSED_INPUTS),
            copy_file=True,
            resource_license=_license(config),
        )
        spectra = []
        for region in regions:
            spectrum = spectrum_table(
                region, config, figures / FIGURES["spectrum"].format(region=region.name),
                n_regions, processed,
            )
            spectra.append((region, spectrum))
            submission.add_table(spectrum)
            submission.add_table(yields_table(
                region, config, figures / FIGURES["yields"].format(region=region.name),
                n_regions, processed,
            ))
        submission.add_table(parameters_table(fit_results, config,
                                              figures / FIGURES["parameters"]))
        if limit_results is not None:
            figure = LIMIT_FIGURES.get(len(limit_results["labels"]))
            submission.add_table(limits_table(
                limit_results, config,
                figures / FIGURES["limits"].format(limits=figure) if figure else None))

        folder = (out / SUBMISSION_DIR).resolve()
        captured = io.StringIO()
        try:
            # create_files puts its own (unused) tarball into the working directory
            with contextlib.chdir(scratch), contextlib.redirect_stdout(captured):
                submission.create_files(str(folder), validate=False)
        except RuntimeError as err:
            raise PubflowError(f"hepdata_lib could not write the submission: "
                               f"{' '.join(str(err).split())}", path=output) from None
        finally:
            for line in captured.getvalue().splitlines():
                if line.strip():
                    log.debug("hepdata_lib: %s", line.strip())
        if "ImageMagick does not seem to be installed" in captured.getvalue():
            raise PubflowError("ImageMagick's convert is not installed: hepdata_lib needs it "
                               "for the figures and thumbnails", path=output)

        for region, spectrum in spectra:
            written = _spectrum_data_sum(folder, spectrum)
            expected = hist[f"{region.name}_{data_sample(config)}"]["yield"]
            if not math.isclose(written, expected, rel_tol=1e-9, abs_tol=1e-9):
                raise PubflowError(
                    f"the data column sums to {written:g}, not to the data yield {expected:g} "
                    f"of {histograms}", path=Path(output) / SUBMISSION_DIR, key=spectrum.name,
                )
        for png in folder.glob("*.png"):
            strip_png_metadata(png)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        archive = out / SUBMISSION_ARCHIVE
        write_reproducible_tar(archive, {p.name: p.read_bytes() for p in files})
        messages = hepdata_messages(archive)
        if messages:
            for message in messages:
                log.error("hepdata-validator: %s", message)
            raise PubflowError(f"hepdata-validator rejects the archive: {messages[0]}",
                               path=Path(output) / SUBMISSION_ARCHIVE)
    log.info("HEPData submission: %d tables, %d files in %s", len(submission.tables),
             len(files), os.path.join(output, SUBMISSION_ARCHIVE))


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("hepdata", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--histograms", required=True, help="yield summary of the merge step (JSON)")
    p.add_argument("--fit", required=True, help="fit results (results/fit/results.json)")
    p.add_argument("--limits", help="upper limits (results/fit/limits.json), with a Scan")
    p.add_argument("--workspace", required=True, help="pyhf workspace (background-only)")
    p.add_argument("--patchset", help="pyhf patchset of the signal hypotheses, with a Scan")
    p.add_argument("--figures", required=True,
                   help="folder with " + ", ".join(sorted(FIGURES.values())))
    p.add_argument("--output", required=True,
                   help=f"folder to write ({SUBMISSION_DIR}/ and {SUBMISSION_ARCHIVE})")
    return p


def main(args: argparse.Namespace) -> None:
    config = load_analysis(args.config)
    write_hepdata(
        config,
        histograms=args.histograms,
        fit=args.fit,
        limits=args.limits,
        workspace=args.workspace,
        patchset=args.patchset,
        figures=args.figures,
        output=args.output.rstrip("/"),
    )


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
