"""Credentials from the environment, and their redaction from everything pubflow writes.

Credentials come only from environment variables (REANA secrets arrive that way: see
``reana-client secrets-add --env NAME=value``). Their values are registered with a
:class:`Redactor`, which scrubs them from log records, error messages and every JSON file the
publishers write (state, plan, manifest), as a second line of defence behind code that never
puts a credential anywhere but a request header or form field in the first place.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from steps.errors import PubflowError

#: What replaces a secret value wherever it would have appeared.
MASK = "[redacted]"

#: Values shorter than this are not scrubbed from text (a one-character "password" would
#: mangle every message); they are still never written on purpose.
MIN_SCRUB_LENGTH = 4


class Redactor:
    """Replaces registered secret values by :data:`MASK` in text and JSON-like objects."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for value in secrets:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Register a secret value (ignored if empty or too short to scrub safely)."""
        if value and len(value) >= MIN_SCRUB_LENGTH:
            self._secrets.add(value)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret masked (longest first)."""
        for value in sorted(self._secrets, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def scrub_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like object with every string (and key) scrubbed."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, Mapping):
            return {self.scrub(str(k)): self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.scrub_obj(v) for v in obj]
        return obj


class RedactingFilter(logging.Filter):
    """A logging filter that formats a record's message and masks every secret in it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor:
            message = record.getMessage()
            record.msg = self.redactor.scrub(message)
            record.args = ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.redactor.scrub(record.exc_text)
        return True


#: Loggers that format URLs or headers themselves (their own filter, besides the handlers').
_CHATTY_LOGGERS = ("urllib3", "urllib3.connectionpool", "requests")


@contextlib.contextmanager
def redacted_logging(redactor: Redactor) -> Iterator[RedactingFilter]:
    """Mask secrets in every record that reaches the root logger's handlers, for a while.

    The filter goes on each handler of the root logger (records from all loggers pass
    through them) and on the loggers of the HTTP libraries; it is removed on exit.
    """
    filt = RedactingFilter(redactor)
    handlers = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    for target in [*handlers, *loggers]:
        target.addFilter(filt)
    try:
        yield filt
    finally:
        for target in [*handlers, *loggers]:
            target.removeFilter(filt)


def credential(name: str, *, purpose: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the environment variable ``name``; a clear error if it is unset.

    Args:
        name: The variable (e.g. ``ZENODO_TOKEN``).
        purpose: What it is for, for the error message.
        environ: The environment to read (``os.environ`` by default).

    Raises:
        PubflowError: If the variable is unset or empty (the message names the variable and
            how to set it on REANA, never a value).
    """
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if not value:
        raise PubflowError(
            f"{name} is not set: export it ({purpose}); on REANA add it as a secret with "
            f"`reana-client secrets-add --env {name}=...`"
        )
    return value


def optional_credential(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the environment variable ``name``, or None if unset or empty."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip() or None
