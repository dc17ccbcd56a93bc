"""The run's RO-Crate passes the RO-Crate validator (roc-validator), offline.

rocrate-validator resolves the JSON-LD contexts a crate names over HTTP, through a
requests-cache SQLite cache; with ``offline=True`` it answers only from that cache and never
touches the network. The cache is filled here from local copies of the two contexts the
crate names (``tests/data/rocrate/``: the RO-Crate 1.1 context, CC0, and the Workflow Run
terms), served by a transport adapter instead of the network. The profiles themselves ship
with the validator.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from .conftest import REPO, run

DATA = Path(__file__).parent / "data" / "rocrate"
CONTEXTS = {
    "https://w3id.org/ro/crate/1.1/context": DATA / "ro-crate-1.1-context.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": DATA / "workflow-run-context.json",
}
#: Profile URIs a crate claims -> the validator's profile identifiers.
PROFILES = {
    "https://w3id.org/ro/crate/1.1": "ro-crate-1.1",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "workflow-ro-crate-1.0",
    "https://w3id.org/ro/wfrun/process/0.5": "process-run-crate-0.5",
    "https://w3id.org/ro/wfrun/workflow/0.5": "workflow-run-crate-0.5",
    "https://w3id.org/ro/wfrun/provenance/0.5": "provenance-run-crate-0.5",
}
#: The one RECOMMENDED check the crates cannot meet, and why (nothing else may fail).
#: "The SoftwareApplication id SHOULD be an absolute URI" (the validator's
#: profiles/process-run-crate/should/0_software-application.ttl,
#: ProcRCSoftwareApplicationID) asks every SoftwareApplication, SoftwareSourceCode and
#: ComputationalWorkflow for an @id starting with "http". The Process Run Crate 0.5 itself
#: says such an @id "SHOULD be an absolute URI, but MAY be a relative URI to a data entity in
#: the crate ... or a local identifier for tools that are not otherwise described on the web"
#: (ResearchObject/workflow-run-crate docs/profiles/0.5/process_run_crate/index.md), and its
#: own Provenance Run Crate example uses "packed.cwl#revtool.cwl"; the check knows no such
#: case (crs4/rocrate-validator#51, open). The main workflow must be a data entity of the
#: crate (Workflow RO-Crate 1.0; the validator's MainWorkflowFileExistence fails it as a REQUIRED
#: issue otherwise), so a relative @id; the rule tools are local identifiers ("#rule-<name>")
#: of rules defined in files of the crate, which no web page describes. nf-prov does the same
#: (main workflow "main.nf", modules "#module/<name>": nextflow-io/nf-prov
#: src/main/groovy/nextflow/prov/renderers/WrrocRenderer.groovy, render and getModuleId).
KNOWN = {"process-run-crate-0.5_5.1"}
#: "The organization SHOULD have a URL": known only for an affiliation the config gives no
#: AffiliationURL for (the organisation is still named: the author does have it).
NO_URL = "ro-crate-1.1_31.2"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def context_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A requests-cache cache holding the contexts, filled without the network."""
    import requests
    import urllib3
    from requests_cache import CachedSession

    class LocalCopies(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:
            path = CONTEXTS.get(request.url)
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(path.read_bytes() if path else b""), status=200 if path else 404,
                headers={"Content-Type": "application/ld+json"}, preload_content=False,
                request_url=request.url)
            return self.build_response(request, raw)

    cache = tmp_path_factory.mktemp("rocrate-validator") / "http-cache"
    # the validator's own session settings (rocrate_validator.utils.http.HttpRequester)
    with CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1,
                       allowable_methods=("GET",), allowable_codes=(200, 302, 404)) as session:
        for prefix in ("https://", "http://"):
            session.mount(prefix, LocalCopies())
        for url in CONTEXTS:
            assert session.get(url).status_code == 200
    return cache


def validate(crate: Path, profile: str, cache: Path) -> list[Any]:
    """Every REQUIRED or RECOMMENDED issue of ``crate`` (a directory or zip) for ``profile``
    and the profiles it builds on, validated offline."""
    from rocrate_validator import models, services

    settings = models.ValidationSettings(
        rocrate_uri=str(crate), profile_identifier=profile,
        requirement_severity=models.Severity.RECOMMENDED, offline=True, cache_path=cache)
    return list(services.validate(settings).get_issues(models.Severity.RECOMMENDED))


def describe(issues: list[Any]) -> str:
    return "\n".join(f"{i.severity.name} {i.check.identifier} {i.violatingEntity}: {i.message}"
                     for i in issues)


@pytest.fixture(scope="module")
def crate_root(workflow_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's workflow run (a copy: the shared one stays as it is) with its crate."""
    root = tmp_path_factory.mktemp("crate") / "workspace"
    shutil.copytree(workflow_run, root, symlinks=True)
    run([sys.executable, "-m", "steps.provenance", "--workspace", str(root)], REPO)
    return root


def test_the_crate_is_at_the_root_of_its_payload(crate_root: Path) -> None:
    crate = json.loads((crate_root / "ro-crate-metadata.json").read_text())
    assert not (crate_root / "results" / "provenance").exists()
    assert crate["@context"] == ["https://w3id.org/ro/crate/1.1/context",
                                 "https://w3id.org/ro/terms/workflow-run/context"]
    graph = {e["@id"]: e for e in crate["@graph"]}
    files = [i for i, e in graph.items() if "File" in e["@type"]]
    assert len(files) > 200
    assert all((crate_root / unquote(i)).is_file() for i in files)  # ids are URI references
    descriptor = {c["@id"] for c in graph["ro-crate-metadata.json"]["conformsTo"]}
    assert descriptor == {"https://w3id.org/ro/crate/1.1",
                          "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}


def test_the_crate_passes_the_validator_for_every_profile_it_claims(
        crate_root: Path, context_cache: Path) -> None:
    graph = {e["@id"]: e for e in json.loads(
        (crate_root / "ro-crate-metadata.json").read_text())["@graph"]}
    claimed = {c["@id"] for c in graph["./"]["conformsTo"]} | {
        c["@id"] for c in graph["ro-crate-metadata.json"]["conformsTo"]}
    assert claimed == set(PROFILES)  # a local run has Snakemake's per-job records
    # the Provenance Run Crate builds on all the others: one validation checks each of them
    issues = validate(crate_root, "provenance-run-crate-0.5", context_cache)
    checked = {i.check.identifier.rsplit("_", 1)[0] for i in issues}
    assert checked <= set(PROFILES.values())
    unexpected = [i for i in issues if i.check.identifier not in KNOWN]
    assert not unexpected, describe(unexpected)
    # the known ones are what they are said to be, and no more: the main workflow, a file of
    # the crate, and the rule tools, each a local identifier of a rule a crate file defines
    main = graph["./"]["mainEntity"]["@id"]
    tools = [t["@id"] for t in graph[main]["hasPart"]]
    assert {local_id(crate_root, i) for i in issues} == {main, *tools}
    for tool in tools:
        rule = tool.removeprefix("#rule-")
        source = graph[tool]["url"]
        assert "File" in graph[source]["@type"]
        assert re.search(rf"^\s*rule\s+{rule}\s*:|rule_name\(\s*\"{rule.split('_')[0]}\"",
                         (crate_root / source).read_text(), re.M), (tool, source)


def local_id(root: Path, issue: Any) -> str:
    """The @id, relative to the crate's root, of the entity an issue is about."""
    value = str(issue.violatingPropertyValue)
    base = root.resolve().as_uri() + "/"
    assert value.startswith(base), value
    return unquote(value[len(base):])


def test_an_affiliation_without_url_is_the_one_issue_more(crate_root: Path, context_cache: Path,
                                                           tmp_path: Path) -> None:
    """An analysis whose config gives no AffiliationURL (the schema makes it optional)."""
    root = tmp_path / "workspace"
    shutil.copytree(crate_root, root, symlinks=True)
    config = json.loads((root / "results" / "config.json").read_text())
    for author in config["Publication"]["Authors"]:
        assert author.pop("AffiliationURL")  # the bundled analysis gives one
    (root / "results" / "config.json").write_text(json.dumps(config))
    run([sys.executable, "-m", "steps.provenance", "--workspace", str(root)], REPO)
    issues = validate(root, "ro-crate-1.1", context_cache)
    assert [i.check.identifier for i in issues] == [NO_URL], describe(issues)
    assert str(issues[0].violatingEntity).endswith("#org-pubflow")


def test_an_orphaned_crate_fails(crate_root: Path, context_cache: Path,
                                 tmp_path: Path) -> None:
    """The check has teeth: the same metadata away from its payload is not a crate."""
    (tmp_path / "ro-crate-metadata.json").write_bytes(
        (crate_root / "ro-crate-metadata.json").read_bytes())
    issues = validate(tmp_path, "ro-crate-1.1", context_cache)
    missing = [i for i in issues if i.check.identifier == "ro-crate-1.1_12.1"]
    assert len(missing) > 200, describe(issues[:5])


def test_the_zenodo_bundle_carries_a_valid_crate_of_its_own_files(
        crate_root: Path, context_cache: Path, tmp_path: Path) -> None:
    """The Zenodo dry-run bundle is flat (``files/<name>``); its crate lists exactly those
    files and passes the validator for every profile it claims."""
    result = subprocess.run([sys.executable, "-m", "steps.publish", "zenodo", "--out",
                             str(tmp_path / "zenodo")], cwd=crate_root, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    files = tmp_path / "zenodo" / "bundle" / "files"
    names = sorted(p.name for p in files.iterdir())
    assert {"model-workspace.json", "ro-crate-metadata.json", "README.md"} <= set(names)
    manifest = json.loads((tmp_path / "zenodo" / "bundle" / "manifest.json").read_text())
    assert sorted(f["name"] for f in manifest["files"]) == names  # the crate is uploaded too
    graph = {e["@id"]: e for e in json.loads(
        (files / "ro-crate-metadata.json").read_text())["@graph"]}
    listed = sorted(unquote(i) for i, e in graph.items() if "File" in e["@type"])
    assert listed == sorted(set(names) - {"ro-crate-metadata.json"})
    claimed = {c["@id"] for c in graph["./"]["conformsTo"]} | {
        c["@id"] for c in graph["ro-crate-metadata.json"]["conformsTo"]}
    # the jobs' inputs and outputs are not in the deposit: no Provenance Run Crate
    assert claimed == set(PROFILES) - {"https://w3id.org/ro/wfrun/provenance/0.5"}
    issues = validate(files, "workflow-run-crate-0.5", context_cache)  # and all it builds on
    unexpected = [i for i in issues if i.check.identifier not in KNOWN]
    assert not unexpected, describe(unexpected)
    main = graph["./"]["mainEntity"]["@id"]
    assert main == "pubflow-workflow.tar.gz"
    assert {local_id(files, i) for i in issues} == {main}
