"""What the publishers' runs share.

Every publisher (:class:`Publisher`) works on one endpoint's section of the state file and
starts by settling the request that section records as pending. The two deposit services,
Zenodo and CAP (:class:`DepositPublisher`), also share the flow from a draft to a
publication: open the draft, bring its files and metadata in line with the bundle, check
them, publish if asked; and what identifies a published version, its fingerprint.

Nothing here logs: each service's messages come from its own module's logger.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from steps.errors import PubflowError
from steps.publish.bundle import Bundle
from steps.publish.http import Client, PermanentHttpError
from steps.publish.metadata import digest
from steps.publish.state import State

OutcomeT = TypeVar("OutcomeT")


def fingerprint(files: Mapping[str, str], metadata_sha: str | None) -> dict[str, Any]:
    """What identifies a version: its files' md5 by name, and its metadata's digest."""
    return {"files": dict(sorted(files.items())), "metadata_sha256": metadata_sha}


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


class DepositPublisher(Publisher, Generic[OutcomeT]):
    """A deposit service's flow (Zenodo, CAP): a draft filled from the bundle, published on
    request.

    Subclasses name the service and the collection of its deposits, and provide the steps.

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

    def _get(self, dep_id: int | str, what: str) -> dict[str, Any] | None:
        """A deposit, or None if the service no longer has it (404, 410)."""
        try:
            return self.client.json("GET", f"{self.collection}/{dep_id}", what=what)
        except PermanentHttpError as err:
            if err.status in (404, 410):
                return None
            raise

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

    def run(self) -> OutcomeT:
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
    def _send_metadata(self, dep: Mapping[str, Any]) -> None:
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
    def _outcome(self) -> OutcomeT:
        """What the run left on the service, from the section."""
