"""A fake HEPData: the upload view and the record pages as the real server answers them, strict.

Follows HEPData's own code (github.com/HEPData/hepdata, read at commit 2e5c877, August 2026):

* ``POST /record/cli_upload``: ``cli_upload`` (hepdata/modules/records/views.py), which hands on
  to ``consume_sandbox_payload``, ``update_sandbox_payload`` or ``consume_data_payload`` (same
  file) and then to ``process_payload`` (hepdata/modules/records/api.py).
* ``GET /record/sandbox/<id>``: ``sandbox_display`` (views.py).
* ``GET /record/<id>``: ``metadata`` (views.py) and ``render_record`` (api.py), as an anonymous
  client sees them (pubflow never logs in to the web site).
* ``GET /ping``: ``ping`` (hepdata/modules/theme/views.py).

A record's ``overall_status`` (``HEPSubmission``, hepdata/modules/submission/models.py) is
``todo`` (a non-sandbox record waiting for its upload), ``sandbox``, ``processing`` or
``sandbox_processing`` (``process_payload`` sets these; the background job
``process_saved_file`` puts the previous status back when it ends), or ``finished`` (the
coordinator finalised it). Here a record stays processing for ``processing`` requests about it
(status pages and uploads naming it) and at least ``processing_seconds`` after each upload.

The size limit is Flask's ``MAX_CONTENT_LENGTH`` (hepdata/config.py sets it to
``UPLOAD_MAX_SIZE``, 52,000,000): werkzeug refuses a request whose *body* is longer with its
own 413 page before the view runs (``get_input_stream``, werkzeug/wsgi.py). ``process_payload``
checks the saved *file* against ``UPLOAD_MAX_SIZE`` too; with both limits equal that check can
never fire through ``cli_upload``, but it is kept, as on the server.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from .fakes import FakeService, Request, Response

UPLOAD_MAX_SIZE = 52_000_000
#: ALLOWED_EXTENSIONS (hepdata/config.py), as ``allowed_file`` checks them.
ALLOWED = (".zip", ".tar", ".tar.gz", ".tgz", ".oldhepdata", ".yaml", ".yaml.gz")
PROCESSING = ("processing", "sandbox_processing")


def parse_multipart(request: Request) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Form fields and files of a ``multipart/form-data`` body."""
    head = f"Content-Type: {request.header('Content-Type')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            files[name] = (filename, payload)
        else:
            fields[name] = payload.decode()
    return fields, files


def html(status: int, text: str, **headers: str) -> Response:
    """An HTML page (what Flask's templates and werkzeug's error pages answer)."""
    return Response(status, f"<!doctype html>\n<html lang=en>\n{text}\n".encode(),
                    {"Content-Type": "text/html; charset=utf-8", **headers})


def message(status: int, text: str) -> Response:
    """``jsonify({"message": ...}), status``: how the upload views refuse."""
    return Response.json(status, {"message": text})


#: werkzeug's RequestEntityTooLarge page (HEPData registers no handler for 413).
TOO_LARGE = ("<title>413 Request Entity Too Large</title>\n<h1>Request Entity Too Large</h1>\n"
             "<p>The data value transmitted exceeds the capacity limit.</p>")
#: abort(404), rendered by HEPData's page_not_found (hepdata/modules/theme/views.py).
NOT_FOUND = "<title>HEPData | Page not found</title>\n<h1>Page not found</h1>"


@dataclass
class Record:
    """A publication record: its latest version's status; earlier versions are finished."""

    recid: int
    owner: str
    sandbox: bool
    cookie: str | None = None
    archives: list[str] = field(default_factory=list)
    status: str = "todo"
    version: int = 1
    previous: str = "todo"
    polls_left: int = 0
    until: float = 0.0

    @property
    def finished_versions(self) -> int:
        # create_new_version (api.py) opens version n+1 only once version n is finished
        return self.version if self.status == "finished" else self.version - 1


class FakeHEPData(FakeService):
    """HEPData with some accounts (``users``: e-mail -> password).

    Args:
        users: The accounts (active, confirmed, with a password).
        limit: ``MAX_CONTENT_LENGTH`` and ``UPLOAD_MAX_SIZE``, in bytes.
        processing: How many requests about a record find it still processing after an upload.
        processing_seconds: The least time a record stays processing after an upload.
    """

    def __init__(self, users: dict[str, str], limit: int = UPLOAD_MAX_SIZE,
                 processing: int = 0, processing_seconds: float = 0.0) -> None:
        super().__init__()
        self.users = dict(users)
        self.limit = limit
        self.processing = processing
        self.processing_seconds = processing_seconds
        self.records: dict[int, Record] = {}
        self.ids = itertools.count(1_700_000_001)
        #: Content-Length of every upload request that reached the view.
        self.body_sizes: list[int] = []

    # -- what a coordinator does on the web site ------------------------------------------------

    def add_record(self, owner: str, cookie: str) -> int:
        """A non-sandbox record in 'todo' state, with ``owner`` invited as primary uploader."""
        recid = next(self.ids)
        self.records[recid] = Record(recid, owner, sandbox=False, cookie=cookie)
        return recid

    def finish(self, recid: int) -> None:
        """Finalise the record (dashboard ``finalise``) once its upload is processed: it
        accepts no more uploads."""
        record = self.records[recid]
        if record.status in PROCESSING:
            record.status = record.previous  # the coordinator waits for the job to end
        assert not record.sandbox and record.status == "todo", record
        record.status = "finished"

    def new_version(self, recid: int) -> None:
        """'Revise submission' (``revise_submission`` -> ``create_new_version``): a new
        version in 'todo' state, for a finished record only."""
        record = self.records[recid]
        assert record.status == "finished", record
        record.version += 1
        record.status = "todo"

    def sandbox_records(self) -> list[Record]:
        return [r for r in self.records.values() if r.sandbox]

    # -- processing -----------------------------------------------------------------------------

    def _start_processing(self, record: Record) -> None:
        # process_payload: 'sandbox' -> 'sandbox_processing', anything else -> 'processing'
        record.previous = record.status
        record.status = "sandbox_processing" if record.status == "sandbox" else "processing"
        record.polls_left = self.processing
        record.until = time.monotonic() + self.processing_seconds

    @staticmethod
    def _observe(record: Record | None) -> None:
        """A request about ``record`` arrives: its background job may have ended."""
        if record is None or record.status not in PROCESSING:
            return
        if record.polls_left <= 0 and time.monotonic() >= record.until:
            record.status = record.previous  # process_saved_file restores previous_status
        else:
            record.polls_left -= 1

    # -- routes ---------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        path = request.path
        if path == "/ping" and request.method == "GET":
            # theme/views.py, ping
            return Response(200, b"OK", {"Content-Type": "text/html; charset=utf-8"})
        if path == "/record/cli_upload":
            # records/views.py, cli_upload: GET redirects home; methods=['GET', 'POST']
            if request.method == "GET":
                return html(302, "<title>Redirecting...</title>", Location="/")
            if request.method != "POST":
                return html(405, "<title>405 Method Not Allowed</title>")
            return self._cli_upload(request)
        sandbox = re.fullmatch(r"/record/sandbox/(\d+)", path)
        if sandbox and request.method == "GET":
            return self._sandbox_display(int(sandbox.group(1)), request)
        record = re.fullmatch(r"/record/(\d+)(?:/|/metadata)?", path)
        if record and request.method == "GET":
            return self._metadata(int(record.group(1)), request)
        return html(404, NOT_FOUND)

    def _cli_upload(self, request: Request) -> Response:
        """records/views.py, cli_upload (the checks in its order)."""
        # Flask MAX_CONTENT_LENGTH: werkzeug refuses the whole body before request.form is read
        if len(request.body) > self.limit:
            return html(413, TOO_LARGE)
        self.body_sizes.append(len(request.body))
        fields, files = parse_multipart(request)
        if "email" not in fields:
            return message(400, "User email is required: specify one using -e user-email.")
        if "pswd" not in fields:
            return message(400, "User password is required.")
        user = fields["email"].lower()
        if user not in self.users:
            return message(404, f"Email {fields['email']} does not match an active confirmed "
                                "user.")
        if self.users[user] != fields["pswd"]:
            return message(403, "Wrong password, please try again.")
        if "sandbox" not in fields:
            return message(400, "sandbox (True or False) is required.")
        is_sandbox = {"False": False, "True": True}.get(fields["sandbox"])
        raw = fields.get("recid")
        if raw and not raw.isdigit():
            return message(400, f"recid {raw} should be an integer (HEPData ID not INSPIRE ID).")
        record = self.records.get(int(raw)) if raw else None
        self._observe(record)
        if raw and not self._may_upload(record, user, is_sandbox is True):
            return message(403, f"Email {fields['email']} does not correspond to a confirmed "
                                "uploader for this record.")
        if is_sandbox is True:
            if raw is None:
                # consume_sandbox_payload creates the record before it looks at the file
                recid = next(self.ids)
                record = self.records[recid] = Record(recid, user, sandbox=True,
                                                      status="sandbox", previous="sandbox")
            elif record is None or record.status != "sandbox":
                return message(404, f"Sandbox record {raw} not found.")
            # update_sandbox_payload re-checks the permission: the same answer as above
            return self._process_payload(record, files, f"{self.url}/record/sandbox/{{}}")
        if is_sandbox is False:
            # get_latest_hepsubmission(publication_recid=recid, overall_status='todo')
            if record is None or record.sandbox or record.status != "todo":
                return message(404, f"Record {raw} not found.")
            if record.cookie != fields.get("invitation_cookie"):
                return message(403, "Invitation cookie did not match.")
            return self._process_payload(record, files, f"{self.url}/record/{{}}")
        # neither 'True' nor 'False': the view falls off its end and returns None
        return html(500, "<title>500 Internal Server Error</title>")

    @staticmethod
    def _may_upload(record: Record | None, user: str, is_sandbox: bool) -> bool:
        """records/api.py, has_upload_permissions (for a user who is not an admin)."""
        if record is None or record.owner != user:
            return False
        if is_sandbox:
            # only the latest submission in status 'sandbox' counts: not 'sandbox_processing'
            return record.sandbox and record.status == "sandbox"
        return not record.sandbox  # a primary uploader of the record, whatever its status

    def _process_payload(self, record: Record, files: dict[str, tuple[str, bytes]],
                         url: str) -> Response:
        """records/api.py, process_payload."""
        if "hep_archive" not in files:
            # request.files['hep_archive'] raises werkzeug's BadRequestKeyError
            return html(400, "<title>400 Bad Request</title>")
        filename, data = files["hep_archive"]
        if not filename.endswith(ALLOWED):
            return message(400, "You must upload a .zip, .tar, .tar.gz or .tgz file (or a "
                                ".oldhepdata or single .yaml or .yaml.gz file).")
        if len(data) > self.limit:  # the saved file against UPLOAD_MAX_SIZE
            return message(413, f"{filename} too large ({len(data)} bytes > {self.limit} bytes)")
        if record.status == "finished":
            # a finished record is reopened as a new version (unreachable from cli_upload,
            # which asks for a 'todo' version first)
            record.version += 1
            record.status = "todo"
        self._start_processing(record)
        record.archives.append(hashlib.sha256(data).hexdigest())
        return Response.json(200, {"url": url.format(record.recid)})

    def _sandbox_display(self, recid: int, request: Request) -> Response:
        """records/views.py, sandbox_display (no login needed)."""
        record = self.records.get(recid)
        if record is None or not record.sandbox:
            # error_page.html, rendered without a status: 200
            return html(200, "<title>HEPData | Error</title>\n<h1>Sandbox record not found</h1>"
                             "\n<p>No submission exists with that ID.</p>")
        self._observe(record)
        if record.status == "sandbox_processing":
            return _processing_page(recid)
        fmt = request.query.get("format", ["html"])[0]
        if fmt == "json":
            return Response.json(200, _record_json(record, 1, light=bool(
                request.query.get("light", [""])[0])))
        if fmt == "html":
            return html(200, f"<title>HEPData | Sandbox record {recid}</title>")
        return html(302, "<title>Redirecting...</title>",
                    Location=f"/download/submission/{recid}/1/{fmt}")

    def _metadata(self, recid: int, request: Request) -> Response:
        """records/views.py, metadata -> records/api.py, render_record, for an anonymous
        client: unfinished versions are not shown to it (no observer key is modelled)."""
        record = self.records.get(recid)
        fmt = request.query.get("format", ["html"])[0]
        if record is None or record.sandbox:
            return html(404, NOT_FOUND)  # abort(404)
        self._observe(record)
        try:
            version = int(request.query.get("version", ["-1"])[0])
        except ValueError:
            version = -1
        allowed = record.finished_versions  # version_count for a user without rights
        if version == -1:
            version = allowed or 1
        if allowed < record.version and version == record.version:
            nxt = quote(f"/record/{recid}?version={version}&format={fmt}", safe="")
            return html(302, "<title>Redirecting...</title>", Location=f"/login/?next={nxt}")
        if not 1 <= version <= record.version:
            return html(404, NOT_FOUND)
        status = record.status if version == record.version else "finished"
        if status == "processing":
            return _processing_page(recid)
        if fmt == "json":
            body = _record_json(record, version, light=bool(request.query.get("light",
                                                                              [""])[0]))
            return Response.json(200, {**body, "status": status, "overall_status": status,
                                       "version_count": allowed})
        return html(200, f"<title>HEPData | Record {recid}</title>")


def _processing_page(recid: int) -> Response:
    """publication_processing.html (records/templates/hepdata_records), answered with 200."""
    return html(200, f"<title>HEPData | Processing record {recid}</title>\n"
                     f"<h4>Record {recid} is currently being processed.</h4>\n"
                     "<p>Please revisit this page later to see the full details.</p>")


def _record_json(record: Record, version: int, *, light: bool) -> dict[str, object]:
    """The parts of format_submission + process_ctx's JSON that a client reads."""
    body: dict[str, object] = {"recid": record.recid, "status": record.status,
                               "version": version, "version_count": record.version,
                               "mode": "sandbox" if record.sandbox else "record", "record": {}}
    if not light:
        body["data_tables"] = [{"name": "Table 1"}] if record.archives else []
    return body
