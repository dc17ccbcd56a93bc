"""Zenodo as zenodo-rdm really behaves, against pubflow's Zenodo publisher.

Fault-matrix additions (each ends, after a re-run, with exactly one deposition or one new
version holding exactly the bundle's files): a lost answer to ``actions/newversion``; a new
version that already exists (Zenodo hands it back, and refuses to import files into it);
a create answered 200 instead of 201; the reserved DOI Zenodo reports with the production
prefix 10.5281 on the sandbox. Then the fake's own fidelity: what Zenodo accepts, the fake
accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from steps.publish import links

from .conftest import ENV, ZENODO_TOKEN, change_results, net
from .fake_zenodo import FakeZenodo
from .fakes import Request, Response, running
from .test_flows import bundle_md5s, state

ARGS = ("zenodo", "--upload", "--publish")
AUTH = {"Authorization": f"Bearer {ZENODO_TOKEN}"}
METADATA = {"upload_type": "dataset", "title": "T", "description": "D",
            "creators": [{"name": "Doe, Jane"}], "license": "cc-by-4.0"}


def _args(service: FakeZenodo, *extra: str) -> tuple[str, ...]:
    return (*ARGS, "--base-url", service.url, *extra, *net())


def _newversion_posts(service: FakeZenodo, since: int = 0) -> list[str]:
    return [p for m, p in service.log[since:] if m == "POST" and p.endswith("/newversion")]


def _one_new_version(repo: Path, z: FakeZenodo) -> None:
    """Exactly two versions of one concept record, each published once, the second holding
    exactly the bundle's files."""
    first, second = sorted(z.depositions.values(), key=lambda d: d.id)
    assert first.conceptrecid == second.conceptrecid and second.previous == first.id
    assert (first.publishes, second.publishes) == (1, 1)
    assert z.files_of(second) == bundle_md5s(repo, "zenodo")


# -- new versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lost", "timeout"])
def test_lost_newversion_answer_then_rerun(kind, repo, zenodo, publish):
    assert publish(*_args(zenodo), env=ENV).rc == 0
    change_results(repo)
    sent = len(zenodo.log)
    zenodo.inject(1, kind)  # 0: the drafts listing, 1: newversion (checked below)
    failed = publish(*_args(zenodo, "--timeout", "0.2"), env=ENV)
    assert zenodo.log[sent + 1][1].endswith("/actions/newversion")
    assert failed.rc == 1
    assert len(zenodo.drafts()) == 1  # Zenodo made the draft; pubflow never heard of it
    run = publish(*_args(zenodo), env=ENV)
    assert run.rc == 0, run.out
    _one_new_version(repo, zenodo)
    assert len(_newversion_posts(zenodo, sent)) == 1  # adopted, not asked for again
    versions = state(repo, "zenodo")["endpoints"][zenodo.url]["versions"]
    assert len(versions) == 2


def test_newversion_answer_is_the_draft_and_is_recorded_at_once(repo, zenodo, publish):
    """The draft id is in the state as soon as the newversion answer names it: a run that
    dies on the very next request resumes that draft."""
    assert publish(*_args(zenodo), env=ENV).rc == 0
    change_results(repo)
    sent = len(zenodo.log)
    zenodo.inject(2, "500")  # the request after newversion
    assert publish(*_args(zenodo), env=ENV).rc == 1
    [draft] = zenodo.drafts()
    assert state(repo, "zenodo")["endpoints"][zenodo.url]["draft"]["id"] == draft.id
    run = publish(*_args(zenodo), env=ENV)
    assert run.rc == 0, run.out
    _one_new_version(repo, zenodo)
    assert len(_newversion_posts(zenodo, sent)) == 1


def test_repeated_newversion_hands_back_the_draft_and_refuses_files(repo, zenodo, publish):
    """What zenodo-rdm does (legacy LegacyRecordResource.new_version + import_files)."""
    assert publish(*_args(zenodo), env=ENV).rc == 0
    [published] = zenodo.depositions.values()
    url = f"{zenodo.url}/api/deposit/depositions/{published.id}/actions/newversion"
    first = requests.post(url, headers=AUTH, timeout=5)
    assert first.status_code == 201
    draft = first.json()
    assert draft["id"] != published.id and draft["submitted"] is False
    assert draft["links"]["latest_draft"].endswith(f"/{draft['id']}")
    assert {f["filename"] for f in draft["files"]} == set(zenodo.files_of(published))
    again = requests.post(url, headers=AUTH, timeout=5)
    assert again.status_code == 400
    assert again.json()["errors"] == [{"field": "files.enabled",
                                       "messages": ["Please remove all files first."]}]
    for f in draft["files"]:
        gone = requests.delete(f"{draft['links']['bucket']}/{f['filename']}", headers=AUTH,
                               timeout=5)
        assert gone.status_code == 204
    emptied = requests.post(url, headers=AUTH, timeout=5)
    assert emptied.status_code == 201 and emptied.json()["id"] == draft["id"]
    # the files came back: a blind repeat would undo the removals
    assert len(emptied.json()["files"]) == len(draft["files"])
    assert len(zenodo.drafts()) == 1


def test_existing_new_version_is_adopted(repo, zenodo, publish):
    """A new-version draft the state does not know (its state write was lost, or it was
    opened in the web interface) is resumed, never requested again."""
    assert publish(*_args(zenodo), env=ENV).rc == 0
    [published] = zenodo.depositions.values()
    opened = requests.post(f"{zenodo.url}/api/deposit/depositions/{published.id}"
                           "/actions/newversion", headers=AUTH, timeout=5)
    assert opened.status_code == 201
    change_results(repo)
    sent = len(zenodo.log)
    run = publish(*_args(zenodo), env=ENV)
    assert run.rc == 0, run.out
    assert not _newversion_posts(zenodo, sent)
    assert sorted(zenodo.depositions)[-1] == opened.json()["id"]
    _one_new_version(repo, zenodo)


class LaggingZenodo(FakeZenodo):
    """Zenodo whose drafts listing (a search index) does not show new drafts at first."""

    def __init__(self, tokens: set[str], hidden_listings: int) -> None:
        super().__init__(tokens)
        self.hidden_listings = hidden_listings

    def route(self, request: Request) -> Response:
        if (request.method == "GET" and request.path == "/api/deposit/depositions"
                and self.hidden_listings > 0):
            self.hidden_listings -= 1
            return Response.json(200, [])
        return super().route(request)


def test_unlisted_existing_draft_is_found_after_zenodo_refuses(repo, publish):
    """newversion on a concept record whose draft the listing does not show yet: Zenodo
    answers 400 "Please remove all files first."; pubflow looks again and adopts it."""
    with running(lambda: LaggingZenodo({ZENODO_TOKEN}, 0)) as zenodo:
        assert publish(*_args(zenodo), env=ENV).rc == 0
        [published] = zenodo.depositions.values()
        assert requests.post(f"{zenodo.url}/api/deposit/depositions/{published.id}"
                             "/actions/newversion", headers=AUTH, timeout=5).status_code == 201
        change_results(repo)
        zenodo.hidden_listings = 1
        sent = len(zenodo.log)
        run = publish(*_args(zenodo), env=ENV)
        assert run.rc == 0, run.out
        assert len(_newversion_posts(zenodo, sent)) == 1  # refused, then the draft adopted
        _one_new_version(repo, zenodo)


# -- creation answered 200 ----------------------------------------------------------------------


def test_create_answered_200_is_recorded(repo, zenodo, publish):
    """Any 2xx is done: a create answered 200 is recorded, so that a run failing right after
    it does not make a second deposition on the re-run."""
    zenodo.create_status = 200
    sent = len(zenodo.log)
    zenodo.inject(2, "500")  # 0: drafts listing, 1: create, 2: the first upload
    failed = publish(*_args(zenodo), env=ENV)
    assert zenodo.log[sent + 1] == ("POST", "/api/deposit/depositions")
    assert failed.rc == 1 and "expected 201" in failed.log
    [dep] = zenodo.depositions.values()
    assert state(repo, "zenodo")["endpoints"][zenodo.url]["draft"]["id"] == dep.id
    run = publish(*_args(zenodo), env=ENV)
    assert run.rc == 0, run.out
    assert list(zenodo.depositions) == [dep.id] and dep.submitted and dep.publishes == 1
    assert zenodo.files_of(dep) == bundle_md5s(repo, "zenodo")


# -- DOIs on the sandbox ------------------------------------------------------------------------


def test_sandbox_reserved_doi_with_the_production_prefix_is_not_a_doi(repo, zenodo, publish):
    draft_run = publish("zenodo", "--upload", "--base-url", zenodo.url, *net(), env=ENV)
    assert draft_run.rc == 0, draft_run.out
    [dep] = zenodo.depositions.values()
    answer = requests.get(f"{zenodo.url}/api/deposit/depositions/{dep.id}", headers=AUTH,
                          timeout=5).json()
    reported = answer["metadata"]["prereserve_doi"]["doi"]
    assert reported == f"10.5281/zenodo.{dep.id}"  # what zenodo-rdm's serializer writes
    section = state(repo, "zenodo")["endpoints"][zenodo.url]
    assert section["production"] is False
    assert section["draft"]["reserved_doi"] is None
    assert section["draft"]["sandbox_reserved_doi"] == reported
    publish_root = repo / "results" / "publish"
    assert links.discover(publish_root, production=False).zenodo_doi is None
    assert "10.5281" not in draft_run.out + draft_run.log.split("Zenodo sandbox:")[-1]
    run = publish(*_args(zenodo), env=ENV)
    assert run.rc == 0, run.out
    assert list(zenodo.depositions) == [dep.id] and dep.publishes == 1
    assert zenodo.files_of(dep) == bundle_md5s(repo, "zenodo")
    found = links.discover(publish_root, production=False)
    assert (found.zenodo_doi, found.zenodo_doi_registered) == (f"10.5072/zenodo.{dep.id}",
                                                               True)


def _state_file(root: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path = root / "zenodo" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "target": "zenodo", "endpoints": sections}))
    return root


@pytest.mark.parametrize(("production", "expected"), [(False, None),
                                                      (True, "10.5281/zenodo.77")])
def test_links_never_take_a_production_prefix_doi_from_the_sandbox(production, expected,
                                                                   tmp_path):
    """State written before this fix may hold the sandbox's 10.5281 reserved DOI."""
    root = _state_file(tmp_path, {"https://host.example": {
        "production": production, "draft": {"id": 77, "reserved_doi": "10.5281/zenodo.77"}}})
    assert links.zenodo_doi(root, production) == (expected, False)


# -- the fake accepts what Zenodo accepts -------------------------------------------------------


def _create(service: FakeZenodo, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(f"{service.url}/api/deposit/depositions", json=body, timeout=5,
                         **kwargs)


def test_token_in_query_or_header_and_the_header_wins(zenodo):
    assert _create(zenodo, {"metadata": METADATA},
                   params={"access_token": ZENODO_TOKEN}).status_code == 201
    assert _create(zenodo, {"metadata": METADATA}, headers=AUTH).status_code == 201
    # oauthlib reads the query parameter only when there is no Authorization header
    bad_header = _create(zenodo, {"metadata": METADATA},
                         headers={"Authorization": "Bearer wrong"},
                         params={"access_token": ZENODO_TOKEN})
    assert bad_header.status_code == 403
    assert _create(zenodo, {"metadata": METADATA}).status_code == 403
    assert len(zenodo.depositions) == 2


@pytest.mark.parametrize(("given", "reported"), [("CC0-1.0", "cc-zero"), ("cc0-1.0", "cc-zero"),
                                                 (" CC-BY-4.0 ", "cc-by-4.0"),
                                                 ("cc-by", "cc-by-4.0"), ("MIT", "mit-license"),
                                                 ({"id": "Apache-2.0"}, "apache2.0")])
def test_licences_match_case_insensitively(zenodo, given, reported):
    answer = _create(zenodo, {"metadata": {**METADATA, "license": given}}, headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert answer.json()["metadata"]["license"] == reported


def test_unknown_licence_is_refused_like_zenodo(zenodo):
    answer = _create(zenodo, {"metadata": {**METADATA, "license": "no-such-licence"}},
                     headers=AUTH)
    assert answer.status_code == 400
    assert answer.json() == {"status": 400, "message": "A validation error occurred.",
                             "errors": [{"field": "metadata.license", "messages": [
                                 "Invalid license provided: no-such-licence"]}]}
    assert not zenodo.depositions


def test_unknown_metadata_fields_are_dropped_unknown_top_level_refused(zenodo):
    answer = _create(zenodo, {"metadata": {**METADATA, "colour": "blue"}}, headers=AUTH)
    assert answer.status_code == 201
    assert "colour" not in answer.json()["metadata"]
    refused = _create(zenodo, {"metadata": METADATA, "colour": "blue"}, headers=AUTH)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "colour", "messages": ["Unknown field."]}]


def test_incomplete_draft_is_saved_and_refused_on_publishing(zenodo):
    created = _create(zenodo, {"metadata": {"title": "only a title"}}, headers=AUTH)
    assert created.status_code == 201
    dep = created.json()
    put = requests.put(f"{dep['links']['bucket']}/a.txt", data=b"abc", headers=AUTH, timeout=5)
    assert put.status_code == 201
    assert put.json()["checksum"] == "md5:900150983cd24fb0d6963f7d28e17f72"  # md5("abc")
    refused = requests.post(dep["links"]["publish"], headers=AUTH, timeout=5)
    assert refused.status_code == 400
    fields = {e["field"] for e in refused.json()["errors"]}
    assert {"metadata.creators", "metadata.resource_type"} <= fields


def test_publishing_without_files_is_refused(zenodo):
    dep = _create(zenodo, {"metadata": METADATA}, headers=AUTH).json()
    refused = requests.post(dep["links"]["publish"], headers=AUTH, timeout=5)
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["files.enabled"]
