"""The one exception type the command lines turn into a one-line message."""

from __future__ import annotations


class PubflowError(Exception):
    """A user-facing error: bad input, a failed check, a missing file.

    The message is one line and names the file (and key, where there is one) at fault.
    """

    def __init__(self, message: str, *, path: object | None = None, key: str | None = None):
        where = ": ".join(str(part) for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key
        #: the message without the file it names (the key kept), for a caller that names
        #: the file itself (a report's row, a skipped file's record)
        self.detail = f"{key}: {message}" if key else message


def one_line(err: BaseException, limit: int = 200) -> str:
    """A third-party exception as one short line: its type and whitespace-collapsed text."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"
