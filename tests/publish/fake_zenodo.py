"""A fake Zenodo: the legacy deposit API as zenodo-rdm serves it, no stricter than Zenodo.

zenodo-rdm (github.com/zenodo/zenodo-rdm, read at commit 63864033, August 2026) serves the
legacy API from ``site/zenodo_rdm/legacy`` on top of InvenioRDM (invenio-drafts-resources
36fe82ea, invenio-records-resources 9cc7539a, invenio-oauth2server 897a361b). Each route
below names the function it follows. In short:

* A token is taken from ``Authorization: Bearer`` or, without that header, from the
  ``access_token`` query parameter; without a valid one the request is anonymous and is
  refused with 403 "Permission denied." (zenodo-rdm's own test: an anonymous create is 403).
* Metadata is loaded like the legacy deserializer: unknown metadata fields are dropped, an
  unknown top-level field is refused, licences match case-insensitively (with Zenodo's
  aliases) against ``tests/data/zenodo/licenses.json``, a missing licence defaults to
  CC0-1.0 for datasets and CC-BY-4.0 otherwise, a missing publication date to today. What is
  required (title, creators, resource type) is only checked on publishing, as InvenioRDM
  saves incomplete drafts.
* ``actions/newversion`` answers 201 with the new draft, its files imported from the latest
  version; repeated while that draft exists, it hands the same draft back after importing the
  files again, which Invenio refuses with 400 "Please remove all files first." once the draft
  holds any file.
* The reserved DOI is always reported as ``10.5281/zenodo.<id>`` (the production prefix, on
  the sandbox too); a published version gets ``<doi_prefix>/zenodo.<id>`` (the sandbox's
  10.5072 by default).
* Errors: ``{"status", "message"[, "errors": [{"field", "messages"}]]}``.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fakes import (
    FakeService,
    Request,
    Response,
    by_method,
    damaged,
    error,
    field_error,
    md5,
    validation_error,
)

LICENCES_FILE = Path(__file__).resolve().parents[1] / "data" / "zenodo" / "licenses.json"
_VOCABULARY = json.loads(LICENCES_FILE.read_text())
#: Legacy licence id (lower case) -> InvenioRDM id.
LICENSES: dict[str, str] = _VOCABULARY["ids"]
#: Legacy aliases (lower case) -> the id they stand for.
LICENSE_ALIASES: dict[str, str] = {k.lower(): v.lower() for k, v in
                                   _VOCABULARY["aliases"].items()}
#: InvenioRDM id -> the legacy id the serializer reports.
LICENSE_REPORTED: dict[str, str] = _VOCABULARY["reported_as"]

UPLOAD_TYPES = {"publication", "poster", "presentation", "dataset", "image", "video",
                "software", "lesson", "physicalobject", "other"}
#: The legacy relation names the serializer maps (serializers/schemas/common.py,
#: RELATION_TYPE_MAPPING), lower-cased as the deserializer does before the vocabulary.
RELATIONS = {"iscitedby", "cites", "issupplementto", "issupplementedby", "iscontinuedby",
             "continues", "isdescribedby", "describes", "hasmetadata", "ismetadatafor",
             "hasversion", "isversionof", "isnewversionof", "ispreviousversionof",
             "ispartof", "haspart", "ispublishedin", "isreferencedby", "references",
             "isdocumentedby", "documents", "iscompiledby", "compiles", "isvariantformof",
             "isoriginalformof", "isidenticalto", "isreviewedby", "reviews",
             "isderivedfrom", "issourceof", "isrequiredby", "requires", "isobsoletedby",
             "obsoletes", "isalternateidentifier"}
#: Metadata fields the legacy deserializer reads (deserializers/metadata.py MetadataSchema
#: and the fields LegacySchema's post_load hooks read); any other is dropped (EXCLUDE).
KNOWN_FIELDS = {"title", "description", "publication_date", "upload_type", "publication_type",
                "image_type", "creators", "imprint_publisher", "grants", "license",
                "contributors", "thesis_supervisors", "notes", "method", "locations",
                "keywords", "version", "dates", "references", "language",
                "related_identifiers", "access_right", "embargo_date", "communities",
                "subjects", "custom", "journal_title", "journal_volume", "journal_issue",
                "journal_pages", "conference_title", "conference_acronym", "conference_dates",
                "conference_place", "conference_url", "conference_session",
                "conference_session_part", "imprint_isbn", "imprint_place", "partof_pages",
                "partof_title", "thesis_university"}
#: The prefix legacyjson.LegacySchema.dump_prereserve_doi writes, whatever the site.
RESERVED_PREFIX = "10.5281"
SANDBOX_PREFIX = "10.5072"  # the DataCite test prefix the sandbox registers DOIs with
FORBIDDEN = "Permission denied."
NO_FILES = ("Missing uploaded files. To disable files for this record please mark it as "
            "metadata-only.")


def legacy_to_rdm(license_id: Any) -> str | None:
    """The InvenioRDM licence for a legacy id, as ``zenodo_legacy.licenses.legacy_to_rdm``
    resolves it (lower-cased and stripped, aliases replaced), or None."""
    if isinstance(license_id, dict):
        license_id = license_id.get("id")
    if not isinstance(license_id, str) or not license_id:
        return None
    normalized = license_id.lower().strip()
    return LICENSES.get(LICENSE_ALIASES.get(normalized, normalized).lower())


def load_deposit(body: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A create/update body as the legacy deserializer loads it: the metadata to keep, or
    per-field errors.

    Follows zenodo-rdm ``site/zenodo_rdm/legacy/deserializers/schemas.py`` (LegacySchema:
    unknown top-level fields RAISE; load_default_license; load_access) and
    ``deserializers/metadata.py`` (MetadataSchema: unknown fields EXCLUDE; load_rights;
    publication_date and imprint_publisher defaults).
    """
    if not isinstance(body, dict):
        return None, [{"field": "_schema", "messages": ["Invalid input type."]}]
    unknown = sorted(set(body) - {"metadata", "files"})
    if unknown:
        return None, [{"field": name, "messages": ["Unknown field."]} for name in unknown]
    metadata = body.get("metadata")
    if metadata is None:
        return {}, []
    if not isinstance(metadata, dict):
        return None, [{"field": "metadata", "messages": ["Invalid input type."]}]
    kept = {k: copy.deepcopy(v) for k, v in metadata.items() if k in KNOWN_FIELDS}
    access = kept.get("access_right", "open")
    if "license" not in kept and access in ("open", "embargoed"):
        kept["license"] = "CC0-1.0" if kept.get("upload_type") == "dataset" else "CC-BY-4.0"
    errors = []
    if "license" in kept:
        lic = kept["license"]
        if not isinstance(lic, dict | str):
            message = ("Invalid license value provided (expected string, or object with "
                       f"'id' key): {lic}")
            errors.append({"field": "metadata.license", "messages": [message]})
        elif legacy_to_rdm(lic) is None:
            shown = lic.get("id") if isinstance(lic, dict) else lic
            errors.append({"field": "metadata.license",
                           "messages": [f"Invalid license provided: {shown}"]})
    if access not in ("open", "restricted", "closed", "embargoed", None) or (
            access == "embargoed" and not kept.get("embargo_date")):
        errors.append({"field": "_schema", "messages": ["Unknown access type."]})
    if errors:
        return None, errors
    kept.setdefault("publication_date", datetime.date.today().isoformat())
    kept.setdefault("imprint_publisher", "Zenodo")
    return kept, []


def publish_errors(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """What publishing refuses in the metadata: InvenioRDM's required fields (resource type,
    title, creators with a name, publication date) and vocabulary values. The field names
    are InvenioRDM's; the vocabulary messages are modelled, not copied."""
    errors = []

    def bad(name: str, message: str) -> None:
        errors.append({"field": f"metadata.{name}", "messages": [message]})

    if not metadata.get("upload_type"):
        bad("resource_type", "Missing data for required field.")
    elif metadata["upload_type"] not in UPLOAD_TYPES:
        bad("resource_type", f"Invalid value {metadata['upload_type']}.")
    if not str(metadata.get("title") or "").strip():
        bad("title", "Missing data for required field.")
    if not metadata.get("publication_date"):
        bad("publication_date", "Missing data for required field.")
    creators = metadata.get("creators") or []
    if not creators:
        bad("creators", "Missing data for required field.")
    for i, creator in enumerate(creators):
        if not isinstance(creator, dict) or not str(creator.get("name", "")).strip():
            bad(f"creators.{i}.person_or_org.family_name", "Family name must be filled.")
        elif creator.get("orcid") and not re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]",
                                                       str(creator["orcid"])):
            bad(f"creators.{i}.person_or_org.identifiers.0.identifier",
                "Invalid value for scheme orcid.")
    for i, rel in enumerate(metadata.get("related_identifiers") or []):
        if not isinstance(rel, dict) or not rel.get("identifier"):
            bad(f"related_identifiers.{i}.identifier", "Missing data for required field.")
        elif str(rel.get("relation", "")).lower() not in RELATIONS:
            bad(f"related_identifiers.{i}.relation_type", "Invalid value.")
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
    """Zenodo's legacy deposit API for one account, accepting ``tokens``.

    Args:
        tokens: The valid personal access tokens.
        doi_prefix: The prefix of the DOIs registered on publication (the sandbox's).

    Attributes:
        create_status: The status a successful create answers with (Zenodo: 201).
        corrupt_next: File names whose next upload is stored with one bit flipped.
    """

    def __init__(self, tokens: set[str], *, doi_prefix: str = SANDBOX_PREFIX) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.doi_prefix = doi_prefix
        self.depositions: dict[int, Deposition] = {}
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.ids = itertools.count(1001)
        self.corrupt_next: set[str] = set()
        self.create_status = 201

    # -- representation ---------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.url}/api/{path}"

    def _files(self, dep: Deposition) -> list[dict[str, Any]]:
        """A deposition's files as serializers/schemas/files.py LegacyFileSchema lists them
        (the checksum without its ``md5:`` prefix)."""
        base = self._api(f"deposit/depositions/{dep.id}/files")
        out = []
        for name, data in sorted(self.buckets[dep.bucket].items()):
            file_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dep.bucket}/{name}/{md5(data)}"))
            out.append({"id": file_id, "filename": name, "filesize": len(data),
                        "checksum": md5(data),
                        "links": {"self": f"{base}/{file_id}",
                                  "download": self._api(f"records/{dep.id}/draft/files/{name}"
                                                        "/content")}})
        return out

    def _object(self, bucket: str, name: str) -> dict[str, Any]:
        """A stored object as serializers/schemas/files.py LegacyFilesRESTSchema dumps it."""
        data = self.buckets[bucket][name]
        url = self._api(f"files/{bucket}/{name}")
        return {"key": name, "size": len(data), "checksum": f"md5:{md5(data)}",
                "mimetype": "application/octet-stream", "version_id": str(uuid.uuid4()),
                "is_head": True, "delete_marker": False,
                "links": {"self": url, "version": url, "uploads": f"{url}?uploads=1"}}

    def _doi(self, dep: Deposition) -> str:
        return f"{self.doi_prefix}/zenodo.{dep.id}"

    def resource(self, dep: Deposition) -> dict[str, Any]:
        """A deposition as serializers/schemas/legacyjson.py LegacySchema dumps it, with the
        links of services.py LegacyRecordServiceConfig.links_item."""
        base = self._api(f"deposit/depositions/{dep.id}")
        metadata = copy.deepcopy(dep.metadata)
        rdm_license = legacy_to_rdm(metadata.get("license"))
        if rdm_license:  # MetadataSchema.resolve_license: the legacy id of the RDM licence
            metadata["license"] = LICENSE_REPORTED.get(rdm_license, rdm_license)
        # dump_prereserve_doi: always the production prefix, whatever the site
        metadata["prereserve_doi"] = {"doi": f"{RESERVED_PREFIX}/zenodo.{dep.id}",
                                      "recid": dep.id}
        links = {"self": base, "html": f"{self.url}/deposit/{dep.id}",
                 "badge": f"{self.url}/badge/doi/.svg",
                 "bucket": self._api(f"files/{dep.bucket}"), "files": f"{base}/files",
                 "latest_draft": base, "latest_draft_html": f"{self.url}/deposit/{dep.id}",
                 "publish": f"{base}/actions/publish", "edit": f"{base}/actions/edit",
                 "discard": f"{base}/actions/discard",
                 "newversion": f"{base}/actions/newversion"}
        out: dict[str, Any] = {
            "id": dep.id, "conceptrecid": str(dep.conceptrecid), "created": dep.created,
            "modified": dep.created, "owner": 1, "record_id": dep.id,
            "state": "done" if dep.submitted else "unsubmitted", "submitted": dep.submitted,
            "title": dep.metadata.get("title", ""), "metadata": metadata,
            "files": self._files(dep), "links": links,
        }
        if dep.submitted:
            doi = self._doi(dep)
            metadata["doi"] = doi
            links.update(doi=f"https://doi.org/{doi}",
                         record=self._api(f"records/{dep.id}"),
                         record_html=f"{self.url}/records/{dep.id}",
                         latest=self._api(f"records/{dep.id}/versions/latest"),
                         latest_html=f"{self.url}/records/{dep.id}/latest")
            out.update(doi=doi, doi_url=f"https://doi.org/{doi}",
                       conceptdoi=f"{self.doi_prefix}/zenodo.{dep.conceptrecid}")
        return out

    # -- helpers for the tests ----------------------------------------------------------------

    def published(self) -> list[Deposition]:
        return [d for d in self.depositions.values() if d.submitted]

    def drafts(self) -> list[Deposition]:
        return [d for d in self.depositions.values() if not d.submitted]

    def files_of(self, dep: Deposition) -> dict[str, str]:
        return {name: md5(data) for name, data in self.buckets[dep.bucket].items()}

    def versions(self, concept: int) -> list[Deposition]:
        """The published versions of a concept record, oldest first."""
        return sorted((d for d in self.published() if d.conceptrecid == concept),
                      key=lambda d: d.id)

    def _new(self, metadata: dict[str, Any], concept: int | None = None,
             previous: int | None = None) -> Deposition:
        dep_id = next(self.ids)
        bucket = str(uuid.uuid4())
        self.buckets[bucket] = {}
        dep = Deposition(dep_id, concept or dep_id + 100000, bucket, metadata,
                         datetime.datetime.now(datetime.UTC).isoformat(), previous=previous)
        self.depositions[dep_id] = dep
        return dep

    def _authenticated(self, request: Request) -> bool:
        """Whether the request carries a valid token: oauthlib's get_token_from_header
        (oauth2/rfc6749/tokens.py, called by invenio-oauth2server's
        verify_oauth_token_and_set_current_user) reads ``Authorization: Bearer``, and only
        when that header is absent the ``access_token`` parameter."""
        if "authorization" in request.headers:
            parts = request.header("Authorization").split()
            token = parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None
        else:
            token = (request.query.get("access_token") or [None])[0]
        return token in self.tokens

    # -- routes -------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        if not request.path.startswith("/api/"):
            return error(404, "Not found.")
        if not self._authenticated(request):
            # invenio-oauth2server leaves a request with a bad or no token anonymous, and the
            # records' permission policy then refuses it (zenodo-rdm
            # site/tests/legacy/deposits/test_rest_api_simpleflow.py: anonymous create: 403)
            return error(403, FORBIDDEN)
        parts = request.path.strip("/").split("/")[1:]
        if parts[:2] == ["deposit", "depositions"]:
            return self._depositions(request, parts[2:])
        if parts[:1] == ["files"] and len(parts) == 3:
            return self._bucket_object(request, parts[1], parts[2])
        return error(404, "Not found.")

    def _depositions(self, request: Request, rest: list[str]) -> Response:
        m = request.method
        if not rest:
            return by_method(request, {"GET": lambda: self._list(request),
                                       "POST": lambda: self._create(request)})
        try:
            dep = self.depositions[int(rest[0])]
        except (KeyError, ValueError):
            return error(404, "The persistent identifier does not exist.")
        if len(rest) == 1:
            return by_method(request, {"GET": lambda: self._read(dep),
                                       "PUT": lambda: self._update(request, dep)})
        if rest[1:] == ["files"] and m == "GET":
            # legacy/resources.py LegacyDraftFilesResource.search (LegacyFileListSchema)
            return Response.json(200, self._files(dep))
        if len(rest) == 3 and rest[1] == "actions" and m == "POST":
            if rest[2] == "publish":
                return self._publish(dep)
            if rest[2] == "newversion":
                return self._new_version(dep)
        return error(404, "Not found.")

    def _list(self, request: Request) -> Response:
        """``GET /api/deposit/depositions``: legacy/resources.py LegacyRecordResource
        (route "list" -> RDMRecordResource.search_user_records), the hits unwrapped into a
        list by serializers/__init__.py LegacyListSchema. The ``status`` filter is the
        documented legacy parameter; InvenioRDM's own search arguments were not checked
        for it (pubflow filters the answer itself as well)."""
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

    def _read(self, dep: Deposition) -> Response:
        """``GET /api/deposit/depositions/<id>``: zenodo-rdm legacy/services.py
        LegacyRecordService.read_draft: the draft, else the published record."""
        return Response.json(200, self.resource(dep))

    def _create(self, request: Request) -> Response:
        """``POST /api/deposit/depositions``: LegacyRecordResource.create with the
        LegacyJSONDeserializer (the only body parser: application/json)."""
        if not request.header("Content-Type").startswith("application/json"):
            return error(415, "Unsupported media type")
        metadata, problems = load_deposit(request.json())
        if metadata is None:
            return validation_error(problems)
        return Response.json(self.create_status, self.resource(self._new(metadata)))

    def _update(self, request: Request, dep: Deposition) -> Response:
        """``PUT /api/deposit/depositions/<id>``: LegacyRecordResource.update_draft; a
        published deposition has no draft to update (zenodo-rdm's test_simple_rest_flow:
        404)."""
        if dep.submitted:
            return error(404, "Not found.")
        if not request.header("Content-Type").startswith("application/json"):
            return error(415, "Unsupported media type")
        metadata, problems = load_deposit(request.json())
        if metadata is None:
            return validation_error(problems)
        dep.metadata = metadata
        return Response.json(200, self.resource(dep))

    def _publish(self, dep: Deposition) -> Response:
        """``POST .../actions/publish``: LegacyRecordService.publish ->
        invenio-drafts-resources RecordService.publish; its files component
        (services/records/components/base.py, publish) refuses a draft without files."""
        if dep.submitted:
            return error(404, "Not found.")  # test_simple_rest_flow: publishing twice: 404
        errors = publish_errors(dep.metadata)
        if not self.buckets[dep.bucket]:
            errors.append({"field": "files.enabled", "messages": [NO_FILES]})
        if errors:
            return validation_error(errors)
        dep.submitted = True
        dep.publishes += 1
        return Response.json(202, self.resource(dep))

    def _new_version(self, dep: Deposition) -> Response:
        """``POST .../actions/newversion``: legacy/resources.py LegacyRecordResource.
        new_version: invenio-drafts-resources RecordService.new_version (an existing
        new-version draft is handed back, else one is made from any published version),
        then RecordService.import_files, whose files component (components/base.py,
        import_files) refuses a draft that holds files; one unit of work, answered with
        the draft (201)."""
        if not dep.submitted:
            # record_cls.pid.resolve on a draft's PID: PIDUnregistered
            return error(404, "The persistent identifier is not registered.")
        latest = self.versions(dep.conceptrecid)[-1]
        existing = [d for d in self.drafts() if d.conceptrecid == dep.conceptrecid]
        if existing:
            draft = existing[0]
            if self.buckets[draft.bucket]:
                return field_error("files.enabled", "Please remove all files first.")
        else:
            # the new version starts from the latest version's metadata, without its
            # publication date and version (test_versioning_rest_flow: "publication_date is
            # missing from the new version"), and without its DOI
            metadata = {k: copy.deepcopy(v) for k, v in latest.metadata.items()
                        if k not in ("publication_date", "version", "doi")}
            draft = self._new(metadata, concept=dep.conceptrecid, previous=latest.id)
        self.buckets[draft.bucket] = dict(self.buckets[latest.bucket])
        return Response.json(201, self.resource(draft))

    def _bucket_object(self, request: Request, bucket: str, name: str) -> Response:
        """``/api/files/<bucket>/<key>``: legacy/resources.py LegacyFilesRESTResource
        (set_object -> _create_or_update_file: 201, an existing key replaced;
        delete_object: 204; get_object). A published deposition's bucket is the record's,
        which the files permissions refuse to change (test_simple_rest_flow: 403)."""
        if bucket not in self.buckets:
            return error(404, "Not found.")
        owner = next(d for d in self.depositions.values() if d.bucket == bucket)
        objects = self.buckets[bucket]
        if request.method == "PUT":
            if owner.submitted:
                return error(403, FORBIDDEN)
            data = request.body
            if name in self.corrupt_next:
                self.corrupt_next.discard(name)
                data = damaged(data)
            objects[name] = data
            return Response.json(201, self._object(bucket, name))
        if request.method == "DELETE":
            if owner.submitted:
                return error(403, FORBIDDEN)
            if objects.pop(name, None) is None:
                # invenio-records-resources FileKeyNotFoundError -> 404 with its text
                return error(404, f"Record '{owner.id}' has no file '{name}'.")
            return Response(204)
        if request.method == "GET":
            if name not in objects:
                return error(404, "Not found.")
            return Response(200, objects[name], {"Content-Type": "application/octet-stream"})
        return error(405, "Method not allowed")
