"""select: fill every histogram of one input file in a single streamed pass.

cabinetry's template builder reads the ntuples once per region x sample x variation; here
each file is opened once, each of its trees is read once in chunks (memory stays flat
however large the file), only the branches the expressions need are read, and every
histogram fed by that tree is filled from the same chunk. Which histograms exist, and the
file, tree, variable, filter and weight of each, come from cabinetry's own resolution
rules, so the result equals ``cabinetry.templates.build`` bin by bin.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steps import cli, layout
from steps.config import load_analysis
from steps.datasets import verify_input
from steps.errors import PubflowError, one_line
from steps.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_STEP_SIZE = 500_000  # entries per chunk: ~40 MB for ten float64 branches


@dataclass(frozen=True)
class Template:
    """One histogram to fill: where its events come from and how they are binned."""

    name: str
    paths: tuple[str, ...]
    tree: str
    variable: str
    selection: str | None
    weight: str | None
    bins: tuple[float, ...]

    def expressions(self) -> dict[str, str]:
        """The expressions to evaluate per event, by role."""
        out = {"Variable": self.variable}
        if self.selection is not None:
            out["Filter"] = self.selection
        if self.weight is not None and not _is_number(self.weight):
            out["Weight"] = self.weight
        return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def templates(config: dict[str, Any]) -> list[Template]:
    """Every histogram the analysis needs, with scan samples (cabinetry's iteration)."""
    from cabinetry import histo, route
    from cabinetry.templates import builder  # cabinetry's resolution of overrides, reused as is

    full = layout.histogram_config(config)
    found: list[Template] = []

    def collect(region: dict, sample: dict, systematic: dict, template: Any) -> None:
        found.append(
            Template(
                name=histo.name(region, sample, systematic, template=template),
                paths=tuple(layout.template_paths(full, region, sample, systematic, template)),
                tree=builder._position_in_file(sample, systematic, template),
                variable=builder._variable(region, sample, systematic, template),
                selection=builder._filter(region, sample, systematic, template),
                weight=builder._weight(region, sample, systematic, template),
                bins=tuple(float(b) for b in builder._binning(region)),
            )
        )

    route.apply_to_all_templates(full, collect)
    return found


@contextlib.contextmanager
def _open(path: str) -> Iterator[Any]:
    """Open a ROOT file (local or remote) once; closing never masks the real error."""
    import uproot

    try:
        file = uproot.open(path, timeout=120) if layout.is_remote(path) else uproot.open(path)
    except FileNotFoundError:
        raise PubflowError("input file not found", path=path) from None
    except Exception as err:  # uproot raises many types for a damaged file
        raise PubflowError(f"not a readable ROOT file ({one_line(err)})", path=path) from None
    try:
        yield file
    finally:
        # a lost XRootD server makes close() fail too; the read error is what matters
        with contextlib.suppress(Exception):
            file.close()


def _get_tree(file: Any, path: str, tree: str) -> Any:
    import uproot

    try:
        obj = file[tree]
    except uproot.KeyInFileError:
        raise PubflowError(f"no tree {tree!r} in the file", path=path) from None
    except Exception as err:
        raise PubflowError(f"cannot read tree {tree!r}: truncated or corrupt file, or lost "
                           f"connection ({one_line(err)})", path=path) from None
    if not hasattr(obj, "iterate") or not hasattr(obj, "branches"):
        raise PubflowError(f"{tree!r} is not a TTree ({type(obj).__name__})", path=path)
    return obj


def _check_branches(tree: Any, path: str, todo: list[Template]) -> None:
    """Name the histogram and the config field when an expression needs a missing branch."""
    from uproot.language.python import python_language

    keys = set(tree.keys(recursive=True))
    for t in todo:
        for role, expr in t.expressions().items():
            try:
                python_language.free_symbols(expr, keys, {}, path, tree.object_path)
            except Exception as err:
                missing = getattr(err, "key", None) or str(err).splitlines()[0]
                raise PubflowError(
                    f"tree {t.tree!r} has no branch {missing!r} (needed by the {role} of "
                    f"histogram {t.name}: {expr!r})",
                    path=path,
                ) from None


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value for a variable-width axis, -1 outside it (underflow, overflow, NaN).

    boost-histogram's convention: bins are ``[low, high)``, the last edge is overflow.
    """
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[(idx >= len(edges) - 1) | np.isnan(values)] = -1
    return idx


def fill_file(path: str, todo: list[Template], step_size: int = DEFAULT_STEP_SIZE
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fill the histograms ``todo`` from one file; return ``{name: (sumw, sumw2)}``."""
    sums = {t.name: (np.zeros(len(t.bins) - 1), np.zeros(len(t.bins) - 1)) for t in todo}
    by_tree: dict[str, list[Template]] = defaultdict(list)
    for t in todo:
        by_tree[t.tree].append(t)
    with _open(path) as file:
        for tree_name, group in by_tree.items():
            _fill_tree(_get_tree(file, path, tree_name), path, group, sums, step_size)
    return sums


def _fill_chunk(chunk: dict[str, np.ndarray], group: list[Template],
                sums: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Add one chunk to every histogram of ``group``; return the chunk's length.

    Histograms sharing variable, filter and binning (a region's nominal and weight
    variations) share the selection and the bin lookup: only the weights differ.
    """
    n = 0
    shared: dict[tuple[str, str | None, tuple[float, ...]], tuple[np.ndarray, Any]] = {}
    for t in group:
        key = (t.variable, t.selection, t.bins)
        if key not in shared:
            values = np.asarray(chunk[t.variable], dtype=float)
            n = len(values)
            mask = np.asarray(chunk[t.selection]) != 0 if t.selection is not None else None
            idx = bin_index(values if mask is None else values[mask], np.asarray(t.bins))
            inside = idx >= 0
            shared[key] = (idx[inside], (mask, inside))
        idx, (mask, inside) = shared[key]
        nbins = len(t.bins) - 1
        sumw, sumw2 = sums[t.name]
        if t.weight is None or _is_number(t.weight):
            counts = np.bincount(idx, minlength=nbins).astype(float)
            w = 1.0 if t.weight is None else float(t.weight)
            sumw += counts * w
            sumw2 += counts * (w * w)
        else:
            weights = np.asarray(chunk[t.weight], dtype=float)
            weights = (weights if mask is None else weights[mask])[inside]
            sumw += np.bincount(idx, weights=weights, minlength=nbins)
            sumw2 += np.bincount(idx, weights=weights * weights, minlength=nbins)
    return n


def prefetch(chunks: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Read the next chunk in a thread while the caller fills histograms from this one.

    Decompression (zlib, lz4, zstd) and numpy release the GIL, so reading and filling
    overlap and the wall time approaches that of the read alone. At most ``depth`` chunks
    wait in the queue: memory stays bounded.
    """
    done = object()
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            q.put(err)

    thread = threading.Thread(target=reader, name="pubflow-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _fill_tree(tree: Any, path: str, group: list[Template],
               sums: dict[str, tuple[np.ndarray, np.ndarray]], step_size: int) -> None:
    """Read one tree once, in chunks, and fill every histogram of ``group`` from it."""
    from tqdm import tqdm

    _check_branches(tree, path, group)
    exprs = sorted({e for t in group for e in t.expressions().values()})
    label = f"{Path(path).name}:{group[0].tree}"
    try:
        with tqdm(total=tree.num_entries, unit="ev", desc=label, disable=None) as bar:
            chunks = prefetch(tree.iterate(exprs, step_size=step_size, library="np"))
            for i, chunk in enumerate(chunks):
                log.debug("%s: chunk %d", label, i)
                bar.update(_fill_chunk(chunk, group, sums))
    except PubflowError:
        raise
    except Exception as err:  # damaged baskets or a lost server surface only while reading
        raise PubflowError(
            f"reading tree {group[0].tree!r} failed: truncated or corrupt file, or lost "
            f"connection ({one_line(err)})",
            path=path,
        ) from None


def select(config: dict[str, Any], input_path: str, output: str,
           step_size: int = DEFAULT_STEP_SIZE) -> int:
    """Fill every histogram fed by ``input_path``; write them to ``output`` (npz)."""
    wanted = layout.normalize(input_path)
    todo = [t for t in templates(config) if wanted in t.paths]
    if not todo:
        raise PubflowError("no histogram of the config reads this file", path=input_path)
    verify_input(config["Datasets"], input_path)
    filled = fill_file(input_path, todo, step_size)
    arrays: dict[str, np.ndarray] = {}
    for t in todo:
        sumw, sumw2 = filled[t.name]
        arrays[f"{t.name}/sumw"], arrays[f"{t.name}/sumw2"] = sumw, sumw2
        arrays[f"{t.name}/edges"] = np.asarray(t.bins)
    with atomic_path(output) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    log.info("%s: filled %d histograms", input_path, len(todo))
    return len(todo)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("select", __doc__.split("\n")[0])
    p.add_argument("--config", required=True,
                   help="analysis config (results/config.json, or inputs/pubflow.yaml)")
    p.add_argument("--input", required=True, help="one ntuple file named by the config")
    p.add_argument("--output", required=True, help="partial histograms to write (.npz)")
    p.add_argument("--step-size", type=int, default=DEFAULT_STEP_SIZE,
                   help="entries read per chunk (bounds memory)")
    return p


def main(args: argparse.Namespace) -> None:
    select(load_analysis(args.config), args.input, args.output, args.step_size)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
