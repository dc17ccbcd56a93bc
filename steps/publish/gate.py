"""The gate: publish nothing unless the validation step passed on exactly these files.

``steps.validate`` writes ``results/validation/report.json`` only when every artefact passed
its consumer's validator, recording each artefact's sha256. A publisher reads the report,
requires it to say valid, and requires every file it is about to publish to be listed there
(``complete=True``; the report itself and the files named in ``exempt`` aside) and to still
have the digest the validator saw: a file changed (or regenerated) after validation, or one
that no validator saw, is refused.

A bundle's RO-Crate, written after validation, is vouched for through what it says
(:func:`check_crate`): it may describe only the bundle's files, with the digests they have,
and call a file a copy of a run's output only where the report vouched for that output.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from steps.errors import PubflowError
from steps.io import sha256sum
from steps.provenance import is_local_id, refs

log = logging.getLogger(__name__)

DEFAULT_REPORT = "results/validation/report.json"

RERUN = "run the workflow (`snakemake --cores all`) so that the validation gate passes"


@dataclass(frozen=True)
class GateResult:
    """What the gate vouched for.

    Attributes:
        report: The validation report.
        verified: Artefacts whose digest matched the report, as ``{path: sha256}``.
        report_sha256: The digest of the report as the gate read it.
    """

    report: Path
    verified: dict[str, str]
    report_sha256: str = ""


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def check_gate(report: str | Path, artefacts: Iterable[str | Path] = (), *,
               complete: bool = False, exempt: Iterable[str | Path] = ()) -> GateResult:
    """Check the validation report, and the digests of the files about to be published.

    Args:
        report: ``results/validation/report.json``.
        artefacts: Files about to be published; each one the report lists must still have
            the sha256 the report recorded.
        complete: Whether every artefact must be in the report (but the report itself and
            ``exempt``).
        exempt: Files published without the report's word, each for a reason the caller
            states (e.g. a record of the run written after validation).

    Raises:
        PubflowError: If the report is missing, unreadable or not valid, or a file differs
            from what was validated.
    """
    report = Path(report)
    if not report.is_file():
        raise PubflowError(f"the validation gate has not passed (no report): {RERUN}",
                           path=report)
    raw = report.read_bytes()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PubflowError(f"unreadable validation report ({err}): {RERUN}",
                           path=report) from None
    checks = data.get("checks") if isinstance(data, dict) else None
    if not isinstance(checks, list) or data.get("valid") is not True:
        raise PubflowError(f"the validation report does not say valid: {RERUN}", path=report)
    recorded: dict[str, str] = {}
    for check in checks:
        if not isinstance(check, dict) or check.get("valid") is not True:
            what = check.get("artefact") if isinstance(check, dict) else check
            raise PubflowError(f"the validation report lists a failed check ({what}): {RERUN}",
                               path=report)
        if check.get("sha256") and check.get("artefact"):
            recorded[_key(check["artefact"])] = check["sha256"]
    verified: dict[str, str] = {}
    unvouched = {_key(report), *map(_key, exempt)}
    for artefact in artefacts:
        key = _key(artefact)
        if key not in recorded:
            if complete and key not in unvouched:
                raise PubflowError(f"not in the validation report, so nothing vouches for it: "
                                   f"{RERUN}", path=artefact)
            continue
        if not Path(artefact).is_file():
            raise PubflowError("validated file is missing", path=artefact)
        digest = sha256sum(artefact)
        if digest != recorded[key]:
            raise PubflowError(f"changed since it was validated (sha256 {digest[:12]}..., the "
                               f"report has {recorded[key][:12]}...): {RERUN}", path=artefact)
        verified[str(artefact)] = digest
    log.info("validation gate passed: %s (%d published file(s) match it)", report,
             len(verified))
    return GateResult(report=report, verified=verified,
                      report_sha256=hashlib.sha256(raw).hexdigest())


def check_crate(crate: Mapping[str, Any], files: Mapping[str, tuple[int, str]],
                gate: GateResult, *, workspace: str | Path, path: str | Path) -> None:
    """Vouch for a bundle's RO-Crate as for the bundle's other files.

    Its data entities must be exactly the bundle's other files, each with the size and sha256
    it has, all parts of the root; and each one it says is a copy of a file of the run
    (``alternateName``, a path in ``workspace``) must be a copy of a file the gate vouched
    for (or of the report itself), with that digest.

    Args:
        crate: The crate, as it is about to be written.
        files: The bundle's other files: name -> (size, sha256).
        gate: What the gate vouched for.
        workspace: The run's workspace, which the crate's ``alternateName`` paths are in.
        path: What to call the crate in messages.

    Raises:
        PubflowError: Naming the entity and the key that are not vouched for.
    """
    graph = {e["@id"]: e for e in crate.get("@graph", [])
             if isinstance(e, dict) and isinstance(e.get("@id"), str)}
    listed = {unquote(i): e for i, e in graph.items() if is_local_id(i)}
    unlisted, absent = sorted(set(files) - set(listed)), sorted(set(listed) - set(files))
    if unlisted:
        raise PubflowError(f"the bundle's file {unlisted[0]} is not in the crate", path=path)
    if absent:
        raise PubflowError("lists a file the bundle does not hold", path=path, key=absent[0])
    parts = {unquote(i) for i in refs((graph.get("./") or {}).get("hasPart"))}
    if parts != set(files):
        raise PubflowError("the root's parts are not the bundle's files "
                           f"({len(parts)} vs {len(files)})", path=path, key="./.hasPart")
    vouched = {Path(k).resolve(): v for k, v in gate.verified.items()}
    vouched[gate.report.resolve()] = gate.report_sha256
    for name, (size, sha256) in sorted(files.items()):
        entity = listed[name]
        for key, value in (("sha256", sha256), ("contentSize", str(size))):
            if entity.get(key) != value:
                raise PubflowError(f"says {entity.get(key)!r}, the file has {value!r}",
                                   path=path, key=f"{name}.{key}")
        origin = entity.get("alternateName")
        if origin is not None and vouched.get((Path(workspace) / str(origin)).resolve()) \
                != sha256:
            raise PubflowError(f"calls it a copy of {origin}, which the validation report "
                               "does not vouch for with that sha256", path=path,
                               key=f"{name}.alternateName")
