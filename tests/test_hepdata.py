"""steps.hepdata: the HEPData submission from small synthetic inputs of the real shape."""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonpatch
import matplotlib
import pyhf
import pytest
import yaml

from steps import hepdata
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.fit import _prediction_table

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "inputs" / "pubflow.yaml"

EDGES = [60.0, 75.0, 85.0, 95.0, 105.0, 120.0]
OBSERVED = [14.0, 31.0, 212.0, 27.0, 0.0]  # one empty bin: no 'stat' error there
SIGNAL = [8.0, 30.0, 190.0, 22.0, 3.0]
BACKGROUND = [6.0, 4.0, 3.5, 2.5, 2.0]
MASSES = [70, 80, 110]
REFERENCE_XSEC = 10.0
LIMIT_POINTS = [
    {"patch": "mass_70", "values": {"mass": 70}, "observed": 2.5,
     "expected": [1.1, 1.5, 2.1, 2.9, 3.9], "significance": 0.8, "p0": 0.21},
    {"patch": "mass_80", "values": {"mass": 80}, "observed": 1.75,
     "expected": [0.9, 1.2, 1.7, 2.4, 3.3], "significance": 0.0, "p0": 0.5},
    {"patch": "mass_110", "values": {"mass": 110}, "observed": 4.25,
     "expected": [1.6, 2.2, 3.0, 4.2, 5.6], "significance": 1.9, "p0": 0.0287},
]


def names(config: dict[str, Any]) -> tuple[str, str, str, str]:
    """Region, data sample, signal-like and background-like sample of the real config."""
    region = config["Regions"][0]["Name"]
    data = next(s["Name"] for s in config["Samples"] if s.get("Data"))
    mc = [s["Name"] for s in config["Samples"] if not s.get("Data")]
    return region, data, mc[0], mc[1]


def workspace_spec(config: dict[str, Any]) -> dict[str, Any]:
    """A small real pyhf workspace: a normalised signal and a background with a normsys."""
    region, _, sig, bkg = names(config)
    return {
        "channels": [{"name": region, "samples": [
            {"name": sig, "data": SIGNAL, "modifiers": [
                {"name": config["General"]["POI"], "type": "normfactor", "data": None},
                {"name": f"staterror_{region}", "type": "staterror",
                 "data": [0.1 * math.sqrt(v) for v in SIGNAL]},
            ]},
            {"name": bkg, "data": BACKGROUND, "modifiers": [
                {"name": f"{bkg}_norm", "type": "normsys", "data": {"hi": 1.5, "lo": 0.5}},
                {"name": f"staterror_{region}", "type": "staterror",
                 "data": [0.1 * math.sqrt(v) for v in BACKGROUND]},
            ]},
        ]}],
        "observations": [{"name": region, "data": OBSERVED}],
        "measurements": [{"name": "synthetic", "config": {
            "poi": config["General"]["POI"],
            "parameters": [{"name": config["General"]["POI"], "bounds": [[0.0, 5.0]],
                            "inits": [1.0]}],
        }}],
        "version": "1.0.0",
    }


def patchset_spec(background: dict[str, Any]) -> dict[str, Any]:
    """One JSON Patch per mass: a narrow resonance sample and its POI ``mu_res``."""
    patches = []
    for mass in MASSES:
        signal = copy.deepcopy(background)
        shape = [1.0 if lo <= mass < hi else 0.05 for lo, hi in itertools.pairwise(EDGES)]
        signal["channels"][0]["samples"].append({
            "name": f"Resonance_m{mass}", "data": shape,
            "modifiers": [{"name": "mu_res", "type": "normfactor", "data": None}],
        })
        signal["measurements"][0]["config"]["poi"] = "mu_res"
        patches.append({"metadata": {"name": f"mass_{mass}", "values": [mass]},
                        "patch": jsonpatch.make_patch(background, signal).patch})
    return {
        "metadata": {"name": "synthetic_scan", "description": "synthetic resonances",
                     "digests": {"sha256": pyhf.utils.digest(background)},
                     "labels": ["mass"], "references": {"hepdata": "ins0000000"}},
        "patches": patches,
        "version": "1.0.0",
    }


def fit_results(spec: dict[str, Any]) -> dict[str, Any]:
    """results.json as the fit step writes it (cabinetry's fit, the step's prediction tables)."""
    import cabinetry

    model, data = cabinetry.model_utils.model_and_data(pyhf.Workspace(spec))
    fit = cabinetry.fit.fit(model, data)
    prefit = _prediction_table(cabinetry.model_utils.prediction(model))
    postfit = _prediction_table(cabinetry.model_utils.prediction(model, fit_results=fit))
    poi = model.config.poi_index
    region = spec["channels"][0]["name"]
    return {
        "workspace_sha256": pyhf.utils.digest(spec),
        "poi": model.config.poi_name,
        "mu": float(fit.bestfit[poi]),
        "mu_uncertainty": float(fit.uncertainty[poi]),
        "parameters": [{"name": n, "bestfit": float(b), "uncertainty": float(u)}
                       for n, b, u in zip(fit.labels, fit.bestfit, fit.uncertainty,
                                          strict=True)],
        "significance": {"observed": 12.5, "expected": 11.0},
        "regions": {region: {"bins": EDGES, "data": OBSERVED, "prefit": prefit[region],
                             "postfit": postfit[region]}},
    }


def figure(path: Path) -> None:
    """A small PNG and the PDF beside it, as the plotting step writes them."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=40, metadata={"Software": None})
    fig.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None})
    plt.close(fig)


def read_in_full(path: str, entries: int | None, data: bool = False) -> dict[str, Any]:
    """A nominal histogram's ``inputs`` as the merge step writes them: its one file read
    (``entries`` None: a file the manifest does not list, e.g. a simulated one)."""
    return {"tree": "events", "data": data, "nominal": True, "entries": {path: entries},
            "skipped": [], "entries_expected": entries, "entries_processed": entries,
            "processed_fraction": 1.0, "scale": 1.0}


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write every input of the hepdata step into ``folder``; return the paths by option."""
    config = load_analysis(CONFIG)
    region, data, sig, bkg = names(config)
    folder.mkdir(parents=True, exist_ok=True)
    spec = workspace_spec(config)
    paths = {
        "histograms": folder / "histograms.json",
        "fit": folder / "results.json",
        "limits": folder / "limits.json",
        "workspace": folder / "workspace.json",
        "patchset": folder / "patchset.json",
        "figures": folder / "figures",
    }
    histograms = {
        f"{region}_{data}": {"yield": sum(OBSERVED), "stdev": math.sqrt(sum(OBSERVED)),
                             "bins": EDGES, "files": ["data.root"], "sample": data,
                             "inputs": read_in_full("data.root", 2304, data=True)},
        f"{region}_{sig}": {"yield": sum(SIGNAL), "stdev": 1.0, "bins": EDGES,
                            "files": ["sig.root"], "sample": sig,
                            "inputs": read_in_full("sig.root", None)},
        f"{region}_{bkg}": {"yield": sum(BACKGROUND), "stdev": 1.0, "bins": EDGES,
                            "files": ["bkg.root"], "sample": bkg,
                            "inputs": read_in_full("bkg.root", None)},
    }
    paths["histograms"].write_text(json.dumps(histograms))
    paths["workspace"].write_text(json.dumps(spec, indent=2))
    paths["patchset"].write_text(json.dumps(patchset_spec(spec), indent=2))
    paths["fit"].write_text(json.dumps(fit_results(spec)))
    paths["limits"].write_text(json.dumps({"poi": "mu_res", "labels": ["mass"],
                                           "units": {"mass": "GeV"},
                                           "titles": {"mass": "Resonance mass"},
                                           "reference_cross_section": REFERENCE_XSEC,
                                           "points": LIMIT_POINTS}))
    paths["figures"].mkdir()
    for name in ("pulls", "brazil", f"data_mc_postfit_{region}", f"data_mc_prefit_{region}"):
        figure(paths["figures"] / f"{name}.png")
    return paths


def build(inputs: dict[str, Path], output: Path) -> None:
    hepdata.write_hepdata(load_analysis(CONFIG), output=output, **inputs)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def built(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("first") / "hepdata"
    build(inputs, output)
    return output


def archive_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def table(built: Path, name: str) -> dict[str, Any]:
    """A data table of the archive, found through submission.yaml by its name."""
    members = archive_members(built / "submission.tar.gz")
    docs = list(yaml.safe_load_all(members["submission.yaml"]))
    doc = next(d for d in docs if d and d.get("name") == name)
    return {"doc": doc, "data": yaml.safe_load(members[doc["data_file"]])}


def column(data: dict[str, Any], header: str) -> list[dict[str, Any]]:
    return next(v["values"] for v in data["dependent_variables"]
                if v["header"]["name"] == header)


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # hepdata-validator leaves files open
def test_archive_is_valid_hepdata(built: Path) -> None:
    from hepdata_validator.full_submission_validator import FullSubmissionValidator

    validator = FullSubmissionValidator(autoload_remote_schemas=False)
    assert validator.validate(archive=str(built / "submission.tar.gz")), {
        f: [m.message for m in ms] for f, ms in validator.get_messages().items()
    }
    folder = sorted(p.name for p in (built / "submission").iterdir())
    assert folder == sorted(archive_members(built / "submission.tar.gz"))
    assert {"submission.yaml", "Likelihoods.tar.gz", "brazil.png", "thumb_brazil.png",
            "brazil.pdf"} <= set(folder)


def test_submission_metadata(built: Path) -> None:
    config = load_analysis(CONFIG)
    members = archive_members(built / "submission.tar.gz")
    docs = [d for d in yaml.safe_load_all(members["submission.yaml"]) if d]
    assert docs[0]["comment"] == " ".join(config["Publication"]["Abstract"].split())
    assert docs[0]["data_license"]["name"] == config["Publication"]["License"]["Name"]
    likelihood = next(r for r in docs[0]["additional_resources"]
                      if r.get("type") == "HistFactory")
    assert likelihood["location"] == "Likelihoods.tar.gz"
    assert [d["name"] for d in docs[1:]] == [
        "Dimuon mass spectrum", "Event yields", "Signal strength and nuisance parameters",
        "Upper limits: Narrow dimuon resonance",
    ]
    keywords = config["Publication"]["Keywords"]
    for doc in docs[1:]:
        got = {k["name"]: k["values"] for k in doc["keywords"]}
        assert got == keywords
        assert any(r["location"].startswith("thumb_") for r in doc["additional_resources"])


def test_spectrum_data_sum_to_data_yield(built: Path) -> None:
    spectrum = table(built, "Dimuon mass spectrum")["data"]
    data = column(spectrum, "Data")
    assert sum(v["value"] for v in data) == sum(OBSERVED)
    assert [v["value"] for v in data] == OBSERVED
    stat = [v.get("errors", [{}])[0].get("symerror") for v in data]
    assert stat[:4] == pytest.approx([math.sqrt(n) for n in OBSERVED[:4]], rel=1e-4)
    assert stat[4] is None  # an empty bin has no uncertainty to show
    mass = spectrum["independent_variables"][0]
    assert mass["header"] == {"name": "M(mumu)", "units": "GeV"}
    assert [(v["low"], v["high"]) for v in mass["values"]] == list(itertools.pairwise(EDGES))
    headers = [v["header"]["name"] for v in spectrum["dependent_variables"]]
    assert headers == ["Data", "Post-fit total", "Post-fit Zmumu", "Post-fit Continuum"]


def test_yields_add_up(built: Path, inputs: dict[str, Path]) -> None:
    results = json.loads(inputs["fit"].read_text())["regions"]["Dimuon"]
    yields = table(built, "Event yields")["data"]
    rows = [v["value"] for v in yields["independent_variables"][0]["values"]]
    assert rows == ["Zmumu", "Continuum", "Total", "Data"]
    for stage, header in (("prefit", "Pre-fit yield"), ("postfit", "Post-fit yield")):
        values = column(yields, header)
        expected = [sum(results[stage]["Zmumu"]), sum(results[stage]["Continuum"]),
                    sum(results[stage]["total"]), sum(OBSERVED)]
        assert [v["value"] for v in values] == pytest.approx(expected, rel=1e-4)
        assert values[3]["errors"] == [{"symerror": pytest.approx(math.sqrt(sum(OBSERVED)),
                                                                  rel=1e-4), "label": "stat"}]
        # the model uncertainties are the fit step's, summed with the bin-to-bin correlations
        summed = results[stage]["summed"]
        assert [v["errors"][0] for v in values[:3]] == [
            {"symerror": pytest.approx(summed[s]["uncertainty"], rel=1e-4), "label": "model"}
            for s in ("Zmumu", "Continuum", "total")
        ]
        # ... which lie between no and full correlation of the bins
        total_unc = values[2]["errors"][0]["symerror"]
        per_bin = results[stage]["total_uncertainty"]
        assert math.sqrt(sum(u * u for u in per_bin)) * 0.5 < total_unc <= sum(per_bin) * 1.0001


def test_parameters_table(built: Path, inputs: dict[str, Path]) -> None:
    fit = json.loads(inputs["fit"].read_text())
    params = table(built, "Signal strength and nuisance parameters")["data"]
    assert [v["value"] for v in params["independent_variables"][0]["values"]] == [
        p["name"] for p in fit["parameters"]
    ]
    values = column(params, "Best-fit value")
    assert [v["value"] for v in values] == pytest.approx(
        [p["bestfit"] for p in fit["parameters"]], rel=1e-4)


def test_limits_table(built: Path) -> None:
    limits = table(built, "Upper limits: Narrow dimuon resonance")
    data = limits["data"]
    [mass] = data["independent_variables"]
    assert mass["header"] == {"name": "Resonance mass", "units": "GeV"}
    assert [v["value"] for v in mass["values"]] == MASSES
    observed = column(data, "Observed upper limit on mu_res")
    assert [v["value"] for v in observed] == pytest.approx([2.5, 1.75, 4.25])
    xsec = column(data, "Observed upper limit on sigma x B")
    assert [v["value"] for v in xsec] == pytest.approx([25.0, 17.5, 42.5])
    expected = column(data, "Expected upper limit on mu_res")
    assert [v["value"] for v in expected] == pytest.approx([2.1, 1.7, 3.0])
    bands = [{e["label"]: e["asymerror"] for e in v["errors"]} for v in expected]
    assert bands[0]["1 sigma"] == {"minus": pytest.approx(-0.6), "plus": pytest.approx(0.8)}
    assert bands[0]["2 sigma"] == {"minus": pytest.approx(-1.0), "plus": pytest.approx(1.8)}
    assert bands[2]["1 sigma"] == {"minus": pytest.approx(-0.8), "plus": pytest.approx(1.2)}
    assert bands[2]["2 sigma"] == {"minus": pytest.approx(-1.4), "plus": pytest.approx(2.6)}
    significance = column(data, "Local significance")
    assert [v["value"] for v in significance] == pytest.approx([0.8, 0.0, 1.9])
    assert any(r["location"] == "brazil.png" for r in limits["doc"]["additional_resources"])


def test_likelihood_archive(built: Path, inputs: dict[str, Path]) -> None:
    archive = built / "submission" / "Likelihoods.tar.gz"
    with tarfile.open(archive) as tar:
        infos = tar.getmembers()
        members = {m.name: tar.extractfile(m).read() for m in infos}
    assert [m.name for m in infos] == ["BkgOnly.json", "README.md", "patchset.json"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in infos)
    workspace = json.loads(inputs["workspace"].read_text())
    assert pyhf.utils.digest(json.loads(members["BkgOnly.json"])) == pyhf.utils.digest(workspace)
    patchset = pyhf.PatchSet(json.loads(members["patchset.json"]))
    patchset.verify(json.loads(members["BkgOnly.json"]))
    readme = members["README.md"].decode()
    assert "pyhf patchset apply BkgOnly.json patchset.json --name mass_70" in readme
    assert "pyhf cls" in readme
    assert archive.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header time


def test_cli_rebuild_is_byte_identical(built: Path, inputs: dict[str, Path],
                                       tmp_path: Path) -> None:
    output = tmp_path / "hepdata"
    args = [f"--{key}={path}" for key, path in inputs.items()]
    proc = subprocess.run(
        [sys.executable, "-m", "steps.hepdata", f"--config={CONFIG}", *args,
         f"--output={output}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("submission/Likelihoods.tar.gz", "submission.tar.gz"):
        assert (output / name).read_bytes() == (built / name).read_bytes(), name
    assert sorted(p.name for p in output.iterdir()) == ["submission", "submission.tar.gz"]


def test_data_not_matching_histograms_is_refused(inputs: dict[str, Path],
                                                 tmp_path: Path) -> None:
    histograms = json.loads(inputs["histograms"].read_text())
    histograms["Dimuon_Data"]["yield"] += 1
    changed = {**inputs, "histograms": tmp_path / "histograms.json"}
    changed["histograms"].write_text(json.dumps(histograms))
    with pytest.raises(PubflowError, match=r"results\.json: regions\.Dimuon\.data: data sum"):
        build(changed, tmp_path / "hepdata")
    assert not (tmp_path / "hepdata").exists()


def test_results_from_another_workspace_are_refused(inputs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    other = workspace_spec(load_analysis(CONFIG))
    other["channels"][0]["samples"][1]["data"] = [1.2 * v for v in BACKGROUND]
    changed = {**inputs, "fit": tmp_path / "results.json"}
    changed["fit"].write_text(json.dumps(fit_results(other)))
    with pytest.raises(PubflowError,
                       match=r"results\.json: workspace_sha256: results not fitted from .*"
                             r"workspace\.json \(its sha256 digest is [0-9a-f]{64}\)"):
        build(changed, tmp_path / "hepdata")
    assert not (tmp_path / "hepdata").exists()


def _edit_bin(fit: dict[str, Any]) -> None:
    """A post-fit yield changed in one bin (and the total with it), but not the sums."""
    block = fit["regions"]["Dimuon"]["postfit"]
    block["Zmumu"][2] *= 1.1
    block["total"][2] = block["Zmumu"][2] + block["Continuum"][2]


def _drop_summed(fit: dict[str, Any]) -> None:
    """results.json of a fit step from before the summed yields."""
    for stage in ("prefit", "postfit"):
        del fit["regions"]["Dimuon"][stage]["summed"]


def _drop_sample_sum(fit: dict[str, Any]) -> None:
    del fit["regions"]["Dimuon"]["prefit"]["summed"]["Continuum"]


def _negative_uncertainty(fit: dict[str, Any]) -> None:
    fit["regions"]["Dimuon"]["postfit"]["summed"]["total"]["uncertainty"] = -1.0


def _drop_digest(fit: dict[str, Any]) -> None:
    del fit["workspace_sha256"]


@pytest.mark.parametrize(("edit", "message"), [
    (_edit_bin, r"postfit\.summed\.Zmumu\.yield: [0-9.]+, but the bins add up to [0-9.]+"),
    (_drop_summed, r"regions\.Dimuon\.(pre|post)fit\.summed: required key is missing"),
    (_drop_sample_sum, r"prefit\.summed: summed yields for \['Zmumu', 'total'\], but the"),
    (_negative_uncertainty, r"postfit\.summed\.total\.uncertainty: -1\.0 is less than the"),
    (_drop_digest, r"results\.json: workspace_sha256: required key is missing"),
])
def test_inconsistent_fit_results_are_refused(inputs: dict[str, Path], tmp_path: Path,
                                              edit: Any, message: str) -> None:
    fit = json.loads(inputs["fit"].read_text())
    edit(fit)
    changed = {**inputs, "fit": tmp_path / "results.json"}
    changed["fit"].write_text(json.dumps(fit))
    with pytest.raises(PubflowError, match=message):
        build(changed, tmp_path / "hepdata")
    assert not (tmp_path / "hepdata").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["points"][1].update(patch="mass_85"),
     r"limits\.json: points\[1\]\.patch: patch 'mass_85' is not in .*patchset\.json"),
    (lambda p: p["points"][1].update(values={"mass": 85}),
     r"limits\.json: points\[1\]\.values: values \[85\] differ from the patch's \[80\]"),
    (lambda p: p.update(labels=["m"]),
     r"limits\.json: labels: limits over m, the patchset's labels are mass"),
])
def test_limits_must_be_the_patchsets(inputs: dict[str, Path], tmp_path: Path, edit: Any,
                                      message: str) -> None:
    """Every limit names a patch of the published patchset, with that patch's values."""
    limits = json.loads(inputs["limits"].read_text())
    edit(limits)
    changed = {**inputs, "limits": tmp_path / "limits.json"}
    changed["limits"].write_text(json.dumps(limits))
    with pytest.raises(PubflowError, match=message):
        build(changed, tmp_path / "hepdata")
    assert not (tmp_path / "hepdata").exists()


def test_two_dimensional_scan_table_has_both_variables() -> None:
    """One independent variable per scan variable, rows in the scan's order, no sigma x B
    without a reference cross section, no figure for a table without one."""
    from steps.hepdata import limits_table

    points = [
        {"patch": f"stop_{x}_lsp_{y}", "values": {"m_stop": x, "m_lsp": y},
         "observed": obs, "expected": [obs * f for f in (0.5, 0.7, 1.0, 1.4, 1.9)],
         "significance": 0.0, "p0": 0.5}
        for x, y, obs in ((500, 100, 0.9), (400, 200, 0.4), (400, 100, 0.3))
    ]
    limits = {"poi": "Signal_norm", "labels": ["m_stop", "m_lsp"],
              "units": {"m_stop": "GeV", "m_lsp": "GeV"}, "points": points}
    config = {"Scan": {"Name": "Top squark pair production"}}
    table = limits_table(limits, config, None)
    assert table.name == "Upper limits: Top squark pair production"
    columns = {v.name: v for v in table.variables}
    assert [v.name for v in table.variables if v.is_independent] == ["m_stop", "m_lsp"]
    assert list(columns["m_stop"].values) == [400, 400, 500]
    assert list(columns["m_lsp"].values) == [100, 200, 100]
    assert list(columns["Observed upper limit on Signal_norm"].values) == [0.3, 0.4, 0.9]
    assert "Observed upper limit on sigma x B" not in columns
    assert not table.image_files


def test_missing_key_and_figure_name_the_file(inputs: dict[str, Path], tmp_path: Path) -> None:
    limits = json.loads(inputs["limits"].read_text())
    del limits["points"][1]["expected"]
    changed = {**inputs, "limits": tmp_path / "limits.json"}
    changed["limits"].write_text(json.dumps(limits))
    with pytest.raises(PubflowError, match=r"limits\.json: points\[1\]\.expected: required"):
        build(changed, tmp_path / "hepdata")

    figures = tmp_path / "figures"
    figures.mkdir()
    for png in inputs["figures"].glob("*.png"):
        if png.name != "pulls.png":
            (figures / png.name).write_bytes(png.read_bytes())
    with pytest.raises(PubflowError, match=r"pulls\.png: figure not found"):
        build({**inputs, "figures": figures}, tmp_path / "hepdata")
    assert not (tmp_path / "hepdata").exists()


def test_reproducible_tar_depends_only_on_content(tmp_path: Path) -> None:
    hepdata.write_reproducible_tar(tmp_path / "a.tar.gz", {"b": b"2", "a": b"1"})
    hepdata.write_reproducible_tar(tmp_path / "b.tar.gz", {"a": b"1", "b": b"2"})
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "a.tar.gz").read_bytes())) as tar:
        assert tar.getnames() == ["a", "b"]


def test_a_point_with_a_non_monotonic_cls_curve_is_flagged() -> None:
    from steps.hepdata import limits_table

    points = [dict(p) for p in LIMIT_POINTS]
    points[1] = {**points[1], "crossings": {"observed": [1.75, 2.4, 3.1]}}
    limits = {"poi": "mu_res", "labels": ["mass"], "points": points}
    columns = {v.name: v for v in limits_table(limits, {}, None).variables}
    assert list(columns["Limits with a non-monotonic CLs curve"].values) == [0, 1, 0]
    monotonic = {"poi": "mu_res", "labels": ["mass"], "points": LIMIT_POINTS}
    names = [v.name for v in limits_table(monotonic, {}, None).variables]
    assert "Limits with a non-monotonic CLs curve" not in names


def test_limits_relative_to_the_z_are_published_as_a_ratio_not_in_pb() -> None:
    """mu_res x 10 pb / 970 pb is the ratio to the Z (the resonance carries mu_Z); no limit
    in pb, which would stand on a luminosity that was never measured."""
    from steps.hepdata import limits_table

    limits = {"poi": "mu_res", "labels": ["mass"], "points": LIMIT_POINTS,
              "reference_cross_section": 10.0,
              "relative_to": {"Name": "Z", "NormFactor": "mu_Z", "CrossSection": 970.0}}
    table = limits_table(limits, {}, None)
    columns = {v.name: v for v in table.variables}
    assert "Observed upper limit on sigma x B" not in columns
    observed = columns["Observed upper limit on the ratio of sigma x B to sigma x B(Z)"]
    assert list(observed.values) == pytest.approx([2.5 / 97, 1.75 / 97, 4.25 / 97])
    expected = columns["Expected upper limit on the ratio of sigma x B to sigma x B(Z)"]
    assert list(expected.values) == pytest.approx([2.1 / 97, 1.7 / 97, 3.0 / 97])
    assert "mu_Z" in table.description and "cancel" in table.description


def test_parameters_the_limit_fits_held_fixed_are_stated_with_their_bound() -> None:
    """A placeholder shapesys too narrow for float64 is fixed (steps.limits.frozen_components):
    the record says so, with the largest bound on -2 ln L over the hypotheses."""
    from steps.hepdata import limits_table

    points = [dict(p) for p in LIMIT_POINTS]
    points[0] = {**points[0], "frozen_parameters": {"placeholder[0]": 3e-9}}
    points[2] = {**points[2], "frozen_parameters": {"placeholder[0]": 4.5e-8}}
    limits = {"poi": "mu_res", "labels": ["mass"], "points": points}
    description = limits_table(limits, {}, None).description
    assert description.endswith("at any hypothesis: placeholder[0] (4.5e-08).")
    plain = {"poi": "mu_res", "labels": ["mass"], "points": LIMIT_POINTS}
    assert "fixed" not in limits_table(plain, {}, None).description
