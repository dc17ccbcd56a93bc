"""select's reading internals: the bin lookup, the expressions computed once per chunk, and
the filled sums, each against a plain computation with uproot's own expression evaluation."""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import numpy as np
import pytest
import uproot
from uproot.language.python import PythonLanguage

from steps import select

EDGES = [
    tuple(60 + 2.5 * i for i in range(25)),  # the bundled analysis's: equal bins
    tuple(np.linspace(0.1, 0.7, 7).tolist()),  # equal bins in decimal steps
    tuple(0.1 * i for i in range(11)),  # nearly equal: 0.30000000000000004, ...
    (0.0, 1.0, 3.0, 10.0, 50.0, 100.0, 1e3),  # unequal bins
    (-1.0, 1.0),  # one bin
    (0.0, 1.0, 1.0, 2.0),  # an empty bin
]


def _searched(values: np.ndarray, edges: tuple[float, ...]) -> list[int]:
    """The bin of each value by a plain search of the edges, -1 outside and for NaN."""
    out = []
    for v in values.tolist():
        k = -1 if math.isnan(v) else bisect.bisect_right(edges, v) - 1
        out.append(k if 0 <= k < len(edges) - 1 else -1)
    return out


@pytest.mark.parametrize("edges", EDGES)
def test_bin_index_equals_a_search_of_the_edges_entry_by_entry(edges: tuple[float, ...]
                                                               ) -> None:
    rng = np.random.default_rng(7)
    e = np.asarray(edges)
    lo, hi = e[0], e[-1]
    values = np.concatenate([
        rng.uniform(lo - (hi - lo), hi + (hi - lo), 20_000),
        e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf),  # on and beside every edge
        [np.nan, np.inf, -np.inf, 1e308, -1e308, -0.0, 5e-324],
    ])
    rng.shuffle(values)
    got = select.bin_index(values, e)
    assert got.tolist() == _searched(values, edges)


def test_bin_index_of_unsorted_edges_is_numpys_search() -> None:
    values = np.array([0.5, 1.5, 2.5, np.nan])
    edges = np.array([0.0, 2.0, 1.0, 3.0])
    expected = np.searchsorted(edges, values, side="right") - 1
    expected[(expected >= 3) | np.isnan(values)] = -1
    assert select.bin_index(values, edges).tolist() == expected.tolist()


@pytest.fixture
def ntuple(tmp_path: Path) -> Path:
    """Dimuon-like branches of several types, with NaN, and values on the bin edges."""
    rng = np.random.default_rng(11)
    n = 5000
    mass = rng.normal(91, 15, n)
    mass[::97] = np.nan
    mass[5::89] = 60 + 2.5 * rng.integers(0, 25, len(mass[5::89]))  # exactly on edges
    branches = {
        "M": mass,
        "pt1": rng.gamma(3, 12, n), "pt2": rng.gamma(3, 12, n),
        "eta1": rng.normal(0, 1.5, n), "eta2": rng.normal(0, 1.5, n),
        "Q1": rng.choice(np.array([-1, 1], np.int32), n),
        "Q2": rng.choice(np.array([-1, 1], np.int32), n),
        "weight": rng.uniform(0.5, 1.5, n),
        "w32": rng.uniform(0.5, 1.5, n).astype(np.float32),
        "njet": rng.integers(0, 8, n).astype(np.int64),
    }
    path = tmp_path / "ntuple.root"
    with uproot.recreate(path) as f:
        f.mktree("events", {k: v.dtype for k, v in branches.items()})
        f["events"].extend(branches)
    return path


BASE = "(Q1 * Q2 < 0) & (pt1 > 20) & (pt2 > 20) & (abs(eta1) < 2.1) & (abs(eta2) < 2.1)"
COMPUTED = [
    f"{BASE} & (abs(eta1) < 1.2) & (abs(eta2) < 1.2) & (M > 60) & (M < 120)",
    f"{BASE} & ((abs(eta1) < 1.2) != (abs(eta2) < 1.2)) & (M > 60) & (M < 120)",
    "weight * (1 + 0.0005 * (pt1 + pt2))", "weight * 1.01", "w32 * 2", "-pt1 + pt2 ** 2",
    "~(njet >= 4) | (njet // 3 == 1)", "sqrt(pt1 * pt2) / 2", "where(eta1 > 0, pt1, -pt2)",
    "njet % 3 - (njet << 1) + (njet >> 1) ^ 5", "1.5 > M", "atan2(eta1, eta2)", "0 < njet",
]
LEFT_TO_UPROOT = ["get('pt1') * 2", "pt1 if True else pt2", "(pt1, pt2)[1]"]


def test_expressions_equal_uproots_own_evaluation_bit_for_bit(ntuple: Path) -> None:
    tree = uproot.open(ntuple)["events"]
    exprs = [*COMPUTED, *LEFT_TO_UPROOT, "M"]
    computed = select._Expressions(exprs, set(tree.keys()))
    # what uproot is asked to read: branches, and the expressions it evaluates itself
    assert computed.reads == {"M", "pt1", "pt2", "eta1", "eta2", "Q1", "Q2", "weight", "w32",
                              "njet", *LEFT_TO_UPROOT}
    for start in (0, 3000):  # two chunks
        ours = computed.evaluate(tree.arrays(sorted(computed.reads), entry_start=start,
                                             entry_stop=start + 3000, library="np"))
        theirs = tree.arrays(exprs, entry_start=start, entry_stop=start + 3000, library="np")
        assert sorted(ours) == sorted(exprs)
        for e in exprs:
            a, b = np.asarray(ours[e]), np.asarray(theirs[e])
            assert (a.dtype, a.shape) == (b.dtype, b.shape), e
            assert a.tobytes() == b.tobytes(), e


def test_an_expression_computed_at_some_rows_equals_its_values_there_bit_for_bit(
        ntuple: Path) -> None:
    """Weights are computed at the rows a region keeps only (``_Chunk.at_rows``): the same
    bits as computing them for every entry and taking those rows, as uproot would."""
    tree = uproot.open(ntuple)["events"]
    exprs = [*COMPUTED, *LEFT_TO_UPROOT, "M"]
    computed = select._Expressions(exprs, set(tree.keys()))
    raw = tree.arrays(sorted(computed.reads), entry_stop=5000, library="np")
    theirs = tree.arrays(exprs, entry_stop=5000, library="np")
    rows = np.flatnonzero(np.random.default_rng(7).random(5000) < 0.3)
    for already in (False, True):  # at the rows alone, or taken from the whole chunk's
        chunk = computed.evaluate(raw)
        if already:
            for e in exprs:
                chunk[e]
        value = chunk.at_rows(rows)
        for e in exprs:
            a = np.asarray(value(e))
            b = np.asarray(theirs[e])
            b = b if b.ndim == 0 else b[rows]
            assert (a.dtype, a.shape) == (b.dtype, b.shape), e
            assert a.tobytes() == b.tobytes(), e


def test_a_subexpression_shared_by_expressions_is_computed_once_per_chunk(
        ntuple: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.absolute(x)

    monkeypatch.setitem(PythonLanguage.default_functions, "abs", counted)
    tree = uproot.open(ntuple)["events"]
    exprs = ["(abs(eta1) < 2.1) & (pt1 > 20)", "(abs(eta1) < 2.1) & (pt1 > 40)",
             "abs(eta1) * 2", "abs(eta2)"]
    computed = select._Expressions(exprs, set(tree.keys()))
    for chunk in tree.iterate(sorted(computed.reads), step_size=2000, library="np"):
        calls.clear()
        values = computed.evaluate(chunk)
        for e in exprs:
            values[e]
        assert calls == [len(chunk["eta1"])] * 2  # abs(eta1) once, abs(eta2) once


def _plain_sums(path: Path, templates: list[select.Template], step: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The histograms as select filled them before its reading was tuned: uproot evaluates
    every expression, each histogram masks, searches the edges and counts, chunk by chunk."""
    tree = uproot.open(path)["events"]
    exprs = sorted({e for t in templates for e in t.expressions().values()})
    sums = {t.name: (np.zeros(len(t.bins) - 1), np.zeros(len(t.bins) - 1)) for t in templates}
    for chunk in tree.iterate(exprs, step_size=step, library="np"):
        for t in templates:
            values = np.asarray(chunk[t.variable], dtype=float)
            mask = (np.asarray(chunk[t.selection]) != 0 if t.selection is not None
                    else np.ones(len(values), bool))
            bins = np.searchsorted(np.asarray(t.bins), values[mask], side="right") - 1
            inside = (bins >= 0) & (bins < len(t.bins) - 1) & ~np.isnan(values[mask])
            if t.weight is None or t.weight == "0.5":  # a number: counts times it
                w = 1.0 if t.weight is None else 0.5
                counts = np.bincount(bins[inside], minlength=len(t.bins) - 1).astype(float)
                sums[t.name][0][:] += counts * w
                sums[t.name][1][:] += counts * (w * w)
                continue
            w = np.asarray(chunk[t.weight], dtype=float)[mask][inside]
            sums[t.name][0][:] += np.bincount(bins[inside], weights=w,
                                              minlength=len(t.bins) - 1)
            sums[t.name][1][:] += np.bincount(bins[inside], weights=w * w,
                                              minlength=len(t.bins) - 1)
    return sums


def test_filled_sums_equal_the_plain_computation_to_the_last_bit(ntuple: Path) -> None:
    bins = tuple(60 + 2.5 * i for i in range(25))
    regions = {"BB": COMPUTED[0], "BE": COMPUTED[1], "all": None}
    weights = [None, "0.5", "weight", "weight * 1.01", "weight * (1 + 0.0005 * (pt1 + pt2))",
               "w32"]
    templates = [select.Template(f"{r}_{i}", (str(ntuple),), "events", "M", cut, w, bins)
                 for r, cut in regions.items() for i, w in enumerate(weights)]
    templates.append(select.Template("pt", (str(ntuple),), "events", "pt1 + pt2", COMPUTED[0],
                                     "weight", (0.0, 40.0, 41.0, 60.0, 100.0, 1e3)))
    for step in (1000, 777):
        got = select.fill_file(str(ntuple), templates, step)
        expected = _plain_sums(ntuple, templates, step)
        assert any(s.any() for s, _ in got.values())
        for t in templates:
            for ours, theirs in zip(got[t.name], expected[t.name], strict=True):
                assert ours.tobytes() == theirs.tobytes(), (t.name, ours, theirs)
