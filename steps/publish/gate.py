"""The gate: publish nothing unless the validation step passed on exactly these files.

``steps.validate`` writes ``results/validation/report.json`` only when every artefact passed
its consumer's validator, recording each artefact's sha256. A publisher reads the report,
requires it to say valid, and requires every file it is about to publish to be listed there
(``complete=True``; the report itself and the files named in ``exempt`` aside) and to still
have the digest the validator saw: a file changed (or regenerated) after validation, or one
that no validator saw, is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from steps.errors import PubflowError
from steps.io import sha256sum

log = logging.getLogger(__name__)

DEFAULT_REPORT = "results/validation/report.json"

RERUN = "run the workflow (`snakemake --cores all`) so that the validation gate passes"


@dataclass(frozen=True)
class GateResult:
    """What the gate vouched for.

    Attributes:
        report: The validation report.
        verified: Artefacts whose digest matched the report, as ``{path: sha256}``.
    """

    report: Path
    verified: dict[str, str]


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
    try:
        data = json.loads(report.read_text())
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
    return GateResult(report=report, verified=verified)
