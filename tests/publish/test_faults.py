"""Fault injection: every request of every flow fails once, in every way; a re-run repairs.

For each flow, each request in it, and each fault kind (see ``fakes.py``), the first run
meets the fault with no retries allowed (so it fails where the fault hits), and the next run
must finish the job. Afterwards exactly one remote record exists (one concept record on
Zenodo, with one version per publication), every file is there with the local checksum,
nothing was published twice, a further run changes nothing, and no secret is anywhere
(``faultmatrix.py``, which test_inveniordm.py shares).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    CAP_TOKEN,
    ENV,
    HEPDATA_EMAIL,
    HEPDATA_PASSWORD,
    ZENODO_TOKEN,
    change_results,
    make_repo,
    net,
    write_archive,
    write_report,
)
from .fake_cap import FakeCAP
from .fake_hepdata import FakeHEPData
from .fake_zenodo import FakeZenodo
from .fakes import FAULT_KINDS, running
from .faultmatrix import Flow, assert_fault_is_repaired, assert_request_count, prepare
from .test_flows import bundle_md5s


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _change_archive(repo: Path) -> None:
    write_archive(repo / "results/hepdata/submission.tar.gz", events=777)
    write_report(repo)


def _change_workflow(repo: Path) -> None:
    (repo / "Snakefile").write_text("configfile: 'inputs/analysis.yaml'\n# v2\n")


def _zenodo_once(repo: Path, z: Any) -> None:
    [dep] = z.depositions.values()
    assert dep.submitted and dep.publishes == 1
    assert z.files_of(dep) == bundle_md5s(repo, "zenodo")


def _zenodo_twice(repo: Path, z: Any) -> None:
    first, second = sorted(z.depositions.values(), key=lambda d: d.id)
    assert first.conceptrecid == second.conceptrecid
    assert (first.publishes, second.publishes) == (1, 1)
    assert z.files_of(second) == bundle_md5s(repo, "zenodo")


def _hepdata_one(repo: Path, h: Any) -> None:
    [record] = h.sandbox_records()
    assert record.archives[-1] == _sha256(repo / "results/hepdata/submission.tar.gz")


def _hepdata_answer(h: Any) -> list[str]:
    """The physicist looks at the sandbox records, then says what the lost upload did."""
    records = h.sandbox_records()
    return ["--recid", str(records[0].recid)] if records else ["--discard-pending"]


def _cap(publications: int) -> Callable[[Path, Any], None]:
    def check(repo: Path, c: Any) -> None:
        [dep] = c.deposits.values()
        assert dep.status == "published" and dep.publishes == publications
        assert {k: hashlib.md5(v, usedforsecurity=False).hexdigest()
                for k, v in dep.files.items()} == bundle_md5s(repo, "cap")
    return check


FLOWS = {
    # list drafts, create, 6 uploads, metadata, check files, publish
    "zenodo": Flow("zenodo", ("zenodo", "--upload", "--publish"), 11, None, _zenodo_once),
    # list drafts, newversion (answered with the draft), 3 removals, 2 uploads (the results
    # and the report that vouches for them), metadata, check files, publish
    "zenodo-new-version": Flow("zenodo", ("zenodo", "--upload", "--publish"), 10,
                               change_results, _zenodo_twice),
    "hepdata": Flow("hepdata", ("hepdata", "--upload"), 1, None, _hepdata_one,
                    answer=_hepdata_answer),
    # the record's status page, then the upload
    "hepdata-revision": Flow("hepdata", ("hepdata", "--upload"), 2, _change_archive,
                             _hepdata_one, answer=_hepdata_answer),
    # schemas, list drafts, create, 2 uploads, metadata patch, check, publish
    "cap": Flow("cap", ("cap", "--upload", "--publish"), 8, None, _cap(1), after=1),
    # the deposit, edit, 1 upload, check, publish
    "cap-edit": Flow("cap", ("cap", "--upload", "--publish"), 5, _change_workflow, _cap(2),
                     after=1),
}

CASES = [(name, index) for name, flow in FLOWS.items() for index in range(flow.requests)]


@pytest.mark.parametrize("name", FLOWS)
def test_flow_request_count(name, repo, request, publish):
    """The matrix covers every request: the clean flow sends exactly ``requests``."""
    flow = FLOWS[name]
    assert_request_count(flow, repo, request.getfixturevalue(flow.service), publish, ENV)


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize(("name", "index"), CASES)
def test_fault_then_rerun(name, index, kind, repo, request, publish):
    flow = FLOWS[name]
    assert_fault_is_repaired(flow, index, kind, repo, request.getfixturevalue(flow.service),
                             publish, ENV)


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("name", ["zenodo", "hepdata-revision", "cap"])
def test_faults_are_absorbed_within_the_run(name, kind, tmp_path, monkeypatch, publish):
    """With retries allowed, one fault on any request is absorbed by the same run."""
    flow = FLOWS[name]
    for index in range(flow.requests):
        repo = make_repo(tmp_path / f"{index}")
        monkeypatch.chdir(repo)
        factory = {"zenodo": lambda: FakeZenodo({ZENODO_TOKEN}),
                   "hepdata": lambda: FakeHEPData({HEPDATA_EMAIL: HEPDATA_PASSWORD}),
                   "cap": lambda: FakeCAP({CAP_TOKEN})}[flow.service]
        with running(factory) as service:
            args = prepare(flow, repo, service, publish, ENV)
            service.inject(index, kind)
            run = publish(*args, *net(tries=3, timeout=0.15), env=ENV)
            assert run.rc == 0, (index, run.out)
            assert "retrying" in run.log or "checking what" in run.log, index
            flow.check(repo, service)
