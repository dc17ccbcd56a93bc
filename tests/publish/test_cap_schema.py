"""CAP deposits in the shape of CAP's real ``cms-analysis`` schema, and a fake that checks it.

The schema is CAP's own (``tests/data/cap/schemas``, see ``tests/data/cap/SOURCE.md``). What
the server answers is read in its code (cernanalysispreservation/analysispreservation.cern.ch
and its forks of invenio-deposit and invenio-records-rest): a create is refused with 400 and
``"Validation error: <message>."``, a PUT or PATCH with 422 and one ``{"field", "message"}``
per error, a publication with 422 when a required field is missing (drafts skip
``required``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from steps.publish.links import Links
from steps.publish.metadata import cap_metadata

from .conftest import CADI_ID, CAP_TOKEN, ENV, REPO, net, write_report
from .test_flows import bundle_md5s

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
SCHEMAS = DATA / "schemas"
BASE = "https://analysispreservation.cern.ch/schemas/"
LINKS = ("--zenodo-doi", "10.5072/zenodo.1234",
         "--hepdata-url", "https://www.hepdata.net/record/sandbox/1700000000",
         "--reana-url", "https://reana.cern.ch/details/0000",
         "--code-url", "https://github.com/pubflow/pubflow")


def _fixtures() -> dict[str, dict[str, Any]]:
    return {(f := json.loads(p.read_text()))["name"]: f for p in sorted(SCHEMAS.glob("*.json"))}


def _strict_validator() -> Draft7Validator:
    """CAP's cms-analysis schema as a publication checks it (Draft 7, ``required`` on),
    built here from the stored files, independently of the fake."""
    # without "$schema": CAP's validator classes are Draft 7 whatever a schema declares
    # (jsonschema 4 would switch to the declared draft-04 behind a $ref)
    resources = [(f"{BASE}deposits/records/{f['name']}-v{f['version']}.json",
                  Resource(contents={k: v for k, v in f["deposit_schema"].items()
                                     if k != "$schema"}, specification=DRAFT7))
                 for f in _fixtures().values()]
    return Draft7Validator({"$ref": f"{BASE}deposits/records/cms-analysis-v0.0.1.json"},
                           registry=Registry().with_resources(resources))


def _api(cap: Any, method: str, path: str, **kw: Any) -> requests.Response:
    url = path if path.startswith("http") else f"{cap.url}/api/{path}"
    headers = {"Authorization": f"Bearer {CAP_TOKEN}", **kw.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=5, **kw)


def _patch(cap: Any, pid: str, ops: list[dict[str, Any]]) -> requests.Response:
    return _api(cap, "PATCH", f"deposits/{pid}", data=json.dumps(ops),
                headers={"Content-Type": "application/json-patch+json"})


def _config(repo: Path) -> Path:
    return repo / "results" / "config.json"


def _set_publication(repo: Path, **keys: str | None) -> None:
    """Change the config's Publication block, then vouch for it as the workflow would."""
    config = json.loads(_config(repo).read_text())
    for key, value in keys.items():
        if value is None:
            config["Publication"].pop(key, None)
        else:
            config["Publication"][key] = value
    _config(repo).write_text(json.dumps(config))
    write_report(repo)


def _sent_metadata(repo: Path) -> dict[str, Any]:
    return json.loads((repo / "results/publish/cap/bundle/metadata.json").read_text())


# -- (a) what pubflow sent before is refused, what it sends now is accepted ----------------


def test_the_fake_refuses_what_pubflow_sent_before(cap):
    before = json.loads((DATA / "sent-before.json").read_text())
    r = _api(cap, "POST", "deposits/", json=before["POST /api/deposits/"])
    assert r.status_code == 400 and not cap.deposits
    assert re.fullmatch(r"Validation error: \{'url': .*\} is not of type 'string'\.",
                        r.json()["message"])
    draft = _api(cap, "POST", "deposits/", json={"$ana_type": "cms-analysis"})
    assert draft.status_code == 201  # an empty draft is fine: drafts skip "required"
    r = _patch(cap, draft.json()["id"], before["PATCH /api/deposits/<pid>"])
    assert r.status_code == 422
    assert r.json()["message"] == "Validation error. Try again with valid data"
    assert [e["field"] for e in r.json()["errors"]] == [
        ["additional_resources", "documentations", i] for i in range(4)]
    assert cap.deposits[draft.json()["id"]].metadata == {}  # nothing stored


def test_the_fake_accepts_what_pubflow_sends_now(repo, cap, publish):
    run = publish("cap", "--upload", "--publish", "--base-url", cap.url, *LINKS, *net(),
                  env=ENV)
    assert run.rc == 0, run.out
    [dep] = cap.deposits.values()
    assert dep.status == "published" and dep.publishes == 1
    assert dep.metadata["basic_info"]["cadi_id"] == CADI_ID
    assert dep.metadata["additional_resources"]["documentations"] == [
        "https://doi.org/10.5072/zenodo.1234", "https://www.hepdata.net/record/sandbox/1700000000",
        "https://reana.cern.ch/details/0000", "https://github.com/pubflow/pubflow"]


def test_publication_needs_the_cadi_id_drafts_do_not(cap):
    dep = _api(cap, "POST", "deposits/", json={"$ana_type": "cms-analysis",
                                               "basic_info": {"abstract": "a"}}).json()
    r = _api(cap, "POST", dep["links"]["publish"])
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": ["basic_info", "cadi_id"],
                                   "message": "'cadi_id' is a required property"}]
    ops = [{"op": "add", "path": "/basic_info/cadi_id", "value": "SMP-10-002"}]
    assert _patch(cap, dep["id"], ops).status_code == 200
    assert _api(cap, "POST", dep["links"]["publish"]).status_code == 202


def test_put_is_validated_and_keeps_the_title(cap):
    dep = _api(cap, "POST", "deposits/", json={"$ana_type": "cms-analysis",
                                               "general_title": "kept"}).json()
    bad = {"basic_info": {"cadi_id": "smp-10-002"}, "general_title": "ignored by a PUT"}
    r = _api(cap, "PUT", f"deposits/{dep['id']}", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == ["basic_info", "cadi_id"]
    good = {"basic_info": {"cadi_id": "SMP-10-002", "ana_notes": []}, "general_title": "new"}
    r = _api(cap, "PUT", f"deposits/{dep['id']}", json=good)
    assert r.status_code == 200
    # CAP's loader drops empty values; a PUT never changes the title (PRESERVE_FIELDS)
    assert cap.deposits[dep["id"]].metadata == {"general_title": "kept",
                                                "basic_info": {"cadi_id": "SMP-10-002"}}
    assert _api(cap, "POST", dep["links"]["publish"]).status_code == 202
    assert _api(cap, "PUT", f"deposits/{dep['id']}", json=good).status_code == 403


def test_a_cadi_id_held_by_another_deposit_is_refused(cap):
    cap.add_foreign_deposit({"basic_info": {"cadi_id": "SMP-10-002"}})
    body = {"$ana_type": "cms-analysis", "basic_info": {"cadi_id": "SMP-10-002"}}
    r = _api(cap, "POST", "deposits/", json=body)
    assert r.status_code == 400
    assert r.json()["message"] == ("Validation error: This ID is already attached to another "
                                   "record.")
    mine = _api(cap, "POST", "deposits/", json={**body, "basic_info": {
        "cadi_id": "SMP-10-003"}}).json()
    ops = [{"op": "add", "path": "/basic_info/abstract", "value": "a"}]
    assert _patch(cap, mine["id"], ops).status_code == 200  # its own id does not count


# -- (b) the stored schema, and pubflow's metadata against it (not through the fake) ---------


def test_the_stored_schemas_are_valid_and_complete():
    fixtures = _fixtures()
    urls = {f"{BASE}deposits/records/{f['name']}-v{f['version']}.json" for f in fixtures.values()}
    assert "cms-analysis" in fixtures
    for fixture in fixtures.values():
        schema = fixture["deposit_schema"]
        validator_for(schema, default=Draft7Validator).check_schema(schema)
        Draft7Validator.check_schema(schema)  # CAP's validators are Draft 7 ones
        refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(schema))
        assert set(refs) <= urls, fixture["name"]


def test_pubflow_metadata_validates_against_the_real_schema(repo, publish):
    strict = _strict_validator()
    before = json.loads((DATA / "sent-before.json").read_text())["POST /api/deposits/"]
    before.pop("$ana_type")
    problems = {(tuple(e.absolute_path), e.validator) for e in strict.iter_errors(before)}
    assert (("basic_info",), "required") in problems  # the check can fail
    assert (("additional_resources", "documentations", 0), "type") in problems
    assert publish("cap", *LINKS).rc == 0  # a dry run writes the metadata it would send
    assert list(strict.iter_errors(_sent_metadata(repo))) == []
    config = json.loads(_config(repo).read_text())
    publication = {**config["Publication"], "InspireId": "ins1234567"}
    meta = cap_metadata(publication, links=Links(hepdata="https://www.hepdata.net/record/1",
                                                 zenodo_doi="10.5281/zenodo.1",
                                                 zenodo_doi_registered=True))
    assert meta["additional_resources"]["publications"]
    assert list(strict.iter_errors(meta)) == []


# -- (c) a schema refusal of one PATCH, then a fixed re-run ---------------------------------


@pytest.mark.parametrize("mistake", ["metadata-file", "cadi-id-of-another-record"])
def test_a_refused_patch_then_a_fixed_rerun(mistake, repo, cap, publish, tmp_path):
    args = ("cap", "--upload", "--base-url", cap.url, *net())
    assert publish(*args, env=ENV).rc == 0  # a draft with its files
    extra = tmp_path / "cap-extra.yaml"
    if mistake == "metadata-file":
        extra.write_text("basic_info:\n  analysis_keywords:\n"
                         "    accelerator_parameters: ['7TeV']\n")
        field = "basic_info.analysis_keywords.accelerator_parameters.0"
    else:
        cap.add_foreign_deposit({"basic_info": {"cadi_id": "SMP-10-002"}})
        extra.write_text("{}\n")
        _set_publication(repo, CadiId="SMP-10-002")
        field = "basic_info.cadi_id: This ID is already attached to another record"
    sent = len(cap.log)
    run = publish(*args, "--publish", "--metadata", str(extra), env=ENV)
    assert run.rc == 1 and len(run.out.strip().splitlines()) == 1, run.out
    assert "PATCH" in run.out and "422" in run.out and field in run.out
    assert "schema refuses the deposit metadata" in run.out
    assert cap.log[-1][0] == "PATCH"  # the refused request was the metadata's, no creation
    assert [m for m, _ in cap.log[sent:]].count("POST") == 0
    if mistake == "metadata-file":
        extra.write_text("basic_info:\n  analysis_keywords:\n"
                         "    accelerator_parameters: ['7 TeV']\n")
    else:
        _set_publication(repo, CadiId=CADI_ID)
    run = publish(*args, "--publish", "--metadata", str(extra), env=ENV)
    assert run.rc == 0, run.out
    [dep] = [d for d in cap.deposits.values() if d.owner == "physicist@example.org"]
    assert dep.status == "published" and dep.publishes == 1
    assert {k: hashlib.md5(v, usedforsecurity=False).hexdigest()
            for k, v in dep.files.items()} == bundle_md5s(repo, "cap")
    assert set(dep.files) == {"pubflow-workflow.tar.gz", "reana.yaml"}
    assert dep.metadata["basic_info"]["cadi_id"] == CADI_ID


# -- (d) no CADI id: no upload, a visible placeholder in a dry run --------------------------


def test_an_upload_needs_the_cadi_id(repo, cap, publish):
    _set_publication(repo, CadiId=None)
    run = publish("cap", "--upload", "--base-url", cap.url, *net(), env=ENV)
    assert run.rc == 1 and len(run.out.strip().splitlines()) == 1
    assert "results/config.json: Publication.CadiId: required key is missing" in run.out
    assert not cap.log and not (repo / "results/publish/cap/state.json").exists()
    placeholder = json.loads((REPO / "steps/schemas/analysis.schema.json").read_text())[
        "properties"]["Publication"]["properties"]["CadiId"]["default"]
    run = publish("cap")
    assert run.rc == 0, run.out
    assert (f"Publication.CadiId is not set: the CAP metadata carries the placeholder "
            f"{placeholder}") in run.log
    assert _sent_metadata(repo)["basic_info"]["cadi_id"] == placeholder


def test_a_malformed_cadi_id_is_refused_before_any_request(repo, cap, publish):
    _set_publication(repo, CadiId="smp-10-2")
    run = publish("cap", "--upload", "--base-url", cap.url, *net(), env=ENV)
    assert run.rc == 1 and len(run.out.strip().splitlines()) == 1
    assert "results/config.json" in run.out and "Publication.CadiId" in run.out
    assert not cap.log


def test_the_bundled_open_data_analysis_has_no_cadi_line():
    assert "CadiId" not in (REPO / "inputs" / "pubflow.yaml").read_text()


def test_a_cadi_id_another_deposit_holds_is_refused_on_create(repo, cap, publish):
    other = cap.add_foreign_deposit({"basic_info": {"cadi_id": CADI_ID}})
    run = publish("cap", "--upload", "--base-url", cap.url, *net(), env=ENV)
    assert run.rc == 1 and len(run.out.strip().splitlines()) == 1, run.out
    assert "400" in run.out and "another CAP deposit holds this CADI id" in run.out
    assert list(cap.deposits) == [other.pid]
    state = json.loads((repo / "results/publish/cap/state.json").read_text())
    assert not state["endpoints"][cap.url].get("pending")  # refused: nothing in doubt
