"""The gate, the bundle, the state file and the redactor, one at a time."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest

from steps.errors import PubflowError
from steps.publish.bundle import (
    WORKFLOW_PREFIX,
    digests,
    workflow_members,
    write_workflow_archive,
)
from steps.publish.gate import check_gate
from steps.publish.http import InDoubtError, PermanentHttpError
from steps.publish.links import Links
from steps.publish.metadata import cap_metadata, zenodo_metadata
from steps.publish.secrets import MASK, RedactingFilter, Redactor, credential
from steps.publish.state import State

from .conftest import REPORTED, write_report

# -- gate -------------------------------------------------------------------------------------


def test_gate_passes_and_checks_digests(repo):
    (repo / "results/provenance").mkdir(parents=True)
    (repo / "results/provenance/ro-crate-metadata.json").write_text("{}")
    files = ["results/hepdata/submission.tar.gz", "results/fit/results.json",
             "results/provenance/ro-crate-metadata.json"]
    result = check_gate("results/validation/report.json", files)
    assert list(result.verified) == files[:2]  # listed ones only


def test_complete_gate_refuses_a_file_nothing_vouches_for(repo):
    """Every published file must be in the report, but the report itself and the exempt."""
    (repo / "results/provenance").mkdir(parents=True)
    crate = repo / "results/provenance/ro-crate-metadata.json"
    crate.write_text("{}")
    report = "results/validation/report.json"
    files = ["results/hepdata/submission.tar.gz", "results/fit/results.json", report]
    assert list(check_gate(report, files, complete=True).verified) == files[:2]
    with pytest.raises(PubflowError, match=r"ro-crate-metadata\.json: not in the validation "
                                           r"report, so nothing vouches for it"):
        check_gate(report, [*files, crate], complete=True)
    assert list(check_gate(report, [*files, crate], complete=True, exempt=[crate]).verified
                ) == files[:2]


def test_gate_without_report(repo):
    (repo / "results/validation/report.json").unlink()
    with pytest.raises(PubflowError, match="has not passed"):
        check_gate("results/validation/report.json")


@pytest.mark.parametrize("mutate", ["invalid", "failed-check", "not-json"])
def test_gate_refuses_a_bad_report(repo, mutate):
    report = repo / "results/validation/report.json"
    data = json.loads(report.read_text())
    if mutate == "invalid":
        data["valid"] = False
    elif mutate == "failed-check":
        data["checks"][0]["valid"] = False
    report.write_text("{" if mutate == "not-json" else json.dumps(data))
    with pytest.raises(PubflowError, match=r"validation|report"):
        check_gate(report)


def test_gate_refuses_a_changed_or_missing_file(repo):
    (repo / "results/hepdata/submission.tar.gz").write_bytes(b"tampered")
    with pytest.raises(PubflowError, match="changed since it was validated"):
        check_gate("results/validation/report.json", ["results/hepdata/submission.tar.gz"])
    (repo / "results/hepdata/submission.tar.gz").unlink()
    with pytest.raises(PubflowError, match="missing"):
        check_gate("results/validation/report.json", ["results/hepdata/submission.tar.gz"])


def test_gate_on_the_real_report(monkeypatch, workflow_run):
    """The report steps.validate writes on the bundled run passes the gate."""
    monkeypatch.chdir(workflow_run)
    report = Path("results/validation/report.json")
    checks = json.loads(report.read_text())["checks"]
    artefacts = [c["artefact"] for c in checks]
    for c in checks:
        assert digests(c["artefact"])[2] == c["sha256"], c["artefact"]
    assert "results/hepdata/submission.tar.gz" in check_gate(report, artefacts).verified


# -- bundle -----------------------------------------------------------------------------------


def test_workflow_archive_is_reproducible(repo, tmp_path):
    members = workflow_members(repo, ("inputs/analysis.yaml", "inputs/datasets.yaml"))
    assert "steps/__pycache__/x.cpython-311.pyc" not in members
    assert members == sorted(members) and "Snakefile" in members and "reana.yaml" in members
    assert not any(m.startswith("inputs/data/") for m in members)
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    write_workflow_archive(repo, members, first)
    for name in members:  # new times and modes must not change a byte
        os.utime(repo / name, (1e9, 1e9))
    write_workflow_archive(repo, members, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == [f"{WORKFLOW_PREFIX}/{m}" for m in members]
    assert {(i.uid, i.gid, i.uname, i.mode) for i in infos} == {(0, 0, "", 0o644)}


def test_workflow_needs_its_required_parts(repo):
    (repo / "reana.yaml").unlink()
    with pytest.raises(PubflowError, match="missing"):
        workflow_members(repo)


def test_digests(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert digests(path) == (3, "900150983cd24fb0d6963f7d28e17f72",
                             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


# -- metadata ---------------------------------------------------------------------------------


def test_zenodo_metadata_from_the_publication_block(config):
    pub = config["Publication"]
    pub["Authors"].append({"Name": "Doe, Jane", "ORCID": "0000-0002-1694-233X"})
    pub["InspireId"] = "ins1234567"
    meta = zenodo_metadata(pub, files=["pubflow-workflow.tar.gz"],
                           links=Links(hepdata="https://www.hepdata.net/record/ins1234567",
                                       code="https://github.com/pubflow/pubflow"))
    assert meta["creators"][-1] == {"name": "Doe, Jane", "orcid": "0000-0002-1694-233X"}
    assert meta["license"] == "cc0-1.0" and meta["upload_type"] == "dataset"
    assert [r["relation"] for r in meta["related_identifiers"]] == [
        "isSupplementTo", "isSupplementTo", "isCompiledBy"]
    assert "https://inspirehep.net/literature/1234567" in str(meta["related_identifiers"])


def test_cap_metadata_merges_experiment_fields(config):
    meta = cap_metadata(config["Publication"], links=Links(zenodo_doi="10.5072/zenodo.1"),
                        extra={"basic_info": {"analysis_number": "SMP-10-002"}})
    assert meta["basic_info"]["analysis_number"] == "SMP-10-002"
    assert meta["basic_info"]["abstract"].startswith("The dimuon")
    resources = meta["additional_resources"]
    assert resources["documentations"] == ["https://doi.org/10.5072/zenodo.1"]
    assert "https://doi.org/10.5072/zenodo.1: Zenodo deposit (reserved" in resources["comments"]


# -- state ------------------------------------------------------------------------------------


def test_state_roundtrip_and_pending(tmp_path):
    state = State(tmp_path / "state.json", "zenodo", Redactor())
    state.section("https://x")["draft"] = {"id": 1}
    state.save()
    again = State(tmp_path / "state.json", "zenodo", Redactor())
    assert again.section("https://x")["draft"] == {"id": 1}
    with pytest.raises(InDoubtError), again.recording("https://x", "create", title="t"):
        raise InDoubtError("lost")
    assert again.pending("https://x")["op"] == "create"  # kept for the next run to settle
    with pytest.raises(PermanentHttpError), again.recording("https://x", "publish"):
        raise PermanentHttpError("refused")
    assert again.pending("https://x") is None  # a refused request did not happen
    with pytest.raises(PubflowError, match="target 'zenodo'"):
        State(tmp_path / "state.json", "cap", Redactor())


def test_state_refuses_a_corrupt_file_and_masks_secrets(tmp_path):
    path = tmp_path / "state.json"
    state = State(path, "cap", Redactor(["token-value-1234"]))
    state.section("https://x")["note"] = "leaked token-value-1234?"
    state.save()
    assert "token-value-1234" not in path.read_text() and MASK in path.read_text()
    path.write_text("{not json")
    with pytest.raises(PubflowError, match="unreadable state file"):
        State(path, "cap", Redactor())


def test_state_lock(tmp_path):
    state = State(tmp_path / "state.json", "cap", Redactor())
    with state.locked(), pytest.raises(PubflowError, match="another publisher"), \
            State(tmp_path / "state.json", "cap", Redactor()).locked():
        pass


# -- secrets ----------------------------------------------------------------------------------


def test_redactor():
    r = Redactor(["abcd1234", "xy", None])  # too short or empty: not scrubbed
    assert r.scrub("token abcd1234 and xy") == f"token {MASK} and xy"
    assert r.scrub_obj({"abcd1234": ["abcd1234", 1]}) == {MASK: [MASK, 1]}


def test_redacting_filter_formats_then_masks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor(["hunter2-password"])))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("sent %s to %s", "hunter2-password", "somewhere")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f"sent {MASK} to somewhere\n"


def test_credential_messages_name_the_variable_not_a_value():
    with pytest.raises(PubflowError, match=r"ZENODO_TOKEN is not set.*secrets-add --env"):
        credential("ZENODO_TOKEN", purpose="p", environ={})
    assert credential("X", purpose="p", environ={"X": " v "}) == "v"


def test_report_fixture_matches(repo):
    write_report(repo)
    check_gate("results/validation/report.json", REPORTED)
