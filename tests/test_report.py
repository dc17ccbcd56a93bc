"""steps.report: verdict, JSON against its schema, Markdown table, overlays only where moved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps import compare, report
from steps.compare import Quantity
from steps.config import validate
from steps.provenance import RunRecord, now

from .conftest import REPO

TOLERANCES = compare.load_tolerances(REPO / "inputs" / "reference" / "tolerances.yaml")


def histogram(name: str, yields: list[float]) -> dict[str, Quantity]:
    snap = {}
    edges = [60.0 + 5 * i for i in range(len(yields) + 1)]
    for i, value in enumerate(yields):
        q = Quantity(f"histograms/{name}/bin[{i}]", value, f"histograms/{name}", "content",
                     (edges[i], edges[i + 1]))
        snap[q.name] = q
    snap[f"histograms/{name}/yield"] = Quantity(f"histograms/{name}/yield", sum(yields))
    return snap


def snapshots() -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    ref = {**histogram("Dimuon_Data", [5.0, 7.0, 9.0]), **histogram("Dimuon_Zmumu",
                                                                      [1.5, 2.5, 3.5])}
    new = {**histogram("Dimuon_Data", [5.0, 6.0, 9.0]), **histogram("Dimuon_Zmumu",
                                                                      [1.5, 2.5, 3.5])}
    for snap, mu in ((ref, 0.98), (new, 0.98 * (1 + 2e-5))):
        snap["fit/mu"] = Quantity("fit/mu", mu)
    return ref, new


def make_report(ref: dict[str, Quantity], new: dict[str, Quantity]) -> report.Report:
    run = RunRecord(mode="local", command=["snakemake", "--cores", "2"], started=now(),
                    ended=now(), status="completed", workspace="/tmp/w", engine="snakemake 9")
    return report.Report(results=compare.compare(ref, new, TOLERANCES), run=run,
                         reference={"kind": "repository", "source": "inputs/reference",
                                    "metadata": {"reason": "test"}},
                         tolerances="inputs/reference/tolerances.yaml")


def test_moved_quantities_are_named_and_only_their_distributions_drawn(tmp_path: Path) -> None:
    ref, new = snapshots()
    body = report.write(make_report(ref, new), tmp_path, ref, new)
    assert body["passed"] is False
    assert body["moved"] == ["histograms/Dimuon_Data/bin[1]", "histograms/Dimuon_Data/yield"]
    assert body["moved_groups"] == {"histograms/Dimuon_Data": 2}
    assert body["summary"] == {"compared": 9, "identical": 6, "within": 1, "failed": 2,
                               "missing": 0, "new": 0}
    assert body["verdict"].startswith("FAILED: 2 of 9 quantities moved beyond tolerance: "
                                      "histograms/Dimuon_Data (2)")
    assert body["plots"] == [{"figure": "histograms/Dimuon_Data",
                              "file": "plots/histograms_Dimuon_Data.png"}]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "histograms_Dimuon_Data.png"]
    assert (tmp_path / "plots" / "histograms_Dimuon_Data.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((tmp_path / "report.json").read_text())
    validate(on_disk, "reproduce-report", "report.json")
    row = next(q for q in on_disk["quantities"] if q["name"] == "fit/mu")
    assert row["status"] == "within" and row["tolerance"] == "rel 0.0001 + 1e-06"
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# pubflow reproduce: FAILED")
    assert "## What moved" in md
    assert ("| `histograms/Dimuon_Data/bin[1]` | 7 | 6 | -1 | exact | **FAILED** |" in md)
    assert "![histograms/Dimuon_Data](plots/histograms_Dimuon_Data.png)" in md
    assert "| `fit/mu` | 0.98 | 0.9800196 | +1.96e-05 | rel 0.0001 + 1e-06 (±9.9e-05) |" in md


def test_a_reproduced_run_passes_without_plots(tmp_path: Path) -> None:
    ref, _ = snapshots()
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "stale.png").write_bytes(b"old")
    body = report.write(make_report(ref, ref), tmp_path, ref, ref)
    assert body["passed"] is True and body["moved"] == [] and body["plots"] == []
    assert body["verdict"] == ("PASSED: all 9 quantities reproduced (9 identical, 0 within "
                               "tolerance)")
    assert not list((tmp_path / "plots").iterdir())


def test_failed_run_fails_the_report(tmp_path: Path) -> None:
    rep = make_report({}, {})
    assert rep.run is not None
    rep.run.status, rep.run.error = "failed", "rule select failed: boom"
    body = report.write(rep, tmp_path)
    assert body["passed"] is False
    assert body["verdict"] == "FAILED: the run did not complete (rule select failed: boom)"


@pytest.mark.parametrize(("name", "group"), [
    ("histograms/Dimuon_Data/bin[3]", "histograms/Dimuon_Data"),
    ("histograms/contents_sha256", "histograms/contents_sha256"),
    ("model/workspace_sha256_sorted", "model/workspace_sha256_sorted"),
    ("fit/mu", "fit/mu"),
    ("fit/parameters/lumi/bestfit", "fit/parameters/lumi"),
    ("limits/mass_70/expected_median", "limits/mass_70"),
    ("hepdata/Event yields/Pre-fit yield/Data", "hepdata/Event yields/Pre-fit yield"),
])
def test_groups(name: str, group: str) -> None:
    assert report.group_of(name) == group
