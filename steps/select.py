"""select: fill every histogram of one input file in a single streamed pass.

cabinetry's template builder reads the ntuples once per region x sample x variation; here
each file is opened once, each of its trees is read once in chunks (memory stays flat
however large the file), only the branches the expressions need are read, and every
histogram fed by that tree is filled from the same chunk. Which histograms exist, and the
file, tree, variable, filter and weight of each, come from cabinetry's own resolution
rules, so the result equals ``cabinetry.templates.build`` bin by bin.

Ntuples with several entries per event (every muon-pair combination of an event, say) are
what cabinetry has no notion of: with pubflow's ``Candidates``, only the entries passing its
``Filter`` are candidates, and of an event's candidates that pass a region's selection only
the one with the largest ``Best`` fills the histogram (one candidate per event).
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
class Candidates:
    """How a sample's entries become one candidate per event (pubflow's ``Candidates``)."""

    event: tuple[str, ...]
    best: str
    filter: str | None = None

    def expressions(self) -> dict[str, str]:
        out = {f"Candidates.Event[{i}]": e for i, e in enumerate(self.event)}
        out["Candidates.Best"] = self.best
        if self.filter is not None:
            out["Candidates.Filter"] = self.filter
        return out


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
    candidates: Candidates | None = None

    def expressions(self) -> dict[str, str]:
        """The expressions to evaluate per event, by role."""
        out = {"Variable": self.variable}
        if self.selection is not None:
            out["Filter"] = self.selection
        if self.weight is not None and not _is_number(self.weight):
            out["Weight"] = self.weight
        if self.candidates is not None:
            out.update(self.candidates.expressions())
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
    setting = config.get("Candidates")
    candidates = None if not setting else Candidates(
        tuple(setting["Event"]), setting["Best"], setting.get("Filter"))
    chosen = set(setting.get("Samples", [s["Name"] for s in full["Samples"]])
                 ) if setting else set()

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
                candidates=candidates if sample["Name"] in chosen else None,
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


Sums = dict[str, tuple[np.ndarray, np.ndarray]]


class _Pending:
    """The candidates of one histogram that passed its selection, until the tree is read:
    an event's candidates may fall into different chunks."""

    def __init__(self) -> None:
        self.parts: list[tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, keys: list[np.ndarray], best: np.ndarray, idx: np.ndarray,
            weights: np.ndarray) -> None:
        self.parts.append((keys, best, idx, weights))

    def best_per_event(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin and weight of each event's best candidate (the first of a tie), in range."""
        if not self.parts:
            return np.zeros(0, int), np.zeros(0)
        keys = [np.concatenate([part[0][i] for part in self.parts])
                for i in range(len(self.parts[0][0]))]
        best, idx, weights = (np.concatenate([part[j] for part in self.parts])
                              for j in (1, 2, 3))
        if len(best) == 0:
            return np.zeros(0, int), np.zeros(0)
        # stable: among equal keys and equal Best, the earlier entry comes first
        order = np.lexsort((-best, *reversed(keys)))
        same_event = np.ones(len(order) - 1, bool)
        for key in keys:
            ordered = key[order]
            same_event &= ordered[1:] == ordered[:-1]
        keep = order[np.concatenate(([True], ~same_event))]
        inside = idx[keep] >= 0
        return idx[keep][inside], weights[keep][inside]


def fill_file(path: str, todo: list[Template], step_size: int = DEFAULT_STEP_SIZE) -> Sums:
    """Fill the histograms ``todo`` from one file; return ``{name: (sumw, sumw2)}``."""
    sums = {t.name: (np.zeros(len(t.bins) - 1), np.zeros(len(t.bins) - 1)) for t in todo}
    by_tree: dict[str, list[Template]] = defaultdict(list)
    for t in todo:
        by_tree[t.tree].append(t)
    with _open(path) as file:
        for tree_name, group in by_tree.items():
            _fill_tree(_get_tree(file, path, tree_name), path, group, sums, step_size)
    return sums


def _selected(values: Any, mask: np.ndarray | None, dtype: Any = None) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    return array if mask is None else array[mask]


def _fill_chunk(chunk: dict[str, np.ndarray], group: list[Template], sums: Sums,
                pending: dict[str, _Pending]) -> int:
    """Add one chunk to every histogram of ``group`` (or, for one candidate per event, to
    its pending candidates); return the chunk's length.

    Histograms sharing variable, filter and binning (a region's nominal and weight
    variations) share the selection and the bin lookup: only the weights differ.
    """
    n = 0
    shared: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray | None, np.ndarray]] = {}
    for t in group:
        key = (t.variable, t.selection, t.bins, t.candidates)
        if key not in shared:
            values = np.asarray(chunk[t.variable], dtype=float)
            n = len(values)
            mask = np.asarray(chunk[t.selection]) != 0 if t.selection is not None else None
            if t.candidates is not None and t.candidates.filter is not None:
                eligible = np.asarray(chunk[t.candidates.filter]) != 0
                mask = eligible if mask is None else mask & eligible
            idx = bin_index(values if mask is None else values[mask], np.asarray(t.bins))
            shared[key] = (idx, mask, idx >= 0)
        idx, mask, inside = shared[key]
        nbins = len(t.bins) - 1
        sumw, sumw2 = sums[t.name]
        if t.candidates is not None:
            if t.weight is None or _is_number(t.weight):
                weights = np.full(len(idx), 1.0 if t.weight is None else float(t.weight))
            else:
                weights = _selected(chunk[t.weight], mask, float)
            pending[t.name].add([_selected(chunk[e], mask) for e in t.candidates.event],
                                _selected(chunk[t.candidates.best], mask, float), idx, weights)
        elif t.weight is None or _is_number(t.weight):
            counts = np.bincount(idx[inside], minlength=nbins).astype(float)
            w = 1.0 if t.weight is None else float(t.weight)
            sumw += counts * w
            sumw2 += counts * (w * w)
        else:
            weights = np.asarray(chunk[t.weight], dtype=float)
            weights = (weights if mask is None else weights[mask])[inside]
            sumw += np.bincount(idx[inside], weights=weights, minlength=nbins)
            sumw2 += np.bincount(idx[inside], weights=weights * weights, minlength=nbins)
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


def _fill_tree(tree: Any, path: str, group: list[Template], sums: Sums, step_size: int
               ) -> None:
    """Read one tree once, in chunks, and fill every histogram of ``group`` from it."""
    from tqdm import tqdm

    _check_branches(tree, path, group)
    exprs = sorted({e for t in group for e in t.expressions().values()})
    label = f"{Path(path).name}:{group[0].tree}"
    pending = {t.name: _Pending() for t in group if t.candidates is not None}
    try:
        with tqdm(total=tree.num_entries, unit="ev", desc=label, disable=None) as bar:
            chunks = prefetch(tree.iterate(exprs, step_size=step_size, library="np"))
            for i, chunk in enumerate(chunks):
                log.debug("%s: chunk %d", label, i)
                bar.update(_fill_chunk(chunk, group, sums, pending))
    except PubflowError:
        raise
    except Exception as err:  # damaged baskets or a lost server surface only while reading
        raise PubflowError(
            f"reading tree {group[0].tree!r} failed: truncated or corrupt file, or lost "
            f"connection ({one_line(err)})",
            path=path,
        ) from None
    for name, candidates in pending.items():
        idx, weights = candidates.best_per_event()
        nbins = len(sums[name][0])
        sums[name][0][:] += np.bincount(idx, weights=weights, minlength=nbins)
        sums[name][1][:] += np.bincount(idx, weights=weights * weights, minlength=nbins)


def select(config: dict[str, Any], input_path: str, output: str,
           step_size: int = DEFAULT_STEP_SIZE) -> int:
    """Fill every histogram fed by ``input_path``; write them to ``output`` (npz)."""
    wanted = layout.normalize(input_path)
    todo = [t for t in templates(config) if wanted in t.paths]
    if not todo:
        raise PubflowError("no histogram of the config reads this file", path=input_path)
    if verify_input(config["Datasets"], input_path) is None and \
            wanted not in layout.unlisted_files(config):
        raise PubflowError(
            f"not in the dataset manifest {config['Datasets']}, so nothing vouches for it: add "
            "it with `python -m steps.datasets add FILE` (or, if the workflow makes it, name "
            "its sample in Unlisted)", path=input_path)
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
