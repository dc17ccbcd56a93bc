"""The request plan: every request a publisher would send, in order, written by the dry run.

Values only the service can tell (a new deposition's id, its bucket link) appear as
``{placeholders}``. Credentials appear only as the name of the environment variable they
come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from steps import __version__

PLAN = "plan.json"


@dataclass(frozen=True)
class Step:
    """One planned request.

    Attributes:
        step: What it does (``create``, ``upload``, ``set-metadata``, ``publish``, ...).
        method: HTTP method.
        url: The URL, with ``{placeholders}`` for values the service hands out.
        body: What is sent: a bundle document (``metadata.json``), a bundle file
            (``files/<name>``), or a description of form fields.
        note: Why, or what is checked.
        when: A condition (``--publish``, ``if the draft already has this file``), if any.
    """

    step: str
    method: str
    url: str
    body: str = ""
    note: str = ""
    when: str = ""


def plan_document(
    target: str,
    *,
    endpoint: str,
    production: bool,
    upload: bool,
    publish: bool,
    credentials: Mapping[str, str],
    steps: Sequence[Step],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The plan as a JSON document (schema ``publish-plan``).

    Args:
        target: ``hepdata``, ``zenodo`` or ``cap``.
        endpoint: The service base URL.
        production: Whether it is the real service (not a sandbox).
        upload: Whether this run sends the requests (False: dry run).
        publish: Whether the record is made public at the end.
        credentials: Environment variable -> what it is for.
        steps: The requests, in order.
        notes: Anything the reader should know (missing links, the state found).
    """
    return {
        "target": target,
        "generator": f"pubflow {__version__} (python -m steps.publish {target})",
        "endpoint": endpoint,
        "production": production,
        "mode": "upload" if upload else "dry-run",
        "publish": publish,
        "credentials": {name: f"read from the environment variable {name} ({purpose}); "
                              "never written anywhere"
                        for name, purpose in credentials.items()},
        "requests": [{k: v for k, v in asdict(s).items() if v} for s in steps],
        "notes": list(notes),
    }
