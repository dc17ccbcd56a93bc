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
import copy
import datetime
import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from steps import __version__
from steps import config as pubflow_config
from steps.config import load_analysis
from steps.errors import PubflowError
from steps.publish import buckets, common, links
from steps.publish.bundle import Bundle, BundleFile, write_bundle
from steps.publish.gate import check_gate
from steps.publish.http import Body, Client, PermanentHttpError, TransientHttpError
from steps.publish.links import Links
from steps.publish.metadata import (
    describe_contents,
    digest,
    inspire_url,
    keywords,
    spdx_to_zenodo,
)
from steps.publish.plan import PLAN, Step, plan_document
from steps.publish.publisher import DepositPublisher, fingerprint
from steps.publish.secrets import Redactor, credential, redacted_logging
from steps.publish.state import State, utc_now
from steps.publish.zenodo import sources

log = logging.getLogger(__name__)

TARGET = "inveniordm"
SANDBOX = "https://sandbox.zenodo.org"
PRODUCTION = "https://zenodo.org"
#: Hosts whose kind is known: the real Zenodo and its sandbox.
ZENODO_HOSTS = {"zenodo.org": True, "sandbox.zenodo.org": False}
RECORDS = "api/records"
USER_RECORDS = "api/user/records"
TOKEN_ENV = "INVENIORDM_TOKEN"
METADATA = "metadata.json"
#: Drafts listed per page when looking for one whose creation answer was lost.
PAGE_SIZE = 100
MAX_PAGES = 20
#: The query for the user's unpublished drafts (a search-engine query string).
DRAFTS_QUERY = "is_published:false"
#: What a file's ``status`` is once committed (invenio-records-resources TransferStatus).
COMPLETED = "completed"
#: Metadata fields that do not identify a version: InvenioRDM itself resets
#: ``publication_date`` on every new version (MetadataComponent.new_version).
UNVERSIONED = ("publication_date",)


# -- metadata -------------------------------------------------------------------------------


def _creator(author: Mapping[str, Any]) -> dict[str, Any]:
    """An author as InvenioRDM's ``CreatorSchema``: ``Family, Given`` is a person, anything
    else a collaboration (an organisation)."""
    name = str(author["Name"]).strip()
    family, comma, given = name.partition(",")
    person: dict[str, Any]
    if comma and family.strip():
        person = {"type": "personal", "family_name": family.strip()}
        if given.strip():
            person["given_name"] = given.strip()
    else:
        person = {"type": "organizational", "name": name}
    if author.get("ORCID"):
        person["identifiers"] = [{"scheme": "orcid", "identifier": author["ORCID"]}]
    creator: dict[str, Any] = {"person_or_org": person}
    if author.get("Affiliation"):
        creator["affiliations"] = [{"name": author["Affiliation"]}]
    return creator


def inveniordm_metadata(
    publication: Mapping[str, Any],
    *,
    files: list[str],
    links: Links,
    rights: str | None = None,
    resource_type: str = "dataset",
    publisher: str | None = None,
    today: datetime.date | None = None,
) -> dict[str, Any]:
    """The draft's body: ``metadata`` (invenio-rdm-records ``MetadataSchema``), ``access``
    and ``files``.

    Args:
        publication: The ``Publication`` block of the analysis config.
        files: Names of the files in the record (for the description).
        links: The HEPData record and code to link.
        rights: Licence id of the instance's vocabulary (default: the SPDX id of
            ``Publication.License.Name``, lower-cased, as InvenioRDM's licences are).
        resource_type: Resource type id (vocabulary ``resourcetypes``).
        publisher: The publisher (a DataCite DOI needs one; Zenodo's is "Zenodo").
        today: The publication date (default: today, UTC).
    """
    contents = "".join(f"<li>{text}</li>" for text in describe_contents(files))
    description = (f"<p>{html.escape(' '.join(publication['Abstract'].split()))}</p>"
                   "<p>This record holds everything needed to reproduce it:</p>"
                   f"<ul>{contents}</ul>")
    related: list[dict[str, Any]] = []
    for url, relation, kind in ((links.hepdata, "issupplementto", "dataset"),
                                (inspire_url(publication), "issupplementto",
                                 "publication-article"),
                                (links.code, "iscompiledby", "software")):
        if url:
            related.append({"identifier": url, "scheme": "url",
                            "relation_type": {"id": relation}, "resource_type": {"id": kind}})
    date = today or datetime.datetime.now(datetime.UTC).date()
    metadata: dict[str, Any] = {
        "resource_type": {"id": resource_type},
        "title": publication["Title"],
        "publication_date": date.isoformat(),
        "creators": [_creator(a) for a in publication["Authors"]],
        "description": description,
        "rights": [{"id": rights or spdx_to_zenodo(publication["License"]["Name"])}],
        "subjects": [{"subject": word} for word in keywords(publication)],
        "additional_descriptions": [{"description": "Produced and uploaded by pubflow "
                                                    f"{__version__}.",
                                     "type": {"id": "other"}}],
    }
    if related:
        metadata["related_identifiers"] = related
    if publisher:
        metadata["publisher"] = publisher
    return {"metadata": metadata, "access": {"record": "public", "files": "public"},
            "files": {"enabled": True}}


def version_digest(body: Mapping[str, Any]) -> str:
    """The digest identifying a version's metadata (without the fields InvenioRDM resets)."""
    stable = copy.deepcopy(dict(body))
    for key in UNVERSIONED:
        stable.get("metadata", {}).pop(key, None)
    return digest(stable)


# -- the flow ---------------------------------------------------------------------------------


def _entries(listing: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A draft's or record's files (a ``FileList``): key -> {md5, size, status}."""
    return {e["key"]: {"md5": buckets.md5_of(e.get("checksum")), "size": e.get("size"),
                       "status": e.get("status")}
            for e in (listing or {}).get("entries") or []}


def _problems(item: Mapping[str, Any], *, files: bool = False) -> list[str]:
    """The ``errors`` a draft or file answer lists (a draft saves with errors; those about
    files are expected until the files are in, and are skipped unless ``files``)."""
    found = []
    for err in item.get("errors") or []:
        if isinstance(err, Mapping):
            where = str(err.get("field") or "")
            if where.startswith("files") and not files:
                continue
            messages = err.get("messages") or err.get("message") or ""
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            found.append(f"{where}: {text}" if where else text)
        else:
            found.append(str(err))
    return found


def _doi(item: Mapping[str, Any]) -> str | None:
    return ((item.get("pids") or {}).get("doi") or {}).get("identifier")


def _describe_draft(dep: Mapping[str, Any], new_version_of: str | None) -> dict[str, Any]:
    return {"id": dep["id"], "parent": (dep.get("parent") or {}).get("id"),
            "html": (dep.get("links") or {}).get("self_html", ""), "reserved_doi": _doi(dep),
            "new_version_of": new_version_of}


def _holds(latest: Mapping[str, Any], files: Mapping[str, str], metadata_sha: str) -> bool:
    """Whether the published version ``latest`` already holds these files and metadata."""
    recorded = latest.get("fingerprint") or {}
    return (recorded.get("files") == dict(sorted(files.items()))
            and recorded.get("metadata_sha256") in (None, metadata_sha))


def _imports(latest: Mapping[str, Any] | None, local: Mapping[str, str]) -> bool:
    """Whether importing the previous version's files saves uploads (true when unknown)."""
    recorded = ((latest or {}).get("fingerprint") or {}).get("files")
    if recorded is None or not latest:
        return True
    return any(local.get(name) == md5 for name, md5 in recorded.items())


@dataclass(frozen=True)
class Outcome:
    """What the run left on the instance.

    Attributes:
        record: The record (or draft) id.
        url: Where to look at it.
        doi: Its DOI (registered if published, else reserved, if any).
        published: Whether it is public.
        changed: Whether this run changed anything.
    """

    record: str | None
    url: str
    doi: str | None
    published: bool
    changed: bool


class InvenioRDMPublisher(DepositPublisher[Outcome]):
    """One run of the InvenioRDM flow against one instance, resumable from the state file.

    It takes :class:`~steps.publish.publisher.DepositPublisher`'s arguments (``metadata`` is
    the whole draft body), and:

    Args:
        new_version_of: A published record to continue (when the state has none).
    """

    service = "InvenioRDM"
    collection = RECORDS

    def __init__(self, client: Client, state: State, bundle: Bundle, metadata: dict[str, Any],
                 *, publish: bool, new_version_of: str | None, production: bool) -> None:
        super().__init__(client, state, bundle, metadata, publish=publish,
                         production=production)
        self.metadata_sha = version_digest(metadata)
        self.new_version_of = new_version_of
        self._fresh = False  # the draft was created by this run: it holds no files
        self._verified: dict[str, str] = {}

    def _save(self) -> None:
        self.state.save()

    def _draft_url(self, dep_id: str, rest: str = "") -> str:
        return f"{RECORDS}/{quote(str(dep_id))}/draft{rest}"

    def _file_url(self, dep_id: str, name: str, rest: str = "") -> str:
        return self._draft_url(dep_id, f"/files/{quote(name)}{rest}")

    # -- what exists ------------------------------------------------------------------------

    def _drafts(self) -> list[dict[str, Any]]:
        """The user's unpublished drafts (``GET /api/user/records``)."""
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            answer = self.client.json(
                "GET", USER_RECORDS, what="list drafts",
                params={"q": DRAFTS_QUERY, "sort": "newest", "size": str(PAGE_SIZE),
                        "page": str(page)}) or {}
            batch = (answer.get("hits") or {}).get("hits") or []
            found += batch
            if len(batch) < PAGE_SIZE:
                break
        return found

    def _published_files(self, rec_id: str) -> dict[str, str]:
        listing = self.client.json("GET", f"{RECORDS}/{quote(str(rec_id))}/files",
                                   what="the published version's files")
        return {k: v["md5"] for k, v in _entries(listing).items()}

    def _draft_files(self, dep_id: str, what: str = "list the draft's files"
                     ) -> dict[str, dict[str, Any]]:
        return _entries(self.client.json("GET", self._draft_url(dep_id, "/files"), what=what))

    def _record_published(self, rec: Mapping[str, Any], files: Mapping[str, str],
                          metadata_sha: str | None) -> None:
        version = {
            "id": rec["id"], "parent": (rec.get("parent") or {}).get("id"), "doi": _doi(rec),
            "parent_doi": _doi(rec.get("parent") or {}),
            "url": (rec.get("links") or {}).get("self_html")
                   or (rec.get("links") or {}).get("self", ""),
            "published": utc_now(), "fingerprint": fingerprint(files, metadata_sha),
        }
        s = self.section
        s["latest"] = version
        s.setdefault("versions", []).append({k: version[k] for k in ("id", "doi", "published")})
        for key in ("draft", "files", "metadata_sha256"):
            s.pop(key, None)
        log.info("InvenioRDM: published record %s, DOI %s", rec["id"], version["doi"])

    # -- pending requests -------------------------------------------------------------------

    def _settle_pending(self, pending: dict[str, Any]) -> None:
        if pending["op"] == "create":
            known = set(pending.get("known_drafts", []))
            # the search index is refreshed about once a second: a draft made a moment ago
            # may not be listed yet (the retry waits --backoff seconds first)
            created = self._created_in_doubt(
                [d for d in self._drafts() if d["id"] not in known
                 and (d.get("metadata") or {}).get("title") == pending["title"]],
                pending["title"], " in the instance's web interface (My dashboard), then re-run")
            if created is not None:
                log.info("InvenioRDM: the lost creation did happen: adopting draft %s",
                         created["id"])
                self.section["draft"] = _describe_draft(created, None)
                self.section["files"] = {}
            else:
                log.info("InvenioRDM: the lost creation did not happen")
        elif pending["op"] == "publish":
            rec = self._get(pending["id"], "did the publication happen?")
            if rec is not None and rec.get("is_published"):
                log.info("InvenioRDM: the lost publication did happen")
                self._record_published(rec, self._published_files(rec["id"]),
                                       pending.get("metadata_sha256"))
            else:
                log.info("InvenioRDM: the lost publication did not happen")

    # -- the draft --------------------------------------------------------------------------

    def _read_draft(self, dep_id: str) -> dict[str, Any] | None:
        try:
            return self.client.json("GET", self._draft_url(dep_id), what="resume the draft")
        except PermanentHttpError as err:
            if err.status in (404, 410):
                return None
            raise

    def _open(self) -> dict[str, Any] | None:
        s = self.section
        if s.get("draft"):
            dep_id = s["draft"]["id"]
            dep = self._read_draft(dep_id)
            if dep is not None:
                return dep
            # a published draft is gone as a draft: was it published elsewhere?
            rec = self._get(dep_id, "was the draft published?")
            if rec is not None and rec.get("is_published"):
                log.warning("InvenioRDM: draft %s was published outside pubflow", dep_id)
                self._record_published(rec, self._published_files(dep_id), None)
            else:
                log.warning("InvenioRDM: draft %s no longer exists (discarded?); starting "
                            "over", dep_id)
                for key in ("draft", "files", "metadata_sha256"):
                    s.pop(key, None)
            self._save()
        latest = s.get("latest")
        if latest is None and self.new_version_of is not None:
            rec = self._get(self.new_version_of, "the version to continue")
            if rec is None or not rec.get("is_published"):
                raise PubflowError(f"InvenioRDM: record {self.new_version_of} is not a "
                                   "published record: --new-version-of needs one")
            self._record_published(rec, self._published_files(rec["id"]), None)
            self._save()
            latest = s["latest"]
        if latest is not None:
            if _holds(latest, self.local, self.metadata_sha):
                log.info("InvenioRDM: version %s (DOI %s) already holds exactly these files "
                         "and metadata: nothing to do", latest["id"], latest.get("doi"))
                return None
            return self._new_version(latest["id"])
        return self._create()

    def _fail_on_problems(self, dep: Mapping[str, Any], action: str) -> None:
        problems = _problems(dep)
        if problems:
            raise PubflowError(
                f"InvenioRDM: draft {dep['id']} was {action}, but the instance finds its "
                f"metadata incomplete, so it cannot be published: {'; '.join(problems)}. Fix "
                "the config's Publication block (or the options) and re-run",
                path=self.state.path)

    def _create(self) -> dict[str, Any]:
        known = [d["id"] for d in self._drafts()]
        with self.state.recording(self.endpoint, "create",
                                  title=self.metadata["metadata"]["title"],
                                  known_drafts=known):
            dep = self.client.json("POST", RECORDS, expect=(201,),
                                   body=Body(json=self.metadata), what="create the draft")
        self.section["draft"] = _describe_draft(dep, None)
        self.section["files"] = {}
        self.state.settle(self.endpoint)
        self.changed = True
        self._fresh = True
        log.info("InvenioRDM: created draft %s", dep["id"])
        self._fail_on_problems(dep, "created")
        self.section["metadata_sha256"] = self.metadata_sha
        self._save()
        return dep

    def _new_version(self, latest_id: str) -> dict[str, Any]:
        # DraftRecordService.new_version hands back the new-version draft while it exists
        # ("Draft for new version already exists? if so return it"), so repeating the
        # request (after a lost answer) adopts that draft instead of making a second one.
        dep = self.client.json("POST", f"{RECORDS}/{quote(str(latest_id))}/versions",
                               expect=(201,), idempotent=True, what="open a new version")
        if dep.get("is_published"):
            raise PubflowError(f"InvenioRDM: no new version draft was opened for {latest_id}")
        self.section["draft"] = _describe_draft(dep, latest_id)
        self.section["files"] = {}
        self._save()
        self.changed = True
        log.info("InvenioRDM: new version draft %s of %s", dep["id"], latest_id)
        return dep

    # -- files, metadata, checks, publication -----------------------------------------------

    def _listed(self, dep_id: str) -> Callable[[], set[str]]:
        return lambda: set(self._draft_files(dep_id, "is the file gone?"))

    def _remove(self, dep_id: str, name: str) -> None:
        buckets.delete_object(self.client, self._draft_url(dep_id, "/files"), name,
                              self._listed(dep_id))
        self.section.setdefault("files", {}).pop(name, None)
        self._save()
        self.changed = True

    def _upload(self, dep_id: str, file: BundleFile, *, started: bool) -> None:
        """Start (unless ``started``), send and commit one file; check the checksum the
        commit reports, and repeat from the start (up to the retry bound) if it differs."""
        for attempt in range(1, self.client.policy.attempts + 1):
            if not started:
                self.client.json("POST", self._draft_url(dep_id, "/files"), expect=(201,),
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
            buckets.delete_object(self.client, self._draft_url(dep_id, "/files"), file.name,
                                  self._listed(dep_id))
            started = False
        raise TransientHttpError(f"InvenioRDM: {file.name} never arrived intact (checksum "
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
                "POST", self._draft_url(dep_id, "/actions/files-import"), expect=(201,),
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
                    self._save()
                continue
            if got and got["status"] == COMPLETED:
                self._remove(dep_id, file.name)
                got = None
            # a pending entry (started, not committed) takes its content again
            self._upload(dep_id, file, started=got is not None)
            done[file.name] = {"md5": file.md5, "size": file.size}
            self._save()
            self.changed = True

    def _send_metadata(self, dep: Mapping[str, Any]) -> None:
        saved = self.client.json("PUT", self._draft_url(dep["id"]), expect=(200,),
                                 body=Body(json=self.metadata), what="set the metadata")
        self._fail_on_problems(saved or {"id": dep["id"]}, "updated")

    def _verify(self, dep: Mapping[str, Any]) -> None:
        remote = self._draft_files(dep["id"], "check the files")
        problems = []
        for file in self.bundle.files:
            got = remote.get(file.name)
            if got is None:
                problems.append(f"{file.name} is missing")
            elif got["status"] != COMPLETED:
                problems.append(f"{file.name} is not committed ({got['status']})")
            elif got["md5"] != file.md5 or got.get("size") not in (None, file.size):
                problems.append(f"{file.name} differs (md5 {got['md5']}, {got.get('size')} "
                                f"bytes; local md5 {file.md5}, {file.size} bytes)")
        problems += [f"{name} should not be there" for name in sorted(set(remote)
                                                                       - set(self.local))]
        if problems:
            done = self.section.get("files", {})
            for name in list(done):
                if remote.get(name, {}).get("md5") != self.local.get(name):
                    done.pop(name)
            self._save()
            raise PubflowError("InvenioRDM: the draft's files do not match the bundle, so it "
                               f"was not published: {'; '.join(problems)}. Re-run to repair it")
        self._verified = {k: v["md5"] for k, v in remote.items()}
        log.info("InvenioRDM: all %d files present with the local checksums", len(self.local))

    def _publish(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        with self.state.recording(self.endpoint, "publish", id=dep["id"],
                                  metadata_sha256=self.metadata_sha):
            published = self.client.json("POST", self._draft_url(dep["id"], "/actions/publish"),
                                         expect=(202,), what="publish")
        self._record_published(published, self._verified, self.metadata_sha)
        self.state.settle(self.endpoint)
        self.changed = True
        return published

    def _outcome(self) -> Outcome:
        s = self.section
        if s.get("draft"):
            draft = s["draft"]
            return Outcome(draft["id"], draft.get("html", ""), draft.get("reserved_doi"),
                           published=False, changed=self.changed)
        latest = s["latest"]
        return Outcome(latest["id"], latest.get("url", ""), latest.get("doi"), published=True,
                       changed=self.changed)


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
    steps: list[Step] = []
    notes: list[str] = []
    pending = section.get("pending")
    if pending:
        notes.append(f"a {pending['op']} request sent {pending['started']} has an unknown "
                     "outcome: the upload first asks the instance what happened")
        steps.append(Step("settle-pending", "GET",
                          f"{base}/{USER_RECORDS}?q={DRAFTS_QUERY}"
                          if pending["op"] == "create" else f"{api}/{pending.get('id')}",
                          note=f"did the pending {pending['op']} happen?"))
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
        if latest and _holds(latest, local, metadata_sha):
            notes.append(f"version {latest['id']} (DOI {latest.get('doi')}) already holds "
                         "exactly these files and metadata: nothing would be sent")
            return steps, notes
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
    if publish:
        steps.append(Step("publish", "POST", f"{api}/{dep_id}/draft/actions/publish",
                          note="registers the DOI; a published version can no longer change"))
    else:
        notes.append("the record stays a draft: review it on the instance, then re-run with "
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
        raise PubflowError(f"inveniordm: --upload needs --base-url, the InvenioRDM instance "
                           f"to send to (e.g. {SANDBOX}, or {PRODUCTION} with --production)")
    host = (urlsplit(args.base_url or "").hostname or "").lower()
    if host in ZENODO_HOSTS and ZENODO_HOSTS[host] != args.production:
        raise PubflowError(f"inveniordm: {host} is Zenodo's "
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
        config = load_analysis(opts.config)
        publication = common.publication(config, opts.config)
        common.check_inspire_id(config, opts)
        files = sources(opts.results, opts.report)
        datasets = config.get("Datasets")
        workflow_inputs = tuple(str(p) for p in (opts.config, datasets) if p)
        # the config and manifest travel inside the workflow archive: they too must be the
        # validated ones
        # every output vouched for by the report, as for Zenodo (the report itself aside)
        check_gate(opts.report, [*files.values(), *workflow_inputs], complete=True,
                   exempt=[f for n, f in files.items() if n == "ro-crate-metadata.json"])
        state = State(opts.state_path, TARGET, redactor)
        found = links.discover(opts.publish_root, production=opts.production,
                               hepdata=args.hepdata_url, code=args.code_url)
        if not found.hepdata:
            log.warning("InvenioRDM: no HEPData record to link yet (publish it first: `python "
                        "-m steps.publish hepdata --upload`, or give --hepdata-url)")
        host = (urlsplit(opts.base_url).hostname or "").lower()
        publisher = args.publisher or ("Zenodo" if host in ZENODO_HOSTS else None)
        body = inveniordm_metadata(publication, files=["pubflow-workflow.tar.gz", *files],
                                   links=found, rights=args.license,
                                   resource_type=args.resource_type, publisher=publisher)
        if args.publish and opts.production and not found.hepdata:
            raise PubflowError("refusing to publish on the real service without the link to "
                               "the HEPData record: publish HEPData first or give "
                               "--hepdata-url")

        def documents(bundle_files: tuple[BundleFile, ...]) -> dict[str, Any]:
            steps, notes = plan_steps(bundle_files, body, state.peek(opts.base_url),
                                      base=opts.base_url, publish=args.publish,
                                      new_version_of=args.new_version_of)
            if not args.base_url:
                notes.append(f"planned against {opts.base_url}; an upload needs --base-url "
                             "(the InvenioRDM instance)")
            plan = plan_document(TARGET, endpoint=opts.base_url, production=opts.production,
                                 upload=opts.upload, publish=args.publish,
                                 credentials={TOKEN_ENV: "Authorization: Bearer header"},
                                 steps=steps, notes=notes)
            pubflow_config.validate(plan, "publish-plan", opts.out / "bundle" / PLAN)
            return {METADATA: body, PLAN: plan}

        bundle = write_bundle(opts.out, files, documents, workflow_root=opts.root,
                              workflow_extra=workflow_inputs)
        if not opts.upload:
            log.info("dry run: bundle and plan (%d requests) in %s; nothing was sent",
                     len(bundle.documents[PLAN]["requests"]), bundle.path)
            return
        client = Client("InvenioRDM", opts.base_url, redactor=redactor, policy=opts.policy,
                        headers={"Authorization": f"Bearer {token}"})
        try:
            with state.locked():
                publisher_run = InvenioRDMPublisher(client, state, bundle, body,
                                                    publish=args.publish,
                                                    new_version_of=args.new_version_of,
                                                    production=opts.production)
                outcome = common.resumable(publisher_run.run, opts.policy, "InvenioRDM")
        finally:
            client.close()
        status = "published" if outcome.published else "draft (not public; --publish to publish)"
        log.info("InvenioRDM %s: record %s, %s, DOI %s%s", opts.kind, outcome.record, status,
                 outcome.doi or "(none yet)", f", {outcome.url}" if outcome.url else "")
