"""Zenodo: the workflow, inputs manifest, outputs and provenance as one deposit with a DOI.

The flow follows Zenodo's legacy deposit REST API (https://developers.zenodo.org):

1. ``POST /api/deposit/depositions`` with the metadata creates a draft (``201``); its
   ``links.bucket`` is where files go. When the analysis was published before, a new version
   of the same concept record is opened instead. A draft of that concept record that already
   exists (a run that lost the answer) is adopted; otherwise ``POST
   .../{id}/actions/newversion`` on the latest version answers ``201`` with the new draft,
   holding the previous version's files. It is not repeated: zenodo-rdm hands back the
   existing draft and imports the files again, which Invenio refuses with 400 "Please remove
   all files first." once the draft holds a file (zenodo-rdm ``legacy/resources.py``
   ``LegacyRecordResource.new_version``; invenio-drafts-resources
   ``FileComponent.import_files``).
2. ``PUT {bucket}/{name}`` streams each file (``201``; files inherited from the previous
   version that changed or vanished are removed first with ``DELETE {bucket}/{name}``); the
   ``md5`` each answer reports must be the local file's.
3. ``PUT /api/deposit/depositions/{id}`` with ``{"metadata": ...}`` sets the metadata.
4. ``GET /api/deposit/depositions/{id}/files``: every file must be there with the local md5
   and size, and nothing else, before anything is published.
5. With ``--publish`` only: ``POST .../{id}/actions/publish`` (``202``) registers the DOI.

Authentication is ``Authorization: Bearer $ZENODO_TOKEN`` (never the ``access_token`` query
parameter the examples use: URLs end up in logs). The state file keeps the draft, the files
already uploaded and the published versions; creating and publishing are recorded as pending
before they are sent, so that a re-run asks Zenodo what happened instead of repeating them,
and a new version's draft is recorded as soon as its answer names it.

Zenodo's legacy serializer reports every draft's reserved DOI as ``10.5281/zenodo.<id>``,
the production prefix, on the sandbox too (``legacyjson.LegacySchema.dump_prereserve_doi``);
on the sandbox such a DOI names nothing, so it is kept only as ``sandbox_reserved_doi`` and
never as a DOI that links could use.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.config import load_analysis, validate
from steps.errors import PubflowError
from steps.publish import buckets, common, links
from steps.publish.bundle import (
    CRATE_NAME,
    README,
    WORKFLOW_ARCHIVE,
    BundleFile,
    RunCrate,
    write_bundle,
)
from steps.publish.gate import check_gate
from steps.publish.http import PermanentHttpError
from steps.publish.links import Links
from steps.publish.metadata import digest, zenodo_metadata
from steps.publish.plan import PLAN, Step
from steps.publish.publisher import (
    PAGE_SIZE,
    VersionedPublisher,
    plan_publish,
    plan_settle,
    plan_up_to_date,
)
from steps.publish.secrets import Redactor, credential, redacted_logging
from steps.publish.state import State

log = logging.getLogger(__name__)

SANDBOX = "https://sandbox.zenodo.org"
PRODUCTION = "https://zenodo.org"
DEPOSITIONS = "api/deposit/depositions"
TOKEN_ENV = "ZENODO_TOKEN"
CREDENTIALS = {TOKEN_ENV: "Authorization: Bearer header"}
METADATA = "metadata.json"
#: Zenodo's production DOI prefix: on the sandbox, a DOI with it is not the sandbox record's.
PRODUCTION_DOI_PREFIX = "10.5281/"


def sources(results: Path, report: Path) -> dict[str, Path]:
    """The outputs that go into the deposit (remote name -> local file).

    The HEPData archive, the likelihood (``results/model/*.json``), fit results and limits
    (``results/fit/*.json``), figures and the validation report (the bundle adds the
    workflow archive, and the crate of these files with its README).
    """
    found = {"hepdata-submission.tar.gz": results / "hepdata" / "submission.tar.gz"}
    for path in sorted((results / "model").glob("*.json")):
        found[f"model-{path.name}"] = path
    for path in sorted((results / "fit").glob("*.json")):
        found[f"fit-{path.name}"] = path
    for path in sorted((results / "fit" / "figures").glob("*")):
        if path.suffix in (".png", ".pdf", ".svg") and path.is_file():
            found[f"figure-{path.name}"] = path
    found["validation-report.json"] = report
    if not any(name.startswith("model-") for name in found):
        raise PubflowError("no likelihood to publish (results/model/*.json)", path=results)
    return found


@dataclass(frozen=True)
class Outputs:
    """The analysis outputs a Zenodo or InvenioRDM record holds, through the gate.

    Attributes:
        publication: The config's ``Publication`` block.
        files: Remote name -> local file (:func:`sources`; the bundle adds the workflow).
        workflow_inputs: The config and the dataset manifest (inside the workflow archive).
        links: What the record links to.
        crate: The run's RO-Crate, from which the bundle's own is derived.
    """

    publication: dict[str, Any]
    files: dict[str, Path]
    workflow_inputs: tuple[str, ...]
    links: Links
    crate: RunCrate

    @property
    def names(self) -> list[str]:
        """The names of every file in the record, the workflow archive first."""
        own = [README, CRATE_NAME] if self.crate.path.is_file() else []
        return [WORKFLOW_ARCHIVE, *self.files, *own]


def outputs(opts: common.Options, args: argparse.Namespace, service: str) -> Outputs:
    """Read the config, find the outputs, check them at the gate, and find the links.

    Raises:
        PubflowError: If the config lacks what publishing needs, or the gate refuses.
    """
    config = load_analysis(opts.config)
    publication = common.publication(config, opts.config)
    common.check_inspire_id(config, opts)
    files = sources(opts.results, opts.report)
    datasets = config.get("Datasets")
    workflow_inputs = tuple(str(p) for p in (opts.config, datasets) if p)
    # the config and manifest travel inside the workflow archive: they too must be the
    # validated ones. Every output must be vouched for; the bundle's crate through them
    gate = check_gate(opts.report, [*files.values(), *workflow_inputs], complete=True)
    found = links.discover(opts.publish_root, production=opts.production,
                           hepdata=args.hepdata_url, code=args.code_url)
    if not found.hepdata:
        log.warning("%s: no HEPData record to link yet (publish it first: `python -m "
                    "steps.publish hepdata --upload`, or give --hepdata-url)", service)
    return Outputs(publication, files, workflow_inputs, found,
                   RunCrate(opts.root / CRATE_NAME, gate))


def _real_doi(doi: Any, production: bool) -> str | None:
    """A DOI Zenodo reported, if it names this endpoint's record: on the sandbox, one with
    the production prefix does not (the legacy serializer writes 10.5281 everywhere)."""
    if not doi:
        return None
    if not production and str(doi).startswith(PRODUCTION_DOI_PREFIX):
        return None
    return str(doi)


def _draft_id(url: str) -> int | str:
    """The deposition id at the end of a ``.../deposit/depositions/<id>`` link."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else last


def _remote_files(dep: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A deposition's files: name -> {md5, size} (from its ``files`` list)."""
    return {f["filename"]: {"md5": buckets.md5_of(f.get("checksum")),
                            "size": f.get("filesize")}
            for f in dep.get("files") or []}


def _md5s(dep: Mapping[str, Any]) -> dict[str, str]:
    """A deposition's files: name -> md5."""
    return {k: v["md5"] for k, v in _remote_files(dep).items()}


class ZenodoPublisher(VersionedPublisher):
    """One run of the Zenodo flow against one endpoint, resumable from the state file.

    It takes :class:`~steps.publish.publisher.VersionedPublisher`'s arguments
    (``new_version_of``: a published deposition).
    """

    service = "Zenodo"
    collection = DEPOSITIONS
    logger = log
    noun = "deposition"
    continues = "the latest published version's id"
    drafts_remedy = " in Zenodo's web interface, then re-run"

    # -- Zenodo's requests and answers ------------------------------------------------------

    def _draft_path(self, dep_id: int | str) -> str:
        return f"{DEPOSITIONS}/{dep_id}"

    def _body(self) -> dict[str, Any]:
        return {"metadata": self.metadata}

    def _drafts_page(self, page: int) -> list[dict[str, Any]]:
        return self.client.json(
            "GET", DEPOSITIONS, what="list drafts",
            params={"status": "draft", "sort": "mostrecent", "size": str(PAGE_SIZE),
                    "page": str(page)}) or []

    def _title(self, dep: Mapping[str, Any]) -> Any:
        return (dep.get("metadata") or {}).get("title", dep.get("title"))

    def _describe_draft(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        reserved = ((dep.get("metadata") or {}).get("prereserve_doi") or {}).get("doi")
        described = {"id": dep["id"], "bucket": dep["links"]["bucket"],
                     "html": dep["links"].get("html", ""),
                     "reserved_doi": _real_doi(reserved, self.production),
                     "conceptrecid": dep.get("conceptrecid")}
        if reserved and described["reserved_doi"] is None:
            described["sandbox_reserved_doi"] = reserved  # as reported; resolves to nothing
        return described

    def _is_published(self, rec: Mapping[str, Any]) -> bool:
        return bool(rec.get("submitted"))

    def _version(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        doi = _real_doi(rec.get("doi"), self.production)
        return {"id": rec["id"], "record_id": rec.get("record_id"), "doi": doi,
                "conceptrecid": rec.get("conceptrecid"),
                "conceptdoi": _real_doi(rec.get("conceptdoi"), self.production),
                "url": (rec.get("doi_url") if doi else None) or rec.get("record_url")
                or rec["links"].get("record_html") or rec["links"].get("html", "")}

    def _published_files(self, rec: Mapping[str, Any]) -> dict[str, str]:
        return _md5s(rec)

    def _draft_files(self, dep_id: int | str, what: str) -> dict[str, dict[str, Any]]:
        listed = self.client.json("GET", f"{DEPOSITIONS}/{dep_id}/files", what=what) or []
        return _remote_files({"files": listed})

    def _resume(self, dep_id: int | str
                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        dep = self._get(dep_id, "resume the draft")
        if dep is None:
            return None, None
        if dep.get("submitted"):
            return None, dep
        if not self.section["draft"].get("bucket"):  # recorded before the draft was read
            self.section["draft"] = self._describe_draft(dep)
            self.state.save()
        return dep, None

    # -- new versions -----------------------------------------------------------------------

    def _version_draft(self, latest: Mapping[str, Any]) -> dict[str, Any] | None:
        """The unpublished new version of ``latest``'s concept record, if one exists."""
        concept = latest.get("conceptrecid")
        if concept is None:  # recorded by an older pubflow: ask
            dep = self._get(latest["id"], "the latest version's concept record")
            concept = (dep or {}).get("conceptrecid")
        if concept is None:
            return None
        found = [d for d in self._drafts()
                 if not d.get("submitted") and str(d.get("conceptrecid")) == str(concept)
                 and d["id"] != latest["id"]]
        if len(found) > 1:  # Zenodo keeps one per concept record; never guess between them
            raise PubflowError(
                f"Zenodo: several unpublished new versions of concept record {concept} "
                f"({', '.join(str(d['id']) for d in found)}): discard all but one in Zenodo's "
                "web interface, then re-run", path=self.state.path)
        return found[0] if found else None

    def _adopt(self, draft: Mapping[str, Any], latest_id: int) -> dict[str, Any]:
        if draft.get("submitted"):
            raise PubflowError(f"Zenodo: no new version draft was opened for {latest_id}")
        self.section["draft"] = self._describe_draft(draft)
        self.section["files"] = {}
        self.state.save()
        self.changed = True
        return dict(draft)

    def _new_version(self, latest: Mapping[str, Any]) -> dict[str, Any]:
        """The draft of the next version of ``latest``: the existing one, else a new one.

        Asking for a new version is never repeated blindly: with a draft in place, Zenodo
        hands it back but imports the previous files into it again, and refuses that (400
        "Please remove all files first.") as soon as the draft holds any file.
        """
        latest_id = latest["id"]
        existing = self._version_draft(latest)
        if existing is not None:
            log.info("Zenodo: resuming new version %s of %s (opened by an earlier run)",
                     existing["id"], latest_id)
            return self._adopt(existing, latest_id)
        try:
            answer = self.client.json("POST", f"{DEPOSITIONS}/{latest_id}/actions/newversion",
                                      expect=(201,), idempotent=False,
                                      what="open a new version")
        except PermanentHttpError as err:
            if err.status != 400 or "remove all files" not in str(err).lower():
                raise
            # the draft exists although the listing did not show it (its search index lags)
            existing = self._version_draft(latest)
            if existing is None:
                raise PubflowError(
                    f"Zenodo: a new version of {latest_id} is already open, but it is not "
                    "listed among the drafts yet; re-run in a minute") from None
            return self._adopt(existing, latest_id)
        url = (answer.get("links") or {}).get("latest_draft") or (answer.get("links") or {}).get(
            "self", "")
        draft_id = _draft_id(url) if url else answer["id"]
        if draft_id == answer.get("id") and not answer.get("submitted"):
            # zenodo-rdm answers with the draft itself: nothing more to ask
            draft = self._adopt(answer, latest_id)
        else:
            # the answer describes the old version: record the draft's id before asking for it
            self.section["draft"] = {"id": draft_id, "bucket": None, "html": "",
                                     "reserved_doi": None,
                                     "conceptrecid": latest.get("conceptrecid")}
            self.section["files"] = {}
            self.state.save()
            draft = self._adopt(self.client.json("GET", url, what="the new version"),
                                latest_id)
        log.info("Zenodo: opened new version %s of %s", draft["id"], latest_id)
        return draft

    # -- files ------------------------------------------------------------------------------

    def _listed(self, dep: Mapping[str, Any]) -> Callable[[], set[str]]:
        """The names of the deposition's files, as Zenodo lists them now."""
        return lambda: set(self._draft_files(dep["id"], "list the files"))

    def _sync_files(self, dep: Mapping[str, Any]) -> None:
        bucket = dep["links"]["bucket"]
        remote = _remote_files(dep)
        listed = self._listed(dep)
        done: dict[str, Any] = self.section.setdefault("files", {})
        for name in sorted(set(remote) - set(self.local)):
            buckets.delete_object(self.client, bucket, name, listed)
            done.pop(name, None)
            self.state.save()
            self.changed = True
        for file in self.bundle.files:
            if remote.get(file.name, {}).get("md5") == file.md5:
                if done.get(file.name, {}).get("md5") != file.md5:
                    done[file.name] = {"md5": file.md5, "size": file.size}
                    self.state.save()
                continue
            if file.name in remote:
                buckets.delete_object(self.client, bucket, file.name, listed)
            buckets.put_file(self.client, bucket, self.bundle, file, listed)
            done[file.name] = {"md5": file.md5, "size": file.size}
            self.state.save()
            self.changed = True


# -- the plan -------------------------------------------------------------------------------


def plan_steps(
    files: tuple[BundleFile, ...],
    metadata: dict[str, Any],
    section: Mapping[str, Any],
    *,
    base: str,
    publish: bool,
    new_version_of: int | None,
) -> tuple[list[Step], list[str]]:
    """The requests an upload would send, given what the state file records.

    Returns:
        The steps and notes for the reader.
    """
    api = f"{base}/{DEPOSITIONS}"
    local = {f.name: f.md5 for f in files}
    metadata_sha = digest(metadata)
    steps, notes = plan_settle(section, drafts=f"{api}?status=draft", records=api,
                               service="Zenodo")
    draft, latest = section.get("draft"), section.get("latest")
    inherited: dict[str, str] = {}
    if draft:
        steps.append(Step("resume-draft", "GET", f"{api}/{draft['id']}",
                          note="the draft recorded in the state file"))
        dep_id, bucket = str(draft["id"]), draft.get("bucket") or "{links.bucket}"
        inherited = {k: v["md5"] for k, v in section.get("files", {}).items()}
    elif latest or new_version_of:
        latest_id = latest["id"] if latest else new_version_of
        if up_to_date := plan_up_to_date(latest, files, metadata_sha):
            return steps, [*notes, up_to_date]
        if not latest:
            steps.append(Step("find-version", "GET", f"{api}/{latest_id}",
                              note="--new-version-of: must be published"))
        steps.append(Step("find-version-draft", "GET", f"{api}?status=draft",
                          note="an unpublished new version of the concept record (an earlier "
                               "run's) is resumed instead of asking for another"))
        steps.append(Step("new-version", "POST", f"{api}/{latest_id}/actions/newversion",
                          note="a new version of the same concept record, never a new record; "
                               "the answer is the draft, holding the previous files"))
        dep_id, bucket = "{id}", "{links.bucket}"
        inherited = dict((latest or {}).get("fingerprint", {}).get("files", {}))
        for name in sorted(set(inherited) - set(local)):
            steps.append(Step("remove-file", "DELETE", f"{bucket}/{name}",
                              note="in the previous version, not in this one"))
    else:
        steps.append(Step("find-drafts", "GET", f"{api}?status=draft",
                          note="drafts that exist before the creation (to recognise ours if "
                               "the answer is lost)"))
        steps.append(Step("create", "POST", api, body=METADATA,
                          note="a new draft deposition; its links.bucket receives the files"))
        dep_id, bucket = "{id}", "{links.bucket}"
    for file in files:
        if inherited.get(file.name) == file.md5:
            continue
        if file.name in inherited:
            steps.append(Step("remove-file", "DELETE", f"{bucket}/{file.name}",
                              note="changed since the previous version"))
        steps.append(Step("upload", "PUT", f"{bucket}/{file.name}", body=f"files/{file.name}",
                          note=f"{file.size} bytes, md5 {file.md5}: must match the md5 "
                               "Zenodo reports"))
    if not (draft and section.get("metadata_sha256") == metadata_sha):
        steps.append(Step("set-metadata", "PUT", f"{api}/{dep_id}", body=METADATA))
    steps.append(Step("verify", "GET", f"{api}/{dep_id}/files",
                      note="every file present with the local md5 and size, nothing else"))
    plan_publish(steps, notes, f"{api}/{dep_id}/actions/publish", publish=publish,
                 stays="the deposit stays a draft: review it on Zenodo, then re-run with "
                       "--publish")
    return steps, notes


# -- command line ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``zenodo`` subcommand's options."""
    common.add_common_arguments(p, "zenodo", sandbox=SANDBOX, production=PRODUCTION)
    z = p.add_argument_group("Zenodo")
    z.add_argument("--publish", action="store_true",
                   help="publish the deposit (registers the DOI; cannot be undone). Without "
                        "it the deposit stays a draft to review")
    z.add_argument("--new-version-of", type=int, metavar="ID",
                   help="continue an existing concept record: the id of its latest published "
                        "version (only needed when the state file does not know it)")
    z.add_argument("--code-url", metavar="URL",
                   help="the analysis code's repository, linked as isCompiledBy")
    z.add_argument("--hepdata-url", metavar="URL",
                   help="the HEPData record to link [default: from results/publish/hepdata]")
    z.add_argument("--license", metavar="ID",
                   help="Zenodo licence id [default: Publication.License.Name, lower-cased]")
    z.add_argument("--upload-type", default="dataset",
                   help="Zenodo upload type")


def main(args: argparse.Namespace) -> None:
    """Write the bundle and plan; with ``--upload``, send them."""
    opts = common.options(args, "zenodo", sandbox=SANDBOX, production=PRODUCTION)
    redactor = Redactor()
    token = credential(TOKEN_ENV, purpose=f"a {opts.kind} Zenodo personal access token with "
                       "the deposit:write and deposit:actions scopes") if opts.upload else None
    redactor.add(token)
    with redacted_logging(redactor):
        record = outputs(opts, args, "Zenodo")
        state = State(opts.state_path, "zenodo", redactor)
        metadata = zenodo_metadata(record.publication, files=record.names, links=record.links,
                                   license_id=args.license, upload_type=args.upload_type)
        validate(metadata, "zenodo-metadata", f"{opts.config} (Publication, as Zenodo metadata)")
        common.check_hepdata_link(record.links, opts, publish=args.publish, service="Zenodo")

        def documents(bundle_files: tuple[BundleFile, ...]) -> dict[str, Any]:
            steps, notes = plan_steps(bundle_files, metadata, state.peek(opts.base_url),
                                      base=opts.base_url, publish=args.publish,
                                      new_version_of=args.new_version_of)
            return {METADATA: {"metadata": metadata},
                    PLAN: common.plan(opts, steps, notes, publish=args.publish,
                                      credentials=CREDENTIALS)}

        bundle = write_bundle(opts.out, record.files, documents, workflow_root=opts.root,
                              workflow_extra=record.workflow_inputs, crate=record.crate)
        if not opts.upload:
            common.log_dry_run(bundle)
            return
        outcome = common.send(
            "Zenodo", opts, state, redactor, token=token,
            start=lambda client: ZenodoPublisher(
                client, state, bundle, metadata, publish=args.publish,
                new_version_of=args.new_version_of, production=opts.production).run)
        common.log_outcome("Zenodo", opts, "deposition", outcome)
