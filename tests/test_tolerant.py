"""InputPolicy (issue 14): an unreadable input file is skipped where the config says so, and
the skip is recorded, re-normalised (simulation only), published and validated."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uproot
import yaml

from steps import cli, datasets, hepdata, inputs, layout, merge, select, simulate, validate
from steps.config import check_analysis
from steps.errors import PubflowError

from .conftest import REPO, copy_checkout, read_config, run

EDGES = [0.0, 1.0, 2.0, 3.0, 4.0]
#: Entries per file, chosen by hand: simulation loses 200 of 1000 entries (scale 1.25), the
#: data 150 of 500 (fraction 0.7).
SIM = {"sim_0.root": 300, "sim_1.root": 200, "sim_2.root": 500}
DATA = {"data_0.root": 100, "data_1.root": 150, "data_2.root": 250}
WEIGHT = 0.5


def _write_ntuple(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # some entries below the binning and some failing the selection, none on a bin edge;
    # few distinct values: the baskets are compressed (zlib checks what it decompresses)
    branches = {"x": rng.integers(-1, 8, n) * 0.5 + 0.25,
                "ok": rng.integers(0, 2, n).astype(np.int32), "weight": np.full(n, WEIGHT)}
    with uproot.recreate(path) as f:
        f.mktree("events", {k: v.dtype for k, v in branches.items()})
        f["events"].extend(branches)


def _count(path: Path, weighted: bool) -> tuple[np.ndarray, int]:
    """A file's histogram counted with numpy, and its entries, independently of select."""
    a = uproot.open(path)["events"].arrays(library="np")
    keep = a["ok"] == 1
    weights = a["weight"][keep] if weighted else None
    counts, _ = np.histogram(a["x"][keep], bins=EDGES, weights=weights)
    return counts, len(a["x"])


def _analysis(folder: Path, policy: list[dict[str, Any]]) -> dict[str, Any]:
    """A small analysis (data and one simulated sample, three files each) whose files the
    manifest lists, as written by ``steps.datasets add``; returns the resolved config."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate([*SIM, *DATA]):
        _write_ntuple(folder / name, {**SIM, **DATA}[name], seed)
    manifest = folder / "datasets.yaml"
    datasets.add_files(manifest, [str(folder / n) for n in [*SIM, *DATA]],
                       description="a test ntuple")
    config = {
        "General": {"Measurement": "m", "POI": "mu", "InputPath": "{SamplePath}",
                    "HistogramFolder": str(folder / "histograms")},
        "Regions": [{"Name": "SR", "Variable": "x", "Filter": "ok == 1", "Binning": EDGES}],
        "Samples": [
            {"Name": "Data", "Tree": "events", "Data": True,
             "SamplePath": [str(folder / n) for n in DATA]},
            {"Name": "Sim", "Tree": "events", "Weight": "weight",
             "SamplePath": [str(folder / n) for n in SIM]},
        ],
        "NormFactors": [{"Name": "mu", "Samples": "Sim", "Nominal": 1, "Bounds": [0, 5]}],
        "Datasets": str(manifest),
        "InputPolicy": policy,
    }
    check_analysis(config, "the test's config")
    (folder / "config.json").write_text(json.dumps(config))
    return config


SKIP_BOTH = [{"Sample": "Data", "OnUnreadable": "skip"},
             {"Sample": "Sim", "OnUnreadable": "skip"}]


@dataclass
class Ran:
    returncode: int
    stderr: str  # what went to stderr, then the log records as the CLI formats their level


@pytest.fixture
def select_cli(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
               monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, Path, Path], Ran]:
    """``python -m steps.select`` in this process (``steps.cli.run``, as ``__main__`` calls
    it): a new interpreter per call would cost seconds in imports."""
    for hook in ("excepthook", "unraisablehook"):  # cli.run quietens them after an error
        monkeypatch.setattr(sys, hook, getattr(sys, hook))

    def call(config_path: Path, ntuple: Path, out: Path) -> Ran:
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            code = cli.run(select.main, select.build_parser,
                           ["--config", str(config_path), "--input", str(ntuple),
                            "--output", str(out)])
        logged = [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records]
        return Ran(code, "\n".join([capsys.readouterr().err, *logged]))

    return call


def _record(npz: Path) -> dict[str, Any]:
    with np.load(npz) as part:
        assert set(part.files) == {inputs.INPUT_RECORD}, part.files  # no histogram at all
        return json.loads(str(part[inputs.INPUT_RECORD]))


def _errors(stderr: str, prog: str = "select") -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith(f"python -m steps.{prog}: error: ")]


# --- select: skip or fail, and what is never skipped --------------------------------------


def test_skip_a_missing_file_ends_well_with_an_empty_recorded_partial(
        tmp_path: Path, select_cli: Callable[[Path, Path, Path], Ran]) -> None:
    _analysis(tmp_path, SKIP_BOTH)
    (tmp_path / "sim_1.root").unlink()
    out = tmp_path / "out" / "sim_1.npz"
    proc = select_cli(tmp_path / "config.json", tmp_path / "sim_1.root", out)
    assert proc.returncode == 0, proc.stderr
    warnings = [x for x in proc.stderr.splitlines() if " WARNING " in x]
    assert len(warnings) == 1 and str(tmp_path / "sim_1.root") in warnings[0], proc.stderr
    assert "skipped" in warnings[0] and "200 entries in events" in warnings[0]
    assert _record(out) == {"file": str(tmp_path / "sim_1.root"), "entries": {"events": 200},
                            "skipped": "input file not found (listed in "
                                       f"{tmp_path / 'datasets.yaml'})"}


def test_fail_on_a_missing_file_stops_in_one_line_naming_it(
        tmp_path: Path, select_cli: Callable[[Path, Path, Path], Ran]) -> None:
    _analysis(tmp_path, [])  # no InputPolicy: OnUnreadable is fail
    (tmp_path / "sim_1.root").unlink()
    out = tmp_path / "out" / "sim_1.npz"
    proc = select_cli(tmp_path / "config.json", tmp_path / "sim_1.root", out)
    assert proc.returncode == 1
    assert _errors(proc.stderr) == [
        (f"python -m steps.select: error: {tmp_path / 'sim_1.root'}: input file not found "
        f"(listed in {tmp_path / 'datasets.yaml'})")], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_truncated_file(tmp_path: Path, policy: str,
                       select_cli: Callable[[Path, Path, Path], Ran]) -> None:
    """Cut short (an interrupted copy): unreadable, so skipped with skip; one line with fail."""
    _analysis(tmp_path, [{"Sample": "Data", "OnUnreadable": policy}])
    ntuple = tmp_path / "data_2.root"
    size = ntuple.stat().st_size
    ntuple.write_bytes(ntuple.read_bytes()[: size // 2])
    out = tmp_path / "out" / "data_2.npz"
    proc = select_cli(tmp_path / "config.json", ntuple, out)
    why = f"size {size // 2} bytes differs from {size} in {tmp_path / 'datasets.yaml'}"
    if policy == "skip":
        assert proc.returncode == 0, proc.stderr
        record = _record(out)
        assert record["entries"] == {"events": 250} and why in record["skipped"]
    else:
        assert proc.returncode == 1
        [error] = _errors(proc.stderr)
        assert error.startswith(f"python -m steps.select: error: {ntuple}: {why}"), error
        assert not out.exists()


def _damage_first_basket(path: Path) -> None:
    """Overwrite the middle of the first basket of branch x, leaving the file's header, keys
    and TTree metadata intact: it opens, its entries are counted, its data do not decode."""
    branch = uproot.open(path)["events"]["x"]
    seek = int(branch.member("fBasketSeek")[0])
    size = int(branch.member("fBasketBytes")[0])
    blob = bytearray(path.read_bytes())
    middle = seek + size // 2
    blob[middle:middle + 64] = b"\x00" * 64
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("policy", ["skip", "fail"])
def test_corrupt_file_listed_as_it_is(tmp_path: Path, policy: str,
                                      select_cli: Callable[[Path, Path, Path], Ran]) -> None:
    """Damaged before it was listed (size and checksum match): reading its baskets fails."""
    config = _analysis(tmp_path, [{"Sample": "Sim", "OnUnreadable": policy}])
    ntuple = tmp_path / "sim_0.root"
    _damage_first_basket(ntuple)
    datasets.add_files(config["Datasets"], [str(ntuple)])  # the manifest vouches for it
    out = tmp_path / "out" / "sim_0.npz"
    proc = select_cli(tmp_path / "config.json", ntuple, out)
    if policy == "skip":
        assert proc.returncode == 0, proc.stderr
        record = _record(out)
        assert record["entries"] == {"events": 300}
        assert record["skipped"].startswith("reading tree 'events' failed"), record
    else:
        assert proc.returncode == 1
        [error] = _errors(proc.stderr)
        assert error.startswith(f"python -m steps.select: error: {ntuple}: reading tree"), error
        assert not out.exists()


def test_a_file_that_differs_from_the_manifest_fails_even_with_skip(
        tmp_path: Path, select_cli: Callable[[Path, Path, Path], Ran]) -> None:
    """Whole and readable, but not the bytes the manifest vouches for: wrong data."""
    _analysis(tmp_path, SKIP_BOTH)
    ntuple = tmp_path / "sim_2.root"
    blob = bytearray(ntuple.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    ntuple.write_bytes(bytes(blob))
    out = tmp_path / "out" / "sim_2.npz"
    proc = select_cli(tmp_path / "config.json", ntuple, out)
    assert proc.returncode == 1
    [error] = _errors(proc.stderr)
    assert f"{ntuple}: sha256 " in error and "differs from" in error, error
    assert not out.exists()


def test_config_mistakes_are_never_skipped(tmp_path: Path) -> None:
    """A branch or a tree the files do not have fails on every file: it is the config's."""
    config = _analysis(tmp_path, SKIP_BOTH)
    bad = copy.deepcopy(config)
    bad["Regions"][0]["Filter"] = "(ok == 1) & (iso < 0.1)"
    with pytest.raises(PubflowError, match=r"tree 'events' has no branch 'iso'"):
        select.select(bad, str(tmp_path / "sim_0.root"), str(tmp_path / "a.npz"))
    bad = copy.deepcopy(config)
    bad["Samples"][1]["Tree"] = "evnets"
    with pytest.raises(PubflowError, match=r"no tree 'evnets' in the file .*lists events"):
        select.select(bad, str(tmp_path / "sim_0.root"), str(tmp_path / "b.npz"))
    assert not list(tmp_path.glob("*.npz"))


def test_a_file_shared_with_a_sample_that_must_not_lose_it_is_never_skipped(
        tmp_path: Path) -> None:
    config = _analysis(tmp_path, [{"Sample": "Sim", "OnUnreadable": "skip"}])
    config["Samples"][0]["SamplePath"] = config["Samples"][1]["SamplePath"]  # data read too
    todo = [t for t in select.templates(config) if str(tmp_path / "sim_0.root") in t.paths]
    assert {t.name for t in todo} == {"SR_Data", "SR_Sim"}
    assert inputs.file_policy(config, todo) == "fail"
    config["InputPolicy"].append({"Sample": "Data", "OnUnreadable": "skip"})
    assert inputs.file_policy(config, todo) == "skip"


# --- merge: what was skipped, counted independently; simulation re-normalised -------------


def _select_all(config: dict[str, Any], folder: Path) -> dict[str, str]:
    partials = {}
    for job, path in layout.select_jobs(config).items():
        partials[path] = str(folder / f"{job}.npz")
        select.select(config, path, partials[path])
    return partials


def test_merge_states_and_corrects_what_was_skipped(tmp_path: Path) -> None:
    config = _analysis(tmp_path, SKIP_BOTH)
    counted = {name: _count(tmp_path / name, weighted=name in SIM) for name in [*SIM, *DATA]}
    (tmp_path / "sim_1.root").unlink()
    (tmp_path / "data_1.root").write_bytes(b"")  # truncated to nothing
    partials = _select_all(config, tmp_path / "select")
    summary = tmp_path / "histograms.json"
    merge.merge(config, partials, str(tmp_path / "histograms"), str(summary))
    table = json.loads(summary.read_text())

    sim = table["SR_Sim"]
    assert sim["sample"] == "Sim"
    inputs = sim["inputs"]
    assert inputs["entries_expected"] == sum(n for _, n in (counted[f] for f in SIM)) == 1000
    assert inputs["entries_processed"] == 1000 - counted["sim_1.root"][1] == 800
    assert inputs["processed_fraction"] == 0.8
    assert inputs["scale"] == 1.25  # 1000 / 800, by hand
    assert [(s["file"], s["entries"]) for s in inputs["skipped"]] == [
        (str(tmp_path / "sim_1.root"), 200)]
    assert "input file not found" in inputs["skipped"][0]["reason"]
    kept = counted["sim_0.root"][0] + counted["sim_2.root"][0]
    assert sim["yield"] == pytest.approx(1.25 * kept.sum(), rel=1e-12)
    with np.load(tmp_path / "histograms" / "SR_Sim.npz") as hist:
        np.testing.assert_allclose(hist["yields"], 1.25 * kept, rtol=1e-12)
        # every weight is 0.5: the variance of n entries is n/4, scaled by 1.25**2
        np.testing.assert_allclose(hist["stdev"], 1.25 * np.sqrt(kept * WEIGHT), rtol=1e-12)

    data = table["SR_Data"]["inputs"]
    assert (data["entries_expected"], data["entries_processed"]) == (500, 350)
    assert data["processed_fraction"] == 0.7 and data["scale"] == 1.0  # data never scaled
    assert "size 0 bytes differs" in data["skipped"][0]["reason"]
    counts = counted["data_0.root"][0] + counted["data_2.root"][0]
    assert table["SR_Data"]["yield"] == counts.sum()

    samples = merge.sample_inputs(table)
    assert samples["Sim"]["files"] == 3 and samples["Sim"]["processed_fraction"] == 0.8
    assert samples["Data"]["skipped"] == [{"file": str(tmp_path / "data_1.root"),
                                           "reason": data["skipped"][0]["reason"],
                                           "entries": 150}]


def test_merge_logs_every_skipped_file(tmp_path: Path) -> None:
    config = _analysis(tmp_path, SKIP_BOTH)
    (tmp_path / "sim_2.root").unlink()
    partials = _select_all(config, tmp_path / "select")  # named after their select jobs
    run([sys.executable, "-m", "steps.merge", "--config", "config.json", "--partials",
         *sorted(partials.values()), "--summary", "histograms.json", "--log", "merge.log"],
        tmp_path)
    log = (tmp_path / "merge.log").read_text()
    lines = [x for x in log.splitlines() if " WARNING " in x]
    assert len(lines) == 2, log
    assert "Sim: 500 of 1000 entries processed (fraction 0.5), 1 of 3 files skipped" in lines[0]
    assert "histograms scaled by 2" in lines[0]
    assert f"Sim: skipped {tmp_path / 'sim_2.root'} (500 entries): input file not found" \
        in lines[1]
    assert "Data: every input file processed (3, 500 entries)" in log


def test_every_file_of_a_histogram_skipped_fails_the_merge(tmp_path: Path) -> None:
    config = _analysis(tmp_path, SKIP_BOTH)
    for name in SIM:
        (tmp_path / name).unlink()
    partials = _select_all(config, tmp_path / "select")
    with pytest.raises(PubflowError, match=r"histogram SR_Sim: every input file was skipped"):
        merge.merge(config, partials, str(tmp_path / "h"), str(tmp_path / "h.json"))
    assert not (tmp_path / "h").exists() and not (tmp_path / "h.json").exists()


# --- the policy in the config ---------------------------------------------------------------


def test_floor_defaults() -> None:
    config = {"InputPolicy": [{"Sample": "D", "OnUnreadable": "skip"},
                              {"Sample": "S", "OnUnreadable": "skip"},
                              {"Sample": "T", "OnUnreadable": "skip",
                               "MinProcessedFraction": 0.5},
                              {"Sample": "F", "OnUnreadable": "fail"}]}
    assert layout.min_processed_fraction(config, "D", data=True) == 1.0
    assert layout.min_processed_fraction(config, "S", data=False) == 0.95
    assert layout.min_processed_fraction(config, "T", data=False) == 0.5
    assert layout.min_processed_fraction(config, "F", data=False) == 1.0
    assert layout.min_processed_fraction(config, "unlisted", data=False) == 1.0
    assert [layout.on_unreadable(config, s) for s in ("D", "F", "unlisted")] == [
        "skip", "fail", "fail"]


def test_scan_pattern_sets_the_policy_of_every_hypothesis(config: dict) -> None:
    config["InputPolicy"] = [{"Sample": "Resonance_m{mass}", "OnUnreadable": "skip"}]
    check_analysis(config, "inputs/pubflow.yaml")
    assert layout.on_unreadable(config, "Resonance_m70") == "skip"
    assert layout.on_unreadable(config, "Zmumu") == "fail"


@pytest.mark.parametrize(("policy", "message"), [
    ([{"Sample": "Zmumu", "OnUnreadable": "drop"}],
     r"^inputs/pubflow.yaml: InputPolicy\[0\].OnUnreadable: 'drop' is not one of"),
    ([{"Sample": "Zmumu", "MinProcessedFraction": 1.5}],
     r"^inputs/pubflow.yaml: InputPolicy\[0\].MinProcessedFraction: 1.5 is greater than"),
    ([{"Sample": "Zmumu", "OnUnreadable": "skip", "Floor": 0.9}],
     r"^inputs/pubflow.yaml: InputPolicy\[0\].Floor: unknown key"),
    ([{"Sample": "Zmumuu", "OnUnreadable": "skip"}],
     r"^inputs/pubflow.yaml: InputPolicy\[0\].Sample: no sample named 'Zmumuu'"),
    ([{"Sample": "Zmumu"}, {"Sample": "Zmumu", "OnUnreadable": "skip"}],
     r"^inputs/pubflow.yaml: InputPolicy\[1\].Sample: sample 'Zmumu' is given twice"),
])
def test_bad_policy_is_one_line_naming_the_key(config: dict, policy: list, message: str
                                               ) -> None:
    from steps.config import resolve_analysis

    settings = {"Analysis": str(REPO / "inputs" / "analysis.yaml"),
                **{k: v for k, v in config.items() if k not in layout.CABINETRY_KEYS},
                "InputPolicy": policy}
    with pytest.raises(PubflowError, match=message) as err:
        resolve_analysis(settings, "inputs/pubflow.yaml")
    assert "\n" not in str(err.value)


# --- validate: the floor ---------------------------------------------------------------------


def _archive(path: Path, samples: dict[str, Any]) -> Path:
    """A HEPData archive's submission.yaml naming processed_inputs.json, and that file."""
    members = {
        "submission.yaml": yaml.safe_dump({"additional_resources": [
            {"description": "processed", "location": hepdata.PROCESSED_INPUTS}]}).encode(),
        hepdata.PROCESSED_INPUTS: json.dumps({"format": hepdata.PROCESSED_INPUTS_FORMAT,
                                              "samples": samples}).encode(),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _stated(config: dict[str, Any], **fractions: float) -> dict[str, Any]:
    out = {}
    for s in layout.histogram_config(config)["Samples"]:
        f = fractions.get(s["Name"], 1.0)
        skipped = [] if f == 1 else [{"file": "f.root", "reason": "input file not found",
                                      "entries": round(1000 * (1 - f))}]
        out[s["Name"]] = {"data": bool(s.get("Data")), "files": 10, "skipped": skipped,
                          "entries_expected": 1000, "entries_processed": round(1000 * f),
                          "processed_fraction": f, "scale": 1 / f if not s.get("Data") else 1}
    return out


@pytest.mark.parametrize(("policy", "fractions", "failing"), [
    ([], {}, None),
    ([{"Sample": "Zmumu", "OnUnreadable": "skip"}], {"Zmumu": 0.96}, None),
    ([{"Sample": "Zmumu", "OnUnreadable": "skip"}], {"Zmumu": 0.94}, "Zmumu"),  # 0.95
    ([{"Sample": "Zmumu", "OnUnreadable": "skip", "MinProcessedFraction": 0.9}],
     {"Zmumu": 0.9}, None),
    ([{"Sample": "Data", "OnUnreadable": "skip"}], {"Data": 0.999}, "Data"),  # 1.0
    ([{"Sample": "Data", "OnUnreadable": "skip", "MinProcessedFraction": 0.99}],
     {"Data": 0.999}, None),
])
def test_validate_floor(tmp_path: Path, config: dict, policy: list, fractions: dict,
                        failing: str | None) -> None:
    config["InputPolicy"] = policy
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    archive = _archive(tmp_path / "submission.tar.gz", _stated(config, **fractions))
    check = validate.check_processed_inputs(archive, config_path)
    assert check.valid == (failing is None), check.messages
    assert check.details["samples"]["Zmumu"]["processed_fraction"] == fractions.get("Zmumu", 1)
    if failing:
        [message] = check.messages
        assert message.startswith(f"sample {failing}: "), message
        assert "below its MinProcessedFraction" in message and "f.root" in message
        with pytest.raises(PubflowError) as err:
            validate.write_report([check], tmp_path / "report.json")
        assert str(err.value).startswith(f"{archive}: sample {failing}: ")
        assert "\n" not in str(err.value) and not (tmp_path / "report.json").exists()
    else:
        assert "Zmumu" in check.summary


def test_a_record_that_states_no_fraction_fails_validation(tmp_path: Path, config: dict
                                                           ) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    stated = _stated(config)
    del stated["Continuum"]
    check = validate.check_processed_inputs(_archive(tmp_path / "a.tar.gz", stated),
                                            config_path)
    assert check.messages == [("processed_inputs.json: no processed fraction of sample "
                              "'Continuum'")]


# --- the HEPData record -----------------------------------------------------------------------


def test_record_states_the_fractions_and_that_data_are_not_scaled(tmp_path: Path) -> None:
    from .test_hepdata import build, column, make_inputs, table

    inputs = make_inputs(tmp_path / "inputs")
    histograms = json.loads(inputs["histograms"].read_text())
    lost = {"file": "data_7.root", "reason": "input file not found", "entries": 200}
    histograms["Dimuon_Data"]["inputs"].update(
        entries={"data.root": 2104, "data_7.root": 200}, skipped=[lost], entries_expected=2304,
        entries_processed=2104, processed_fraction=2104 / 2304)
    inputs["histograms"].write_text(json.dumps(histograms))
    build(inputs, tmp_path / "hepdata")
    built = tmp_path / "hepdata"
    yields = table(built, "Event yields")["doc"]["description"]
    assert ("Processed fraction of the input entries (as the dataset manifest counts them) "
            "per sample: Data 0.9132, Zmumu 1, Continuum 1.") in yields
    assert ("Data: 2104 of 2304 entries processed, 1 of 2 files skipped as unreadable "
            "(processed_inputs.json lists them); the data are not scaled, and are short by "
            "8.68%.") in yields
    spectrum = table(built, "Dimuon mass spectrum")["data"]
    qualifiers = {v["header"]["name"]: {q["name"]: q["value"] for q in v["qualifiers"]}
                  for v in spectrum["dependent_variables"]}
    assert qualifiers["Data"][hepdata.PROCESSED_QUALIFIER] == "0.9132"
    assert hepdata.PROCESSED_QUALIFIER not in qualifiers["Post-fit Zmumu"]
    assert column(spectrum, "Data")  # the data column is still there, unscaled
    with tarfile.open(built / "submission.tar.gz") as tar:
        resource = json.load(tar.extractfile(hepdata.PROCESSED_INPUTS))
    assert resource["samples"]["Data"]["skipped"] == [lost]
    assert resource["samples"]["Data"]["scale"] == 1.0


# --- the acceptance test: ten files over XRootD, one unreadable --------------------


FILES = 10
EVENTS = 4000  # 400 per file


def _remote_analysis(work: Path, export: Path, url: Any, monkeypatch: pytest.MonkeyPatch
                     ) -> list[str]:
    """The bundled analysis without its scan, its Z sample in ten files on the server (listed
    in the manifest, not simulated by the run); returns their URLs."""
    config = read_config(work)
    del config["Scan"], config["Simulation"]["Scan"]
    zmumu = next(s for s in config["Samples"] if s["Name"] == "Zmumu")
    local = [f"results/simulate/Zmumu_{i}.root" for i in range(FILES)]
    zmumu["SamplePath"] = local
    for sim in config["Simulation"]["Samples"]:
        sim["Events"] = EVENTS if sim["Name"] == "Zmumu" else 2000
    with monkeypatch.context() as m:
        m.chdir(work)  # the paths are the config's, relative to the workspace
        for path in local:  # the workflow's own generator: weights for all ten files
            simulate.simulate(config, path)
        datasets.add_files("inputs/datasets.yaml", local, description="simulated Z")
    urls = []
    manifest = yaml.safe_load((work / "inputs/datasets.yaml").read_text())
    for entry in manifest["files"]:
        if entry["path"] in local:
            name = Path(entry["path"]).name
            shutil.move(work / entry["path"], export / name)
            os.chmod(export / name, 0o644)
            entry["path"] = url(name)
            entry["provenance"] = {"source": "tests/test_tolerant.py", "license": "CC0-1.0"}
            urls.append(entry["path"])
    (work / "inputs/datasets.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    zmumu["SamplePath"] = urls
    config["Simulation"]["Samples"] = [s for s in config["Simulation"]["Samples"]
                                       if s["Name"] != "Zmumu"]
    config["InputPolicy"] = [{"Sample": "Zmumu", "OnUnreadable": "skip",
                              "MinProcessedFraction": 0.9}]
    cabinetry = {k: v for k, v in config.items() if k in layout.CABINETRY_KEYS}
    (work / "inputs/analysis.yaml").write_text(yaml.safe_dump(cabinetry, sort_keys=False))
    own = yaml.safe_load((work / "inputs/pubflow.yaml").read_text())
    own.update({k: v for k, v in config.items() if k not in layout.CABINETRY_KEYS})
    del own["Scan"]
    (work / "inputs/pubflow.yaml").write_text(yaml.safe_dump(own, sort_keys=False))
    return urls


def _steps(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
           ) -> Callable[..., tuple[int, str]]:
    """Run ``python -m steps.<name> ARGS`` in this process, in the current directory, as the
    workflow's rules call it (``steps.cli.run``); returns the exit code and stderr."""
    import importlib

    for hook in ("excepthook", "unraisablehook"):  # cli.run quietens them after an error
        monkeypatch.setattr(sys, hook, getattr(sys, hook))

    def call(name: str, *args: str) -> tuple[int, str]:
        module = importlib.import_module(f"steps.{name}")
        capsys.readouterr()
        code = cli.run(module.main, module.build_parser, list(args))
        return code, capsys.readouterr().err

    return call


def _chain(step: Callable[..., tuple[int, str]], config: dict[str, Any]) -> None:
    """simulate, select (one call per file), merge, model, fit, hepdata and validate, with
    the arguments their rules give them (workflows/rules/*.smk), in the workspace."""
    conf = "results/config.json"
    jobs = layout.select_jobs(config)
    for path in layout.simulated_samples(config):
        assert step("simulate", "--config", conf, "--output", path)[0] == 0
    for job, path in jobs.items():
        code, err = step("select", "--config", conf, "--input", path,
                         "--output", f"results/select/{job}.npz")
        assert code == 0, err
    histograms = config["General"]["HistogramFolder"].rstrip("/")
    calls = [
        ("merge", "--config", conf, "--partials", *(f"results/select/{j}.npz" for j in jobs),
         "--output", histograms, "--summary", "results/histograms.json"),
        ("model", "--config", conf, "--workspace", "results/model/workspace.json"),
        ("fit", "mle", "--config", conf, "--workspace", "results/model/workspace.json",
         "--output", "results/fit/results.json", "--figures", "results/fit/figures"),
        ("hepdata", "--config", conf, "--histograms", "results/histograms.json",
         "--fit", "results/fit/results.json", "--workspace", "results/model/workspace.json",
         "--figures", "results/fit/figures", "--output", "results/hepdata"),
        ("validate", "--config", conf, "--datasets", config["Datasets"],
         "--workspace", "results/model/workspace.json",
         "--submission", "results/hepdata/submission.tar.gz",
         "--outputs", "results/fit/results.json", "--report", "results/validation/report.json"),
    ]
    for call in calls:
        code, err = step(*call)
        assert code == 0, f"{call[0]}: {err}"


def test_ten_remote_files_one_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    from steps.config import load_analysis
    from steps.io import write_json

    from .test_xrootd import serving

    step = _steps(monkeypatch, capsys)
    with serving() as xrootd:
        work = copy_checkout(tmp_path / "w")
        urls = _remote_analysis(work, xrootd.export, xrootd.url, monkeypatch)
        bad = urls[5]
        # each file's entries, counted on the server's disk, not taken from the manifest
        entries = [uproot.open(xrootd.export / Path(u).name)["events"].num_entries
                   for u in urls]
        os.chmod(xrootd.export / Path(bad).name, 0o000)  # the server may no longer read it
        monkeypatch.chdir(work)
        # what the workflow's first rule (config) writes, and every step reads
        config = load_analysis("inputs/pubflow.yaml")
        write_json("results/config.json", config)

        # OnUnreadable: fail (as before the config said skip): select stops naming the file
        strict = copy.deepcopy(config)
        del strict["InputPolicy"]
        write_json("strict.json", strict)
        code, err = step("select", "--config", "strict.json", "--input", bad,
                         "--output", "results/select/Zmumu_5.npz")
        assert code == 1
        assert err.startswith(f"python -m steps.select: error: {bad}: cannot read remote file")
        assert err.count("\n") == 1 and not Path("results/select/Zmumu_5.npz").exists()

        # OnUnreadable: skip: the chain goes to the end, and says what is missing
        with caplog.at_level(logging.WARNING, logger="steps.merge"):
            _chain(step, config)

    fraction = sum(entries[:5] + entries[6:]) / sum(entries)
    assert entries == [EVENTS // FILES] * FILES and fraction == 0.9
    summary = json.loads(Path("results/histograms.json").read_text())
    inputs = summary["Dimuon_Zmumu"]["inputs"]
    assert (inputs["entries_expected"], inputs["entries_processed"]) == (4000, 3600)
    assert inputs["processed_fraction"] == fraction
    assert [s["file"] for s in inputs["skipped"]] == [bad]
    assert inputs["skipped"][0]["reason"].startswith("cannot read remote file")
    assert inputs["scale"] == pytest.approx(10 / 9, rel=1e-12)
    assert summary["Dimuon_Data"]["inputs"]["processed_fraction"] == 1.0
    assert f"Zmumu: skipped {bad} (400 entries)" in caplog.text

    with tarfile.open("results/hepdata/submission.tar.gz") as tar:
        resource = json.load(tar.extractfile(hepdata.PROCESSED_INPUTS))
        docs = list(yaml.safe_load_all(tar.extractfile("submission.yaml")))
    assert resource["samples"]["Zmumu"]["processed_fraction"] == fraction
    assert resource["samples"]["Zmumu"]["skipped"][0]["file"] == bad
    yields = " ".join(next(d for d in docs if d and d.get("name") == "Event yields")
                      ["description"].split())
    assert "per sample: Data 1, Zmumu 0.9, Continuum 1." in yields
    assert "Zmumu: 3600 of 4000 entries processed, 1 of 10 files skipped" in yields

    report = json.loads(Path("results/validation/report.json").read_text())
    assert report["valid"] is True
    [stated] = [c for c in report["checks"] if "details" in c]
    assert stated["details"]["samples"]["Zmumu"]["processed_fraction"] == fraction
    assert "Zmumu 0.9 (floor 0.9, 1 file(s) skipped)" in stated["summary"]

    # without the floor the config set, the default for simulation (0.95) refuses the record
    lenient = copy.deepcopy(config)
    del lenient["InputPolicy"][0]["MinProcessedFraction"]
    write_json("default-floor.json", lenient)
    code, err = step("validate", "--config", "default-floor.json",
                     "--datasets", config["Datasets"],
                     "--workspace", "results/model/workspace.json",
                     "--submission", "results/hepdata/submission.tar.gz",
                     "--report", "default-floor/report.json")
    assert code == 1
    assert _errors(err, "validate") == [
        ("python -m steps.validate: error: results/hepdata/submission.tar.gz: sample Zmumu: "
         "3600 of 4000 entries processed (fraction 0.9), below its MinProcessedFraction 0.95 "
         f"(InputPolicy); 1 file(s) skipped as unreadable, the first {bad}: "
         f"{inputs['skipped'][0]['reason']}")], err
