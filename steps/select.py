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
import ast
import contextlib
import dataclasses
import functools
import logging
import operator
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steps import cli, inputs, layout
from steps.config import load_analysis
from steps.errors import PubflowError, one_line
from steps.io import read_input_json, sha256sum, write_json

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
    # what it is of: the sample, whether that is data, whether it is the nominal template
    sample: str = ""
    data: bool = False
    nominal: bool = True

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
    """Every histogram the analysis needs, with scan samples (cabinetry's iteration).

    Importing cabinetry (and pyhf, scipy, matplotlib with it) costs a process about 2.5 s of
    CPU, more than filling a file of 10^6 events: the workflow resolves the templates once
    (:mod:`steps.templates`, :func:`save_templates`), and each select job reads them
    (:func:`load_templates`).
    """
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
                sample=sample["Name"],
                data=bool(sample.get("Data")),
                nominal=template is None,
            )
        )

    route.apply_to_all_templates(full, collect)
    return found


TEMPLATES_FORMAT = "pubflow-templates/1"


def save_templates(path: str | Path, config_path: str | Path) -> int:
    """Write the templates of the resolved config ``config_path`` to ``path`` (JSON), with
    that file's sha256, so that a select job given another config refuses them. Returns
    the number of templates."""
    found = templates(load_analysis(config_path))
    write_json(path, {"format": TEMPLATES_FORMAT, "config_sha256": sha256sum(config_path),
                      "templates": [dataclasses.asdict(t) for t in found]})
    return len(found)


def load_templates(path: str | Path, config_path: str | Path) -> list[Template]:
    """The templates :func:`save_templates` wrote for the config ``config_path``.

    Raises:
        PubflowError: If the file is unreadable, not of this format, or of another config.
    """
    saved = read_input_json(path)
    if not isinstance(saved, dict) or saved.get("format") != TEMPLATES_FORMAT:
        raise PubflowError(f"not a templates file of pubflow ({TEMPLATES_FORMAT})", path=path)
    if saved.get("config_sha256") != sha256sum(config_path):
        raise PubflowError(f"made from another config than {config_path}: write them "
                           "again (python -m steps.templates)", path=path)
    try:
        return [_template(t) for t in saved["templates"]]
    except (KeyError, TypeError, ValueError) as err:
        raise PubflowError(f"malformed template ({one_line(err)})", path=path) from None


def _template(saved: dict[str, Any]) -> Template:
    fields = {**saved, "paths": tuple(saved["paths"]),
              "bins": tuple(float(b) for b in saved["bins"])}
    if saved.get("candidates") is not None:
        c = saved["candidates"]
        fields["candidates"] = Candidates(tuple(c["event"]), c["best"], c.get("filter"))
    return Template(**fields)


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


class _Unsupported(Exception):
    """An expression beyond what :class:`_Expressions` computes itself."""


#: The operators of the expressions computed here, as Python's eval applies them.
_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}

Step = Callable[[dict[str, Any], dict[str, Any]], Any]  # (branches, shared values) -> value


class _Expressions:
    """The expressions of one tree, computed chunk by chunk from the branches they read.

    uproot's python_language parses, compiles and evaluates every expression on its own for
    every chunk, so the cuts all regions share (charges, pT, eta) are computed again for
    each region. Here each expression is parsed once, into the operations Python's eval
    would apply to the same arrays with python_language's functions (so the values are the
    same to the bit), and a subexpression found more than once is computed once per chunk.
    Anything else (``get()``, dotted names, ``and``/``or``, chained comparisons, a branch
    that shadows a function) is left to uproot: it is read as an expression.
    """

    def __init__(self, expressions: list[str], keys: set[str]) -> None:
        from uproot.language.python import python_language

        self._keys = keys
        self._functions = python_language.functions
        parsed: dict[str, ast.expr] = {}
        self.reads: set[str] = set()  # what uproot is asked for: branches, or expressions
        for expr in expressions:
            try:
                if expr in keys:  # a branch name as it is (uproot's rule: even "a.b" or "a/b")
                    raise _Unsupported(expr)
                node = ast.parse(expr, mode="eval").body
                branches = list(self._branches(node))
            except (SyntaxError, ValueError, RecursionError, _Unsupported):
                self.reads.add(expr)  # uproot's to evaluate (or to name what is wrong)
            else:
                parsed[expr] = node
                self.reads.update(branches)
        counts = Counter(ast.dump(n) for node in parsed.values() for n in ast.walk(node))
        self._shared = {k for k, n in counts.items() if n > 1}
        self._steps = {expr: self._compile(node) for expr, node in parsed.items()}
        self._passed = [e for e in expressions if e not in self._steps]

    def _branches(self, node: ast.expr) -> Iterator[str]:
        """The branches an expression reads; _Unsupported if not one computed here."""
        if isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.Name) and node.id in self._keys:
            yield node.id
        elif isinstance(node, ast.BinOp | ast.UnaryOp) and type(node.op) in _OPERATORS:
            for child in (node.operand,) if isinstance(node, ast.UnaryOp) else (
                    node.left, node.right):
                yield from self._branches(child)
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1
              and type(node.ops[0]) in _OPERATORS):
            yield from self._branches(node.left)
            yield from self._branches(node.comparators[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in self._functions and node.func.id not in self._keys
              and not any(isinstance(a, ast.Starred) for a in node.args)
              and all(k.arg is not None for k in node.keywords)):
            for child in [*node.args, *(k.value for k in node.keywords)]:
                yield from self._branches(child)
        else:
            raise _Unsupported(ast.dump(node))

    def _compile(self, node: ast.expr) -> Step:
        step = self._step(node)
        key = ast.dump(node)
        if key not in self._shared or isinstance(node, ast.Constant | ast.Name):
            return step

        def shared(branches: dict[str, Any], values: dict[str, Any]) -> Any:
            if key not in values:
                values[key] = step(branches, values)
            return values[key]

        return shared

    def _step(self, node: ast.expr) -> Step:
        # operands in Python's order (left, then right; arguments in turn), as eval does
        if isinstance(node, ast.Constant):
            value = node.value
            return lambda branches, values: value
        if isinstance(node, ast.Name):
            name = node.id
            return lambda branches, values: branches[name]
        if isinstance(node, ast.UnaryOp):
            unary, operand = _OPERATORS[type(node.op)], self._compile(node.operand)
            return lambda branches, values: unary(operand(branches, values))
        if isinstance(node, ast.BinOp | ast.Compare):
            binary = _OPERATORS[type(node.op if isinstance(node, ast.BinOp) else node.ops[0])]
            left = self._compile(node.left)
            right = self._compile(node.right if isinstance(node, ast.BinOp)
                                  else node.comparators[0])
            return lambda branches, values: binary(left(branches, values),
                                                   right(branches, values))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        function = self._functions[node.func.id]
        args = [self._compile(a) for a in node.args]
        kwargs = {k.arg: self._compile(k.value) for k in node.keywords if k.arg is not None}
        return lambda branches, values: function(
            *[a(branches, values) for a in args],
            **{k: v(branches, values) for k, v in kwargs.items()})

    def evaluate(self, chunk: dict[str, Any]) -> _Chunk:
        """The expressions' values in one chunk of what uproot read (:attr:`reads`)."""
        return _Chunk(self._steps, self._passed, chunk)


class _Taken(dict):
    """Branches of a chunk at some rows only, each gathered when first needed."""

    def __init__(self, chunk: dict[str, Any], rows: np.ndarray) -> None:
        super().__init__()
        self._chunk, self._rows = chunk, rows

    def __missing__(self, name: str) -> Any:
        self[name] = value = self._chunk[name].take(self._rows)
        return value


class _Chunk(Mapping[str, Any]):
    """One chunk's expression values, each computed when first asked for.

    A weight (or a candidate's ``Best``) is computed only at the rows its histograms keep
    (:meth:`at_rows`): gathering the few branches it reads costs less than computing it for
    every entry and gathering the result for each region, and the values are the same to
    the bit (the same operations, entry by entry).
    """

    def __init__(self, steps: dict[str, Step], passed: list[str], chunk: dict[str, Any]
                 ) -> None:
        self._steps, self._passed, self._chunk = steps, passed, chunk
        self._values: dict[str, Any] = {}
        self._shared: dict[str, Any] = {}  # the shared subexpressions of this chunk only

    def __iter__(self) -> Iterator[str]:
        return iter([*self._steps, *self._passed])

    def __len__(self) -> int:
        return len(self._steps) + len(self._passed)

    def __getitem__(self, expr: str) -> Any:
        if expr not in self._values:
            if expr in self._steps:
                self._values[expr] = self._steps[expr](self._chunk, self._shared)
            elif expr in self._passed:  # evaluated by uproot
                self._values[expr] = self._chunk[expr]
            else:
                raise KeyError(expr)
        return self._values[expr]

    def at_rows(self, rows: np.ndarray | None) -> Callable[[str], Any]:
        """A function giving an expression's values at ``rows`` (all for None) alone."""
        if rows is None:
            return self.__getitem__
        branches, shared = _Taken(self._chunk, rows), {}

        def value(expr: str) -> Any:
            if expr in self._values or expr not in self._steps:  # there already, or uproot's
                array = np.asarray(self[expr])
                return array if array.ndim == 0 else array.take(rows)
            return self._steps[expr](branches, shared)

        return value


class _Axis:
    """A histogram's binning, with what the bin lookup needs precomputed.

    boost-histogram's convention: bins are ``[low, high)``, the last edge is overflow.
    """

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = np.asarray(edges, dtype=float)
        self.bins = len(edges) - 1
        # the lookup by arithmetic needs increasing edges; anything else is left to
        # searchsorted, whatever it makes of them
        self.fast = self.bins >= 1 and bool(np.all(np.diff(self.edges) > 0))
        if self.fast:
            lo, hi = self.edges[0], self.edges[-1]
            with np.errstate(over="ignore"):  # edges 1e308 apart: scale 0, all searched
                self.offset, self.scale = lo, self.bins / (hi - lo)
            # slot j of an entry: 0 underflow, 1..bins its bin + 1, bins + 1 overflow: what
            # searchsorted(edges, v, side="right") gives; [low, high) of each slot
            self.low = np.concatenate(([-np.inf], self.edges))
            self.high = np.concatenate((self.edges, [np.inf]))
            self.bin_of_slot = np.concatenate(([-1], np.arange(self.bins), [-1]))


def bin_index(values: np.ndarray, edges: np.ndarray | tuple[float, ...] | _Axis
              ) -> np.ndarray:
    """Bin of each value for a variable-width axis, -1 outside it (underflow, overflow, NaN).

    boost-histogram's convention: bins are ``[low, high)``, the last edge is overflow.
    Equals ``np.searchsorted(edges, values, side="right") - 1`` (with -1 outside) entry by
    entry; for increasing edges it is found by arithmetic, as if the bins were equal, then
    checked against the edges themselves, and only the entries that miss are searched:
    searchsorted alone costs several times more.
    """
    axis = edges if isinstance(edges, _Axis) else _Axis(tuple(np.asarray(edges).tolist()))
    values = np.asarray(values, dtype=float)
    if not axis.fast:
        idx = np.searchsorted(axis.edges, values, side="right") - 1
        idx[(idx >= axis.bins) | np.isnan(values)] = -1
        return idx
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: clipped just below
        guess = values - axis.offset
        guess *= axis.scale
        guess += 1.0
    np.fmax(guess, 0.0, out=guess)  # NaN becomes 0 here (fmax takes the number): underflow
    np.fmin(guess, axis.bins + 1.0, out=guess)
    slot = guess.astype(np.intp)  # truncation: the floor of a number >= 0
    missed = values < axis.low.take(slot)
    missed |= values >= axis.high.take(slot)  # NaN fails neither test: it stays at 0
    if missed.any():  # rounding next to an edge, unequal bins, +inf
        slot[missed] = np.searchsorted(axis.edges, values[missed], side="right")
    return axis.bin_of_slot.take(slot)


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


#: glibc's malloc settings while a file is read: M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, and
#: M_ARENA_MAX (the prefetch thread allocates from the same heap as the filling).
_ALLOCATOR = ((-3, 32 << 20), (-1, 128 << 20), (-8, 1))


@functools.cache
def _keep_freed_memory() -> None:
    """Have glibc's malloc keep the memory of one chunk's arrays for the next (once).

    Each chunk allocates and frees the same few dozen arrays of a few MB. By default glibc
    hands such blocks back to the kernel when they are freed (mmap, and the trimming of the
    heap), the kernel zeroes fresh pages for the next chunk, and the prefetch thread's own
    heap grows beside the main one. Measured on 10^7 events (20 histograms): select 4.0 s
    of CPU by default, 3.0 s so, peak memory 335 MB then 275 MB. Up to 32 MB a block and
    128 MB in all stay with the process. Elsewhere than glibc, nothing.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError, TypeError):  # no glibc: no mallopt
        mallopt = ctypes.CDLL(None).mallopt
        for option, value in _ALLOCATOR:
            mallopt(ctypes.c_int(option), ctypes.c_int(value))


def _by_tree(todo: list[Template]) -> dict[str, list[Template]]:
    """The histograms by the tree they are filled from, in their order."""
    by_tree: dict[str, list[Template]] = defaultdict(list)
    for t in todo:
        by_tree[t.tree].append(t)
    return by_tree


def fill_file(path: str, todo: list[Template], step_size: int = DEFAULT_STEP_SIZE) -> Sums:
    """Fill the histograms ``todo`` from one file; return ``{name: (sumw, sumw2)}``."""
    _keep_freed_memory()
    sums = {t.name: (np.zeros(len(t.bins) - 1), np.zeros(len(t.bins) - 1)) for t in todo}
    with _open(path) as file:
        for tree_name, group in _by_tree(todo).items():
            _fill_tree(_get_tree(file, path, tree_name), path, group, sums, step_size)
    return sums


def _per_entry(values: Any, n: int, dtype: Any = None) -> np.ndarray:
    """An expression's values as an array of ``n`` entries (a constant, repeated), of
    ``dtype`` if given."""
    array = np.asarray(values)
    array = np.full(n, array) if array.ndim == 0 else array
    return array if dtype is None else array.astype(dtype, copy=False)


def _passes(values: Any, n: int) -> np.ndarray:
    """A filter's values as booleans (non-zero passes)."""
    array = _per_entry(values, n)
    return array if array.dtype == bool else array != 0


def _constant(weight: str | None) -> float | None:
    """The weight of every entry, for no weight or a number; None for an expression."""
    return 1.0 if weight is None else float(weight) if _is_number(weight) else None


@dataclass
class _Group:
    """Histograms sharing variable, filter, binning and candidates (a region's nominal and
    weight variations): they share the selection and the bin lookup, only weights differ."""

    variable: str
    selection: str | None
    candidates: Candidates | None
    axis: _Axis  # one object per binning: the bins of a variable are looked up once
    histograms: list[tuple[Template, float | None]]  # each with its constant weight


def _groups(todo: list[Template]) -> list[_Group]:
    """The histograms of one tree by what they share, in their order."""
    groups: dict[tuple[Any, ...], _Group] = {}
    axes: dict[tuple[float, ...], _Axis] = {}
    for t in todo:
        key = (t.variable, t.selection, t.bins, t.candidates)
        if key not in groups:
            axis = axes.setdefault(t.bins, _Axis(t.bins))
            groups[key] = _Group(t.variable, t.selection, t.candidates, axis, [])
        groups[key].histograms.append((t, _constant(t.weight)))
    return list(groups.values())


def _fill_chunk(chunk: _Chunk, groups: list[_Group], sums: Sums,
                pending: dict[str, _Pending]) -> int:
    """Add one chunk to every histogram of ``groups`` (or, for one candidate per event, to
    its pending candidates); return the chunk's length.

    Each entry's weight goes to its bin in entry order, chunk by chunk, as one bincount per
    chunk: the sums are the same to the last bit whatever the work is shared between.
    """
    n = 0
    binned: dict[tuple[str, _Axis], np.ndarray] = {}  # the bin of every entry
    for g in groups:
        n = len(chunk[g.variable])
        mask = None if g.selection is None else _passes(chunk[g.selection], n)
        if g.candidates is not None and g.candidates.filter is not None:
            eligible = _passes(chunk[g.candidates.filter], n)
            mask = eligible if mask is None else mask & eligible
        # the rows that pass, as indices: gathering by index is many times cheaper than
        # by a boolean mask, once per histogram
        rows = None if mask is None else np.flatnonzero(mask)
        whole = (g.variable, g.axis)
        if whole not in binned:
            binned[whole] = bin_index(np.asarray(chunk[g.variable], dtype=float), g.axis)
        idx = binned[whole] if rows is None else binned[whole].take(rows)
        if g.candidates is not None:
            at_rows = chunk.at_rows(rows)
            keys = [_per_entry(at_rows(e), len(idx)) for e in g.candidates.event]
            best = _per_entry(at_rows(g.candidates.best), len(idx), float)
            for t, w in g.histograms:
                weights = (np.full(len(idx), w) if w is not None
                           else _per_entry(at_rows(t.weight), len(idx), float))
                pending[t.name].add(keys, best, idx, weights)
            continue
        in_range = idx >= 0
        if in_range.all():  # a filter that asks for the binned range, as most do
            idx_in, rows_in = idx, rows
        else:
            inside = np.flatnonzero(in_range)
            idx_in = idx.take(inside)
            rows_in = inside if rows is None else rows.take(inside)
        at_rows = chunk.at_rows(rows_in)
        counts = None
        for t, w in g.histograms:
            sumw, sumw2 = sums[t.name]
            if w is not None:
                if counts is None:
                    counts = np.bincount(idx_in, minlength=g.axis.bins).astype(float)
                sumw += counts * w
                sumw2 += counts * (w * w)
            else:
                weights = _per_entry(at_rows(t.weight), len(idx_in), float)
                sumw += np.bincount(idx_in, weights=weights, minlength=g.axis.bins)
                sumw2 += np.bincount(idx_in, weights=weights * weights, minlength=g.axis.bins)
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
    # uproot reads the branches (in the prefetch thread, as the read floor does); the
    # expressions are computed here, while the next chunk is read
    expressions = _Expressions(exprs, set(tree.keys(recursive=True)))
    groups = _groups(group)
    label = f"{Path(path).name}:{group[0].tree}"
    pending = {t.name: _Pending() for t in group if t.candidates is not None}
    try:
        with tqdm(total=tree.num_entries, unit="ev", desc=label, disable=None) as bar:
            chunks = prefetch(tree.iterate(sorted(expressions.reads), step_size=step_size,
                                           library="np"))
            for i, chunk in enumerate(chunks):
                log.debug("%s: chunk %d", label, i)
                bar.update(_fill_chunk(expressions.evaluate(chunk), groups, sums, pending))
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
           step_size: int = DEFAULT_STEP_SIZE, plan: list[Template] | None = None) -> int:
    """Fill every histogram fed by ``input_path``; write them to ``output`` (npz).

    ``plan`` is the config's templates where they were resolved already
    (:func:`load_templates`); by default they are resolved here.

    The partial also records its input file and the entries the manifest counts for it
    (:func:`steps.inputs.input_record`). Where every sample the file feeds has
    ``OnUnreadable: skip`` (``InputPolicy``) and the manifest lists the file, one that cannot
    be read in full gives a partial without histograms that records why, and a warning; a
    file that reads but differs from the manifest, or lacks what the config asks of it, still
    fails (:mod:`steps.inputs`).

    Returns:
        The number of histograms filled (0 for a skipped file).
    """
    wanted = layout.normalize(input_path)
    todo = [t for t in (templates(config) if plan is None else plan) if wanted in t.paths]
    if not todo:
        raise PubflowError("no histogram of the config reads this file", path=input_path)
    entry = inputs.manifest_entry(config, input_path)
    skippable = entry is not None and inputs.file_policy(config, todo) == "skip"
    if entry is not None:
        if skippable:
            inputs.check_trees(entry, input_path, config["Datasets"], todo)
        try:
            inputs.verify_readable(entry, input_path, config["Datasets"], classify=skippable)
        except inputs.Unreadable as err:
            if skippable:
                return inputs.skip(output, input_path, entry, todo, err)
            raise
    try:
        filled = fill_file(input_path, todo, step_size)
    except PubflowError as err:
        if not skippable:
            raise
        config_error = structure_error(input_path, todo)
        if config_error is not None:
            raise config_error from None
        return inputs.skip(output, input_path, entry, todo, err)
    arrays: dict[str, np.ndarray] = {}
    for t in todo:
        sumw, sumw2 = filled[t.name]
        arrays[f"{t.name}/sumw"], arrays[f"{t.name}/sumw2"] = sumw, sumw2
        arrays[f"{t.name}/edges"] = np.asarray(t.bins)
    inputs.write_partial(output, arrays, inputs.input_record(input_path, entry, todo))
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
    p.add_argument("--templates", metavar="JSON",
                   help="the config's templates, as steps.templates wrote them "
                        "(results/templates.json): saves this job importing cabinetry")
    return p


def main(args: argparse.Namespace) -> None:
    plan = None if args.templates is None else load_templates(args.templates, args.config)
    select(load_analysis(args.config), args.input, args.output, args.step_size, plan)


# -- after a failed read: the config's mistake, or an unreadable file ----------------------


def structure_error(input_path: str, todo: list[Template]) -> PubflowError | None:
    """After a failed read, the config's own mistake if that was the cause: a branch the
    expressions need that the tree lacks (it would fail on every file, so it is never
    skipped). Opened again, so that a damaged basket is not mistaken for it."""
    try:
        with _open(input_path) as file:
            for tree_name, group in _by_tree(todo).items():
                tree = _get_tree(file, input_path, tree_name)
                try:
                    _check_branches(tree, input_path, group)
                except PubflowError as err:
                    return err
    except PubflowError:
        return None  # not even its trees can be read now: the file is unreadable
    return None


if __name__ == "__main__":
    raise SystemExit(cli.run(main, build_parser))
