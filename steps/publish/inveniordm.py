"""InvenioRDM: the same deposit as Zenodo's, through InvenioRDM's own REST API.

Any InvenioRDM instance (``--base-url``), Zenodo included (zenodo.org runs on InvenioRDM).
The flow follows invenio-rdm-records' resources (``RDMRecordResourceConfig``,
``RDMDraftFilesResourceConfig``) and the draft service of invenio-drafts-resources:

1. ``POST /api/records`` with the metadata creates a draft (``201``). A draft is saved even
   when its metadata is incomplete: the problems come back under ``errors``, and only the
   publication checks strictly. When the analysis was published before,
   ``POST /api/records/{id}/versions`` opens a new version instead (``201``); while that
   draft exists the same request hands it back, so repeating it never makes a second one.
   A new version starts without files: ``POST .../draft/actions/files-import`` copies the
   previous version's (``201``, only into a draft without files), and the changed or
   vanished ones are then removed (``DELETE .../draft/files/{key}``, ``204``).
2. Each file: ``POST .../draft/files`` with ``[{"key": name}]`` (``201``), ``PUT
   .../draft/files/{key}/content`` streams it (``200``; a failed transfer also answers
   ``200``, with ``errors``, and the entry is gone), ``POST .../draft/files/{key}/commit``
   (``200``) reports its ``checksum`` (``md5:<hex>``), which must be the local file's.
3. ``PUT /api/records/{id}/draft`` sets the metadata of a new version (``200``).
4. ``GET .../draft/files``: every file committed with the local md5 and size, nothing else.
5. With ``--publish`` only: ``POST .../draft/actions/publish`` (``202``).

Authentication is ``Authorization: Bearer $INVENIORDM_TOKEN`` (a personal access token of
the instance, with the ``deposit:write`` and ``deposit:actions`` scopes on Zenodo). The state
file keeps the draft (saved as soon as its id is known), the files done and the published
versions; creating and publishing are recorded as pending before they are sent.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from steps.errors import PubflowError
from steps.publish import buckets, common
from steps.publish.bundle import Bundle, BundleFile, write_bundle
from steps.publish.http import Body, Client, TransientHttpError, server_errors
from steps.publish.metadata import inveniordm_metadata, version_digest
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
from steps.publish.zenodo import outputs

log = logging.getLogger(__name__)

TARGET = "inveniordm"
SERVICE = "InvenioRDM"
SANDBOX = "https://sandbox.zenodo.org"
PRODUCTION = "https://zenodo.org"
#: Hosts whose kind is known: the real Zenodo and its sandbox.
ZENODO_HOSTS = {"zenodo.org": True, "sandbox.zenodo.org": False}
RECORDS = "api/records"
USER_RECORDS = "api/user/records"
TOKEN_ENV = "INVENIORDM_TOKEN"
CREDENTIALS = {TOKEN_ENV: "Authorization: Bearer header"}
METADATA = "metadata.json"
#: The query for the user's unpublished drafts (a search-engine query string).
DRAFTS_QUERY = "is_published:false"
#: What a file's ``status`` is once committed (invenio-records-resources TransferStatus).
COMPLETED = "completed"


# -- the flow ---------------------------------------------------------------------------------


def _entries(listing: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A draft's or record's files (a ``FileList``): key -> {md5, size, status}."""
    return {e["key"]: {"md5": buckets.md5_of(e.get("checksum")), "size": e.get("size"),
                       "status": e.get("status")}
            for e in (listing or {}).get("entries") or []}


def _problems(item: Mapping[str, Any], *, files: bool = False) -> list[str]:
    """The ``errors`` a draft or file answer lists (a draft saves with errors; those about
    files are expected until the files are in, and are skipped unless ``files``)."""
    errors = item.get("errors") or []
    if not files:
        errors = [e for e in errors if not (isinstance(e, Mapping)
                                            and str(e.get("field") or "").startswith("files"))]
    return server_errors(errors)


def _doi(item: Mapping[str, Any]) -> str | None:
    return ((item.get("pids") or {}).get("doi") or {}).get("identifier")


def _imports(latest: Mapping[str, Any] | None, local: Mapping[str, str]) -> bool:
    """Whether importing the previous version's files saves uploads (true when unknown)."""
    recorded = ((latest or {}).get("fingerprint") or {}).get("files")
    if recorded is None or not latest:
        return True
    return any(local.get(name) == md5 for name, md5 in recorded.items())


class InvenioRDMPublisher(VersionedPublisher):
    """One run of the InvenioRDM flow against one instance, resumable from the state file.

    It takes :class:`~steps.publish.publisher.VersionedPublisher`'s arguments (``metadata``
    is the whole draft body; ``new_version_of``: a published record).
    """

    service = SERVICE
    collection = RECORDS
    logger = log
    noun = "record"
    continues = "one"
    drafts_remedy = " in the instance's web interface (My dashboard), then re-run"

    def __init__(self, client: Client, state: State, bundle: Bundle, metadata: dict[str, Any],
                 *, publish: bool, new_version_of: str | None, production: bool) -> None:
        super().__init__(client, state, bundle, metadata, publish=publish,
                         new_version_of=new_version_of, production=production)
        self.metadata_sha = version_digest(metadata)
        self._fresh = False  # the draft was created by this run: it holds no files

    def _file_url(self, dep_id: str, name: str, rest: str = "") -> str:
        return f"{self._draft_path(dep_id)}/files/{quote(name)}{rest}"

    # -- InvenioRDM's requests and answers --------------------------------------------------

    def _draft_path(self, dep_id: int | str) -> str:
        return f"{RECORDS}/{quote(str(dep_id))}/draft"

    def _body(self) -> dict[str, Any]:
        return self.metadata

    def _drafts_page(self, page: int) -> list[dict[str, Any]]:
        """One page of the user's unpublished drafts (``GET /api/user/records``).

        The search index is refreshed about once a second: a draft made a moment ago may
        not be listed yet (a retry waits ``--backoff`` seconds first).
        """
        answer = self.client.json(
            "GET", USER_RECORDS, what="list drafts",
            params={"q": DRAFTS_QUERY, "sort": "newest", "size": str(PAGE_SIZE),
                    "page": str(page)}) or {}
        return (answer.get("hits") or {}).get("hits") or []

    def _title(self, dep: Mapping[str, Any]) -> Any:
        return (dep.get("metadata") or {}).get("title")

    def _describe_draft(self, dep: Mapping[str, Any], new_version_of: str | None = None
                        ) -> dict[str, Any]:
        return {"id": dep["id"], "parent": (dep.get("parent") or {}).get("id"),
                "html": (dep.get("links") or {}).get("self_html", ""), "reserved_doi": _doi(dep),
                "new_version_of": new_version_of}

    def _is_published(self, rec: Mapping[str, Any]) -> bool:
        return bool(rec.get("is_published"))

    def _version(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": rec["id"], "parent": (rec.get("parent") or {}).get("id"), "doi": _doi(rec),
                "parent_doi": _doi(rec.get("parent") or {}),
                "url": (rec.get("links") or {}).get("self_html")
                       or (rec.get("links") or {}).get("self", "")}

    def _published_files(self, rec: Mapping[str, Any]) -> dict[str, str]:
        listing = self.client.json("GET", f"{RECORDS}/{quote(str(rec['id']))}/files",
                                   what="the published version's files")
        return {k: v["md5"] for k, v in _entries(listing).items()}

    def _files_published(self, published: Mapping[str, Any]) -> dict[str, str]:
        # a record lists no files: they are the ones the check before the publication read
        return self._verified

    def _draft_files(self, dep_id: int | str, what: str = "list the draft's files"
                     ) -> dict[str, dict[str, Any]]:
        return _entries(self.client.json("GET", f"{self._draft_path(dep_id)}/files",
                                         what=what))

    def _resume(self, dep_id: int | str
                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        dep = self._fetch(self._draft_path(dep_id), "resume the draft")
        if dep is not None:
            return dep, None
        # a published draft is gone as a draft: was it published elsewhere?
        rec = self._get(dep_id, "was the draft published?")
        return None, (rec if rec is not None and self._is_published(rec) else None)

    # -- the draft --------------------------------------------------------------------------

    def _fail_on_problems(self, dep: Mapping[str, Any], action: str) -> None:
        problems = _problems(dep)
        if problems:
            raise PubflowError(
                f"{SERVICE}: draft {dep['id']} was {action}, but the instance finds its "
                f"metadata incomplete, so it cannot be published: {'; '.join(problems)}. Fix "
                "the config's Publication block (or the options) and re-run",
                path=self.state.path)

    def _create(self) -> dict[str, Any]:
        dep = super()._create()
        self._fresh = True
        self._fail_on_problems(dep, "created")
        self.section["metadata_sha256"] = self.metadata_sha
        self.state.save()
        return dep

    def _new_version(self, latest: Mapping[str, Any]) -> dict[str, Any]:
        # DraftRecordService.new_version hands back the new-version draft while it exists
        # ("Draft for new version already exists? if so return it"), so repeating the
        # request (after a lost answer) adopts that draft instead of making a second one.
        latest_id = latest["id"]
        dep = self.client.json("POST", f"{RECORDS}/{quote(str(latest_id))}/versions",
                               expect=(201,), idempotent=True, what="open a new version")
        if dep.get("is_published"):
            raise PubflowError(f"{SERVICE}: no new version draft was opened for {latest_id}")
        self.section["draft"] = self._describe_draft(dep, latest_id)
        self.section["files"] = {}
        self.state.save()
        self.changed = True
        log.info("InvenioRDM: new version draft %s of %s", dep["id"], latest_id)
        return dep

    def _send_metadata(self, dep: Mapping[str, Any]) -> Any:
        saved = super()._send_metadata(dep)
        self._fail_on_problems(saved or {"id": dep["id"]}, "updated")
        return saved

    def _file_problem(self, file: BundleFile, got: Mapping[str, Any]) -> str | None:
        if got["status"] != COMPLETED:
            return f"is not committed ({got['status']})"
        return super()._file_problem(file, got)

    # -- files ------------------------------------------------------------------------------

    def _listed(self, dep_id: str) -> Callable[[], set[str]]:
        return lambda: set(self._draft_files(dep_id, "is the file gone?"))

    def _remove(self, dep_id: str, name: str) -> None:
        buckets.delete_object(self.client, f"{self._draft_path(dep_id)}/files", name,
                              self._listed(dep_id))
        self.section.setdefault("files", {}).pop(name, None)
        self.state.save()
        self.changed = True

    def _upload(self, dep_id: str, file: BundleFile, *, started: bool) -> None:
        """Start (unless ``started``), send and commit one file; check the checksum the
        commit reports, and repeat from the start (up to the retry bound) if it differs."""
        for attempt in range(1, self.client.policy.attempts + 1):
            if not started:
                self.client.json("POST", f"{self._draft_path(dep_id)}/files", expect=(201,),
                                 body=Body(json=[{"key": file.name}]),
                                 what=f"start the upload of {file.name}")
            sent = self.client.json("PUT", self._file_url(dep_id, file.name, "/content"),
                                    expect=(200,), body=Body(file=self.bundle.file_path(
                                        file.name)),
                                    what=f"upload {file.name} ({file.size} bytes)") or {}
            if problems := _problems(sent, files=True):
                # FileContentComponent drops the entry of a failed transfer and answers 200
                log.warning("InvenioRDM: the upload of %s failed (%s); starting it again "
                            "(try %d of %d)", file.name, "; ".join(problems), attempt,
                            self.client.policy.attempts)
                started = False
                continue
            # committing twice links the same object again: repeating it is harmless
            stored = self.client.json("POST", self._file_url(dep_id, file.name, "/commit"),
                                      expect=(200,), idempotent=True,
                                      what=f"commit {file.name}") or {}
            reported = buckets.md5_of(stored.get("checksum"))
            if reported == file.md5 and stored.get("size") in (None, file.size):
                return
            log.warning("InvenioRDM: %s arrived with md5 %s (%s bytes), not %s; removing it "
                        "and uploading again (try %d of %d)", file.name, reported or "(none)",
                        stored.get("size"), file.md5, attempt, self.client.policy.attempts)
            buckets.delete_object(self.client, f"{self._draft_path(dep_id)}/files", file.name,
                                  self._listed(dep_id))
            started = False
        raise TransientHttpError(f"{SERVICE}: {file.name} never arrived intact (checksum "
                                 "mismatch); re-run to try again")

    def _sync_files(self, dep: Mapping[str, Any]) -> None:
        dep_id = dep["id"]
        s = self.section
        remote = {} if self._fresh else self._draft_files(dep_id)
        if not remote and s["draft"].get("new_version_of") and _imports(s.get("latest"),
                                                                        self.local):
            # a new version starts empty (DraftFilesComponent.new_version); the import
            # copies the previous version's files without sending them again
            remote = _entries(self.client.json(
                "POST", f"{self._draft_path(dep_id)}/actions/files-import", expect=(201,),
                what="import the previous version's files"))
            self.changed = True
            log.info("InvenioRDM: imported %d files of the previous version", len(remote))
        done: dict[str, Any] = s.setdefault("files", {})
        for name in sorted(set(remote) - set(self.local)):
            self._remove(dep_id, name)
        for file in self.bundle.files:
            got = remote.get(file.name)
            if got and got["status"] == COMPLETED and got["md5"] == file.md5:
                if done.get(file.name, {}).get("md5") != file.md5:
                    done[file.name] = {"md5": file.md5, "size": file.size}
                    self.state.save()
                continue
            if got and got["status"] == COMPLETED:
                self._remove(dep_id, file.name)
                got = None
            # a pending entry (started, not committed) takes its content again
            self._upload(dep_id, file, started=got is not None)
            done[file.name] = {"md5": file.md5, "size": file.size}
            self.state.save()
            self.changed = True


# -- the plan -------------------------------------------------------------------------------


def plan_steps(
    files: tuple[BundleFile, ...],
    body: dict[str, Any],
    section: Mapping[str, Any],
    *,
    base: str,
    publish: bool,
    new_version_of: str | None,
) -> tuple[list[Step], list[str]]:
    """The requests an upload would send, given what the state file records.

    Returns:
        The steps and notes for the reader.
    """
    api = f"{base}/{RECORDS}"
    local = {f.name: f.md5 for f in files}
    metadata_sha = version_digest(body)
    steps, notes = plan_settle(section, drafts=f"{base}/{USER_RECORDS}?q={DRAFTS_QUERY}",
                               records=api, service="the instance")
    draft, latest = section.get("draft"), section.get("latest")
    inherited: dict[str, str] = {}
    send_metadata = True
    if draft:
        dep_id = str(draft["id"])
        steps.append(Step("resume-draft", "GET", f"{api}/{dep_id}/draft",
                          note="the draft recorded in the state file"))
        steps.append(Step("list-files", "GET", f"{api}/{dep_id}/draft/files",
                          note="what the draft already holds"))
        inherited = {k: v["md5"] for k, v in section.get("files", {}).items()}
        if draft.get("new_version_of") and not inherited and _imports(latest, local):
            steps.append(Step("import-files", "POST",
                              f"{api}/{dep_id}/draft/actions/files-import",
                              note="copies the previous version's files",
                              when="if the draft holds no files"))
            inherited = dict(((latest or {}).get("fingerprint") or {}).get("files") or {})
        send_metadata = section.get("metadata_sha256") != metadata_sha
    elif latest or new_version_of:
        latest_id = latest["id"] if latest else new_version_of
        if up_to_date := plan_up_to_date(latest, files, metadata_sha):
            return steps, [*notes, up_to_date]
        if not latest:
            steps.append(Step("find-version", "GET", f"{api}/{latest_id}",
                              note="--new-version-of: must be published"))
            steps.append(Step("previous-files", "GET", f"{api}/{latest_id}/files"))
        steps.append(Step("new-version", "POST", f"{api}/{latest_id}/versions",
                          note="a new version of the same record (the same request hands "
                               "back the new-version draft if it exists), never a new "
                               "record"))
        dep_id = "{id}"
        steps.append(Step("list-files", "GET", f"{api}/{dep_id}/draft/files",
                          note="a new version starts without files"))
        if _imports(latest, local):
            steps.append(Step("import-files", "POST",
                              f"{api}/{dep_id}/draft/actions/files-import",
                              note="copies the previous version's files (only into a draft "
                                   "without files)", when="if the draft holds no files"))
            inherited = dict(((latest or {}).get("fingerprint") or {}).get("files") or {})
    else:
        steps.append(Step("find-drafts", "GET", f"{base}/{USER_RECORDS}?q={DRAFTS_QUERY}",
                          note="drafts that exist before the creation (to recognise ours if "
                               "the answer is lost)"))
        steps.append(Step("create", "POST", api, body=METADATA,
                          note="a new draft with the metadata; its id is saved at once"))
        dep_id = "{id}"
        send_metadata = False
    for name in sorted(set(inherited) - set(local)):
        steps.append(Step("remove-file", "DELETE", f"{api}/{dep_id}/draft/files/{name}",
                          note="in the draft or the previous version, not in this bundle"))
    for file in files:
        if inherited.get(file.name) == file.md5:
            continue
        url = f"{api}/{dep_id}/draft/files"
        if file.name in inherited:
            steps.append(Step("remove-file", "DELETE", f"{url}/{file.name}",
                              note="changed since the previous version"))
        steps.append(Step("start-upload", "POST", url, body=f'[{{"key": "{file.name}"}}]'))
        steps.append(Step("upload", "PUT", f"{url}/{file.name}/content",
                          body=f"files/{file.name}", note=f"{file.size} bytes"))
        steps.append(Step("commit", "POST", f"{url}/{file.name}/commit",
                          note=f"the reported checksum must be md5:{file.md5}"))
    if send_metadata:
        steps.append(Step("set-metadata", "PUT", f"{api}/{dep_id}/draft", body=METADATA))
    steps.append(Step("verify", "GET", f"{api}/{dep_id}/draft/files",
                      note="every file committed with the local md5 and size, nothing else"))
    plan_publish(steps, notes, f"{api}/{dep_id}/draft/actions/publish", publish=publish,
                 stays="the record stays a draft: review it on the instance, then re-run with "
                       "--publish")
    return steps, notes


# -- command line ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``inveniordm`` subcommand's options."""
    common.add_common_arguments(p, TARGET, sandbox=SANDBOX, production=PRODUCTION)
    g = p.add_argument_group("InvenioRDM (--base-url names the instance; required with "
                             "--upload)")
    g.add_argument("--publish", action="store_true",
                   help="publish the draft (registers the DOI; cannot be undone). Without "
                        "it the record stays a draft to review")
    g.add_argument("--new-version-of", metavar="ID",
                   help="continue an existing record: the id of a published version (only "
                        "needed when the state file does not know it)")
    g.add_argument("--code-url", metavar="URL",
                   help="the analysis code's repository, linked as iscompiledby")
    g.add_argument("--hepdata-url", metavar="URL",
                   help="the HEPData record to link [default: from results/publish/hepdata]")
    g.add_argument("--license", metavar="ID",
                   help="licence id of the instance's vocabulary [default: "
                        "Publication.License.Name, lower-cased]")
    g.add_argument("--resource-type", default="dataset", metavar="ID",
                   help="resource type id of the instance's vocabulary")
    g.add_argument("--publisher", metavar="NAME",
                   help="the publisher, which a DataCite DOI needs [default: Zenodo on "
                        "zenodo.org and its sandbox, else none]")


def _check_endpoint(args: argparse.Namespace) -> None:
    """``--upload`` needs ``--base-url``; on Zenodo, ``--production`` must match the host."""
    if args.upload and not args.base_url:
        raise PubflowError(f"--upload needs --base-url, the InvenioRDM instance to send to "
                           f"(e.g. {SANDBOX}, or {PRODUCTION} with --production)")
    host = (urlsplit(args.base_url or "").hostname or "").lower()
    if host in ZENODO_HOSTS and ZENODO_HOSTS[host] != args.production:
        raise PubflowError(f"--base-url: {host} is Zenodo's "
                           f"{'real service' if ZENODO_HOSTS[host] else 'sandbox'}: "
                           f"{'add' if ZENODO_HOSTS[host] else 'drop'} --production")


def main(args: argparse.Namespace) -> None:
    """Write the bundle and plan; with ``--upload``, send them."""
    _check_endpoint(args)
    opts = common.options(args, TARGET, sandbox=SANDBOX, production=PRODUCTION)
    redactor = Redactor()
    token = credential(TOKEN_ENV, purpose=f"a personal access token of {opts.base_url} (on "
                       "Zenodo with the deposit:write and deposit:actions scopes)"
                       ) if opts.upload else None
    redactor.add(token)
    with redacted_logging(redactor):
        record = outputs(opts, args, SERVICE)
        state = State(opts.state_path, TARGET, redactor)
        host = (urlsplit(opts.base_url).hostname or "").lower()
        publisher = args.publisher or ("Zenodo" if host in ZENODO_HOSTS else None)
        body = inveniordm_metadata(record.publication, files=record.names, links=record.links,
                                   rights=args.license, resource_type=args.resource_type,
                                   publisher=publisher)
        common.check_hepdata_link(record.links, opts, publish=args.publish, service=SERVICE)

        def documents(bundle_files: tuple[BundleFile, ...]) -> dict[str, Any]:
            steps, notes = plan_steps(bundle_files, body, state.peek(opts.base_url),
                                      base=opts.base_url, publish=args.publish,
                                      new_version_of=args.new_version_of)
            if not args.base_url:
                notes.append(f"planned against {opts.base_url}; an upload needs --base-url "
                             "(the InvenioRDM instance)")
            return {METADATA: body, PLAN: common.plan(opts, steps, notes, publish=args.publish,
                                                      credentials=CREDENTIALS)}

        bundle = write_bundle(opts.out, record.files, documents, workflow_root=opts.root,
                              workflow_extra=record.workflow_inputs, crate=record.crate)
        if not opts.upload:
            common.log_dry_run(bundle)
            return
        outcome = common.send(
            SERVICE, opts, state, redactor, token=token,
            start=lambda client: InvenioRDMPublisher(
                client, state, bundle, body, publish=args.publish,
                new_version_of=args.new_version_of, production=opts.production).run)
        common.log_outcome(SERVICE, opts, "record", outcome)
