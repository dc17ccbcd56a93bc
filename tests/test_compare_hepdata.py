"""steps.compare against HEPData as HEPData's server code answers (tests/fake_services.py):
versions, unversioned links naming www.hepdata.net, HTML error pages, a real submission."""

from __future__ import annotations

import copy
import math
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps import compare
from steps.errors import PubflowError

from .fake_services import load_submission, serve_record, serving

ATLAS = Path(__file__).parent / "data" / "hepdata" / "ins1203852"


def table(value: float) -> dict[str, Any]:
    return {"independent_variables": [{"header": {"name": "M"}, "values": [{"value": 70}]}],
            "dependent_variables": [{"header": {"name": "Observed"},
                                     "values": [{"value": value}]}]}


V1 = {"Limits": table(2.5)}
V2 = {"Limits": table(3.5)}  # version 2 revised the limit


@pytest.mark.parametrize(("identifier", "version"), [
    ("ins1234567", 1), ("10.17182/hepdata.4321.v1", None), ("4321", 1)])
def test_the_version_asked_for_is_the_version_compared(identifier: str,
                                                       version: int | None) -> None:
    with serve_record(V1, V2, inspire_id=1234567, recid=4321) as server:
        record = compare.fetch_record(identifier, server.url, version)
    assert record.version == 1
    assert record.tables["Limits"]["dependent_variables"][0]["values"][0]["value"] == 2.5
    assert record.metadata["hepdata_doi"] == "10.17182/hepdata.4321.v1"
    assert record.metadata["version_count"] == 2
    assert all("/1/yaml" in url for url in record.table_urls.values())


def test_without_a_version_the_latest_is_compared() -> None:
    with serve_record(V1, V2, inspire_id=1234567, recid=4321) as server:
        record = compare.fetch_record("ins1234567", server.url)
    assert record.version == 2
    assert record.tables["Limits"]["dependent_variables"][0]["values"][0]["value"] == 3.5
    assert record.metadata["version_asked"] == "latest"


def test_a_version_the_record_does_not_have_is_refused() -> None:
    with serve_record(V1, V2, inspire_id=1234567, recid=4321) as server, \
            pytest.raises(PubflowError, match="HTTP 404"):
        compare.fetch_record("ins1234567", server.url, 3)


def test_links_naming_another_site_are_not_followed() -> None:
    """The record JSON's links name the site HEPData is configured with; the tables are read
    from the mirror that was asked, not from there."""
    elsewhere: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elsewhere.append(self.path)
            body = yaml.safe_dump(table(99.0)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with serving(Elsewhere) as other, \
            serve_record(V1, V2, inspire_id=1234567, recid=4321, site_url=other) as mirror:
        record = compare.fetch_record("ins1234567", mirror.url, 1)
        assert any(p.startswith("/download/table/") for p in mirror.requests)
    assert elsewhere == []
    assert record.tables["Limits"]["dependent_variables"][0]["values"][0]["value"] == 2.5


def test_an_html_page_for_a_table_is_a_clear_error() -> None:
    """HEPData answers an unknown table with an HTML page and status 200."""

    class Html(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/record/"):
                body = (b'{"version": 1, "version_count": 1, "status": "finished", '
                        b'"record": {"inspire_id": "1"}, "data_tables": [{"name": "Gone"}]}')
                kind = "application/json"
            else:
                body = b"<!DOCTYPE html><html><body><p>No data submission found</p></body></html>"
                kind = "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with serving(Html) as url, pytest.raises(PubflowError) as err:
        compare.fetch_record("ins1", url)
    message = str(err.value)
    assert "HTML page, not table 'Gone' of version 1" in message
    assert "No data submission found" in message and "\n" not in message


def test_a_record_being_processed_is_a_clear_error() -> None:
    with serve_record(V1, inspire_id=1234567, recid=4321, processing=True) as server, \
            pytest.raises(PubflowError, match="HTML page, not the record's JSON"):
        compare.fetch_record("ins1234567", server.url)


def test_the_fake_answers_an_unknown_table_with_html() -> None:
    """The fake itself: an unknown table is HEPData's display_error page, status 200."""
    import requests

    with serve_record(V1, inspire_id=1234567, recid=4321) as server:
        answer = requests.get(f"{server.url}/download/table/ins1234567/Nope/1/yaml", timeout=10)
        by_query = requests.get(f"{server.url}/record/ins1234567?format=yaml&table=Limits"
                                "&version=1", timeout=10)
    assert answer.status_code == 200 and "html" in answer.headers["Content-Type"]
    assert by_query.url.endswith("/download/table/ins1234567/Limits/1/yaml")
    assert yaml.safe_load(by_query.text) == V1["Limits"]


def test_a_real_submission_round_trips_byte_for_byte() -> None:
    files = load_submission(ATLAS)
    with serve_record(files, inspire_id=1203852, recid=62233) as server:
        record = compare.fetch_record("ins1203852", server.url)
    assert list(record.tables) == [f"Table {n}" for n in range(1, 9)]
    assert record.tables["Table 2"] == yaml.safe_load((ATLAS / "Table2.yaml").read_text())


def test_a_slash_in_a_header_does_not_split_a_name() -> None:
    tables = {name: yaml.safe_load(text) for name, text in load_submission(ATLAS).items()}
    snap = compare.hepdata_snapshot(tables)
    header = "10**6 * 1%2FSIG(fiducial) * D(SIG(fiducial))%2FDPT"
    assert f"hepdata/Table 3/{header}/0-60" in snap  # Table3.yaml: low 0.0, high 60.0
    assert all(len(name.split("/")) in (4, 5) for name in snap)  # table/column/row[/error]
    # three columns named SIG(fiducial) in Table 1: numbered, not merged
    assert {"hepdata/Table 1/SIG(fiducial)/7000", "hepdata/Table 1/SIG(fiducial)/7000 #2",
            "hepdata/Table 1/SIG(fiducial)/7000 #3"} <= set(snap)


def test_a_nan_is_judged_failed_and_named() -> None:
    tolerances = compare.Tolerances((compare.Rule("*", "relative", 1e-3),))
    reference = compare.hepdata_snapshot(V1)
    changed = copy.deepcopy(V1)
    changed["Limits"]["dependent_variables"][0]["values"][0]["value"] = float("nan")
    (result,) = compare.compare(reference, compare.hepdata_snapshot(changed), tolerances)
    assert result.status == "failed" and math.isnan(result.new)  # type: ignore[arg-type]
    assert "new value is NaN" in result.note
    (same,) = compare.compare(compare.hepdata_snapshot(changed),
                              compare.hepdata_snapshot(changed), tolerances)
    assert same.status == "identical"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("key", ["tolerance", "floor"])
def test_a_tolerance_must_be_finite(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "tolerances.yaml"
    path.write_text("version: 1\nrules:\n  - match: '*'\n    mode: relative\n"
                    f"    {key}: {value}\n")
    with pytest.raises(PubflowError, match=rf"tolerances\.yaml: rules\[0\]\.{key}: .*finite"):
        compare.load_tolerances(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_tolerance_schema_itself_refuses_non_finite(value: float, tmp_path: Path) -> None:
    """Without load_tolerances' own check: the schema refuses them too."""
    from steps.config import validate

    spec = {"version": 1, "rules": [{"match": "*", "mode": "absolute", "tolerance": value}]}
    with pytest.raises(PubflowError, match=r"rules\[0\]\.tolerance"):
        validate(spec, "tolerances", tmp_path / "t.yaml")
    validate({**spec, "rules": [{**spec["rules"][0], "tolerance": 0.5}]}, "tolerances",
             tmp_path / "t.yaml")
