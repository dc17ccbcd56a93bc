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
the background and the result e-mailed), or ``{"message": ...}`` with 400, 403 or 404.

A record's status (``overall_status``) decides whether it takes an upload. ``cli_upload``
takes one into a sandbox record only in status ``sandbox`` and into a non-sandbox record only
when its latest version is ``todo``. ``process_payload`` (``api.py``) then marks it
``sandbox_processing`` or ``processing`` until the background job (``process_saved_file``)
ends and restores the status; a coordinator's finalising makes it ``finished``. A repeated upload
therefore meets 403 ("... does not correspond to a confirmed uploader ...") while a sandbox
record is processing, and 404 ("Record N not found.") while a record is processing or once it
is finished. So before uploading to a known record pubflow reads its page as JSON
(``GET /record/sandbox/<id>?format=json``, open to anyone; ``GET /record/<id>?format=json``,
which shows an anonymous client only finished versions and otherwise redirects to the login
page) and waits, bounded by the retry policy, while it is being processed. A refusal of that
kind is checked against the record's status, never taken for a fault in the archive.

Before anything is sent, the archive must pass the validation gate, ``hepdata-validate``
(hepdata-validator, the same check HEPData runs), and the whole request body must fit HEPData's
limit: Flask's ``MAX_CONTENT_LENGTH`` (``hepdata/config.py``, 52,000,000 bytes) applies to the
body, form fields and multipart framing included, and werkzeug refuses a longer one with 413.

An upload without ``recid`` creates a new sandbox record, and nothing in HEPData's API lists a
user's sandbox records: if the answer to such an upload is lost, pubflow cannot tell whether
the record exists, so it refuses to guess. The next run asks for ``--recid N`` (the record
that appeared under ``<site>/record/sandbox``) or ``--discard-pending`` (none appeared).
An upload to a known record whose answer is lost is settled from the record's status: if the
record is being processed, the upload arrived (pubflow waits for a record to take uploads
before sending one); if not, it cannot be told, and the upload, which replaces the record's
content, is sent again.
"""

from __future__ import annotations

import argparse
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from urllib3.filepost import encode_multipart_formdata

from steps.config import load_analysis
from steps.errors import PubflowError
from steps.publish import common
from steps.publish.bundle import Bundle, BundleFile, write_bundle
from steps.publish.gate import check_gate
from steps.publish.http import Body, Client, PermanentHttpError
from steps.publish.plan import PLAN, Step
from steps.publish.publisher import Publisher
from steps.publish.secrets import Redactor, credential, optional_credential, redacted_logging
from steps.publish.state import State, utc_now

log = logging.getLogger(__name__)

SITE = "https://www.hepdata.net"
UPLOAD_PATH = "record/cli_upload"
#: HEPData's limit on the whole request body (hepdata/config.py: MAX_CONTENT_LENGTH =
#: UPLOAD_MAX_SIZE; werkzeug answers 413 above it). hepdata-cli checks only the file.
UPLOAD_MAX_SIZE = 52_000_000
#: Record pages, read as JSON to learn the record's status (views.py: sandbox_display, metadata).
SANDBOX_PAGE = "record/sandbox/{recid}"
RECORD_PAGE = "record/{recid}"
STATUS_QUERY = {"format": "json", "light": "true"}  # light: without the table list
#: What publication_processing.html says while the background job runs.
PROCESSING_TEXT = "is currently being processed"
#: What sandbox_display renders (with 200) for an id that is not a sandbox record.
NO_SANDBOX_TEXT = "Sandbox record not found"
#: How each kind of record answers a repeated upload while it is processing (views.py,
#: cli_upload: has_upload_permissions fails on 'sandbox_processing'; no 'todo' version).
BUSY_SANDBOX = (403, "does not correspond to a confirmed uploader")
BUSY_RECORD = (404, "Record {recid} not found")

#: What a record's page says about it: it takes an upload (``accepting``), its upload is
#: being processed, it is finished, it is not there, or an anonymous client cannot see its
#: latest version (``hidden``: the site redirects to its login page).
RecordState = Literal["accepting", "processing", "finished", "missing", "hidden", "unknown"]
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


def request_body_size(fields: Mapping[str, str], archive_size: int) -> int:
    """The length of the multipart body ``requests`` sends for these fields and the archive.

    The framing is what urllib3 (which ``requests`` encodes multipart bodies with) writes for
    the same fields and an empty file; its boundary has a fixed length.
    """
    framing, _ = encode_multipart_formdata(
        [*fields.items(), ("hep_archive", (ARCHIVE_NAME, b"", "application/octet-stream"))])
    return len(framing) + archive_size


def check_body(fields: Mapping[str, str], archive: BundleFile, limit: int | None = None) -> None:
    """Refuse an upload whose whole request body is over HEPData's limit."""
    limit = UPLOAD_MAX_SIZE if limit is None else limit
    size = request_body_size(fields, archive.size)
    if size > limit:
        raise PubflowError(f"the upload's request body would be {size} bytes (archive "
                           f"{archive.size} bytes, plus form fields and multipart framing): "
                           f"over HEPData's limit of {limit} bytes on the whole body; nothing "
                           "was sent (make the archive smaller, e.g. move large resources to "
                           "Zenodo)")


def record_state(response: Any) -> RecordState:
    """What a record page (``?format=json``) says about the record."""
    if response.status_code == 302:
        location = response.headers.get("Location", "")
        return "hidden" if "/login" in location else "unknown"
    try:
        body = response.json()
    except ValueError:
        # the processing page and sandbox_display's error page are HTML, with 200
        text = response.text
        if PROCESSING_TEXT in text:
            return "processing"
        return "missing" if NO_SANDBOX_TEXT in text else "unknown"
    status = body.get("status") if isinstance(body, Mapping) else None
    if status in ("todo", "sandbox"):
        return "accepting"
    if status in ("processing", "sandbox_processing"):
        return "processing"
    return "finished" if status == "finished" else "unknown"


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
        self.sandbox = fields.get("sandbox") != "False"
        super().__init__(client, state, bundle, production=production)

    # -- the record's status ------------------------------------------------------------------

    def _page(self, recid: int) -> str:
        return (SANDBOX_PAGE if self.sandbox else RECORD_PAGE).format(recid=recid)

    def _poll(self, recid: int) -> RecordState:
        """Read the record's page once."""
        try:
            response = self.client.request("GET", self._page(recid), expect=(200, 302),
                                           params=STATUS_QUERY,
                                           what="read the record's status")
        except PermanentHttpError as err:
            if err.status == 404:  # render_record's abort(404): no such record
                return "missing"
            raise
        return record_state(response)

    def _wait(self, recid: int, *, after: str) -> tuple[RecordState, bool]:
        """Poll the record until it is not being processed, bounded by the retry policy.

        Args:
            recid: The record.
            after: What the user is told was done, should the record still be processing.

        Returns:
            Its state, and whether it was seen being processed.

        Raises:
            PubflowError: If it is still being processed after the last check.
        """
        policy = self.client.policy
        seen = False
        for check in range(1, policy.attempts + 1):
            state = self._poll(recid)
            if state != "processing":
                return state, seen
            seen = True
            if check < policy.attempts:
                wait = policy.delay(check)
                log.info("HEPData: record %s is being processed (check %d of %d); next check "
                         "in %.3g s", recid, check, policy.attempts, wait)
                policy.sleep(wait)
        raise PubflowError(f"HEPData: record {recid} is still being processed after "
                           f"{policy.attempts} checks ({after}): re-run later, or allow longer "
                           "waits with --retries and --backoff", path=self.state.path)

    def _missing(self, recid: int) -> PubflowError:
        where = f"{self.endpoint}/{self._page(recid)}"
        return PubflowError(f"HEPData: no record {recid} ({where}); nothing was sent. Re-run "
                            "with --recid of an existing record (yours are under "
                            f"{self.endpoint}/record/sandbox)", path=self.state.path)

    def _finished(self, recid: int) -> PubflowError:
        return PubflowError(
            f"HEPData: record {recid} is finished and accepts no upload (HEPData answers "
            f"404 'Record {recid} not found.'); nothing was changed. Ask the record's "
            "coordinator to open a new version (Revise Submission on the record page), then "
            "re-run; if one is open and an upload to it is being processed, re-run later",
            path=self.state.path)

    def _busy_refusal(self, err: PermanentHttpError, recid: int) -> bool:
        """Whether ``err`` is how HEPData refuses an upload to a record that is processing."""
        status, text = BUSY_SANDBOX if self.sandbox else BUSY_RECORD
        return err.status == status and text.format(recid=recid) in str(err)

    # -- the run ------------------------------------------------------------------------------

    def _settle_pending(self, pending: dict[str, Any]) -> None:
        recid = pending.get("recid")
        if recid is None:
            if self.recid is None and not self.discard_pending:
                raise PubflowError(
                    f"HEPData: the upload sent {pending['started']} got no answer, and it may "
                    f"have created a new sandbox record. Look at {self.endpoint}/record/sandbox:"
                    " if a record with this submission is there, re-run with --recid <its "
                    "number>; if there is none, re-run with --discard-pending",
                    path=self.state.path)
            if self.recid is None:
                return
            log.info("HEPData: adopting record %s for the upload whose answer was lost",
                     self.recid)
            recid = self.recid
        record = dict(self.section.get("record") or {})
        if record.get("recid") != recid:
            record = {"recid": recid, "url": None, "sha256": None,
                      "sandbox": not self.production}
        state, seen = self._wait(recid, after="the upload whose answer was lost is still "
                                              "recorded as pending")
        if state == "missing":
            raise self._missing(recid)
        if seen:
            # pubflow sends an upload only to a record that is not processing: this
            # processing is that upload's
            log.info("HEPData: record %s was processing the upload whose answer was lost: it "
                     "arrived", recid)
            record.update(sha256=pending.get("sha256"), uploaded=pending["started"])
        else:
            log.warning("HEPData: cannot tell whether the upload to record %s whose answer was "
                        "lost arrived; it is sent again (an upload replaces the record's "
                        "content)", recid)
        self.section["record"] = record

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
        check_body(fields, self.archive)
        body = Body(form=fields, files={"hep_archive": (ARCHIVE_NAME,
                                                        self.bundle.file_path(ARCHIVE_NAME))})
        answer = (self._upload(body, recid=None) if recid is None
                  else self._upload_to(recid, body))
        url = str(answer.get("url") or "")
        new_recid = recid_from_url(url) if url else None
        if new_recid is None and recid is None:
            raise PubflowError(f"HEPData: the answer names no record URL ({answer!r}): look at "
                               f"{self.endpoint}/record/sandbox and re-run with --recid")
        s["record"] = {"recid": recid if recid is not None else new_recid,
                       "url": url or record.get("url"), "sha256": self.archive.sha256,
                       "sandbox": not self.production, "uploaded": utc_now()}
        s.pop("pending", None)
        self.state.save()
        log.info("HEPData: uploaded to %s (processed in the background; HEPData e-mails the "
                 "result)", s["record"]["url"])
        return s["record"]

    def _upload(self, body: Body, *, recid: int | None) -> dict[str, Any]:
        """One upload, recorded as pending until its answer is in."""
        # Not idempotent, even to a known record: a repeat while the first one is processed
        # is refused, and one after it doubles the work. A lost answer is settled instead.
        info = {"sha256": self.archive.sha256, **({"recid": recid} if recid is not None else {})}
        with self.state.recording(self.endpoint, "upload", **info):
            return self.client.json("POST", UPLOAD_PATH, expect=(200,), body=body,
                                    idempotent=False, what="upload the submission") or {}

    def _upload_to(self, recid: int, body: Body) -> dict[str, Any]:
        """Upload to a known record once it takes uploads, waiting while it is processing."""
        policy = self.client.policy
        for attempt in range(1, policy.attempts + 1):
            state, _ = self._wait(recid, after="nothing was sent")
            if state == "missing":
                raise self._missing(recid)
            # 'finished' as an anonymous client sees it may hide a newer open version: the
            # upload view, which applies nothing when it refuses, decides
            try:
                return self._upload(body, recid=recid)
            except PermanentHttpError as err:
                if not self._busy_refusal(err, recid):
                    raise
                state = self._poll(recid)
                if state == "missing":
                    raise self._missing(recid) from None
                if state == "finished":
                    raise self._finished(recid) from None
                if state not in ("processing", "hidden"):
                    raise  # the record takes uploads: the refusal is about this upload
                # 'hidden' here: no finished version, and its only version is not 'todo'
                if attempt == policy.attempts:
                    raise PubflowError(
                        f"HEPData: record {recid} refuses uploads while it is being "
                        f"processed ({err.status} after {attempt} tries); nothing was "
                        "changed: re-run later", path=self.state.path) from None
                wait = policy.delay(attempt)
                log.warning("HEPData: record %s is being processed and refused the upload "
                            "(%s); trying again in %.3g s (try %d of %d)", recid, err.status,
                            wait, attempt + 1, policy.attempts)
                policy.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def plan_steps(base: str, fields: dict[str, str], *, recid: int | None,
               section: dict[str, Any], archive: BundleFile) -> tuple[list[Step], list[str]]:
    """The requests an upload would send (none if the record already has the archive)."""
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
    steps: list[Step] = []
    if recid is not None:
        page = (SANDBOX_PAGE if fields.get("sandbox") != "False" else RECORD_PAGE)
        query = "&".join(f"{k}={v}" for k, v in STATUS_QUERY.items())
        steps.append(Step("status", "GET", f"{base}/{page.format(recid=recid)}?{query}",
                          note="repeated (up to --retries times) while the record is being "
                               "processed; a record that is finished takes no upload"))
    steps.append(Step("upload", "POST", f"{base}/{UPLOAD_PATH}",
                      body=f"multipart: hep_archive=files/{ARCHIVE_NAME} ({archive.size} bytes, "
                           f"sha256 {archive.sha256}); {form}",
                      note="HEPData processes the archive in the background and e-mails the "
                           "result"))
    return steps, notes


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
            plan = common.plan(opts, steps, notes, publish=False, credentials=credentials)
            return {PLAN: plan, FORM: {"url": f"{opts.base_url}/{UPLOAD_PATH}",
                                       "fields": shown, "file_field": "hep_archive"}}

        bundle = write_bundle(opts.out, {ARCHIVE_NAME: archive}, documents)
        if not opts.upload:
            log.info("dry run: bundle and plan in %s; nothing was sent", bundle.path)
            return
        assert email is not None and password is not None
        fields = form_fields(email=email, password=password, sandbox=not opts.production,
                             recid=None, cookie=cookie)
        record = common.send(
            "HEPData", opts, state, redactor,
            start=lambda client: HEPDataPublisher(
                client, state, bundle, fields, recid=args.recid,
                discard_pending=args.discard_pending, production=opts.production).run)
        log.info("HEPData %s: record %s, %s", opts.kind, record.get("recid"), record.get("url"))
