"""The inveniordm target against a fake InvenioRDM: dry run, record, new version, faults.

The fault matrix is test_faults.py's (``faultmatrix.py``): every request of a flow fails
once (``fakes.FAULT_KINDS``, in rotation), with no retries, and the next run must finish the
job, leaving exactly one record (or one new version) holding exactly the bundle's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from steps.config import schema

from .conftest import (
    INVENIORDM_TOKEN,
    REPO,
    ZENODO_TOKEN,
    Run,
    change_results,
    leaks,
    net,
    write_report,
)
from .fake_inveniordm import FakeInvenioRDM, validate_metadata
from .fakes import FAULT_KINDS, running
from .faultmatrix import Flow, assert_fault_is_repaired, assert_request_count

TOKEN = INVENIORDM_TOKEN
ENV = {"INVENIORDM_TOKEN": TOKEN}
TARGET = "inveniordm"
#: The fake mints DataCite DOIs, which need a publisher.
UPLOAD = (TARGET, "--upload", "--publish", "--publisher", "Example RDM")


@pytest.fixture
def rdm() -> Iterator[FakeInvenioRDM]:
    with running(lambda: FakeInvenioRDM({TOKEN})) as service:
        yield service  # type: ignore[misc]


def out_dir(repo: Path) -> Path:
    return repo / "results" / "publish" / TARGET


def bundle_md5s(repo: Path) -> dict[str, str]:
    """md5 of every file in the bundle, hashed here."""
    files = out_dir(repo) / "bundle" / "files"
    return {p.name: hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
            for p in files.iterdir()}


def state(repo: Path, url: str) -> dict[str, Any]:
    return json.loads((out_dir(repo) / "state.json").read_text())["endpoints"][url]


def no_token_anywhere(repo: Path, *runs: Run) -> None:
    """No secret in any file under ``repo`` (archives included) nor in what the runs said."""
    assert not leaks(repo, *(run.out + run.log for run in runs))


def upload(rdm: FakeInvenioRDM, *extra: str) -> tuple[str, ...]:
    """Upload and publish to the fake."""
    return (*UPLOAD, "--base-url", rdm.url, *extra)


# -- dry run and options ------------------------------------------------------------------


def plan_schema() -> dict[str, Any]:
    """publish-plan, with this target admitted whether or not the schema lists it yet."""
    doc = schema("publish-plan")
    enum = doc["properties"]["target"]["enum"]
    doc["properties"]["target"]["enum"] = sorted({*enum, TARGET})
    return doc


def test_dry_run_writes_a_bundle_and_sends_nothing(repo, publish):
    run = publish(TARGET, env=ENV)  # a token in the environment: neither used nor written
    assert run.rc == 0, run.out
    bundle = out_dir(repo) / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(f["name"] for f in manifest["files"]) == sorted(bundle_md5s(repo)) == [
        "figure-brazil.png", "fit-results.json", "hepdata-submission.tar.gz",
        "model-workspace.json", "pubflow-workflow.tar.gz", "validation-report.json"]
    for entry in manifest["files"]:
        data = (bundle / "files" / entry["name"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    plan = json.loads((bundle / "plan.json").read_text())
    jsonschema.validate(plan, plan_schema())
    assert (plan["target"], plan["mode"], plan["endpoint"], plan["production"]) == (
        TARGET, "dry-run", "https://sandbox.zenodo.org", False)
    assert [s["step"] for s in plan["requests"][:2]] == ["find-drafts", "create"]
    assert any("--base-url" in note for note in plan["notes"])
    body = json.loads((bundle / "metadata.json").read_text())
    metadata = body["metadata"]
    # inputs/pubflow.yaml: licence CC0-1.0, one collaboration author with an affiliation
    assert metadata["rights"] == [{"id": "cc0-1.0"}]
    assert metadata["creators"] == [{"person_or_org": {"type": "organizational",
                                                       "name": "pubflow developers"},
                                     "affiliations": [{"name": "pubflow"}]}]
    assert metadata["resource_type"] == {"id": "dataset"}
    assert metadata["publisher"] == "Zenodo"  # a DOI on (sandbox.)zenodo.org needs one
    assert body["access"] == {"record": "public", "files": "public"}
    assert validate_metadata(metadata, doi=True) == []
    assert not (out_dir(repo) / "state.json").exists()
    assert "nothing was sent" in run.log
    no_token_anywhere(repo, run)


def test_upload_needs_a_base_url(repo, publish):
    run = publish(TARGET, "--upload", env=ENV)
    assert run.rc == 1 and "--upload needs --base-url" in run.out
    assert not (out_dir(repo) / "state.json").exists()


@pytest.mark.parametrize(("url", "flag", "word"), [("https://zenodo.org", (), "add"),
                                                   ("https://sandbox.zenodo.org",
                                                    ("--production",), "drop")])
def test_zenodo_hosts_must_match_production(url, flag, word, repo, publish):
    run = publish(TARGET, "--base-url", url, *flag, env=ENV)
    assert run.rc == 1 and f"{word} --production" in run.out


def test_missing_token(repo, rdm, publish, monkeypatch):
    monkeypatch.delenv("INVENIORDM_TOKEN", raising=False)
    run = publish(*upload(rdm), env={})
    assert run.rc == 1 and "INVENIORDM_TOKEN is not set" in run.out
    assert not rdm.log


def test_wrong_token_is_401(repo, rdm, publish):
    run = publish(*upload(rdm), *net(), env={"INVENIORDM_TOKEN": "not-the-rdm-token"})
    assert run.rc == 1 and "401" in run.out and "check the access token" in run.out
    assert "not-the-rdm-token" not in run.out + run.log
    assert not rdm.records


def test_refuses_without_the_gate(repo, rdm, publish):
    write_report(repo, valid=False)
    run = publish(*upload(rdm), *net(), env=ENV)
    assert run.rc == 1 and "validation" in run.out
    assert not rdm.log


# -- flows ------------------------------------------------------------------------------------


def test_upload_makes_one_record_then_one_new_version(repo, rdm, publish):
    args = (*upload(rdm, "--code-url", "https://github.com/pubflow/pubflow"), *net())
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    [first] = rdm.versions()
    assert first.published and first.publishes == 1 and first.index == 1
    assert rdm.files_of(first) == bundle_md5s(repo)
    related = first.body["metadata"]["related_identifiers"]
    assert {"identifier": "https://github.com/pubflow/pubflow", "scheme": "url",
            "relation_type": {"id": "iscompiledby"},
            "resource_type": {"id": "software"}} in related
    latest = state(repo, rdm.url)["latest"]
    assert latest["id"] == first.id and latest["doi"] == rdm.resource(first)["pids"]["doi"][
        "identifier"]

    sent = len(rdm.log)
    assert publish(*args, env=ENV).rc == 0
    assert len(rdm.log) == sent  # up to date: not a single request

    change_results(repo)
    sent = len(rdm.log)
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    first, second = rdm.versions()
    assert second.parent == first.parent and second.index == 2
    assert first.published and second.published and (first.publishes, second.publishes) == (1, 1)
    assert rdm.files_of(second) == bundle_md5s(repo)
    assert "figure-brazil.png" not in rdm.files_of(second)
    assert rdm.files_of(first)["figure-brazil.png"]  # the old version keeps its files
    # unchanged files came by import, not by upload
    uploaded = {path.split("/")[-2] for method, path in rdm.log[sent:]
                if method == "PUT" and path.endswith("/content")}
    assert uploaded == {"fit-results.json", "validation-report.json"}
    assert ("POST", f"/api/records/{second.id}/draft/actions/files-import") in rdm.log[sent:]
    assert [v["id"] for v in state(repo, rdm.url)["versions"]] == [first.id, second.id]
    no_token_anywhere(repo, run)


def test_draft_then_publish(repo, rdm, publish):
    args = (TARGET, "--upload", "--base-url", rdm.url, "--publisher", "Example RDM", *net())
    assert publish(*args, env=ENV).rc == 0
    [rec] = rdm.versions()
    assert not rec.published
    assert state(repo, rdm.url)["draft"]["id"] == rec.id
    run = publish(*args, "--publish", env=ENV)
    assert run.rc == 0, run.out
    assert rdm.versions() == [rec] and rec.published and rec.publishes == 1


def assert_plan_was_sent(plan: dict[str, Any], url: str, sent: list[tuple[str, str]]) -> None:
    assert len(sent) == len(plan["requests"]), (sent, plan["requests"])
    for (method, path), step in zip(sent, plan["requests"], strict=True):
        parts = re.split(r"\{[^}]+\}", step["url"].split("?")[0])  # {placeholders}
        pattern = ".+".join(re.escape(part) for part in parts)
        assert method == step["method"], (method, path, step)
        assert re.fullmatch(pattern, url + path.split("?")[0]), (path, step["url"])


def test_the_plan_is_what_is_sent(repo, rdm, publish):
    """A new record, then a new version: the requests sent are the planned ones, in order."""
    args = (*upload(rdm)[2:], *net())
    for change in (None, change_results):
        if change:
            change(repo)
        assert publish(TARGET, *args, env=ENV).rc == 0  # the dry run
        plan = json.loads((out_dir(repo) / "bundle" / "plan.json").read_text())
        sent = len(rdm.log)
        assert publish(TARGET, "--upload", *args, env=ENV).rc == 0
        assert_plan_was_sent(plan, rdm.url, rdm.log[sent:])
    steps = [s["step"] for s in plan["requests"]]
    assert steps[:3] == ["new-version", "list-files", "import-files"]
    assert [s["url"].rsplit("/", 2)[-2] for s in plan["requests"] if s["step"] == "upload"] \
        == ["fit-results.json", "validation-report.json"]
    assert len(rdm.versions()) == 2


@pytest.mark.parametrize(("damage", "name", "tries", "said"), [
    ("corrupt_next", "model-workspace.json", 3, "model-workspace.json arrived with md5"),
    # InvenioRDM answers 200 with errors and drops the file's entry
    ("fail_transfer_next", "fit-results.json", 2, "the upload of fit-results.json failed"),
], ids=["content-corrupted", "transfer-failed"])
def test_a_damaged_upload_is_sent_again(damage, name, tries, said, repo, rdm, publish):
    getattr(rdm, damage).add(name)
    run = publish(*upload(rdm), *net(tries=tries), env=ENV)
    assert run.rc == 0, run.out
    assert said in run.log
    [rec] = rdm.versions()
    assert rdm.files_of(rec) == bundle_md5s(repo)


def test_the_servers_validation_message_reaches_the_user(repo, rdm, publish):
    run = publish(*upload(rdm, "--license", "wtfpl"), *net(), env=ENV)
    assert run.rc == 1
    assert "400" in run.out and "Invalid value wtfpl." in run.out
    assert len(run.out.strip().splitlines()) == 1
    assert not rdm.records


def test_incomplete_metadata_stops_before_the_files(repo, rdm, publish):
    """A draft saves with errors (201): the run stops there, the draft id kept."""
    path = repo / "results" / "config.json"
    config = json.loads(path.read_text())
    config["Publication"]["Title"] = "Zs"  # InvenioRDM wants at least 3 characters
    path.write_text(json.dumps(config))
    write_report(repo)
    run = publish(*upload(rdm), *net(), env=ENV)
    assert run.rc == 1 and "metadata.title: Shorter than minimum length 3." in run.out
    [rec] = rdm.versions()
    assert not rec.files and not rec.published
    assert state(repo, rdm.url)["draft"]["id"] == rec.id


def test_publishing_without_a_publisher_is_refused_on_a_doi_instance(repo, rdm, publish):
    """On an instance other than Zenodo no publisher is sent unless given: a DataCite DOI
    needs one, and the refusal names it."""
    run = publish(TARGET, "--upload", "--publish", "--base-url", rdm.url, *net(), env=ENV)
    assert run.rc == 1 and "400" in run.out and "metadata.publisher" in run.out
    assert "Missing publisher field required for DOI registration." in run.out
    [rec] = rdm.versions()
    body = json.loads((out_dir(repo) / "bundle" / "metadata.json").read_text())
    assert "publisher" not in body["metadata"]  # the fake's URL is no Zenodo host
    run = publish(*upload(rdm), *net(), env=ENV)
    assert run.rc == 0, run.out
    assert rdm.versions() == [rec] and rec.published


def test_adopts_a_new_version_draft_that_already_holds_files(repo, rdm, publish):
    """The new-version draft exists and holds a stale file (an earlier run whose state
    was lost, or the web interface): the run adopts it, and does not import into it."""
    assert publish(*upload(rdm), *net(), env=ENV).rc == 0
    [first] = rdm.versions()
    change_results(repo)
    import requests

    headers = {"Authorization": f"Bearer {TOKEN}"}
    draft = requests.post(f"{rdm.url}/api/records/{first.id}/versions", headers=headers,
                          timeout=5).json()
    files = f"{rdm.url}/api/records/{draft['id']}/draft/files"
    assert requests.post(files, json=[{"key": "stale.txt"}], headers=headers,
                         timeout=5).status_code == 201
    requests.put(f"{files}/stale.txt/content", data=b"old", timeout=5,
                 headers={**headers, "Content-Type": "application/octet-stream"})
    sent = len(rdm.log)
    run = publish(*upload(rdm), *net(), env=ENV)
    assert run.rc == 0, run.out
    first, second = rdm.versions()
    assert second.id == draft["id"] and second.published
    assert rdm.files_of(second) == bundle_md5s(repo)
    assert not any(path.endswith("files-import") for _, path in rdm.log[sent:])


# -- faults -----------------------------------------------------------------------------------


def _one_record(repo: Path, rdm: FakeInvenioRDM) -> None:
    [rec] = rdm.versions()
    assert rec.published and rec.publishes == 1
    assert rdm.files_of(rec) == bundle_md5s(repo)


def _one_new_version(repo: Path, rdm: FakeInvenioRDM) -> None:
    first, second = rdm.versions()
    assert first.parent == second.parent and second.index == 2
    assert (first.publishes, second.publishes) == (1, 1)
    assert rdm.files_of(second) == bundle_md5s(repo)


FLOWS = {
    # list drafts, create, 6 files x (start, content, commit), check files, publish
    "record": Flow("rdm", UPLOAD, 22, None, _one_record),
    # new version, list files, import, remove the figure, 2 changed files x (remove, start,
    # content, commit), metadata, check files, publish
    "new-version": Flow("rdm", UPLOAD, 15, change_results, _one_new_version),
}


@pytest.mark.parametrize("name", FLOWS)
def test_flow_request_count(name, repo, rdm, publish):
    """The matrix covers every request: the clean flow sends exactly ``requests``."""
    assert_request_count(FLOWS[name], repo, rdm, publish, ENV)


#: Every request meets "lost" (carried out, answer lost: the hardest case) and one other
#: kind, in rotation, so that each kind hits about a quarter of the requests of each flow.
#: The full product (185 cases, some three minutes on two busy cores) runs with
#: PUBFLOW_ALL_FAULTS=1.
OTHER_KINDS = [k for k in FAULT_KINDS if k != "lost"]
CASES = [(name, index, kind) for name, flow in FLOWS.items() for index in range(flow.requests)
         for kind in (FAULT_KINDS if os.environ.get("PUBFLOW_ALL_FAULTS")
                      else ("lost", OTHER_KINDS[index % len(OTHER_KINDS)]))]


def test_the_cases_cover_every_request_and_kind():
    for name, flow in FLOWS.items():
        hit = {(i, k) for n, i, k in CASES if n == name}
        assert {i for i, _ in hit} == set(range(flow.requests))
        assert {k for _, k in hit} == set(FAULT_KINDS)


@pytest.mark.parametrize(("name", "index", "kind"), CASES)
def test_fault_then_rerun(name, index, kind, repo, rdm, publish):
    assert_fault_is_repaired(FLOWS[name], index, kind, repo, rdm, publish, ENV)


def test_a_lost_new_version_answer_adopts_the_draft(repo, rdm, publish):
    """The request that opens the new version is carried out, its answer lost: the re-run
    asks again, InvenioRDM hands back the same draft, and there is one new version."""
    assert publish(*upload(rdm), *net(), env=ENV).rc == 0
    [first] = rdm.versions()
    change_results(repo)
    rdm.inject(0, "lost")
    run = publish(*upload(rdm), *net(timeout=0.15), env=ENV)
    assert run.rc == 1 and "/versions" in run.out
    [_, draft] = rdm.versions()
    assert not draft.published and "draft" not in state(repo, rdm.url)
    run = publish(*upload(rdm), *net(), env=ENV)
    assert run.rc == 0, run.out
    assert rdm.log.count(("POST", f"/api/records/{first.id}/versions")) == 2
    _, second = rdm.versions()
    assert second is draft and len(rdm.records) == 2
    _one_new_version(repo, rdm)


def test_main_help_lists_the_target_and_its_token():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "steps.publish", "--help"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    assert "inveniordm" in result.stdout and "INVENIORDM_TOKEN" in result.stdout


@pytest.mark.parametrize("target", ["zenodo", TARGET])
def test_a_file_the_report_does_not_list_is_not_uploaded(repo, zenodo, rdm, publish, target):
    """A figure made after validation: the gate refuses the upload before any request."""
    (repo / "results/fit/figures/extra.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    service = zenodo if target == "zenodo" else rdm
    run = publish(target, "--upload", "--base-url", service.url, *net(),
                  env={**ENV, "ZENODO_TOKEN": ZENODO_TOKEN})
    assert run.rc == 1
    assert "results/fit/figures/extra.png: not in the validation report" in run.out
    assert not service.log


@pytest.mark.parametrize(("target", "service", "noun", "unknown", "needs"), [
    ("zenodo", "Zenodo", "deposition", "99999", "the latest published version's id"),
    (TARGET, "InvenioRDM", "record", "nosuch-0000", "one"),
])
def test_both_refuse_in_one_line_that_names_the_service(target, service, noun, unknown, needs,
                                                        repo, zenodo, rdm, publish):
    """The flow they share words a refusal the same way for each: one line, the service
    first, as the HTTP layer words the service's own refusals."""
    prefix = f"python -m steps.publish: error: {service}: "
    run = publish(target, "--production", "--publish", env=ENV)
    assert run.rc == 1
    assert run.out.strip().splitlines() == [
        (f"{prefix}refusing to publish on the real service without the link to the HEPData "
         "record: publish HEPData first or give --hepdata-url")]
    url = (zenodo if target == "zenodo" else rdm).url
    run = publish(target, "--upload", "--base-url", url, "--new-version-of", unknown, *net(),
                  env={**ENV, "ZENODO_TOKEN": ZENODO_TOKEN})
    assert run.rc == 1
    assert run.out.strip().splitlines() == [
        (f"{prefix}{noun} {unknown} is not a published record of this account: "
         f"--new-version-of needs {needs}")]
