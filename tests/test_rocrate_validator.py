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
#: The two RECOMMENDED checks the crate cannot meet, each with why (nothing else may fail).
KNOWN = {
    # "SoftwareApplication id SHOULD be an absolute URI" also hits the main workflow and the
    # rule tools, which are files of the crate (relative ids, as Workflow RO-Crate requires
    # of the main workflow): crs4/rocrate-validator#51, open.
    "process-run-crate-0.5_5.1",
    # "Organization SHOULD have a URL": Publication.Authors[].Affiliation is a name only (the
    # config schema has no URL for it).
    "ro-crate-1.1_31.2",
}

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
    # the known ones are what they are said to be, and no more
    for issue in issues:
        if issue.check.identifier == "process-run-crate-0.5_5.1":
            assert str(issue.violatingPropertyValue).startswith(crate_root.resolve().as_uri())
    assert sum(i.check.identifier == "ro-crate-1.1_31.2" for i in issues) <= 1


def test_an_orphaned_crate_fails(crate_root: Path, context_cache: Path,
                                 tmp_path: Path) -> None:
    """The check has teeth: the same metadata away from its payload is not a crate."""
    (tmp_path / "ro-crate-metadata.json").write_bytes(
        (crate_root / "ro-crate-metadata.json").read_bytes())
    issues = validate(tmp_path, "ro-crate-1.1", context_cache)
    missing = [i for i in issues if i.check.identifier == "ro-crate-1.1_12.1"]
    assert len(missing) > 200, describe(issues[:5])


def test_the_zenodo_bundle_carries_no_orphaned_crate(crate_root: Path, context_cache: Path,
                                                     tmp_path: Path) -> None:
    """The Zenodo dry-run bundle is flat (``files/<name>``): a crate in it would list files it
    does not hold. Whatever crate it carries must validate there."""
    result = subprocess.run([sys.executable, "-m", "steps.publish", "zenodo", "--out",
                             str(tmp_path / "zenodo")], cwd=crate_root, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    files = tmp_path / "zenodo" / "bundle" / "files"
    names = sorted(p.name for p in files.iterdir())
    assert "model-workspace.json" in names
    if "ro-crate-metadata.json" in names:
        issues = validate(files, "provenance-run-crate-0.5", context_cache)
        unexpected = [i for i in issues if i.check.identifier not in KNOWN]
        assert not unexpected, describe(unexpected)
