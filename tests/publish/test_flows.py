"""Each target end to end against its fake service: publish, re-run, re-publish."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from steps.publish.bundle import digests

from .conftest import (
    CAP_TOKEN,
    ENV,
    HEPDATA_COOKIE,
    HEPDATA_EMAIL,
    SECRETS,
    leaks,
    net,
    write_archive,
    write_report,
)


def bundle_md5s(root: Path, target: str) -> dict[str, str]:
    files = root / "results" / "publish" / target / "bundle" / "files"
    return {p.name: digests(p)[1] for p in files.iterdir()}


def state(root: Path, target: str) -> dict:
    return json.loads((root / "results" / "publish" / target / "state.json").read_text())


# -- Zenodo -----------------------------------------------------------------------------------


def test_zenodo_end_to_end(repo, zenodo, publish):
    run = publish("zenodo", "--upload", "--publish", "--base-url", zenodo.url,
                  "--code-url", "https://github.com/pubflow/pubflow", *net(), env=ENV)
    assert run.rc == 0, run.out
    [dep] = zenodo.depositions.values()
    assert dep.submitted and dep.publishes == 1
    assert zenodo.files_of(dep) == bundle_md5s(repo, "zenodo")
    assert "pubflow-workflow.tar.gz" in zenodo.files_of(dep)
    related = {r["relation"]: r["identifier"] for r in dep.metadata["related_identifiers"]}
    assert related["isCompiledBy"] == "https://github.com/pubflow/pubflow"
    latest = state(repo, "zenodo")["endpoints"][zenodo.url]["latest"]
    assert latest["doi"] == f"10.5072/zenodo.{dep.id}"
    # the token only ever travelled in the Authorization header, never in a URL
    assert all("access_token" not in path for _, path in zenodo.log)
    assert not leaks(repo, run.out, run.log)


def test_zenodo_rerun_sends_nothing_new(repo, zenodo, publish):
    args = ("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net())
    assert publish(*args, env=ENV).rc == 0
    sent = len(zenodo.log)
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    assert len(zenodo.log) == sent  # up to date: not a single request
    assert len(zenodo.depositions) == 1


def test_zenodo_draft_then_publish(repo, zenodo, publish):
    args = ("zenodo", "--upload", "--base-url", zenodo.url, *net())
    assert publish(*args, env=ENV).rc == 0
    [dep] = zenodo.depositions.values()
    assert not dep.submitted  # no --publish: a draft to review
    run = publish(*args, "--publish", env=ENV)
    assert run.rc == 0, run.out
    assert list(zenodo.depositions) == [dep.id] and dep.submitted and dep.publishes == 1


def test_zenodo_republish_makes_a_new_version(repo, zenodo, publish):
    args = ("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net())
    assert publish(*args, env=ENV).rc == 0
    (repo / "results/fit/results.json").write_text('{"mu": 1.1}')
    (repo / "results/fit/figures/brazil.png").unlink()
    write_report(repo)  # the workflow validates what it made
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    first, second = sorted(zenodo.depositions.values(), key=lambda d: d.id)
    assert first.conceptrecid == second.conceptrecid  # one concept record, two versions
    assert first.submitted and second.submitted and first.publishes == second.publishes == 1
    assert second.previous == first.id
    files = zenodo.files_of(second)
    assert "figure-brazil.png" not in files
    assert files == bundle_md5s(repo, "zenodo")
    versions = state(repo, "zenodo")["endpoints"][zenodo.url]["versions"]
    assert [v["id"] for v in versions] == [first.id, second.id]


def test_zenodo_new_version_of_an_existing_record(repo, zenodo, publish, tmp_path):
    args = ("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net())
    assert publish(*args, env=ENV).rc == 0
    [first] = zenodo.depositions.values()
    (repo / "results/publish/zenodo/state.json").unlink()  # e.g. a fresh checkout
    (repo / "results/fit/results.json").write_text('{"mu": 0.9}')
    write_report(repo)  # the workflow validates what it made
    run = publish(*args, "--new-version-of", str(first.id), env=ENV)
    assert run.rc == 0, run.out
    assert len(zenodo.depositions) == 2
    assert len({d.conceptrecid for d in zenodo.depositions.values()}) == 1


def test_zenodo_links_the_hepdata_record(repo, zenodo, hepdata, publish):
    assert publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV).rc == 0
    assert publish("zenodo", "--upload", "--base-url", zenodo.url, *net(), env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    [dep] = zenodo.depositions.values()
    related = dep.metadata["related_identifiers"]
    assert {"identifier": f"{hepdata.url}/record/sandbox/{record.recid}",
            "relation": "isSupplementTo", "resource_type": "dataset"} in related


def test_zenodo_repairs_a_corrupted_upload(repo, zenodo, publish):
    zenodo.corrupt_next.add("model-workspace.json")
    run = publish("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net(tries=3),
                  env=ENV)
    assert run.rc == 0, run.out
    assert "arrived with md5" in run.log
    [dep] = zenodo.depositions.values()
    assert zenodo.files_of(dep) == bundle_md5s(repo, "zenodo")


def test_zenodo_wrong_token_is_403(repo, zenodo, publish):
    """Zenodo leaves a request with a bad token anonymous, and refuses it with 403."""
    run = publish("zenodo", "--upload", "--base-url", zenodo.url, *net(),
                  env={**ENV, "ZENODO_TOKEN": "not-the-token-at-all"})
    assert run.rc == 1
    assert "403" in run.out and "Permission denied." in run.out
    assert "check the access token" in run.out
    assert "not-the-token-at-all" not in run.out + run.log
    assert not zenodo.depositions


def test_zenodo_missing_token(repo, publish):
    run = publish("zenodo", "--upload", env={})
    assert run.rc == 1
    assert "ZENODO_TOKEN is not set" in run.out and "reana-client secrets-add" in run.out


def test_zenodo_server_validation_message_reaches_the_user(repo, zenodo, publish):
    run = publish("zenodo", "--upload", "--base-url", zenodo.url, "--license",
                  "no-such-licence", *net(), env=ENV)
    assert run.rc == 1
    assert "400" in run.out
    assert "metadata.license: Invalid license provided: no-such-licence" in run.out
    assert len(run.out.strip().splitlines()) == 1  # one line, the server's message in it


def test_zenodo_refuses_without_the_gate(repo, zenodo, publish):
    write_report(repo, valid=False)
    run = publish("zenodo", "--upload", "--base-url", zenodo.url, *net(), env=ENV)
    assert run.rc == 1 and "validation" in run.out
    assert not zenodo.log


def test_zenodo_refuses_a_file_changed_after_validation(repo, zenodo, publish):
    (repo / "results/model/workspace.json").write_text('{"changed": true}')
    run = publish("zenodo", "--upload", "--base-url", zenodo.url, *net(), env=ENV)
    assert run.rc == 1 and "changed since it was validated" in run.out
    assert not zenodo.log


# -- HEPData ----------------------------------------------------------------------------------


def test_hepdata_sandbox_then_revision(repo, hepdata, publish):
    args = ("hepdata", "--upload", "--base-url", hepdata.url, *net())
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    [record] = hepdata.sandbox_records()
    assert record.owner == HEPDATA_EMAIL and len(record.archives) == 1
    assert publish(*args, env=ENV).rc == 0  # same archive: nothing sent
    assert len(record.archives) == 1
    write_archive(repo / "results/hepdata/submission.tar.gz", events=502)
    write_report(repo)
    assert publish(*args, env=ENV).rc == 0  # changed: the same record is revised
    assert hepdata.sandbox_records() == [record] and len(record.archives) == 2
    assert not leaks(repo, run.out, run.log)


def _set_inspire_id(repo: Path, inspire: str) -> None:
    path = repo / "results" / "config.json"
    config = json.loads(path.read_text())
    config["Publication"]["InspireId"] = inspire
    path.write_text(json.dumps(config))


def test_a_production_upload_needs_the_papers_inspire_id(repo, hepdata, zenodo, cap, publish):
    """Dry runs and the sandbox go ahead with the placeholder, and say so; the real
    services refuse it before any request is sent."""
    recid = hepdata.add_record(HEPDATA_EMAIL, HEPDATA_COOKIE)
    for target, fake, extra in (("hepdata", hepdata, ("--recid", str(recid))),
                                ("zenodo", zenodo, ()), ("cap", cap, ())):
        run = publish(target, "--upload", "--production", "--base-url", fake.url, *extra,
                      *net(), env=ENV)
        assert run.rc == 1, (target, run.out)
        assert "results/config.json: Publication.InspireId: required key is missing" in run.out
        assert len(run.out.strip().splitlines()) == 1
        assert not (repo / "results/publish" / target / "state.json").exists()
    assert not hepdata.records[recid].archives
    run = publish("zenodo", "--dry-run")
    assert run.rc == 0
    assert "Publication.InspireId is not set: the record carries the placeholder ins0000000" \
        in run.log


def test_hepdata_production_needs_record_and_cookie(repo, hepdata, publish):
    _set_inspire_id(repo, "ins1234567")
    recid = hepdata.add_record(HEPDATA_EMAIL, HEPDATA_COOKIE)
    base = ("hepdata", "--upload", "--production", "--base-url", hepdata.url, *net())
    run = publish(*base, env=ENV)
    assert run.rc == 1 and "--recid" in run.out
    run = publish(*base, "--recid", str(recid),
                  env={**ENV, "HEPDATA_INVITATION_COOKIE": "a-wrong-cookie"})
    assert run.rc == 1 and "403" in run.out and "Invitation cookie did not match" in run.out
    run = publish(*base, "--recid", str(recid), env=ENV)
    assert run.rc == 0, run.out
    assert len(hepdata.records[recid].archives) == 1
    assert not hepdata.sandbox_records()


def test_hepdata_wrong_password_is_403(repo, hepdata, publish):
    run = publish("hepdata", "--upload", "--base-url", hepdata.url, *net(),
                  env={**ENV, "HEPDATA_PASSWORD": "wrong-password-123"})
    assert run.rc == 1 and "Wrong password" in run.out
    assert "wrong-password-123" not in run.out + run.log


def test_hepdata_refuses_an_invalid_archive(repo, hepdata, publish):
    write_archive(repo / "results/hepdata/submission.tar.gz", extra=b"bogus: [\n")
    write_report(repo)
    run = publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV)
    assert run.rc == 1 and "hepdata-validate rejects" in run.out
    assert not hepdata.log


def test_hepdata_refuses_an_archive_over_the_limit(repo, hepdata, publish, monkeypatch):
    from steps.publish import hepdata as publisher

    monkeypatch.setattr(publisher, "UPLOAD_MAX_SIZE", 100)
    run = publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV)
    assert run.rc == 1 and "over HEPData's upload limit of 100 bytes" in run.out
    assert not hepdata.log


def test_hepdata_server_size_limit_is_413(repo, hepdata, publish):
    hepdata.limit = 100
    run = publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV)
    assert run.rc == 1 and "413" in run.out and "too large" in run.out


# -- CAP --------------------------------------------------------------------------------------


def test_cap_end_to_end_with_links(repo, cap, zenodo, hepdata, publish):
    assert publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV).rc == 0
    assert publish("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net(),
                   env=ENV).rc == 0
    run = publish("cap", "--upload", "--publish", "--base-url", cap.url, "--reana-url",
                  "https://reana.cern.ch/details/0000", *net(), env=ENV)
    assert run.rc == 0, run.out
    [dep] = cap.deposits.values()
    assert dep.schema == "cms-analysis" and dep.status == "published" and dep.publishes == 1
    urls = dep.metadata["additional_resources"]["documentations"]  # CAP: strings
    [zen] = zenodo.depositions.values()
    [record] = hepdata.sandbox_records()
    assert urls == [f"https://doi.org/10.5072/zenodo.{zen.id}",
                    f"{hepdata.url}/record/sandbox/{record.recid}",
                    "https://reana.cern.ch/details/0000"]
    assert bundle_md5s(repo, "cap") == {k: hashlib.md5(v, usedforsecurity=False).hexdigest()
                                        for k, v in dep.files.items()}
    assert not leaks(repo, run.out, run.log)


def test_cap_republish_edits_the_same_record(repo, cap, publish):
    args = ("cap", "--upload", "--publish", "--base-url", cap.url, *net())
    assert publish(*args, env=ENV).rc == 0
    (repo / "Snakefile").write_text("configfile: 'inputs/analysis.yaml'\n# changed\n")
    run = publish(*args, env=ENV)
    assert run.rc == 0, run.out
    [dep] = cap.deposits.values()
    assert dep.status == "published" and dep.publishes == 2
    sent = len(cap.log)
    assert publish(*args, env=ENV).rc == 0
    assert len(cap.log) == sent + 1  # one GET: published and up to date


def test_cap_unknown_schema(repo, cap, publish):
    run = publish("cap", "--upload", "--schema", "atlas-analysis", "--base-url", cap.url,
                  *net(), env=ENV)
    assert run.rc == 1 and "cannot create 'atlas-analysis'" in run.out
    assert not cap.deposits


def test_cap_wrong_token(repo, cap, publish):
    run = publish("cap", "--upload", "--base-url", cap.url, *net(),
                  env={**ENV, "CAP_ACCESS_TOKEN": "bad-cap-token"})
    assert run.rc == 1 and "401" in run.out
    assert CAP_TOKEN not in run.out and "bad-cap-token" not in run.out + run.log


def test_no_secret_anywhere_after_every_target(repo, zenodo, hepdata, cap, publish):
    runs = [publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV),
            publish("zenodo", "--upload", "--publish", "--base-url", zenodo.url, *net(),
                    env=ENV),
            publish("cap", "--upload", "--publish", "--base-url", cap.url, *net(), env=ENV),
            publish("zenodo", "--base-url", zenodo.url, env=ENV)]
    assert [r.rc for r in runs] == [0, 0, 0, 0]
    assert not leaks(repo, *(r.out + r.log for r in runs))
    # the secrets were really used, and they went only where they belong
    assert any(h.get("authorization") == f"Bearer {ENV['ZENODO_TOKEN']}"
               for h in zenodo.headers_seen)
    assert all(s not in path for s in SECRETS for _, path in zenodo.log + cap.log + hepdata.log)
