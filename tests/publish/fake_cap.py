"""A fake CERN Analysis Preservation: the deposit REST API (Invenio-Deposit), strict.

``GET /api/me`` (the account's ``deposit_groups``), ``GET /api/deposits/`` (search, Invenio
hits), ``POST /api/deposits/`` (``$ana_type``), ``GET``/``PATCH /api/deposits/<pid>`` (JSON
Patch only as ``application/json-patch+json``), ``POST .../actions/{publish,edit}``, and the
files API on ``links.bucket``. Authentication by ``Authorization: Bearer``. Refuses: a bad
token (401), an unknown schema (400), a patch or file change to a published deposit (403),
publishing a published deposit (403), a record without a title (400 with field errors).
"""

from __future__ import annotations

import copy
import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from .fakes import FakeService, Request, Response, bearer, bucket_change, error, md5


@dataclass
class Deposit:
    pid: str
    schema: str
    bucket: str
    metadata: dict[str, Any]
    status: str = "draft"
    publishes: int = 0
    revision: int = 0
    files: dict[str, bytes] = field(default_factory=dict)


class FakeCAP(FakeService):
    """CAP for one account, accepting ``tokens``, allowed to create ``groups`` deposits."""

    def __init__(self, tokens: set[str], groups: tuple[str, ...] = ("cms-analysis",)) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.groups = groups
        self.deposits: dict[str, Deposit] = {}

    def resource(self, dep: Deposit) -> dict[str, Any]:
        base = f"{self.url}/api/deposits/{dep.pid}"
        out = {
            "id": dep.pid, "type": "deposit", "status": dep.status, "revision": dep.revision,
            "experiment": "CMS", "schema": {"name": dep.schema, "version": "1.0.0"},
            "metadata": copy.deepcopy(dep.metadata),
            "created": "2026-01-01T00:00:00+00:00",
            "updated": datetime.datetime.now(datetime.UTC).isoformat(),
            "links": {"self": base, "files": f"{base}/files",
                      "bucket": f"{self.url}/api/files/{dep.bucket}",
                      "html": f"{self.url}/drafts/{dep.pid}",
                      "publish": f"{base}/actions/publish", "edit": f"{base}/actions/edit"},
            "files": [{"key": k, "size": len(v), "checksum": f"md5:{md5(v)}",
                       "version_id": str(uuid.uuid5(uuid.NAMESPACE_URL, k + md5(v)))}
                      for k, v in sorted(dep.files.items())],
        }
        if dep.status == "published":
            out["recid"] = f"CAP.{dep.pid[:8]}"
        return out

    def route(self, request: Request) -> Response:
        if not bearer(request, self.tokens):
            return error(401, "You are not authorized to access the server (invalid access "
                              "token?)")
        parts = request.path.strip("/").split("/")
        if parts == ["api", "me"] and request.method == "GET":
            return Response.json(200, {"email": "physicist@example.org", "deposit_groups": [
                {"deposit_group": g, "name": g.upper(), "description": f"Create {g}"}
                for g in self.groups]})
        if parts[:2] == ["api", "deposits"]:
            return self._deposits(request, parts[2:])
        if parts[:2] == ["api", "files"] and len(parts) == 4:
            return self._object(request, parts[2], parts[3])
        return error(404, "Not found")

    def _deposits(self, request: Request, rest: list[str]) -> Response:
        m = request.method
        if not rest:
            if m == "GET":
                hits = [self.resource(d) for d in self.deposits.values()]
                return Response.json(200, {"hits": {"hits": hits, "total": len(hits)}})
            if m == "POST":
                body = request.json() or {}
                schema = body.pop("$ana_type", None)
                if schema not in self.groups:
                    return error(400, "Schema doesnt exist.")
                dep = Deposit(uuid.uuid4().hex, schema, str(uuid.uuid4()), body)
                self.deposits[dep.pid] = dep
                return Response.json(201, self.resource(dep))
            return error(405, "Method not allowed")
        dep = self.deposits.get(rest[0])
        if dep is None:
            return error(404, "PID does not exist.")
        if len(rest) == 1:
            if m == "GET":
                return Response.json(200, self.resource(dep))
            if m == "PATCH":
                if request.header("Content-Type") != "application/json-patch+json":
                    return error(415, "Unsupported media type")
                if dep.status == "published":
                    return error(403, "Invalid action: the deposit is published (edit it "
                                      "first).")
                try:
                    dep.metadata = jsonpatch.apply_patch(dep.metadata, request.json())
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    return error(400, f"Invalid JSON Patch: {err}")
                dep.revision += 1
                return Response.json(200, self.resource(dep))
            return error(405, "Method not allowed")
        if len(rest) == 3 and rest[1] == "actions" and m == "POST":
            if rest[2] == "publish":
                if dep.status == "published":
                    return error(403, "Invalid action.")
                if not dep.metadata.get("general_title"):
                    return error(400, "Validation error.", [
                        {"field": ["general_title"], "message": "is a required property"}])
                dep.status = "published"
                dep.publishes += 1
                return Response.json(202, self.resource(dep))
            if rest[2] == "edit":
                if dep.status != "published":
                    return error(403, "Invalid action.")
                dep.status = "draft"
                return Response.json(201, self.resource(dep))
        return error(404, "Not found")

    def _object(self, request: Request, bucket: str, key: str) -> Response:
        dep = next((d for d in self.deposits.values() if d.bucket == bucket), None)
        if dep is None:
            return error(404, "Bucket does not exist.")
        changed = bucket_change(request, dep.files, key, locked=dep.status == "published")
        if changed is not None:
            return changed
        return error(405, "Method not allowed")
