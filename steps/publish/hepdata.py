"""HEPData: upload the validated submission archive, as ``hepdata-cli upload`` does.

The protocol is hepdata-cli's (``hepdata_cli/api.py``, ``Client.upload``) and the server's
(HEPData ``hepdata/modules/records/views.py``, ``cli_upload``): one multipart
``POST <site>/record/cli_upload`` with the archive as ``hep_archive`` and the form fields

* ``email`` and ``pswd``: an existing HEPData account (``HEPDATA_EMAIL`` or ``--email``, and
  ``HEPDATA_PASSWORD``);
* ``sandbox``: ``True`` (default) or ``False``;
* ``recid``: the HEPData record to revise (required outside the sandbox: the record is
  created by the coordinator, who invites the uploader);
* ``invitation_cookie``: the token from the uploader's invitation e-mail, for a non-sandbox
  record (``HEPDATA_INVITATION_COOKIE``).

The answer is ``{"url": ".../record/sandbox/<recid>"}`` (the archive is then processed in
the background and the result e-mailed), or ``{"message": ...}`` with 400, 403, 404 or 413.

Before anything is sent, the archive must pass the validation gate, ``hepdata-validate``
(hepdata-validator, the same check HEPData runs), and HEPData's size limit (52,000,000 bytes).

An upload without ``recid`` creates a new sandbox record, and nothing in HEPData's API lists a
user's sandbox records: if the answer to such an upload is lost, pubflow cannot tell whether
the record exists, so it refuses to guess. The next run asks for ``--recid N`` (the record
that appeared under ``<site>/record/sandbox``) or ``--discard-pending`` (none appeared).
Uploads to a known record replace its content and are simply repeated.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import warnings
from pathlib import Path
from typing import Any

from steps.config import load_analysis, validate
from steps.errors import PubflowError
from steps.publish import common
from steps.publish.bundle import Bundle, BundleFile, write_bundle
from steps.publish.gate import check_gate
from steps.publish.http import Body, Client
from steps.publish.plan import PLAN, Step, plan_document
from steps.publish.publisher import Publisher
from steps.publish.secrets import Redactor, credential, optional_credential, redacted_logging
from steps.publish.state import State, utc_now

log = logging.getLogger(__name__)

SITE = "https://www.hepdata.net"
UPLOAD_PATH = "record/cli_upload"
#: HEPData's limit (hepdata-cli UPLOAD_MAX_SIZE; the server answers 413 above it).
UPLOAD_MAX_SIZE = 52_000_000
ARCHIVE_NAME = "submission.tar.gz"
EMAIL_ENV = "HEPDATA_EMAIL"
PASSWORD_ENV = "HEPDATA_PASSWORD"
COOKIE_ENV = "HEPDATA_INVITATION_COOKIE"
FORM = "upload.json"
_EXPECTED_SCHEMA = re.compile(r" \(expected: \{.*\}\)$")


def validator_messages(archive: Path) -> list[str]:
    """``hepdata-validate -a ARCHIVE``'s messages (empty if the archive is valid)."""
    try:
        from hepdata_validator.full_submission_validator import FullSubmissionValidator
    except ImportError:
        raise PubflowError("hepdata-validator is needed to check the archive before it is "
                           "sent (pip install hepdata-validator)") from None

    validator = FullSubmissionValidator(autoload_remote_schemas=False)
    with warnings.catch_warnings():
        # hepdata-validator 0.3.6 leaves data files open
        warnings.simplefilter("ignore", ResourceWarning)
        valid = validator.validate(archive=str(archive))
    messages = [f"{file}: {m.level}: {_EXPECTED_SCHEMA.sub('', ' '.join(m.message.split()))}"
                for file, entries in validator.get_messages().items() for m in entries]
    if not valid and not messages:
        messages.append("hepdata-validator rejects the archive without a message")
    return messages if not valid else []


def check_archive(archive: Path, limit: int | None = None) -> None:
    """Refuse an archive HEPData would refuse: too large, or rejected by hepdata-validate."""
    limit = UPLOAD_MAX_SIZE if limit is None else limit
    size = archive.stat().st_size
    if size > limit:
        raise PubflowError(f"{size} bytes: over HEPData's upload limit of {limit} bytes "
                           "(move large resources out of the archive, e.g. to Zenodo)",
                           path=archive)
    messages = validator_messages(archive)
    if messages:
        more = f" ({len(messages) - 1} more)" if len(messages) > 1 else ""
        raise PubflowError(f"hepdata-validate rejects the archive: {messages[0]}{more}",
                           path=archive)
    log.info("HEPData: %s passes hepdata-validate (%d bytes)", archive, size)


def recid_from_url(url: str) -> int | None:
    """The record id at the end of a HEPData record URL."""
    match = re.search(r"/(\d+)/?$", url)
    return int(match.group(1)) if match else None


def form_fields(*, email: str, password: str, sandbox: bool, recid: int | None,
                cookie: str | None) -> dict[str, str]:
    """The multipart form fields, exactly as hepdata-cli sends them (None fields omitted)."""
    fields = {"email": email, "pswd": password, "sandbox": str(sandbox)}
    if recid is not None:
        fields["recid"] = str(recid)
    if cookie:
        fields["invitation_cookie"] = cookie
    return fields


class HEPDataPublisher(Publisher):
    """One upload, resumable from the state file.

    Args:
        client: The HTTP client (no credentials of its own: they go in the form).
        state: The state file.
        bundle: The bundle (holds the archive).
        fields: Form fields without ``recid`` (added here).
        recid: Record to revise (from ``--recid``), if any.
        discard_pending: The user checked that a lost upload created nothing.
        production: Whether this is the real (non-sandbox) HEPData.
    """

    def __init__(self, client: Client, state: State, bundle: Bundle, fields: dict[str, str],
                 *, recid: int | None, discard_pending: bool, production: bool) -> None:
        self.fields = fields
        self.recid = recid
        self.discard_pending = discard_pending
        self.archive: BundleFile = bundle.by_name()[ARCHIVE_NAME]
        super().__init__(client, state, bundle, production=production)

    def _settle_pending(self, pending: dict[str, Any]) -> None:
        if self.recid is not None:
            log.info("HEPData: adopting record %s for the upload whose answer was lost",
                     self.recid)
            self.section["record"] = {
                "recid": self.recid, "url": None, "sha256": None, "sandbox": not self.production}
        elif not self.discard_pending:
            raise PubflowError(
                f"the HEPData upload sent {pending['started']} got no answer, and it may have "
                f"created a new sandbox record. Look at {self.endpoint}/record/sandbox: if a "
                "record with this submission is there, re-run with --recid <its number>; if "
                "there is none, re-run with --discard-pending", path=self.state.path)

    def run(self) -> dict[str, Any]:
        """Upload unless this archive is already in the record; return the record."""
        self._settle()
        s = self.section
        record = s.get("record") or {}
        recid = self.recid if self.recid is not None else record.get("recid")
        if recid is not None and record.get("recid") not in (None, recid):
            log.warning("HEPData: uploading to record %s, not to %s as before", recid,
                        record["recid"])
        if record.get("sha256") == self.archive.sha256 and record.get("recid") == recid:
            log.info("HEPData: record %s already has this archive (sha256 %s...): nothing to "
                     "do", recid, self.archive.sha256[:12])
            return record
        fields = dict(self.fields)
        if recid is not None:
            fields["recid"] = str(recid)
        body = Body(form=fields, files={"hep_archive": (ARCHIVE_NAME,
                                                        self.bundle.file_path(ARCHIVE_NAME))})
        # With a record id the upload replaces that record's content: repeating it is safe.
        # Without one it creates a record: pending until its answer is in.
        pending = (self.state.recording(self.endpoint, "upload", sha256=self.archive.sha256)
                   if recid is None else contextlib.nullcontext())
        with pending:
            answer = self.client.json("POST", UPLOAD_PATH, expect=(200,), body=body,
                                      idempotent=recid is not None,
                                      what="upload the submission") or {}
        url = str(answer.get("url") or "")
        new_recid = recid_from_url(url) if url else None
        if new_recid is None and recid is None:
            raise PubflowError(f"HEPData answered without a record URL ({answer!r}): look at "
                               f"{self.endpoint}/record/sandbox and re-run with --recid")
        s["record"] = {"recid": recid if recid is not None else new_recid,
                       "url": url or record.get("url"), "sha256": self.archive.sha256,
                       "sandbox": not self.production, "uploaded": utc_now()}
        s.pop("pending", None)
        self.state.save()
        log.info("HEPData: uploaded to %s (processed in the background; HEPData e-mails the "
                 "result)", s["record"]["url"])
        return s["record"]


def plan_steps(base: str, fields: dict[str, str], *, recid: int | None,
               section: dict[str, Any], archive: BundleFile) -> tuple[list[Step], list[str]]:
    """The request an upload would send (none if the record already has the archive)."""
    notes: list[str] = []
    record = section.get("record") or {}
    recid = recid if recid is not None else record.get("recid")
    if record.get("sha256") == archive.sha256 and record.get("recid") == recid:
        notes.append(f"record {recid} already has this archive: nothing would be sent")
        return [], notes
    if section.get("pending"):
        notes.append("a previous upload got no answer: the upload stops until --recid or "
                     "--discard-pending says what happened")
    shown = {**fields, **({"recid": str(recid)} if recid is not None else {})}
    form = ", ".join(f"{k}={v}" for k, v in shown.items())
    notes.append("a new sandbox record is created" if recid is None
                 else f"record {recid} is revised")
    return [Step("upload", "POST", f"{base}/{UPLOAD_PATH}",
                 body=f"multipart: hep_archive=files/{ARCHIVE_NAME} ({archive.size} bytes, "
                      f"sha256 {archive.sha256}); {form}",
                 note="HEPData processes the archive in the background and e-mails the result")
            ], notes


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``hepdata`` subcommand's options."""
    common.add_common_arguments(p, "hepdata", sandbox=f"{SITE}, sandbox=True",
                                production=f"{SITE}, sandbox=False")
    h = p.add_argument_group("HEPData")
    h.add_argument("--archive", type=Path, default=None,
                   help="the submission archive [default: <results>/hepdata/submission.tar.gz]")
    h.add_argument("--email", default=None,
                   help=f"HEPData account e-mail [default: ${EMAIL_ENV}]")
    h.add_argument("--recid", type=int, default=None,
                   help="HEPData record id to revise (required with --production: the "
                        "coordinator creates the record and invites the uploader)")
    h.add_argument("--discard-pending", action="store_true",
                   help="a previous upload got no answer and you checked that it created no "
                        "sandbox record: forget it")


def main(args: argparse.Namespace) -> None:
    """Check the archive, write the bundle and plan; with ``--upload``, send them."""
    opts = common.options(args, "hepdata", sandbox=SITE, production=SITE)
    archive = args.archive or opts.results / "hepdata" / ARCHIVE_NAME
    redactor = Redactor()
    email = args.email or optional_credential(EMAIL_ENV)
    password = cookie = None
    if opts.production and args.recid is None:
        raise PubflowError("--production needs --recid: outside the sandbox, HEPData's "
                           "coordinator creates the record and invites you as uploader")
    if opts.upload and opts.production:
        common.check_inspire_id(load_analysis(opts.config), opts)
    if opts.upload:
        if not email:
            raise PubflowError(f"no HEPData account: give --email or set {EMAIL_ENV}")
        password = credential(PASSWORD_ENV, purpose="the HEPData account's password")
        if opts.production:
            cookie = credential(COOKIE_ENV, purpose="the token in the uploader's invitation "
                                                    "e-mail")
    redactor.add(password)
    redactor.add(cookie)
    with redacted_logging(redactor):
        check_gate(opts.report, [archive])
        check_archive(archive)
        state = State(opts.state_path, "hepdata", redactor)
        shown = form_fields(email=email or f"${EMAIL_ENV}", password=f"${PASSWORD_ENV}",
                            sandbox=not opts.production, recid=None,
                            cookie=f"${COOKIE_ENV}" if opts.production else None)

        def documents(files: tuple[BundleFile, ...]) -> dict[str, Any]:
            archive_file = {f.name: f for f in files}[ARCHIVE_NAME]
            steps, notes = plan_steps(opts.base_url, shown, recid=args.recid,
                                      section=state.peek(opts.base_url), archive=archive_file)
            credentials = {PASSWORD_ENV: "form field pswd"}
            if opts.production:
                credentials[COOKIE_ENV] = "form field invitation_cookie"
            plan = plan_document("hepdata", endpoint=opts.base_url,
                                 production=opts.production, upload=opts.upload, publish=False,
                                 credentials=credentials, steps=steps, notes=notes)
            validate(plan, "publish-plan", opts.out / "bundle" / PLAN)
            return {PLAN: plan, FORM: {"url": f"{opts.base_url}/{UPLOAD_PATH}",
                                       "fields": shown, "file_field": "hep_archive"}}

        bundle = write_bundle(opts.out, {ARCHIVE_NAME: archive}, documents)
        if not opts.upload:
            log.info("dry run: bundle and plan in %s; nothing was sent", bundle.path)
            return
        assert email is not None and password is not None
        fields = form_fields(email=email, password=password, sandbox=not opts.production,
                             recid=None, cookie=cookie)
        client = Client("HEPData", opts.base_url, redactor=redactor, policy=opts.policy)
        try:
            with state.locked():
                publisher = HEPDataPublisher(client, state, bundle, fields, recid=args.recid,
                                             discard_pending=args.discard_pending,
                                             production=opts.production)
                record = common.resumable(publisher.run, opts.policy, "HEPData")
        finally:
            client.close()
        log.info("HEPData %s: record %s, %s", opts.kind, record.get("recid"), record.get("url"))
