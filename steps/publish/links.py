"""Links between the three records, read from the other publishers' state files.

HEPData is published first, Zenodo links the HEPData record, CAP links both. A link is taken
from the other target's state for the same kind of endpoint only: a production record never
points to a sandbox one. Command-line options override what the state files say.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.publish.state import STATE_NAME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Links:
    """What a record links to.

    Attributes:
        hepdata: The HEPData record's URL.
        zenodo_doi: The Zenodo deposit's DOI.
        zenodo_doi_registered: Whether that DOI is registered (published), not only reserved.
        code: The analysis code's repository URL.
        reana: The REANA workflow run's URL.
    """

    hepdata: str | None = None
    zenodo_doi: str | None = None
    zenodo_doi_registered: bool = False
    code: str | None = None
    reana: str | None = None


def _sections(publish_root: Path, target: str, production: bool) -> list[dict[str, Any]]:
    """The other target's endpoint records of the same kind, most recently updated first."""
    path = publish_root / target / STATE_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    endpoints = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, dict):
        return []
    found = [s for s in endpoints.values()
             if isinstance(s, dict) and bool(s.get("production")) == production]
    return sorted(found, key=lambda s: str(s.get("updated", "")), reverse=True)


def hepdata_record(publish_root: Path, production: bool) -> str | None:
    """The URL of the HEPData record the hepdata publisher uploaded to, if any."""
    for section in _sections(publish_root, "hepdata", production):
        url = (section.get("record") or {}).get("url")
        if url:
            return str(url)
    return None


def zenodo_doi(publish_root: Path, production: bool) -> tuple[str | None, bool]:
    """The Zenodo DOI (of the latest published version, else the draft's reserved one).

    Returns:
        The DOI (or None) and whether it is registered (published).
    """
    for section in _sections(publish_root, "zenodo", production):
        latest = section.get("latest") or {}
        if _names_endpoint_record(latest.get("doi"), production):
            return str(latest["doi"]), True
        draft = section.get("draft") or {}
        if _names_endpoint_record(draft.get("reserved_doi"), production):
            return str(draft["reserved_doi"]), False
    return None, False


#: Zenodo's production DOI prefix. Its legacy API reports reserved DOIs with it on the
#: sandbox too (zenodo-rdm legacyjson.LegacySchema.dump_prereserve_doi), where they name
#: nothing or someone else's record: a sandbox record must never link one (older state
#: files may hold such a DOI).
ZENODO_PRODUCTION_PREFIX = "10.5281/"


def _names_endpoint_record(doi: object, production: bool) -> bool:
    """Whether a DOI from the zenodo state can be linked from a record of this kind."""
    return bool(doi) and (production or not str(doi).startswith(ZENODO_PRODUCTION_PREFIX))


def discover(
    publish_root: Path,
    *,
    production: bool,
    hepdata: str | None = None,
    zenodo: str | None = None,
    code: str | None = None,
    reana: str | None = None,
) -> Links:
    """The links for a record: options first, then the other publishers' state files."""
    doi, registered = (zenodo, True) if zenodo else zenodo_doi(publish_root, production)
    return Links(hepdata=hepdata or hepdata_record(publish_root, production),
                 zenodo_doi=doi, zenodo_doi_registered=registered, code=code, reana=reana)
