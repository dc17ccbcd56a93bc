"""What the publishers' runs share.

Every publisher (:class:`Publisher`) works on one endpoint's section of the state file and
starts by settling the request that section records as pending. The deposit services,
Zenodo, InvenioRDM and CAP (:class:`DepositPublisher`), also share the flow from a draft to
a publication: open the draft, bring its files and metadata in line with the bundle, check
them, publish if asked; what identifies a published version, its fingerprint; and what a
run leaves, its :class:`Outcome`. Zenodo and InvenioRDM (:class:`VersionedPublisher`)
publish every change as a new version of one record with a DOI, and share the whole of that
flow: each keeps only its requests and the shapes of its answers. The plan helpers at the
end give the requests those two have in common, as a dry run lists them.

Messages go to each service's own module's logger (:attr:`DepositPublisher.logger`).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from steps.errors import PubflowError
from steps.publish.bundle import Bundle, BundleFile
from steps.publish.http import Body, Client, PermanentHttpError
from steps.publish.metadata import digest
from steps.publish.plan import Step
from steps.publish.state import State, utc_now

#: Drafts listed per page when looking for one whose creation answer was lost.
PAGE_SIZE = 100
MAX_PAGES = 20


def fingerprint(files: Mapping[str, str], metadata_sha: str | None) -> dict[str, Any]:
    """What identifies a version: its files' md5 by name, and its metadata's digest."""
    return {"files": dict(sorted(files.items())), "metadata_sha256": metadata_sha}


def holds(latest: Mapping[str, Any], files: Mapping[str, str], metadata_sha: str) -> bool:
    """Whether the published version ``latest`` already holds these files and metadata (a
    version recorded without its metadata's digest is taken to hold any metadata)."""
    recorded = latest.get("fingerprint") or {}
    return (recorded.get("files") == dict(sorted(files.items()))
            and recorded.get("metadata_sha256") in (None, metadata_sha))


@dataclass(frozen=True)
class Outcome:
    """What a run left on a deposit service.

    Attributes:
        id: The deposit's (or record's) id.
        url: Where to look at it.
        doi: Its DOI (registered if published, else reserved), where the service gives one.
        published: Whether it is published.
        changed: Whether this run changed anything.
    """

    id: int | str | None
    url: str
    doi: str | None
    published: bool
    changed: bool


class Publisher(abc.ABC):
    """One run of a publishing flow against one endpoint, resumable from the state file.

    Args:
        client: The HTTP client.
        state: The state file.
        bundle: The files to send.
        production: Whether the endpoint is the real service (recorded in its section).
    """

    def __init__(self, client: Client, state: State, bundle: Bundle, *,
                 production: bool) -> None:
        self.client = client
        self.state = state
        self.endpoint = client.base_url
        self.bundle = bundle
        self.production = production
        self.section["production"] = production

    @property
    def section(self) -> dict[str, Any]:
        """This endpoint's record in the state file."""
        return self.state.section(self.endpoint)

    def _settle(self) -> None:
        """Find out what a request recorded as pending did, record it, and forget it."""
        pending = self.state.pending(self.endpoint)
        if not pending:
            return
        self._settle_pending(pending)
        self.state.settle(self.endpoint)

    @abc.abstractmethod
    def _settle_pending(self, pending: dict[str, Any]) -> None:
        """Ask the service what the ``pending`` request did, and record it in the section.

        Raises:
            PubflowError: If the outcome cannot be told (the request stays pending).
        """


class DepositPublisher(Publisher):
    """A deposit service's flow (Zenodo, InvenioRDM, CAP): a draft filled from the bundle,
    published on request.

    Subclasses name the service, the collection of its deposits and their logger, and
    provide the steps.

    Args:
        client: The HTTP client (with the token).
        state: The state file.
        bundle: The files to attach.
        metadata: The deposit metadata (schema-checked).
        publish: Whether to publish at the end.
        production: Whether the endpoint is the real service.
    """

    #: The service, for messages.
    service: ClassVar[str]
    #: The deposits' collection, relative to the endpoint (``<collection>/<id>`` is one).
    collection: ClassVar[str]
    #: The service module's logger, which every message of its runs goes to.
    logger: ClassVar[logging.Logger]

    def __init__(self, client: Client, state: State, bundle: Bundle, metadata: dict[str, Any],
                 *, publish: bool, production: bool) -> None:
        super().__init__(client, state, bundle, production=production)
        self.metadata = metadata
        self.metadata_sha = digest(metadata)
        self.local = {f.name: f.md5 for f in bundle.files}
        self.publish = publish
        self.changed = False

    def _fingerprint(self) -> dict[str, Any]:
        """The bundle's fingerprint: what a version published from it is recorded with."""
        return fingerprint(self.local, self.metadata_sha)

    def _fetch(self, path: str, what: str) -> dict[str, Any] | None:
        """A resource, or None if the service no longer has it (404, 410)."""
        try:
            return self.client.json("GET", path, what=what)
        except PermanentHttpError as err:
            if err.status in (404, 410):
                return None
            raise

    def _get(self, dep_id: int | str, what: str) -> dict[str, Any] | None:
        """A deposit, or None if the service no longer has it (404, 410)."""
        return self._fetch(f"{self.collection}/{dep_id}", what)

    def _created_in_doubt(self, new: Sequence[Mapping[str, Any]], title: str,
                          remedy: str) -> Mapping[str, Any] | None:
        """The draft a creation whose answer was lost made, or None if it made none.

        Args:
            new: The drafts that did not exist before the creation and bear its ``title``.
            title: The title the creation gave.
            remedy: What the user does when there are several (after "delete all but one").

        Raises:
            PubflowError: If there are several: which one is this run's cannot be told.
        """
        if len(new) > 1:
            raise PubflowError(
                f"{self.service}: several new drafts titled {title!r} "
                f"({', '.join(str(d['id']) for d in new)}) appeared while the creation's "
                f"outcome was unknown: delete all but one{remedy}", path=self.state.path)
        return new[0] if new else None

    def _set_metadata(self, dep: Mapping[str, Any]) -> None:
        """Send the metadata, unless the state records that this very metadata was set."""
        if self.section.get("metadata_sha256") == self.metadata_sha:
            return
        self._send_metadata(dep)
        self.section["metadata_sha256"] = self.metadata_sha
        self.state.save()
        self.changed = True

    def run(self) -> Outcome:
        """Settle, then bring the deposit in line with the bundle (and publish if asked)."""
        self._settle()
        dep = self._open()
        if dep is not None:
            self._sync_files(dep)
            self._set_metadata(dep)
            self._verify(dep)
            if self.publish:
                self._publish(dep)
        return self._outcome()

    @abc.abstractmethod
    def _open(self) -> dict[str, Any] | None:
        """The draft to fill (resumed, created or reopened), or None if nothing is to do."""

    @abc.abstractmethod
    def _sync_files(self, dep: Mapping[str, Any]) -> None:
        """Upload what the draft lacks or holds differently from the bundle."""

    @abc.abstractmethod
    def _send_metadata(self, dep: Mapping[str, Any]) -> Any:
        """Set the draft's metadata to :attr:`metadata`."""

    @abc.abstractmethod
    def _verify(self, dep: Mapping[str, Any]) -> None:
        """Check that the draft holds the bundle's files.

        Raises:
            PubflowError: If it does not.
        """

    @abc.abstractmethod
    def _publish(self, dep: Mapping[str, Any]) -> Any:
        """Publish the draft, recording the pending request around it."""

    @abc.abstractmethod
    def _outcome(self) -> Outcome:
        """What the run left on the service, from the section."""


class VersionedPublisher(DepositPublisher):
    """A deposit service whose every publication is a new version of one record with a DOI
    (Zenodo's legacy deposit API, InvenioRDM's own).

    The section holds the ``draft`` being filled (with the ``files`` done and the
    ``metadata_sha256`` set), the ``latest`` published version with its fingerprint, and
    each version's id, DOI and date (``versions``). Subclasses give the requests and read
    the answers.

    It takes :class:`DepositPublisher`'s arguments, and:

    Args:
        new_version_of: A published version to continue (when the state has none).
    """

    #: What the service calls a deposit, for messages (``deposition``, ``record``).
    noun: ClassVar[str]
    #: Which id ``--new-version-of`` takes, for the message refusing another.
    continues: ClassVar[str]
    #: Where surplus drafts are deleted (said after "delete all but one").
    drafts_remedy: ClassVar[str]

    def __init__(self, client: Client, state: State, bundle: Bundle, metadata: dict[str, Any],
                 *, publish: bool, new_version_of: int | str | None,
                 production: bool) -> None:
        super().__init__(client, state, bundle, metadata, publish=publish,
                         production=production)
        self.new_version_of = new_version_of
        self._verified: dict[str, str] = {}  # the draft's files (md5) as last checked

    # -- what each service tells differently ------------------------------------------------

    @abc.abstractmethod
    def _draft_path(self, dep_id: int | str) -> str:
        """The draft's path (its metadata; ``/actions/<name>`` under it are its actions)."""

    @abc.abstractmethod
    def _body(self) -> dict[str, Any]:
        """The request body that creates a draft or sets its metadata."""

    @abc.abstractmethod
    def _drafts_page(self, page: int) -> list[dict[str, Any]]:
        """One page (from 1, :data:`PAGE_SIZE` long) of the account's unpublished drafts."""

    @abc.abstractmethod
    def _title(self, dep: Mapping[str, Any]) -> Any:
        """The title a draft (or a body that creates one) bears."""

    @abc.abstractmethod
    def _describe_draft(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        """What the section records of a draft this run adopts or creates."""

    @abc.abstractmethod
    def _is_published(self, rec: Mapping[str, Any]) -> bool:
        """Whether a deposit the service described is a published version."""

    @abc.abstractmethod
    def _version(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """What identifies a published version (``id``, ``doi``, ``url``, ...)."""

    @abc.abstractmethod
    def _published_files(self, rec: Mapping[str, Any]) -> dict[str, str]:
        """A published version's files: name -> md5."""

    @abc.abstractmethod
    def _draft_files(self, dep_id: int | str, what: str) -> dict[str, dict[str, Any]]:
        """The draft's files as the service lists them: name -> {md5, size, ...}."""

    @abc.abstractmethod
    def _resume(self, dep_id: int | str
                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The recorded draft if it still is one; else (None, the version it became) if it
        was published, or (None, None) if it is gone."""

    @abc.abstractmethod
    def _new_version(self, latest: Mapping[str, Any]) -> dict[str, Any]:
        """The draft of the version after ``latest``, recorded in the section."""

    # -- the section ------------------------------------------------------------------------

    def _forget_draft(self) -> None:
        for key in ("draft", "files", "metadata_sha256"):
            self.section.pop(key, None)

    def _record_published(self, rec: Mapping[str, Any], files: Mapping[str, str],
                          metadata_sha: str | None) -> None:
        """Record ``rec`` as the latest version, holding ``files`` and that metadata."""
        version = {**self._version(rec), "published": utc_now(),
                   "fingerprint": fingerprint(files, metadata_sha)}
        s = self.section
        s["latest"] = version
        s.setdefault("versions", []).append({k: version[k] for k in ("id", "doi", "published")})
        self._forget_draft()
        self.logger.info("%s: published %s %s, DOI %s", self.service, self.noun, rec["id"],
                      version["doi"])

    def _files_published(self, published: Mapping[str, Any]) -> dict[str, str]:
        """The files of the version a publication's answer describes."""
        return self._published_files(published)

    # -- the flow ---------------------------------------------------------------------------

    def _drafts(self) -> list[dict[str, Any]]:
        """The account's unpublished drafts, up to :data:`MAX_PAGES` pages."""
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._drafts_page(page)
            found += batch
            if len(batch) < PAGE_SIZE:
                break
        return found

    def _settle_pending(self, pending: dict[str, Any]) -> None:
        if pending["op"] == "create":
            known = set(pending.get("known_drafts", []))
            created = self._created_in_doubt(
                [d for d in self._drafts() if d["id"] not in known
                 and self._title(d) == pending["title"]],
                pending["title"], self.drafts_remedy)
            if created is not None:
                self.logger.info("%s: the lost creation did happen: adopting draft %s",
                              self.service, created["id"])
                self.section["draft"] = self._describe_draft(created)
                self.section["files"] = {}
            else:
                self.logger.info("%s: the lost creation did not happen", self.service)
        elif pending["op"] == "publish":
            rec = self._get(pending["id"], "did the publication happen?")
            if rec is not None and self._is_published(rec):
                self.logger.info("%s: the lost publication did happen", self.service)
                self._record_published(rec, self._published_files(rec),
                                       pending.get("metadata_sha256"))
            else:
                self.logger.info("%s: the lost publication did not happen", self.service)

    def _open(self) -> dict[str, Any] | None:
        """The draft to fill (resumed, created or a new version), or None if up to date."""
        s = self.section
        if s.get("draft"):
            dep_id = s["draft"]["id"]
            dep, published = self._resume(dep_id)
            if dep is not None:
                return dep
            if published is not None:
                self.logger.warning("%s: draft %s was published outside pubflow", self.service,
                                 dep_id)
                self._record_published(published, self._published_files(published), None)
            else:
                self.logger.warning("%s: draft %s no longer exists (discarded?); starting over",
                                 self.service, dep_id)
                self._forget_draft()
            self.state.save()
        latest = s.get("latest")
        if latest is None and self.new_version_of is not None:
            rec = self._get(self.new_version_of, "the version to continue")
            if rec is None or not self._is_published(rec):
                raise PubflowError(f"{self.service}: {self.noun} {self.new_version_of} is not a "
                                   "published record of this account: --new-version-of needs "
                                   f"{self.continues}")
            self._record_published(rec, self._published_files(rec), None)
            self.state.save()
            latest = s["latest"]
        if latest is not None:
            if holds(latest, self.local, self.metadata_sha):
                self.logger.info("%s: version %s (DOI %s) already holds exactly these files and "
                              "metadata: nothing to do", self.service, latest["id"],
                              latest.get("doi"))
                return None
            return self._new_version(latest)
        return self._create()

    def _create(self) -> dict[str, Any]:
        """A new draft with the metadata, recorded as pending while its answer is awaited
        (the drafts that exist before are noted, to recognise it should the answer be
        lost)."""
        known = [d["id"] for d in self._drafts()]
        body = self._body()
        with self.state.recording(self.endpoint, "create", title=self._title(body),
                                  known_drafts=known):
            dep = self.client.json("POST", self.collection, expect=(201,), body=Body(json=body),
                                   what=f"create the {self.noun}")
        self.section["draft"] = self._describe_draft(dep)
        self.section["files"] = {}
        self.state.settle(self.endpoint)
        self.changed = True
        self.logger.info("%s: created draft %s", self.service, dep["id"])
        return dep

    def _send_metadata(self, dep: Mapping[str, Any]) -> Any:
        return self.client.json("PUT", self._draft_path(dep["id"]), expect=(200,),
                                body=Body(json=self._body()), what="set the metadata")

    def _file_problem(self, file: BundleFile, got: Mapping[str, Any]) -> str | None:
        """What is wrong with the draft's copy ``got`` of ``file``, if anything."""
        if got["md5"] != file.md5 or got.get("size") not in (None, file.size):
            return (f"differs (md5 {got['md5']}, {got.get('size')} bytes; local md5 "
                    f"{file.md5}, {file.size} bytes)")
        return None

    def _verify(self, dep: Mapping[str, Any]) -> None:
        remote = self._draft_files(dep["id"], "check the files")
        problems = []
        for file in self.bundle.files:
            got = remote.get(file.name)
            problem = "is missing" if got is None else self._file_problem(file, got)
            if problem:
                problems.append(f"{file.name} {problem}")
        problems += [f"{name} should not be there" for name in sorted(set(remote)
                                                                       - set(self.local))]
        if problems:
            # what the draft does not hold as the bundle has it is to be sent again
            done = self.section.get("files", {})
            for name in list(done):
                if name not in remote or remote[name]["md5"] != self.local.get(name):
                    done.pop(name)
            self.state.save()
            raise PubflowError(f"{self.service}: the draft's files do not match the bundle, so "
                               f"it was not published: {'; '.join(problems)}. Re-run to repair "
                               "it")
        self._verified = {k: v["md5"] for k, v in remote.items()}
        self.logger.info("%s: all %d files present with the local checksums", self.service,
                      len(self.local))

    def _publish(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        with self.state.recording(self.endpoint, "publish", id=dep["id"],
                                  metadata_sha256=self.metadata_sha):
            published = self.client.json("POST", f"{self._draft_path(dep['id'])}/actions/publish",
                                         expect=(202,), what="publish")
        self._record_published(published, self._files_published(published), self.metadata_sha)
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


# -- what the plans of Zenodo and InvenioRDM share ------------------------------------------


def plan_settle(section: Mapping[str, Any], *, drafts: str, records: str,
                service: str) -> tuple[list[Step], list[str]]:
    """The plan's first step: asking what a request recorded as pending did, if there is one.

    Args:
        section: The endpoint's section of the state file.
        drafts: The URL listing the drafts (where a lost creation would show).
        records: The collection's URL (``<records>/<id>`` is what a lost publication made).
        service: Who is asked, for the note.

    Returns:
        The steps and notes for the reader.
    """
    pending = section.get("pending")
    if not pending:
        return [], []
    note = (f"a {pending['op']} request sent {pending['started']} has an unknown outcome: the "
            f"upload first asks {service} what happened")
    url = drafts if pending["op"] == "create" else f"{records}/{pending.get('id')}"
    return [Step("settle-pending", "GET", url,
                 note=f"did the pending {pending['op']} happen?")], [note]


def plan_up_to_date(latest: Mapping[str, Any] | None, files: Sequence[BundleFile],
                    metadata_sha: str) -> str | None:
    """The note that the published version ``latest`` holds the bundle already, if it does."""
    if latest and holds(latest, {f.name: f.md5 for f in files}, metadata_sha):
        return (f"version {latest['id']} (DOI {latest.get('doi')}) already holds exactly "
                "these files and metadata: nothing would be sent")
    return None


def plan_publish(steps: list[Step], notes: list[str], url: str, *, publish: bool,
                 stays: str) -> None:
    """The plan's end: the publication (with ``--publish``), else the note ``stays``."""
    if publish:
        steps.append(Step("publish", "POST", url,
                          note="registers the DOI; a published version can no longer change"))
    else:
        notes.append(stays)
