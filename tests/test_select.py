"""select + merge: one pass per file gives cabinetry's histograms; bad input fails cleanly."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml

from steps import layout, merge, select, simulate
from steps.config import load_analysis

from .conftest import REPO, copy_checkout, run, step, write_config

DATA = REPO / "inputs" / "data" / "uproot-Zmumu.root"


def _small_analysis(config: dict, tmp: Path) -> dict:
    """The bundled analysis with small simulated samples, two scan masses, absolute paths."""
    config["Scan"]["Grid"]["mass"] = [70, 105]
    config["Simulation"]["Scan"]["Events"] = 2000
    config["Scan"]["Sample"]["SamplePath"] = str(tmp / "Resonance_m{mass}.root")
    for sim in config["Simulation"]["Samples"]:
        sim["Events"] = 4000
    for sample in config["Samples"]:
        sample["SamplePath"] = (str(DATA) if sample.get("Data")
                                else str(tmp / f"{sample['Name']}.root"))
    config["Datasets"] = str(tmp / "datasets.yaml")
    manifest = yaml.safe_load((REPO / "inputs" / "datasets.yaml").read_text())
    manifest["files"][0]["path"] = str(DATA)
    (tmp / "datasets.yaml").write_text(yaml.safe_dump(manifest))
    for path in layout.simulated_samples(config):
        simulate.simulate(config, path)
    return config


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, analysis_config: dict) -> tuple[dict, Path]:
    import copy

    tmp = tmp_path_factory.mktemp("small")
    return _small_analysis(copy.deepcopy(analysis_config), tmp), tmp


def _run_select_merge(config: dict, tmp: Path, step_size: int) -> Path:
    partials = {}
    for name, path in layout.select_jobs(config).items():
        partials[path] = str(tmp / f"{name}-{step_size}.npz")
        select.select(config, path, partials[path], step_size=step_size)
    folder = tmp / f"histograms-{step_size}"
    merge.merge(config, partials, str(folder), str(tmp / f"summary-{step_size}.json"))
    return folder


def test_one_pass_equals_cabinetry_template_building(small: tuple[dict, Path]) -> None:
    import cabinetry

    config, tmp = small
    ours = _run_select_merge(config, tmp, select.DEFAULT_STEP_SIZE)
    reference = layout.cabinetry_config(layout.histogram_config(config))
    reference["General"]["HistogramFolder"] = str(tmp / "cabinetry")
    cabinetry.templates.build(reference, method="uproot")
    cabinetry.templates.postprocess(reference)
    names = sorted(p.name for p in (tmp / "cabinetry").glob("*.npz"))
    # 3 samples x (1 nominal + 2 systematics x 2) - data has only the nominal, 2 masses;
    # each histogram also as cabinetry's post-processed <name>_modified.npz
    assert len(names) == 2 * (1 + 4 * 5)
    assert names == sorted(p.name for p in ours.glob("*.npz"))
    # the data's one candidate per event is pubflow's (Candidates): counted independently below
    for name in (n for n in names if not n.startswith("Dimuon_Data")):
        mine, theirs = np.load(ours / name), np.load(tmp / "cabinetry" / name)
        np.testing.assert_array_equal(mine["bins"], theirs["bins"])
        # same events and weights, summed in another order: equal to rounding
        np.testing.assert_allclose(mine["yields"], theirs["yields"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(mine["stdev"], theirs["stdev"], rtol=1e-12, atol=0)


def _recount(config: dict) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """The data histogram counted entry by entry in plain Python: per event, of its
    global-global pairs that pass the cuts, the one with the largest pT sum."""
    a = uproot.open(DATA)["events"].arrays(library="np")
    best: dict[tuple[int, int], tuple[float, float]] = {}
    for i in range(len(a["M"])):
        passes = (a["Type"][i] == "GG" and a["Q1"][i] != a["Q2"][i] and a["pt1"][i] > 20
                  and a["pt2"][i] > 20 and abs(a["eta1"][i]) < 2.1 and abs(a["eta2"][i]) < 2.1
                  and 60 < a["M"][i] < 120)
        event = (int(a["Run"][i]), int(a["Event"][i]))
        score = float(a["pt1"][i] + a["pt2"][i])
        if passes and (event not in best or score > best[event][0]):
            best[event] = (score, float(a["M"][i]))
    masses = [m for _, m in best.values()]
    counts, _ = np.histogram(masses, bins=config["Regions"][0]["Binning"])
    return counts, {event: m for event, (_, m) in best.items()}


def test_data_count_is_one_candidate_per_event_counted_independently(
        small: tuple[dict, Path]) -> None:
    """The selected data equal a plain count on the raw file: 500 events, one pair each,
    though 501 global-global pairs pass the cuts (event 425778251 of run 148031 has two,
    sharing a muon)."""
    config, tmp = small
    out = tmp / "data.npz"
    select.select(config, str(DATA), str(out))
    counts, chosen = _recount(config)
    got = np.load(out)
    assert got["Dimuon_Data/sumw"].sum() == len(chosen) == 500
    np.testing.assert_array_equal(got["Dimuon_Data/sumw"], counts)
    np.testing.assert_array_equal(got["Dimuon_Data/sumw2"], counts)
    a = uproot.open(DATA)["events"].arrays(["Run", "Event", "Type", "M", "pt1", "pt2"],
                                           library="np")
    pairs = ((a["Run"] == 148031) & (a["Event"] == 425778251) & (a["Type"] == "GG")
             & (a["M"] > 60) & (a["M"] < 120))
    assert sorted(np.round(a["M"][pairs], 2)) == [77.55, 94.18]
    kept = a["M"][pairs][np.argmax((a["pt1"] + a["pt2"])[pairs])]
    assert chosen[(148031, 425778251)] == pytest.approx(kept)


def test_candidates_with_ties_and_candidates_outside_the_binning(tmp_path: Path) -> None:
    """A tie keeps the earlier entry; a best candidate outside the binning drops its event
    (the choice is made before binning, among the pairs that pass the selection)."""
    branches = {"run": np.array([1, 1, 1, 1, 1, 1], np.int32),
                "event": np.array([7, 7, 8, 8, 9, 9], np.int64),
                "score": np.array([1.0, 2.0, 3.0, 3.0, 5.0, 1.0]),
                "x": np.array([0.5, 1.5, 2.5, 0.5, 9.0, 0.5]),
                "ok": np.array([1, 1, 1, 1, 1, 1], np.int32)}
    with uproot.recreate(tmp_path / "c.root") as f:
        f.mktree("t", {k: v.dtype for k, v in branches.items()})
        f["t"].extend(branches)
    template = select.Template("h", (str(tmp_path / "c.root"),), "t", "x", "ok == 1", None,
                               (0.0, 1.0, 2.0, 3.0),
                               select.Candidates(("run", "event"), "score"))
    for step_size in (100, 1):  # an event's candidates in one chunk, or in several
        sums = select.fill_file(str(tmp_path / "c.root"), [template], step_size)
        # event 7 keeps x = 1.5 (score 2), event 8 the first of its tie (2.5), event 9 its
        # best (x = 9.0, outside): nothing
        np.testing.assert_array_equal(sums["h"][0], [0.0, 1.0, 1.0])


def test_chunk_size_does_not_change_the_result(small: tuple[dict, Path]) -> None:
    config, tmp = small
    big = _run_select_merge(config, tmp, 10**6)
    tiny = _run_select_merge(config, tmp, 333)
    for path in big.glob("*.npz"):
        np.testing.assert_allclose(np.load(path)["yields"], np.load(tiny / path.name)["yields"],
                                   rtol=1e-12)


# --- bad input: one line naming the file, non-zero exit, no output, input untouched -------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = copy_checkout(tmp_path / "w")
    (work / "results" / "simulate").mkdir(parents=True)
    return work


def _select(work: Path, ntuple: str) -> tuple[int, str, Path]:
    out = work / "results" / "select" / "out.npz"
    result = step(work, "select", "--config", "inputs/pubflow.yaml", "--input", ntuple,
                  "--output", str(out))
    return result.returncode, result.stderr.strip(), out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_input_fails_checksum(checkout: Path) -> None:
    data = checkout / "inputs" / "data" / "uproot-Zmumu.root"
    data.write_bytes(DATA.read_bytes()[:100_000])
    before = _digest(data)
    code, err, out = _select(checkout, "inputs/data/uproot-Zmumu.root")
    assert code == 1
    assert err.count("\n") == 0
    assert "inputs/data/uproot-Zmumu.root: size 100000 bytes differs from 178971" in err
    assert not out.exists() and _digest(data) == before


def test_replaced_input_fails_checksum(checkout: Path) -> None:
    data = checkout / "inputs" / "data" / "uproot-Zmumu.root"
    blob = bytearray(DATA.read_bytes())
    blob[50_000] ^= 0xFF
    data.write_bytes(bytes(blob))
    code, err, out = _select(checkout, "inputs/data/uproot-Zmumu.root")
    assert code == 1 and "sha256" in err and "inputs/datasets.yaml" in err
    assert not out.exists()


def test_corrupt_root_file_is_named(checkout: Path) -> None:
    ntuple = checkout / "results" / "simulate" / "Zmumu.root"
    ntuple.write_bytes(b"this is not a ROOT file" * 100)
    code, err, out = _select(checkout, "results/simulate/Zmumu.root")
    assert code == 1 and err.count("\n") == 0
    assert "results/simulate/Zmumu.root: not a readable ROOT file" in err
    assert not out.exists()


def test_truncated_root_file_is_named(checkout: Path) -> None:
    ntuple = checkout / "results" / "simulate" / "Zmumu.root"
    step(checkout, "simulate", "--config", "inputs/pubflow.yaml", "--output",
         "results/simulate/Zmumu.root", "--events", "5000", check=True)
    ntuple.write_bytes(ntuple.read_bytes()[: ntuple.stat().st_size // 2])
    code, err, out = _select(checkout, "results/simulate/Zmumu.root")
    assert code == 1 and err.count("\n") == 0
    assert "results/simulate/Zmumu.root" in err
    assert not out.exists()


def test_missing_branch_names_branch_and_histogram(checkout: Path, config: dict) -> None:
    config["Regions"][0]["Filter"] += " & (iso1 < 0.1)"
    write_config(checkout, config)
    step(checkout, "simulate", "--config", "inputs/pubflow.yaml", "--output",
         "results/simulate/Zmumu.root", "--events", "100", check=True)
    code, err, out = _select(checkout, "results/simulate/Zmumu.root")
    assert code == 1 and err.count("\n") == 0
    assert "results/simulate/Zmumu.root: tree 'events' has no branch 'iso1'" in err
    assert "Filter of histogram Dimuon_Zmumu" in err
    assert not out.exists()


def test_an_input_the_manifest_does_not_list_stops_select(checkout: Path, config: dict) -> None:
    """A sample path the manifest does not list (here: the data under another name, as a typo
    in the manifest would leave it) is refused, not read unverified; naming its sample in
    Unlisted (a file the workflow makes itself) lets it through."""
    data = next(s for s in config["Samples"] if s.get("Data"))
    copy = checkout / "inputs" / "data" / "copy.root"
    copy.write_bytes(DATA.read_bytes())
    data["SamplePath"] = "inputs/data/copy.root"
    write_config(checkout, config)
    code, err, out = _select(checkout, "inputs/data/copy.root")
    assert code == 1 and err.count("\n") == 0
    assert "error: inputs/data/copy.root: not in the dataset manifest inputs/datasets.yaml" in err
    assert "python -m steps.datasets add FILE" in err and not out.exists()
    config["Unlisted"] = [{"Sample": data["Name"], "Reason": "a copy made for this test"}]
    write_config(checkout, config)
    code, err, out = _select(checkout, "inputs/data/copy.root")
    assert code == 0, err
    assert out.is_file()


# --- the templates resolved once for every select job (steps.templates) ------------------------


def _config_step(work: Path) -> None:
    """The workflow's config and templates steps, as its rules call them."""
    settings = json.dumps(yaml.safe_load((work / "inputs" / "pubflow.yaml").read_text()))
    step(work, "config", "--settings", settings, "--source", "inputs/pubflow.yaml",
         "--output", "results/config.json", check=True)
    step(work, "templates", "--config", "results/config.json", "--output",
         "results/templates.json", check=True)


def test_templates_the_templates_step_saves_are_those_cabinetry_resolves(checkout: Path) -> None:
    _config_step(checkout)
    config = load_analysis(checkout / "results" / "config.json")
    saved = select.load_templates(checkout / "results" / "templates.json",
                                  checkout / "results" / "config.json")
    assert saved == select.templates(config)  # resolved again here, by cabinetry
    assert any(t.candidates is not None for t in saved)  # the data's one candidate per event


def test_select_given_the_templates_fills_the_same_without_importing_cabinetry(
        checkout: Path) -> None:
    _config_step(checkout)
    common = ["--config", "results/config.json", "--input", "inputs/data/uproot-Zmumu.root"]
    step(checkout, "select", *common, "--output", "plain.npz", check=True)
    given = run([sys.executable, "-X", "importtime", "-m", "steps.select", *common,
                 "--templates", "results/templates.json", "--output", "given.npz"], checkout)
    imported = {line.split("|")[-1].strip() for line in given.stderr.splitlines()
                if line.startswith("import time:")}
    assert "uproot" in imported  # the check sees what the job imports
    assert not {m for m in imported if m.split(".")[0] in ("cabinetry", "pyhf")}
    plain, fast = np.load(checkout / "plain.npz"), np.load(checkout / "given.npz")
    assert sorted(plain.files) == sorted(fast.files)
    for key in plain.files:
        assert np.array_equal(plain[key], fast[key]), key


def test_templates_of_another_config_are_refused(checkout: Path) -> None:
    _config_step(checkout)
    config = checkout / "results" / "config.json"
    resolved = json.loads(config.read_text())
    resolved["Regions"][0]["Filter"] += " & (M > 70)"
    config.write_text(json.dumps(resolved))
    out = checkout / "out.npz"
    result = step(checkout, "select", "--config", "results/config.json", "--templates",
                  "results/templates.json", "--input", "inputs/data/uproot-Zmumu.root",
                  "--output", str(out))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        ("python -m steps.select: error: results/templates.json: made from another config "
         "than results/config.json: write them again (python -m steps.templates)")]
    assert not out.exists()


MALFORMED = '{"format": "pubflow-templates/1", "config_sha256": "%s", "templates": [{"name": 1}]}'


@pytest.mark.parametrize("text", ["[]", MALFORMED])
def test_a_malformed_templates_file_is_one_line(checkout: Path, text: str) -> None:
    _config_step(checkout)
    digest = hashlib.sha256((checkout / "results" / "config.json").read_bytes()).hexdigest()
    (checkout / "results" / "templates.json").write_text(text.replace("%s", digest))
    result = step(checkout, "select", "--config", "results/config.json", "--templates",
                  "results/templates.json", "--input", "inputs/data/uproot-Zmumu.root",
                  "--output", "out.npz")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "python -m steps.select: error: results/templates.json: "), lines
    assert not (checkout / "out.npz").exists()
