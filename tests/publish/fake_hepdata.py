"""A fake HEPData: ``POST /record/cli_upload`` as the real view handles it, strict.

Mirrors HEPData's ``cli_upload`` and ``process_payload`` (hepdata/modules/records/views.py
and api.py): the multipart form's ``email`` and ``pswd`` (400 if missing, 404 for an unknown
account, 403 for a wrong password), ``sandbox`` (400 if missing), ``recid`` (404 for an
unknown record, 403 for another user's sandbox record), ``invitation_cookie`` (403 if it does
not match a non-sandbox record's uploader invitation), the archive ``hep_archive`` (400 for a
file that is not an archive, 413 above the size limit). Success: ``{"url": ...}``.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
from dataclasses import dataclass, field

from .fakes import FakeService, Request, Response

UPLOAD_MAX_SIZE = 52_000_000
ALLOWED = (".zip", ".tar", ".tar.gz", ".tgz", ".oldhepdata", ".yaml", ".yaml.gz")


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


@dataclass
class Record:
    recid: int
    owner: str
    sandbox: bool
    cookie: str | None = None
    archives: list[str] = field(default_factory=list)


class FakeHEPData(FakeService):
    """HEPData with some accounts (``users``: e-mail -> password)."""

    def __init__(self, users: dict[str, str], limit: int = UPLOAD_MAX_SIZE) -> None:
        super().__init__()
        self.users = dict(users)
        self.limit = limit
        self.records: dict[int, Record] = {}
        self.ids = itertools.count(1_700_000_001)

    def add_record(self, owner: str, cookie: str) -> int:
        """A non-sandbox record in 'todo' state, with ``owner`` invited as uploader."""
        recid = next(self.ids)
        self.records[recid] = Record(recid, owner, sandbox=False, cookie=cookie)
        return recid

    def sandbox_records(self) -> list[Record]:
        return [r for r in self.records.values() if r.sandbox]

    def route(self, request: Request) -> Response:
        if request.path == "/ping" and request.method == "GET":
            return Response(200, b"OK", {"Content-Type": "text/plain"})
        if request.path != "/record/cli_upload":
            return Response.json(404, {"message": "Not found"})
        if request.method == "GET":
            return Response(302, b"", {"Location": "/"})
        if request.method != "POST":
            return Response.json(405, {"message": "Method not allowed"})
        fields, files = parse_multipart(request)
        if "email" not in fields:
            return Response.json(400, {"message": "User email is required: specify one using "
                                                  "-e user-email."})
        if "pswd" not in fields:
            return Response.json(400, {"message": "User password is required."})
        user = fields["email"].lower()
        if user not in self.users:
            return Response.json(404, {"message": f"Email {fields['email']} does not match an "
                                                  "active confirmed user."})
        if self.users[user] != fields["pswd"]:
            return Response.json(403, {"message": "Wrong password, please try again."})
        if "sandbox" not in fields:
            return Response.json(400, {"message": "sandbox (True or False) is required."})
        sandbox = {"True": True, "False": False}.get(fields["sandbox"])
        recid = int(fields["recid"]) if fields.get("recid") else None
        if sandbox is True:
            if recid is None:
                recid = next(self.ids)
                record = Record(recid, user, sandbox=True)
                new = True
            else:
                record = self.records.get(recid)
                if record is None or not record.sandbox:
                    return Response.json(404, {"message": f"Sandbox record {recid} not found."})
                if record.owner != user:
                    return Response.json(403, {"message": "Attempted to modify sandbox record "
                                                          "of another user."})
                new = False
            url = f"{self.url}/record/sandbox/{recid}"
        elif sandbox is False:
            record = self.records.get(recid) if recid is not None else None
            if record is None or record.sandbox:
                return Response.json(404, {"message": f"Record {recid} not found."})
            if record.owner != user:
                return Response.json(404, {"message": f"Email {fields['email']} does not "
                                                      "correspond to a confirmed uploader for "
                                                      "this record."})
            if record.cookie != fields.get("invitation_cookie"):
                return Response.json(403, {"message": "Invitation cookie did not match."})
            new = False
            url = f"{self.url}/record/{recid}"
        else:
            return Response.json(400, {"message": "sandbox (True or False) is required."})
        filename, data = files.get("hep_archive", ("", b""))
        if not filename.endswith(ALLOWED):
            return Response.json(400, {"message": "You must upload a .zip, .tar, .tar.gz or "
                                                  ".tgz file (or a .oldhepdata or single "
                                                  ".yaml or .yaml.gz file)."})
        if len(data) > self.limit:
            return Response.json(413, {"message": f"{filename} too large ({len(data)} bytes > "
                                                  f"{self.limit} bytes)"})
        if new:
            self.records[recid] = record
        record.archives.append(hashlib.sha256(data).hexdigest())
        return Response.json(200, {"url": url})
