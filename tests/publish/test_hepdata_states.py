"""HEPData's record states: uploads wait while a record is processed, stop once it is finished,
and the size limit applies to the whole request body.

Each test ends with exactly one record on the fake, holding the archive on disk (sha256).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from steps.publish import hepdata as publisher

from .conftest import (
    ENV,
    HEPDATA_COOKIE,
    HEPDATA_EMAIL,
    HEPDATA_PASSWORD,
    net,
    write_archive,
    write_report,
)
from .fake_hepdata import FakeHEPData
from .fakes import running

ARCHIVE = "results/hepdata/submission.tar.gz"


def _sha(repo: Path) -> str:
    return hashlib.sha256((repo / ARCHIVE).read_bytes()).hexdigest()


def _revise(repo: Path, events: int) -> None:
    write_archive(repo / ARCHIVE, events=events)
    write_report(repo)


def _state(repo: Path, url: str) -> dict:
    path = repo / "results/publish/hepdata/state.json"
    return json.loads(path.read_text())["endpoints"][url]


def _posts(service: FakeHEPData, since: int = 0) -> int:
    return sum(1 for method, _ in service.log[since:] if method == "POST")


def test_reupload_waits_while_the_record_is_processing(repo, hepdata, publish):
    hepdata.processing = 2  # two requests about the record still find it processing
    args = ("hepdata", "--upload", "--base-url", hepdata.url)
    assert publish(*args, *net(), env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    assert record.status == "sandbox_processing"
    _revise(repo, events=600)
    sent = len(hepdata.log)
    run = publish(*args, *net(tries=4), env=ENV)
    assert run.rc == 0, run.out
    assert "is being processed (check 1 of 4)" in run.log
    # three status checks (processing, processing, ready), then exactly one upload
    assert [m for m, _ in hepdata.log[sent:]] == ["GET", "GET", "GET", "POST"]
    assert hepdata.sandbox_records() == [record]
    assert len(record.archives) == 2 and record.archives[-1] == _sha(repo)


def test_still_processing_after_the_last_check_stops_cleanly(repo, hepdata, publish):
    hepdata.processing = 3
    args = ("hepdata", "--upload", "--base-url", hepdata.url)
    assert publish(*args, *net(), env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    first = _state(repo, hepdata.url)["record"]
    _revise(repo, events=601)
    run = publish(*args, *net(tries=2), env=ENV)
    assert run.rc == 1
    assert len(run.out.strip().splitlines()) == 1 and "Traceback" not in run.out
    assert f"record {record.recid} is still being processed after 2 checks" in run.out
    assert _posts(hepdata) == 1 and _state(repo, hepdata.url)["record"] == first
    run = publish(*args, *net(tries=3), env=ENV)  # later: it is ready
    assert run.rc == 0, run.out
    assert hepdata.sandbox_records() == [record] and record.archives[-1] == _sha(repo)
    assert len(record.archives) == 2


def test_lost_answer_then_rerun_while_processing(repo, hepdata, publish):
    args = ("hepdata", "--upload", "--base-url", hepdata.url)
    assert publish(*args, *net(), env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    _revise(repo, events=602)
    hepdata.processing = 2
    hepdata.inject(1, "lost")  # after the status check: the upload is applied, unanswered
    run = publish(*args, *net(timeout=0.3), env=ENV)
    assert run.rc == 1 and "may have been applied" in run.out
    assert _state(repo, hepdata.url)["pending"]["recid"] == record.recid
    assert len(record.archives) == 2 and record.status == "sandbox_processing"
    sent = len(hepdata.log)
    run = publish(*args, *net(tries=4), env=ENV)
    assert run.rc == 0, run.out
    assert "it arrived" in run.log
    assert _posts(hepdata, sent) == 0  # the lost upload is not sent again
    assert "pending" not in _state(repo, hepdata.url)
    assert hepdata.sandbox_records() == [record]
    assert len(record.archives) == 2 and record.archives[-1] == _sha(repo)
    sent = len(hepdata.log)
    assert publish(*args, *net(), env=ENV).rc == 0 and len(hepdata.log) == sent


def test_a_finished_record_refuses_and_a_new_version_takes_the_upload(repo, hepdata, publish):
    config = repo / "results/config.json"
    data = json.loads(config.read_text())
    data["Publication"]["InspireId"] = "ins1234567"
    config.write_text(json.dumps(data))
    recid = hepdata.add_record(HEPDATA_EMAIL, HEPDATA_COOKIE)
    args = ("hepdata", "--upload", "--production", "--recid", str(recid), "--base-url",
            hepdata.url)
    assert publish(*args, *net(), env=ENV).rc == 0
    first = _sha(repo)
    hepdata.finish(recid)  # the coordinator finalises the record
    _revise(repo, events=603)
    before = _state(repo, hepdata.url)["record"]
    run = publish(*args, *net(tries=3), env=ENV)
    assert run.rc == 1
    assert len(run.out.strip().splitlines()) == 1 and "Traceback" not in run.out
    assert f"record {recid} is finished and accepts no upload" in run.out
    assert "open a new version" in run.out
    record = hepdata.records[recid]
    assert record.archives == [first]  # nothing applied
    state = _state(repo, hepdata.url)
    assert state["record"] == before and "pending" not in state
    hepdata.new_version(recid)  # the coordinator reopens it: the same command now works
    run = publish(*args, *net(), env=ENV)
    assert run.rc == 0, run.out
    assert list(hepdata.records) == [recid] and record.archives == [first, _sha(repo)]


def test_a_body_over_the_limit_is_refused_before_sending(repo, hepdata, publish, monkeypatch):
    size = (repo / ARCHIVE).stat().st_size
    limit = publisher.UPLOAD_MAX_SIZE
    monkeypatch.setattr(publisher, "UPLOAD_MAX_SIZE", size + 1)  # the archive alone fits
    hepdata.limit = size + 1
    args = ("hepdata", "--upload", "--base-url", hepdata.url, *net())
    run = publish(*args, env=ENV)
    assert run.rc == 1 and "Traceback" not in run.out
    assert f"over HEPData's limit of {size + 1} bytes on the whole body" in run.out
    assert not hepdata.log and not hepdata.records
    monkeypatch.setattr(publisher, "UPLOAD_MAX_SIZE", limit)
    hepdata.limit = limit
    assert publish(*args, env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    assert record.archives == [_sha(repo)]
    assert hepdata.body_sizes[-1] > size + 1  # the server's own measure: the body was over


def test_the_body_check_matches_the_servers_measure(repo, hepdata, publish, monkeypatch):
    """What the client counts is what arrives: refused at one byte under, sent at the limit."""
    assert publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV).rc == 0
    [body] = hepdata.body_sizes
    with running(lambda: FakeHEPData({HEPDATA_EMAIL: HEPDATA_PASSWORD}, limit=body)) as other:
        args = ("hepdata", "--upload", "--base-url", other.url, *net())
        monkeypatch.setattr(publisher, "UPLOAD_MAX_SIZE", body - 1)
        run = publish(*args, env=ENV)
        assert run.rc == 1 and f"would be {body} bytes" in run.out
        assert not other.log
        monkeypatch.setattr(publisher, "UPLOAD_MAX_SIZE", body)
        assert publish(*args, env=ENV).rc == 0
        [record] = other.sandbox_records()
        assert other.body_sizes == [body] and record.archives == [_sha(repo)]
    [record] = hepdata.sandbox_records()
    assert record.archives == [_sha(repo)]


def test_a_server_413_on_the_body_reaches_the_user(repo, hepdata, publish):
    hepdata.limit = 100  # a server stricter than the client's limit
    run = publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV)
    assert run.rc == 1 and "413" in run.out and "Request Entity Too Large" in run.out
    assert not hepdata.records and "pending" not in _state(repo, hepdata.url)
    hepdata.limit = 52_000_000
    assert publish("hepdata", "--upload", "--base-url", hepdata.url, *net(), env=ENV).rc == 0
    [record] = hepdata.sandbox_records()
    assert record.archives == [_sha(repo)]
