"""merge: add up the per-file histograms and write them where cabinetry reads them.

Gather step of the select scatter: for every histogram of the analysis, the partial sums
of the files it reads are added; each histogram must come from exactly the files the config
names, so a missing or stale partial result is an error, not a silently smaller yield.
Then cabinetry's own template post-processing (``cabinetry.templates.postprocess``: the
``Smoothing`` of systematic templates, NaN statistical uncertainties set to zero) writes
each histogram again as ``<name>_modified.npz``, the file ``cabinetry.workspace.build``
reads first: the model step sees what cabinetry's ``build`` + ``postprocess`` would give.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steps import cli, layout
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.io import atomic_path, write_json
from steps.select import templates

log = logging.getLogger(__name__)


def merge(config: dict[str, Any], partials: dict[str, str], folder: str, summary: str) -> None:
    """Sum ``partials`` (``{input file: npz}``) into cabinetry histograms in ``folder``."""
    from cabinetry import histo

    loaded: dict[str, Any] = {}
    for path, npz in partials.items():
        try:
            loaded[layout.normalize(path)] = np.load(npz)
        except (OSError, ValueError) as err:
            raise PubflowError(f"unreadable partial histograms ({err})", path=npz) from None
    table: dict[str, dict[str, Any]] = {}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for t in templates(config):
            sumw = np.zeros(len(t.bins) - 1)
            sumw2 = np.zeros(len(t.bins) - 1)
            for path in t.paths:
                part = loaded.get(path)
                if part is None:
                    raise PubflowError(f"no partial histograms given for {path}",
                                       key=f"histogram {t.name}")
                if f"{t.name}/sumw" not in part:
                    raise PubflowError(f"histogram {t.name} missing (stale select output?)",
                                       path=partials[path])
                if not np.array_equal(part[f"{t.name}/edges"], t.bins):
                    raise PubflowError(f"binning of {t.name} differs from the config",
                                       path=partials[path])
                sumw += part[f"{t.name}/sumw"]
                sumw2 += part[f"{t.name}/sumw2"]
            hist = histo.Histogram.from_arrays(np.asarray(t.bins), sumw, np.sqrt(sumw2))
            hist.save(tmp / t.name)
            table[t.name] = {"yield": float(sumw.sum()), "stdev": float(np.sqrt(sumw2.sum())),
                             "bins": list(t.bins), "files": list(t.paths)}
        postprocess(config, tmp)
    write_json(summary, table)
    log.info("merged %d histograms from %d files into %s", len(table), len(partials), folder)


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
