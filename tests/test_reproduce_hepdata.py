"""python -m steps.reproduce --results DIR --hepdata ...: the whole command against a HEPData
record served as HEPData's code serves it (tests/fake_services.py), on small outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .fake_services import load_submission, serve_record
from .test_reproduce import reproduce_cli

ATLAS = Path(__file__).parent / "data" / "hepdata" / "ins1203852"


def limits(observed: Any) -> dict[str, Any]:
    return {"independent_variables": [{"header": {"name": "Mass", "units": "GeV"},
                                       "values": [{"value": 70}, {"value": 105}]}],
            "dependent_variables": [{"header": {"name": "Observed upper limit on mu / pb"},
                                     "values": [{"value": observed}, {"value": 1.25}]}]}


def outputs(folder: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """A workspace whose results/ hold only the HEPData submission a run would send."""
    submission = folder / "results" / "hepdata" / "submission"
    submission.mkdir(parents=True)
    docs: list[dict[str, Any]] = [{"comment": "a test"}]
    for i, (name, content) in enumerate(tables.items()):
        (submission / f"table{i}.yaml").write_text(yaml.safe_dump(content))
        docs.append({"name": name, "description": name, "data_file": f"table{i}.yaml"})
    (submission / "submission.yaml").write_text(yaml.safe_dump_all(docs))
    return folder


def report(folder: Path) -> tuple[dict[str, Any], str]:
    return (json.loads((folder / "report.json").read_text()),
            (folder / "report.md").read_text())


def test_a_record_of_another_analysis_is_said_to_be_one(tmp_path: Path) -> None:
    ours = outputs(tmp_path / "ws", {"Upper limits": limits(2.5)})
    with serve_record(load_submission(ATLAS), inspire_id=1203852, recid=62233) as server:
        result = reproduce_cli("--results", ours, "--hepdata", "ins1203852",
                               "--hepdata-url", server.url, "--output", tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    body, page = report(tmp_path / "out")
    assert body["verdict"].startswith("FAILED: the HEPData record's tables do not match this "
                                      "analysis")
    assert "'Table 1'" in body["verdict"] and "'Upper limits'" in body["verdict"]
    assert body["verdict"] in page
    assert body["reference"]["metadata"]["version"] == 1
    assert "do not match this analysis" in result.stderr.strip().splitlines()[-1]


def test_the_version_asked_for_is_compared_and_named(tmp_path: Path) -> None:
    v1, v2 = {"Upper limits": limits(2.5)}, {"Upper limits": limits(3.5)}
    ours = outputs(tmp_path / "ws", v1)  # this run reproduces version 1
    with serve_record(v1, v2, inspire_id=1234567, recid=4321) as server:
        first = reproduce_cli("--results", ours, "--hepdata", "ins1234567",
                              "--hepdata-version", "1", "--hepdata-url", server.url,
                              "--output", tmp_path / "v1")
        by_doi = reproduce_cli("--results", ours, "--hepdata", "10.17182/hepdata.4321.v1",
                               "--hepdata-url", server.url, "--output", tmp_path / "doi")
        latest = reproduce_cli("--results", ours, "--hepdata", "ins1234567",
                               "--hepdata-url", server.url, "--output", tmp_path / "latest")
    assert first.returncode == 0, first.stderr
    assert by_doi.returncode == 0, by_doi.stderr
    body, page = report(tmp_path / "v1")
    assert body["reference"]["metadata"]["version"] == 1
    assert body["reference"]["metadata"]["hepdata_doi"] == "10.17182/hepdata.4321.v1"
    assert "compared with version 1 of the record (of 2), as asked (1)" in page
    assert latest.returncode == 1
    body, page = report(tmp_path / "latest")
    assert body["reference"]["metadata"]["version"] == 2
    assert "compared with version 2 of the record (of 2), the latest" in page
    # the header's '/' stays inside the column's name
    assert body["moved"] == ["hepdata/Upper limits/Observed upper limit on mu %2F pb/70"]


def test_a_nan_leaves_a_report_that_names_it(tmp_path: Path) -> None:
    published = {"Upper limits": limits(2.5)}
    ours = outputs(tmp_path / "ws", {"Upper limits": limits(float("nan"))})
    with serve_record(published, inspire_id=1234567, recid=4321) as server:
        result = reproduce_cli("--results", ours, "--hepdata", "ins1234567",
                               "--hepdata-url", server.url, "--output", tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    body, page = report(tmp_path / "out")
    name = "hepdata/Upper limits/Observed upper limit on mu %2F pb/70"
    assert body["moved"] == [name]
    (quantity,) = [q for q in body["quantities"] if q["name"] == name]
    assert quantity["new"] == "NaN" and quantity["reference"] == 2.5
    assert quantity["difference"] == "NaN" and quantity["status"] == "failed"
    assert f"`{name}`" in page and "NaN" in page.split("## What moved")[1]
