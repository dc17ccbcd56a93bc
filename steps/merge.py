"""merge: add up the per-file histograms and write them where cabinetry reads them.

Gather step of the select scatter: for every histogram of the analysis, the partial sums
of the files it reads are added; each histogram must come from exactly the files the config
names, so a missing or stale partial result is an error, not a silently smaller yield.
Then cabinetry's own template post-processing (``cabinetry.templates.postprocess``: the
``Smoothing`` of systematic templates, NaN statistical uncertainties set to zero) writes
each histogram again as ``<name>_modified.npz``, the file ``cabinetry.workspace.build``
reads first: the model step sees what cabinetry's ``build`` + ``postprocess`` would give.

A file skipped as unreadable (``InputPolicy``: ``OnUnreadable: skip``) adds nothing; its
partial records why and the entries the manifest counts for it. Each histogram's entry in the
summary then lists its skipped files with their reasons and the entries expected (manifest
counts) and processed; a simulated sample's histograms are scaled by expected / processed
entries (the files lost are a random subset of one generation, whose weights were made for
all of it), data never: it is short, and the summary says by how much.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steps import cli, layout
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.inputs import INPUT_RECORD
from steps.io import atomic_path, write_json
from steps.select import Template, templates

log = logging.getLogger(__name__)


def merge(config: dict[str, Any], partials: dict[str, str], folder: str, summary: str) -> None:
    """Sum ``partials`` (``{input file: npz}``) into cabinetry histograms in ``folder``."""
    from cabinetry import histo

    loaded: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    for path, npz in partials.items():
        try:
            part = np.load(npz)
        except (OSError, ValueError) as err:
            raise PubflowError(f"unreadable partial histograms ({err})", path=npz) from None
        loaded[layout.normalize(path)] = part
        records[layout.normalize(path)] = _record(part, npz)
    table: dict[str, dict[str, Any]] = {}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for t in templates(config):
            for path in t.paths:
                if path not in loaded:
                    raise PubflowError(f"no partial histograms given for {path}",
                                       key=f"histogram {t.name}")
            inputs = histogram_inputs(t, records)
            sumw = np.zeros(len(t.bins) - 1)
            sumw2 = np.zeros(len(t.bins) - 1)
            for path in t.paths:
                if records[path]["skipped"] is not None:
                    continue  # nothing was read from it
                part = loaded[path]
                if f"{t.name}/sumw" not in part:
                    raise PubflowError(f"histogram {t.name} missing (stale select output?)",
                                       path=partials[path])
                if not np.array_equal(part[f"{t.name}/edges"], t.bins):
                    raise PubflowError(f"binning of {t.name} differs from the config",
                                       path=partials[path])
                sumw += part[f"{t.name}/sumw"]
                sumw2 += part[f"{t.name}/sumw2"]
            # a weight w scaled by s: its variance by s**2
            sumw *= inputs["scale"]
            sumw2 *= inputs["scale"] ** 2
            hist = histo.Histogram.from_arrays(np.asarray(t.bins), sumw, np.sqrt(sumw2))
            hist.save(tmp / t.name)
            table[t.name] = {"yield": float(sumw.sum()), "stdev": float(np.sqrt(sumw2.sum())),
                             "bins": list(t.bins), "files": list(t.paths),
                             "sample": t.sample, "inputs": inputs}
        postprocess(config, tmp)
    write_json(summary, table)
    log.info("merged %d histograms from %d files into %s", len(table), len(partials), folder)
    _log_samples(sample_inputs(table))


def _record(part: Any, npz: str) -> dict[str, Any]:
    """The record of its input a partial holds (``steps.inputs.input_record``)."""
    if INPUT_RECORD not in part:
        raise PubflowError("no record of its input file (written by an older select): "
                           "delete it and run select again", path=npz)
    try:
        record = json.loads(str(part[INPUT_RECORD]))
    except (ValueError, TypeError) as err:
        raise PubflowError(f"unreadable record of its input ({err})", path=npz) from None
    if not isinstance(record, dict) or not {"file", "entries", "skipped"} <= set(record):
        raise PubflowError("malformed record of its input (stale select output?)", path=npz)
    return record


def histogram_inputs(t: Template, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What one histogram was filled from: per file the entries of its tree (manifest
    counts; None for a file the manifest does not list), the files skipped, the entries
    expected and processed, the processed fraction, and the scale applied to it.

    Raises:
        PubflowError: If every file was skipped, or what the skipped ones held is unknown.
    """
    entries = {}
    for path in t.paths:
        counts = records[path]["entries"]
        entries[path] = None if counts is None else counts.get(t.tree)
    skipped = [{"file": path, "reason": records[path]["skipped"], "entries": entries[path]}
               for path in t.paths if records[path]["skipped"] is not None]
    if skipped and any(n is None for n in entries.values()):
        unknown = next(p for p, n in entries.items() if n is None)
        raise PubflowError(f"{len(skipped)} file(s) skipped as unreadable, but the manifest "
                           f"counts no entries of tree {t.tree!r} in {unknown}, so the "
                           "processed fraction is unknown", key=f"histogram {t.name}")
    counted = processed_fraction(entries.values(), skipped, t.data)
    if skipped and not counted["entries_processed"] and counted["entries_expected"]:
        first = skipped[0]
        raise PubflowError(f"every input file was skipped as unreadable (first: "
                           f"{first['file']}: {first['reason']})", key=f"histogram {t.name}")
    return {"tree": t.tree, "data": t.data, "nominal": t.nominal,
            "entries": entries, "skipped": skipped, **counted}


def processed_fraction(entries: Iterable[int | None], skipped: Sequence[dict[str, Any]],
                       data: bool) -> dict[str, Any]:
    """The entries expected (manifest counts; None where one is unknown) and processed (less
    the ``skipped`` files' entries), their fraction, and the scale applied: expected /
    processed for simulation, 1 for data."""
    counts = list(entries)
    known = all(n is not None for n in counts)
    expected = sum(counts) if known else None
    processed = expected - sum(s["entries"] for s in skipped) if known else None
    fraction = processed / expected if expected else 1.0
    # data are what was recorded: never scaled (a shortfall is stated, and validated);
    # nothing processed has no scale (histogram_inputs refuses it)
    scale = expected / processed if processed and not data and fraction < 1 else 1.0
    return {"entries_expected": expected, "entries_processed": processed,
            "processed_fraction": fraction, "scale": scale}


def sample_inputs(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per sample, over the files and trees of its nominal histograms (every region): the
    files, those skipped with their reasons and entries, the entries expected (manifest
    counts; None where a file is not in the manifest) and processed, the processed fraction
    and the scale applied to the sample's histograms (1 for data)."""
    counts: dict[str, dict[tuple[str, str], int | None]] = {}
    lost: dict[str, dict[str, dict[str, Any]]] = {}
    data: dict[str, bool] = {}
    for hist in summary.values():
        inputs = hist["inputs"]
        if not inputs["nominal"]:
            continue
        sample = hist["sample"]
        data[sample] = inputs["data"]
        for path, n in inputs["entries"].items():
            counts.setdefault(sample, {})[(path, inputs["tree"])] = n
        for item in inputs["skipped"]:
            seen = lost.setdefault(sample, {}).setdefault(
                item["file"], {"file": item["file"], "reason": item["reason"], "entries": 0,
                               "trees": []})
            if inputs["tree"] not in seen["trees"]:
                seen["trees"].append(inputs["tree"])
                seen["entries"] += item["entries"]
    out: dict[str, dict[str, Any]] = {}
    for sample, pairs in counts.items():
        skipped = [{k: v for k, v in item.items() if k != "trees"}
                   for _, item in sorted(lost.get(sample, {}).items())]
        out[sample] = {"data": data[sample], "files": len({path for path, _ in pairs}),
                       "skipped": skipped,
                       **processed_fraction(pairs.values(), skipped, data[sample])}
    return out


def _log_samples(samples: dict[str, dict[str, Any]]) -> None:
    """One line per sample (a warning if files were skipped), one per skipped file."""
    for name, s in samples.items():
        if not s["skipped"]:
            entries = (f"{s['entries_expected']} entries" if s["entries_expected"] is not None
                       else "entries not in the manifest")
            log.info("%s: every input file processed (%d, %s)", name, s["files"], entries)
            continue
        correction = ("data are not scaled: short by "
                      f"{1 - s['processed_fraction']:.2%}" if s["data"]
                      else f"histograms scaled by {s['scale']:.6g}")
        log.warning("%s: %d of %d entries processed (fraction %.6g), %d of %d files skipped "
                    "as unreadable; %s", name, s["entries_processed"], s["entries_expected"],
                    s["processed_fraction"], len(s["skipped"]), s["files"], correction)
        for item in s["skipped"]:
            log.warning("%s: skipped %s (%d entries): %s", name, item["file"], item["entries"],
                        item["reason"])


def postprocess(config: dict[str, Any], folder: Path) -> None:
    """Run cabinetry's template post-processing on the histograms in ``folder``.

    Called inside the merge's temporary folder, so the raw and the ``_modified`` histograms
    appear together or not at all. The config is the one the histograms were filled for
    (scan samples included), so every template, signal hypotheses too, gets its modified copy.
    """
    import cabinetry.templates

    full = layout.cabinetry_config(layout.histogram_config(config))
    full["General"]["HistogramFolder"] = str(folder)
    cabinetry.templates.postprocess(full)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("merge", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--partials", nargs="+", required=True,
                   help="select outputs, as FILE=NPZ pairs or NPZ files named by select job")
    p.add_argument("--output", help="histogram folder (default: General.HistogramFolder)")
    p.add_argument("--summary", required=True, help="yield summary to write (JSON)")
    return p


def _pair(config: dict[str, Any], partials: Sequence[str]) -> dict[str, str]:
    jobs = layout.select_jobs(config)
    out = {}
    for item in partials:
        if "=" in item:
            path, npz = item.split("=", 1)
        else:
            name = Path(item).stem
            if name not in jobs:
                raise PubflowError("not named after a select job of this config", path=item)
            path, npz = jobs[name], item
        out[path] = npz
    return out


def main(args: argparse.Namespace) -> None:
    config = load_analysis(args.config)
    folder = args.output or config["General"]["HistogramFolder"]
    merge(config, _pair(config, args.partials), folder.rstrip("/"), args.summary)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
