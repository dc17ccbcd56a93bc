"""The state file: what exists remotely, so that a re-run resumes instead of repeating.

One JSON file per target (``results/publish/<target>/state.json``), with one section per
service endpoint (a sandbox run and a production run never mix). It is rewritten atomically
after every remote change that succeeded. Before a request whose effect cannot be checked
from its answer alone (creating a record, publishing), the section records it as
``pending``; the next run finds out what the server did before doing anything else.

The file never holds a credential: everything written passes through the redactor.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steps.config import validate
from steps.errors import PubflowError
from steps.io import write_json
from steps.publish.http import HttpError
from steps.publish.secrets import Redactor

log = logging.getLogger(__name__)

STATE_VERSION = 1
STATE_NAME = "state.json"


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


class State:
    """A target's state file.

    Args:
        path: The file (created on the first save).
        target: ``hepdata``, ``zenodo`` or ``cap``.
        redactor: Secrets that must never be written.
    """

    def __init__(self, path: str | os.PathLike[str], target: str, redactor: Redactor) -> None:
        self.path = Path(path)
        self.target = target
        self.redactor = redactor
        self.data: dict[str, Any] = {"version": STATE_VERSION, "target": target, "endpoints": {}}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise PubflowError(f"unreadable state file ({err}); it records what exists "
                                   "remotely: repair it rather than deleting it",
                                   path=self.path) from None
            validate(data, "publish-state", self.path)
            if data["target"] != target:
                raise PubflowError(f"this is the state of target {data['target']!r}, not "
                                   f"{target!r}", path=self.path)
            self.data = data

    def section(self, endpoint: str) -> dict[str, Any]:
        """The (mutable) record of one endpoint; empty the first time."""
        return self.data["endpoints"].setdefault(endpoint, {})

    def peek(self, endpoint: str) -> dict[str, Any]:
        """The record of one endpoint without creating it (empty if none)."""
        return dict(self.data["endpoints"].get(endpoint, {}))

    def save(self) -> None:
        """Write the file atomically (secrets masked, should any have crept in)."""
        self.data["updated"] = utc_now()
        write_json(self.path, self.redactor.scrub_obj(self.data))

    def begin(self, endpoint: str, op: str, **info: Any) -> None:
        """Record that ``op`` is about to be sent, and save (before sending it)."""
        self.section(endpoint)["pending"] = {"op": op, "started": utc_now(), **info}
        self.save()

    def pending(self, endpoint: str) -> dict[str, Any] | None:
        """The operation whose outcome is unknown, if any."""
        return self.section(endpoint).get("pending")

    def settle(self, endpoint: str) -> None:
        """The pending operation's outcome is known (and recorded): forget it, and save."""
        self.section(endpoint).pop("pending", None)
        self.save()

    @contextlib.contextmanager
    def recording(self, endpoint: str, op: str, **info: Any) -> Iterator[None]:
        """Record ``op`` as pending around the request that carries it out.

        The caller records the outcome and calls :meth:`settle` on success. If the request
        fails in a way that shows it was not carried out (refused, never received, rate
        limited), the pending mark is removed at once; otherwise it stays for the next run
        (or the next try) to settle.
        """
        self.begin(endpoint, op, **info)
        try:
            yield
        except HttpError as err:
            if not err.maybe_applied:
                self.settle(endpoint)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[State]:
        """Hold an exclusive lock on the state for the duration (one publisher at a time)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PubflowError("another publisher is running on this state (locked)",
                                   path=lock_path) from None
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
