"""steps.compare: snapshots, tolerances, the verdict per quantity, HEPData references."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyhf
import pytest
import yaml

from steps import compare
from steps.compare import Quantity, Rule, Tolerances
from steps.errors import PubflowError

from .conftest import REPO
from .fake_services import serve_record

TOLERANCES = REPO / "inputs" / "reference" / "tolerances.yaml"

WORKSPACE: dict[str, Any] = {
    "channels": [
        {"name": "SR", "samples": [
            {"name": "sig", "data": [5.0, 10.0], "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "bkg", "data": [50.0, 60.0], "modifiers": [
                {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                {"name": "lumi", "type": "lumi", "data": None}]},
        ]},
        {"name": "CR", "samples": [
            {"name": "bkg", "data": [100.0], "modifiers": [
                {"name": "lumi", "type": "lumi", "data": None}]}]},
    ],
    "observations": [{"name": "SR", "data": [55.0, 70.0]}, {"name": "CR", "data": [101.0]}],
    "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.5, 1.5]],
         "inits": [1.0]}]}}],
    "version": "1.0.0",
}


def sections() -> dict[str, Any]:
    """A small run: two histograms, a workspace digest, a fit and two limit points."""
    return {
        "histograms": {
            "SR_Data": {"bins": [0.0, 1.0, 2.0], "yields": [55.0, 70.0], "stdev": [7.4, 8.4]},
            "SR_bkg": {"bins": [0.0, 1.0, 2.0], "yields": [50.5, 60.25], "stdev": [1.0, 1.1]},
        },
        "model": {"workspace_sha256_sorted": "a" * 64},
        "fit": {"poi": "mu", "mu": 1.02, "mu_uncertainty": 0.1, "twice_nll": 3.5,
                "significance": {"observed": 4.2, "expected": 3.9},
                "parameters": [{"name": "lumi", "bestfit": 1.001, "uncertainty": 0.02},
                               {"name": "bkg_norm", "bestfit": -1e-9, "uncertainty": 0.9}],
                "regions": {"SR": {"bins": [0.0, 1.0, 2.0], "data": [55.0, 70.0],
                                   "prefit": {"total": [55.5, 70.25],
                                              "total_uncertainty": [2.0, 2.5],
                                              "summed": {"total": {"yield": 125.75,
                                                                   "uncertainty": 4.0}}},
                                   "postfit": {"total": [55.0, 70.0],
                                               "total_uncertainty": [1.0, 1.5],
                                               "summed": {}}}}},
        # the second point as limit files (and references) gave it before patches had names
        "limits": {"poi": "mu_res", "labels": ["mass"], "reference_cross_section": 10.0,
                   "points": [
            {"patch": "mass_70", "values": {"mass": 70}, "observed": 2.0,
             "expected": [1.0, 1.4, 2.0, 2.8, 4.0], "significance": 0.5, "p0": 0.3,
             "muhat": 0.4},
            {"mass": 100, "observed": 1.5, "expected": [0.8, 1.1, 1.5, 2.1, 3.0],
             "significance": 0.0, "p0": 0.5, "muhat": 0.0},
        ]},
    }


@pytest.fixture(scope="module")
def tolerances() -> Tolerances:
    return compare.load_tolerances(TOLERANCES)


def test_two_dimensional_limits_are_named_by_patch_and_not_plotted_over_one_axis() -> None:
    limits = {"poi": "mu", "labels": ["m1", "m2"], "points": [
        {"patch": "p_400_100", "values": {"m1": 400, "m2": 100}, "observed": 0.5,
         "expected": [0.2, 0.3, 0.5, 0.7, 1.0], "significance": 0.0, "p0": 0.5}]}
    snap = compare.snapshot({**sections(), "limits": limits})
    assert snap["limits/p_400_100/observed"].value == 0.5
    assert snap["limits/p_400_100/observed"].x is None
    assert snap["limits/p_400_100/expected_median"].scale == pytest.approx(0.2)


def test_snapshot_names_every_quantity() -> None:
    snap = compare.snapshot(sections())
    for name in ("histograms/contents_sha256", "histograms/SR_Data/bins",
                 "histograms/SR_Data/yield", "histograms/SR_Data/bin[1]",
                 "histograms/SR_bkg/stdev[0]", "model/workspace_sha256_sorted", "fit/mu",
                 "fit/significance/observed", "fit/parameters/lumi/bestfit",
                 "fit/regions/SR/data[1]", "fit/regions/SR/prefit/total[0]",
                 "fit/regions/SR/prefit/summed/total/yield", "limits/mass_70/observed",
                 "limits/mass_70/expected_-1sigma", "limits/mass_100/significance",
                 "limits/mass_100/muhat"):
        assert name in snap, name
    assert snap["histograms/SR_Data/yield"].value == 125.0
    assert snap["histograms/SR_Data/bin[1]"].x == (1.0, 2.0)
    # sigma of a limit: half the expected +-1 sigma band
    assert snap["limits/mass_70/observed"].scale == pytest.approx(0.7)
    assert snap["limits/mass_70/observed"].figure == "limits"


def test_repository_tolerances_apply_the_issue_s_rules(tolerances: Tolerances) -> None:
    assert tolerances.rule_for("histograms/Dimuon_Data/bin[3]").mode == "exact"
    assert tolerances.rule_for("histograms/Dimuon_Data/yield").mode == "exact"
    assert tolerances.rule_for("model/workspace_sha256_sorted").mode == "digest"
    assert tolerances.rule_for("fit/regions/Dimuon/data[4]").mode == "exact"
    assert tolerances.rule_for("fit/mu").mode == "relative"
    assert tolerances.rule_for("fit/regions/Dimuon/postfit/total[4]").mode == "relative"
    assert tolerances.rule_for("limits/mass_70/observed").mode == "sigma"
    assert tolerances.rule_for("limits/mass_70/significance").mode == "absolute"
    assert tolerances.rule_for("hepdata/Dimuon mass spectrum/Data/60-65").mode == "exact"
    assert tolerances.rule_for("hepdata/Event yields/Pre-fit yield/Data").mode == "exact"
    assert tolerances.rule_for(
        "hepdata/Upper limits on a narrow resonance/Observed upper limit on mu_res/70"
    ).mode == "sigma"
    assert tolerances.rule_for("something/else") is compare.EXACT


def test_unchanged_run_is_identical(tolerances: Tolerances) -> None:
    snap = compare.snapshot(sections())
    results = compare.compare(snap, compare.snapshot(copy.deepcopy(sections())), tolerances)
    assert results and all(r.status == "identical" for r in results)


def test_each_mode_judges_as_documented(tolerances: Tolerances) -> None:
    changed = sections()
    changed["histograms"]["SR_Data"]["yields"][0] = 54.0          # one event less: exact
    changed["fit"]["mu"] = 1.02 * (1 + 5e-5)                       # within rel 1e-4
    changed["fit"]["mu_uncertainty"] = 0.1 * (1 + 5e-4)            # beyond rel 1e-4
    changed["fit"]["parameters"][1]["bestfit"] = 5e-7              # near zero: the floor
    changed["limits"]["points"][0]["observed"] = 2.0 + 0.03        # 0.043 sigma: within
    changed["limits"]["points"][0]["expected"][2] = 2.0 + 0.05     # 0.071 sigma: beyond
    changed["limits"]["points"][1]["significance"] = 0.005         # abs 0.01: within
    changed["model"]["workspace_sha256_sorted"] = "b" * 64
    results = {r.name: r for r in compare.compare(compare.snapshot(sections()),
                                                  compare.snapshot(changed), tolerances)}
    status = {name: r.status for name, r in results.items()}
    assert status["histograms/SR_Data/bin[0]"] == "failed"
    assert status["histograms/SR_Data/yield"] == "failed"
    assert status["histograms/contents_sha256"] == "failed"
    assert status["histograms/SR_bkg/bin[0]"] == "identical"
    assert status["fit/mu"] == "within"
    assert status["fit/mu_uncertainty"] == "failed"
    assert status["fit/parameters/bkg_norm/bestfit"] == "within"
    assert status["limits/mass_70/observed"] == "within"
    assert status["limits/mass_70/expected_median"] == "failed"
    assert "sigma = 0.7" in results["limits/mass_70/expected_median"].note
    assert status["limits/mass_100/significance"] == "within"
    assert status["model/workspace_sha256_sorted"] == "failed"
    assert results["model/workspace_sha256_sorted"].note == "checksum differs"
    assert results["histograms/SR_Data/yield"].difference == -1.0


def test_changed_binning_is_named_with_missing_bins(tolerances: Tolerances) -> None:
    changed = sections()
    changed["histograms"]["SR_Data"] = {"bins": [0.0, 2.0], "yields": [125.0], "stdev": [11.2]}
    results = {r.name: r for r in compare.compare(compare.snapshot(sections()),
                                                  compare.snapshot(changed), tolerances)}
    assert results["histograms/SR_Data/bins"].status == "failed"
    assert results["histograms/SR_Data/bins"].note == "3 values became 2"
    assert results["histograms/SR_Data/bin[1]"].status == "missing"
    assert results["histograms/SR_Data/yield"].status == "identical"
    added = compare.compare(compare.snapshot(changed), compare.snapshot(sections()),
                            tolerances)
    assert {r.name for r in added if r.status == "new"} >= {"histograms/SR_Data/bin[1]"}


def test_sigma_without_a_scale_allows_only_the_floor() -> None:
    rule = Rule(match="*", mode="sigma", tolerance=1.0, floor=0.01)
    ok = compare.judge("x", Quantity("x", 1.0), Quantity("x", 1.005), rule)
    bad = compare.judge("x", Quantity("x", 1.0), Quantity("x", 1.05), rule)
    assert (ok.status, bad.status) == ("within", "failed")
    assert "no sigma" in bad.note


def test_workspace_digest_ignores_order(tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(json.dumps(WORKSPACE))
    patchset = {"metadata": {"name": "p", "description": "d", "labels": ["mass"],
                             "digests": {"sha256": pyhf.utils.digest(WORKSPACE)}},
                "patches": [{"metadata": {"name": f"m{m}", "values": [m]},
                             "patch": [{"op": "add", "path": "/channels/0/samples/0",
                                        "value": {"name": f"s{m}", "data": [1.0, 2.0],
                                                  "modifiers": []}}]} for m in (1, 2)],
                "version": "1.0.0"}
    (tmp_path / "ps.json").write_text(json.dumps(patchset))
    reordered = copy.deepcopy(WORKSPACE)
    reordered["channels"].reverse()
    reordered["channels"][1]["samples"].reverse()
    reordered["observations"].reverse()
    shuffled = copy.deepcopy(patchset)
    shuffled["patches"].reverse()
    shuffled["metadata"]["digests"]["sha256"] = pyhf.utils.digest(reordered)
    (tmp_path / "ws2.json").write_text(json.dumps(reordered))
    (tmp_path / "ps2.json").write_text(json.dumps(shuffled))
    assert pyhf.utils.digest(reordered) != pyhf.utils.digest(WORKSPACE)
    assert compare.model_digests(tmp_path / "ws.json", tmp_path / "ps.json") == \
        compare.model_digests(tmp_path / "ws2.json", tmp_path / "ps2.json")
    changed = copy.deepcopy(WORKSPACE)
    changed["channels"][0]["samples"][1]["data"][0] = 50.5
    (tmp_path / "ws3.json").write_text(json.dumps(changed))
    assert compare.model_digests(tmp_path / "ws3.json", tmp_path / "ps.json")[
        "workspace_sha256_sorted"] != compare.model_digests(
        tmp_path / "ws.json", tmp_path / "ps.json")["workspace_sha256_sorted"]


def test_reference_round_trip(tmp_path: Path) -> None:
    compare.write_reference(sections(), tmp_path, {"reason": "test"})
    assert compare.read_reference(tmp_path) == json.loads(json.dumps(sections()))
    assert compare.reference_metadata(tmp_path) == {"reason": "test"}
    (tmp_path / "fit.json").unlink()
    with pytest.raises(PubflowError, match=r"fit\.json: reference file not found"):
        compare.read_reference(tmp_path)


def test_bad_tolerance_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "tolerances.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "rules": [{"match": "*", "mode": "roughly"}]}))
    with pytest.raises(PubflowError, match=r"tolerances\.yaml: rules\[0\]\.mode"):
        compare.load_tolerances(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("ins1234567", compare.RecordId("ins1234567")),
    ("98765", compare.RecordId("98765")),
    ("10.17182/hepdata.98765.v2", compare.RecordId("98765", 2)),
    ("doi:10.17182/hepdata.98765", compare.RecordId("98765")),
    ("https://doi.org/10.17182/hepdata.98765.v3/t2", compare.RecordId("98765", 3)),
    ("https://www.hepdata.net/record/ins42?version=2", compare.RecordId("ins42", 2)),
])
def test_record_identifiers(text: str, expected: compare.RecordId) -> None:
    assert compare.parse_record(text) == expected


def test_bad_record_identifier() -> None:
    with pytest.raises(PubflowError, match="not a HEPData record"):
        compare.parse_record("arXiv:1234.5678")


TABLES: dict[str, dict[str, Any]] = {
    "Spectrum": {
        "independent_variables": [{"header": {"name": "M", "units": "GeV"},
                                   "values": [{"low": 60, "high": 65}, {"low": 65, "high": 70}]}],
        "dependent_variables": [{"header": {"name": "Data"},
                                 "values": [{"value": 12, "errors": [{"symerror": 3.4641,
                                                                     "label": "stat"}]},
                                            {"value": 20}]}],
    },
    "Limits": {
        "independent_variables": [{"header": {"name": "Mass"}, "values": [{"value": 70}]}],
        "dependent_variables": [
            {"header": {"name": "Observed"}, "values": [{"value": 2.5}]},
            {"header": {"name": "Expected"}, "values": [{"value": 2.0, "errors": [
                {"asymerror": {"plus": 0.8, "minus": -0.6}, "label": "1 sigma"}]}]},
        ],
    },
}


def test_hepdata_snapshot_names_rows_and_carries_the_band() -> None:
    snap = compare.hepdata_snapshot(TABLES)
    assert snap["hepdata/Spectrum/Data/60-65"].value == 12.0
    assert snap["hepdata/Spectrum/Data/60-65/stat"].value == pytest.approx(3.4641)
    assert snap["hepdata/Spectrum/Data/65-70"].x == (65.0, 70.0)
    assert snap["hepdata/Limits/Expected/70/1 sigma plus"].value == 0.8
    assert snap["hepdata/Limits/Observed/70"].scale == pytest.approx(0.7)


def test_fetch_record_by_inspire_id_and_doi(tmp_path: Path) -> None:
    with serve_record(TABLES, inspire_id=1234567, recid=4321) as server:
        record = compare.fetch_record("ins1234567", server.url)
        assert record.tables == TABLES  # the data files as submitted
        assert record.version == 1
        assert record.metadata["inspire_id"] == "1234567"
        by_doi = compare.fetch_record("10.17182/hepdata.4321.v1", server.url)
        assert by_doi.tables == record.tables
        assert any(p.startswith("/record/4321?") and "version=1" in p for p in server.requests)
        # every table through HEPData's versioned download route, on this site
        assert "/download/table/ins1234567/Spectrum/1/yaml" in server.requests
        with pytest.raises(PubflowError, match="HTTP 404"):
            compare.fetch_record("ins999", server.url)
