"""A fake Zenodo: the legacy deposit API (developers.zenodo.org), strict.

Depositions (``/api/deposit/depositions``), their files and actions (``publish``,
``newversion``), and the files API (``/api/files/<bucket>/<name>``). Authentication by
``Authorization: Bearer``; errors as ``{"status", "message"[, "errors"]}``. Refuses: a bad
token (401), a wrong content type (415), metadata missing required fields or with values
outside Zenodo's vocabularies (400, with per-field errors), publishing without files (400),
changing a published deposition or its bucket (403), a new version of a version that is not
the latest (400).
"""

from __future__ import annotations

import copy
import datetime
import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .fakes import FakeService, Request, Response, bearer, bucket_change, error, md5

UPLOAD_TYPES = {"publication", "poster", "presentation", "dataset", "image", "video",
                "software", "lesson", "physicalobject", "other"}
ACCESS_RIGHTS = {"open", "embargoed", "restricted", "closed"}
LICENSES = {"cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "mit", "apache-2.0", "gpl-3.0-or-later"}
RELATIONS = {"isCitedBy", "cites", "isSupplementTo", "isSupplementedBy", "isContinuedBy",
             "continues", "isDescribedBy", "describes", "hasMetadata", "isMetadataFor",
             "isNewVersionOf", "isPreviousVersionOf", "isPartOf", "hasPart", "isReferencedBy",
             "references", "isDocumentedBy", "documents", "isCompiledBy", "compiles",
             "isVariantFormOf", "isOriginalFormof", "isIdenticalTo", "isAlternateIdentifier",
             "isReviewedBy", "reviews", "isDerivedFrom", "isSourceOf", "requires",
             "isRequiredBy", "isObsoletedBy", "obsoletes"}
KNOWN_FIELDS = {"upload_type", "publication_type", "image_type", "publication_date", "title",
                "creators", "description", "access_right", "license", "embargo_date",
                "access_conditions", "doi", "prereserve_doi", "keywords", "notes",
                "related_identifiers", "contributors", "references", "communities", "grants",
                "version", "language", "subjects"}
DOI_PREFIX = "10.5072"  # the sandbox's test prefix


def validate_metadata(metadata: Any) -> list[dict[str, Any]]:
    """Zenodo-style per-field errors (empty if the metadata is acceptable)."""
    if not isinstance(metadata, dict):
        return [{"field": "metadata", "message": "Not a valid object.", "code": 10}]
    errors = []

    def bad(name: str, message: str) -> None:
        errors.append({"field": f"metadata.{name}", "message": message, "code": 10})

    for name in ("upload_type", "title", "creators", "description"):
        if not metadata.get(name):
            bad(name, "Missing data for required field.")
    for name in sorted(set(metadata) - KNOWN_FIELDS):
        bad(name, "Unknown field name.")
    if metadata.get("upload_type") and metadata["upload_type"] not in UPLOAD_TYPES:
        bad("upload_type", "Not a valid choice.")
    if metadata.get("upload_type") == "publication" and not metadata.get("publication_type"):
        bad("publication_type", "Missing data for required field.")
    access = metadata.get("access_right", "open")
    if access not in ACCESS_RIGHTS:
        bad("access_right", "Not a valid choice.")
    if access in ("open", "embargoed") and metadata.get("license") not in LICENSES:
        bad("license", f"Unknown license: {metadata.get('license')!r}.")
    for i, creator in enumerate(metadata.get("creators") or []):
        if not isinstance(creator, dict) or not str(creator.get("name", "")).strip():
            bad(f"creators.{i}.name", "Missing data for required field.")
        elif creator.get("orcid") and not re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]",
                                                       creator["orcid"]):
            bad(f"creators.{i}.orcid", "Not a valid ORCID identifier.")
    for i, rel in enumerate(metadata.get("related_identifiers") or []):
        if not isinstance(rel, dict) or not rel.get("identifier"):
            bad(f"related_identifiers.{i}.identifier", "Missing data for required field.")
        elif rel.get("relation") not in RELATIONS:
            bad(f"related_identifiers.{i}.relation", "Not a valid choice.")
    if not isinstance(metadata.get("keywords", []), list):
        bad("keywords", "Not a valid list.")
    return errors


@dataclass
class Deposition:
    id: int
    conceptrecid: int
    bucket: str
    metadata: dict[str, Any]
    created: str
    submitted: bool = False
    publishes: int = 0
    previous: int | None = None


class FakeZenodo(FakeService):
    """Zenodo's deposit API for one account, accepting ``tokens``."""

    def __init__(self, tokens: set[str]) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.depositions: dict[int, Deposition] = {}
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.ids = itertools.count(1001)
        self.corrupt_next: set[str] = set()

    # -- representation ---------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.url}/api/{path}"

    def _files(self, dep: Deposition) -> list[dict[str, Any]]:
        return [{"id": f"{dep.bucket}-{name}", "filename": name, "filesize": len(data),
                 "checksum": md5(data)}
                for name, data in sorted(self.buckets[dep.bucket].items())]

    def _latest_draft(self, concept: int) -> Deposition:
        members = [d for d in self.depositions.values() if d.conceptrecid == concept]
        drafts = [d for d in members if not d.submitted]
        return max(drafts or members, key=lambda d: d.id)

    def resource(self, dep: Deposition) -> dict[str, Any]:
        base = self._api(f"deposit/depositions/{dep.id}")
        metadata = copy.deepcopy(dep.metadata)
        metadata["prereserve_doi"] = {"doi": f"{DOI_PREFIX}/zenodo.{dep.id}", "recid": dep.id}
        out: dict[str, Any] = {
            "id": dep.id, "conceptrecid": str(dep.conceptrecid), "created": dep.created,
            "modified": dep.created, "owner": 1, "record_id": dep.id,
            "state": "done" if dep.submitted else "unsubmitted", "submitted": dep.submitted,
            "title": dep.metadata.get("title", ""), "metadata": metadata,
            "files": self._files(dep),
            "links": {"self": base, "html": f"{self.url}/deposit/{dep.id}",
                      "bucket": self._api(f"files/{dep.bucket}"), "files": f"{base}/files",
                      "publish": f"{base}/actions/publish", "edit": f"{base}/actions/edit",
                      "discard": f"{base}/actions/discard",
                      "newversion": f"{base}/actions/newversion",
                      "latest_draft": self._api(
                          f"deposit/depositions/{self._latest_draft(dep.conceptrecid).id}")},
        }
        if dep.submitted:
            out.update(doi=f"{DOI_PREFIX}/zenodo.{dep.id}",
                       doi_url=f"https://doi.org/{DOI_PREFIX}/zenodo.{dep.id}",
                       record_url=f"{self.url}/records/{dep.id}",
                       conceptdoi=f"{DOI_PREFIX}/zenodo.{dep.conceptrecid}")
        return out

    # -- helpers for the tests ----------------------------------------------------------------

    def published(self) -> list[Deposition]:
        return [d for d in self.depositions.values() if d.submitted]

    def drafts(self) -> list[Deposition]:
        return [d for d in self.depositions.values() if not d.submitted]

    def files_of(self, dep: Deposition) -> dict[str, str]:
        return {name: md5(data) for name, data in self.buckets[dep.bucket].items()}

    def _new(self, metadata: dict[str, Any], concept: int | None = None,
             previous: int | None = None) -> Deposition:
        dep_id = next(self.ids)
        bucket = str(uuid.uuid4())
        self.buckets[bucket] = {}
        dep = Deposition(dep_id, concept or dep_id + 100000, bucket, metadata,
                         datetime.datetime.now(datetime.UTC).isoformat(), previous=previous)
        self.depositions[dep_id] = dep
        return dep

    # -- routes -------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        if not request.path.startswith("/api/"):
            return error(404, "Not found")
        if not bearer(request, self.tokens):
            return error(401, "The server could not verify that you are authorized to access "
                              "the URL requested. You either supplied the wrong credentials "
                              "(e.g. a bad password), or your browser doesn't understand how to "
                              "supply the credentials required.")
        parts = request.path.strip("/").split("/")[1:]
        if parts[:2] == ["deposit", "depositions"]:
            return self._depositions(request, parts[2:])
        if parts[:1] == ["files"] and len(parts) == 3:
            return self._object(request, parts[1], parts[2])
        return error(404, "Not found")

    def _depositions(self, request: Request, rest: list[str]) -> Response:
        m = request.method
        if not rest:
            if m == "GET":
                status = request.query.get("status", [""])[0]
                found = sorted(self.depositions.values(), key=lambda d: -d.id)
                if status == "draft":
                    found = [d for d in found if not d.submitted]
                elif status == "published":
                    found = [d for d in found if d.submitted]
                size = int(request.query.get("size", ["10"])[0])
                page = int(request.query.get("page", ["1"])[0])
                chunk = found[(page - 1) * size: page * size]
                return Response.json(200, [self.resource(d) for d in chunk])
            if m == "POST":
                if not request.header("Content-Type").startswith("application/json"):
                    return error(415, "Unsupported media type")
                body = request.json()
                metadata = (body or {}).get("metadata", {})
                if metadata and (problems := validate_metadata(metadata)):
                    return error(400, "Validation error.", problems)
                return Response.json(201, self.resource(self._new(metadata)))
            return error(405, "Method not allowed")
        try:
            dep = self.depositions[int(rest[0])]
        except (KeyError, ValueError):
            return error(404, "Deposition not found")
        if len(rest) == 1:
            if m == "GET":
                return Response.json(200, self.resource(dep))
            if m == "PUT":
                if dep.submitted:
                    return error(403, "Deposition is published: use the edit or newversion "
                                      "action to change it")
                if not request.header("Content-Type").startswith("application/json"):
                    return error(415, "Unsupported media type")
                metadata = (request.json() or {}).get("metadata")
                if problems := validate_metadata(metadata):
                    return error(400, "Validation error.", problems)
                dep.metadata = {k: v for k, v in metadata.items() if k != "prereserve_doi"}
                return Response.json(200, self.resource(dep))
            return error(405, "Method not allowed")
        if rest[1:] == ["files"] and m == "GET":
            return Response.json(200, self._files(dep))
        if len(rest) == 3 and rest[1] == "actions" and m == "POST":
            return self._action(dep, rest[2])
        return error(404, "Not found")

    def _action(self, dep: Deposition, action: str) -> Response:
        if action == "publish":
            if dep.submitted:
                return error(400, "Deposition is already published.")
            if not self.buckets[dep.bucket]:
                return error(400, "Validation error.", [
                    {"field": "files", "message": "Minimum one file must be provided.",
                     "code": 10}])
            if problems := validate_metadata(dep.metadata):
                return error(400, "Validation error.", problems)
            dep.submitted = True
            dep.publishes += 1
            return Response.json(202, self.resource(dep))
        if action == "newversion":
            if not dep.submitted:
                return error(400, "The deposition is not published.")
            versions = [d for d in self.depositions.values()
                        if d.conceptrecid == dep.conceptrecid and d.submitted]
            if dep.id != max(d.id for d in versions):
                return error(400, "The id used to create a new version has to be the id of "
                                  "the latest version.")
            if not any(not d.submitted for d in self.depositions.values()
                       if d.conceptrecid == dep.conceptrecid):
                metadata = {k: v for k, v in dep.metadata.items() if k != "doi"}
                new = self._new(copy.deepcopy(metadata), concept=dep.conceptrecid,
                                previous=dep.id)
                self.buckets[new.bucket] = dict(self.buckets[dep.bucket])
            return Response.json(201, self.resource(dep))
        return error(404, f"Unknown action {action}")

    def _object(self, request: Request, bucket: str, name: str) -> Response:
        if bucket not in self.buckets:
            return error(404, "Bucket does not exist.")
        owner = next(d for d in self.depositions.values() if d.bucket == bucket)

        def stored(data: bytes) -> bytes:
            if name in self.corrupt_next:
                self.corrupt_next.discard(name)
                data = data[:-1] + bytes([data[-1] ^ 1])
            return data

        changed = bucket_change(request, self.buckets[bucket], name, locked=owner.submitted,
                                stored=stored, mimetype="application/octet-stream",
                                version_id=str(uuid.uuid4()),
                                links={"self": self._api(f"files/{bucket}/{name}")})
        if changed is not None:
            return changed
        if request.method == "GET":
            if name not in self.buckets[bucket]:
                return error(404, "Object does not exists.")
            return Response(200, self.buckets[bucket][name],
                            {"Content-Type": "application/octet-stream"})
        return error(405, "Method not allowed")
