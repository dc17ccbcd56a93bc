"""A fake InvenioRDM instance: the REST API of records, drafts, draft files and versions.

Each route names the code it follows (invenio-rdm-records 36.0, invenio-drafts-resources
11.0, invenio-records-resources 11.1, flask-resources 1.3, as on the package index). Errors
are flask-resources' ``HTTPJSONException`` bodies: ``{"status", "message"[, "errors":
[{"field", "messages"}]]}``. Like InvenioRDM it saves drafts whose metadata is incomplete
(listing the problems under ``errors``) and refuses them only at publication; it refuses
unknown vocabulary ids (400 "Invalid value x."), a second file with the same key, content
for a file never started, importing files into a draft that has some, and publishing a draft
without files or with files not committed. One account, authenticated by
``Authorization: Bearer``. What it leaves out is listed in ``DIFFERENCES``.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .fakes import (
    FakeService,
    Request,
    Response,
    bearer,
    damaged,
    error,
    field_error,
    md5,
    validation_error,
)

#: What this fake does not do that InvenioRDM does (pubflow depends on none of it).
DIFFERENCES = (
    ("search: only the query is_published:false (or none) and the sort 'newest'; the search "
     "index is up to date at once (the real one refreshes about every second)"),
    ("no edit of a published record (POST .../draft), no draft deletion, no communities, "
     "reviews, access requests, multipart or remote transfers, media files"),
    "vocabularies: a few ids of the default fixtures; identifiers are not checked by idutils",
)

#: Vocabulary ids (invenio-rdm-records fixtures/data/vocabularies/*.yaml, licenses.csv).
RESOURCE_TYPES = {"dataset", "software", "publication", "publication-article", "other",
                  "workflow", "image-figure"}
LICENSES = {"cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "mit", "apache-2.0", "gpl-3.0-or-later"}
RELATION_TYPES = {"iscitedby", "cites", "issupplementto", "issupplementedby", "iscompiledby",
                  "compiles", "isderivedfrom", "issourceof", "references", "isreferencedby",
                  "isdocumentedby", "documents", "isnewversionof", "ispreviousversionof",
                  "ispartof", "haspart", "requires", "isrequiredby", "other"}
DESCRIPTION_TYPES = {"abstract", "methods", "series-information", "table-of-contents",
                     "technical-info", "other"}
#: RDM_RECORDS_IDENTIFIERS_SCHEMES (invenio-rdm-records config.py), in part.
IDENTIFIER_SCHEMES = {"url", "doi", "arxiv", "ark", "handle", "isbn", "urn", "purl"}
PERSON_SCHEMES = {"orcid", "isni", "gnd", "ror"}
#: MetadataSchema's fields (invenio-rdm-records services/schemas/metadata.py).
METADATA_FIELDS = {"resource_type", "creators", "title", "additional_titles", "publisher",
                   "publication_date", "subjects", "contributors", "dates", "languages",
                   "identifiers", "related_identifiers", "sizes", "formats", "version",
                   "rights", "copyright", "description", "additional_descriptions",
                   "locations", "funding", "references"}
REQUIRED = "Missing data for required field."
UNKNOWN = "Unknown field."
#: Messages of invenio-drafts-resources' DraftFilesComponent and the RDM components.
NO_FILES = ("Missing uploaded files. To disable files for this record please mark it as "
            "metadata-only.")
NOT_COMMITTED = "One or more files have not completed their transfer, please wait."
DOI_PREFIX = "10.5072"
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # invenio-rdm-records' recid alphabet


def validate_metadata(metadata: Any, *, doi: bool) -> list[dict[str, Any]]:
    """Marshmallow-style errors of a draft's metadata (``validation_error_to_list_errors``).

    ``doi``: the instance mints DataCite DOIs, which need a publisher
    (DataCitePIDProvider.validate).
    """
    errors: list[dict[str, Any]] = []

    def bad(where: str, message: str) -> None:
        errors.append({"field": f"metadata.{where}", "messages": [message]})

    if not isinstance(metadata, dict):
        return [{"field": "metadata", "messages": ["Invalid input type."]}]
    for name in sorted(set(metadata) - METADATA_FIELDS):
        bad(name, UNKNOWN)
    for name in ("resource_type", "title", "publication_date"):
        if name not in metadata:
            bad(name, REQUIRED)
    creators = metadata.get("creators")
    if not creators:
        bad("creators", REQUIRED)
    title = metadata.get("title")
    if isinstance(title, str) and len(title.strip()) < 3:
        bad("title", "Shorter than minimum length 3.")
    date = metadata.get("publication_date")
    if isinstance(date, str) and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", date):
        bad("publication_date", "Please provide a valid date or interval.")
    for i, creator in enumerate(creators or []):
        person = creator.get("person_or_org") if isinstance(creator, dict) else None
        if not isinstance(person, dict):
            bad(f"creators.{i}.person_or_org", REQUIRED)
            continue
        kind = person.get("type")
        if kind not in ("organizational", "personal"):
            bad(f"creators.{i}.person_or_org.type",
                "Invalid value. Choose one of ['organizational', 'personal'].")
        elif kind == "personal" and not person.get("family_name"):
            bad(f"creators.{i}.person_or_org.family_name", "Family name cannot be blank.")
        elif kind == "organizational" and not person.get("name"):
            bad(f"creators.{i}.person_or_org.name", "Name cannot be blank.")
        for j, ident in enumerate(person.get("identifiers") or []):
            if ident.get("scheme") not in PERSON_SCHEMES:
                bad(f"creators.{i}.person_or_org.identifiers.{j}.scheme", "Invalid scheme.")
        names = [a.get("name", a.get("id")) for a in creator.get("affiliations") or []]
        if len(set(names)) != len(names):
            bad(f"creators.{i}.affiliations", "Duplicated affiliations: ")
    for i, rel in enumerate(metadata.get("related_identifiers") or []):
        if not rel.get("identifier"):
            bad(f"related_identifiers.{i}.identifier", REQUIRED)
        if not rel.get("relation_type"):
            bad(f"related_identifiers.{i}.relation_type", REQUIRED)
        if rel.get("scheme") and rel["scheme"] not in IDENTIFIER_SCHEMES:
            bad(f"related_identifiers.{i}.scheme", "Invalid scheme.")
    description = metadata.get("description")
    if isinstance(description, str) and len(description) < 3:
        bad("description", "Shorter than minimum length 3.")
    for i, item in enumerate(metadata.get("additional_descriptions") or []):
        if not item.get("type"):
            bad(f"additional_descriptions.{i}.type", REQUIRED)
    for i, right in enumerate(metadata.get("rights") or []):
        if not right.get("id") and not right.get("title"):
            bad(f"rights.{i}.rights", "An existing id or a free text title must be present")
    if doi and not metadata.get("publisher"):
        bad("publisher", "Missing publisher field required for DOI registration.")
    return errors


def vocabulary_error(metadata: Any) -> str | None:
    """The first unknown vocabulary id, as the relations system field refuses it at commit
    (invenio-records ``RelationResult.validate``: "Invalid value x.")."""
    if not isinstance(metadata, dict):
        return None
    wanted: list[tuple[set[str], Any]] = [(RESOURCE_TYPES, metadata.get("resource_type"))]
    wanted += [(LICENSES, r) for r in metadata.get("rights") or [] if r.get("id")]
    for rel in metadata.get("related_identifiers") or []:
        wanted += [(RELATION_TYPES, rel.get("relation_type")),
                   (RESOURCE_TYPES, rel.get("resource_type"))]
    wanted += [(DESCRIPTION_TYPES, d.get("type"))
               for d in metadata.get("additional_descriptions") or []]
    for vocabulary, value in wanted:
        if isinstance(value, dict) and value.get("id") is not None \
                and value["id"] not in vocabulary:
            return f"Invalid value {value['id']}."
    return None


@dataclass
class FakeFile:
    """A draft's file: started, its content sent, committed (or not)."""

    data: bytes | None = None
    committed: bool = False
    created: str = ""


@dataclass
class Record:
    """One version: a draft until published."""

    id: str
    parent: str
    index: int
    body: dict[str, Any]
    created: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    files_enabled: bool = True
    published: bool = False
    publishes: int = 0
    revision: int = 1


class FakeInvenioRDM(FakeService):
    """InvenioRDM's REST API for one user, accepting ``tokens``.

    Args:
        tokens: Valid personal access tokens.
        doi: Whether published records get a DataCite DOI (as on Zenodo: then a publisher is
            required).
    """

    def __init__(self, tokens: set[str], *, doi: bool = True) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.doi = doi
        self.records: dict[str, Record] = {}
        self.next_draft: dict[str, str] = {}  # parent -> its new-version draft
        self.serial = itertools.count(1)
        self.corrupt_next: set[str] = set()  # keys whose next content is stored damaged
        self.fail_transfer_next: set[str] = set()  # keys whose next transfer fails

    # -- for the tests

    def versions(self) -> list[Record]:
        """Every record and draft, oldest first."""
        return sorted(self.records.values(), key=lambda r: (r.created, r.id))

    def files_of(self, rec: Record) -> dict[str, str]:
        """A version's committed files: key -> md5."""
        return {k: md5(f.data) for k, f in rec.files.items() if f.committed and f.data is not None}

    # -- representation

    def _new_id(self) -> str:
        # distinct serials give distinct ids (a bijection of 0..32**10-1), shaped like RDM's
        n = (next(self.serial) * 0x9E3779B1 + 0x7F4A7C15) % 32**10
        text = "".join(_ID_ALPHABET[(n >> (5 * i)) & 31] for i in range(10))
        return f"{text[:5]}-{text[5:]}"

    def _api(self, path: str) -> str:
        return f"{self.url}/api/{path}"

    def _doi(self, rec: Record) -> str:
        return f"{DOI_PREFIX}/zenodo.{rec.id.replace('-', '')}"

    def _file(self, rec: Record, key: str, f: FakeFile) -> dict[str, Any]:
        # FileSchema (invenio-records-resources services/files/schema.py): checksum and size only
        # once the file has content (committed), status from the transfer
        base = self._api(f"records/{rec.id}/{'files' if rec.published else 'draft/files'}/"
                         f"{key}")
        out: dict[str, Any] = {"key": key, "created": f.created, "updated": f.created,
                               "metadata": None, "access": {"hidden": False},
                               "transfer": {"type": "L"},
                               "status": "completed" if f.committed else "pending",
                               "links": {"self": base, "content": f"{base}/content"}}
        if not rec.published:
            out["links"]["commit"] = f"{base}/commit"
        if f.committed and f.data is not None:
            out.update({"checksum": f"md5:{md5(f.data)}", "size": len(f.data),
                        "storage_class": "L", "mimetype": "application/octet-stream"})
        return out

    def _file_list(self, rec: Record) -> dict[str, Any]:
        # invenio_records_resources/services/files/results.py FileList.to_dict: entries only when
        # files are enabled
        kind = "files" if rec.published else "draft/files"
        out: dict[str, Any] = {"enabled": rec.files_enabled,
                               "links": {"self": self._api(f"records/{rec.id}/{kind}")}}
        if rec.files_enabled:
            out.update({"entries": [self._file(rec, k, f) for k, f in sorted(rec.files.items())],
                        "default_preview": None, "order": []})
        return out

    def _versions(self, rec: Record) -> dict[str, Any]:
        siblings = [r for r in self.records.values() if r.parent == rec.parent]
        published = [r for r in siblings if r.published]
        latest = max(published, key=lambda r: r.index) if published else None
        return {"index": rec.index, "is_latest": latest is rec,
                "is_latest_draft": rec is max(siblings, key=lambda r: r.index)}

    def resource(self, rec: Record, errors: list[dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
        """A record or draft as RDMRecordSchema dumps it (the parts pubflow reads, and
        more)."""
        kind = "" if rec.published else "/draft"
        base = self._api(f"records/{rec.id}")
        parent: dict[str, Any] = {"id": rec.parent, "access": {"owned_by": {"user": "1"}}}
        pids: dict[str, Any] = {}
        if rec.published and self.doi:
            pids = {"doi": {"identifier": self._doi(rec), "provider": "datacite",
                            "client": "datacite"}}
            parent["pids"] = {"doi": {"identifier": f"{DOI_PREFIX}/zenodo."
                                                    f"{rec.parent.replace('-', '')}",
                                      "provider": "datacite", "client": "datacite"}}
        status = "published" if rec.published else (
            "draft" if rec.index == 1 else "new_version_draft")
        out: dict[str, Any] = {
            "id": rec.id, "created": rec.created, "updated": rec.created,
            "revision_id": rec.revision, "is_published": rec.published,
            "is_draft": not rec.published, "status": status, "parent": parent,
            "versions": self._versions(rec), "pids": pids,
            "metadata": copy.deepcopy(rec.body.get("metadata") or {}),
            "access": copy.deepcopy(rec.body.get("access") or {}),
            "files": {"enabled": rec.files_enabled, "count": len(rec.files)},
            "custom_fields": {},
            "links": {"self": f"{base}{kind}", "self_html": f"{self.url}/"
                      f"{'records' if rec.published else 'uploads'}/{rec.id}",
                      "files": f"{base}{kind}/files", "versions": f"{base}/versions"},
        }
        if not rec.published:
            out["links"]["publish"] = f"{base}/draft/actions/publish"
        if errors:
            out["errors"] = errors
        return out

    # -- routes

    def route(self, request: Request) -> Response:
        if not request.path.startswith("/api/"):
            return error(404, "Not Found")
        if not bearer(request, self.tokens):
            # invenio-oauth2server: a token it does not know is refused
            return error(401, "The server could not verify that you are authorized to access "
                              "the URL requested. You either supplied the wrong credentials "
                              "(e.g. a bad password), or your browser doesn't understand how "
                              "to supply the credentials required.")
        parts = [unquote(p) for p in request.path.strip("/").split("/")[1:]]
        m = request.method
        if parts == ["user", "records"] and m == "GET":
            return self._search_user_records(request)
        if parts == ["records"] and m == "POST":
            return self._create(request)
        if len(parts) < 2 or parts[0] != "records":
            return error(404, "Not Found")
        rec_id, rest = parts[1], parts[2:]
        # a published record's routes, then a draft's (the draft resolves its record first)
        record_routes = {
            ((), "GET"): self._read,
            (("versions",), "POST"): self._new_version,
            (("files",), "GET"): self._record_files,
        }
        draft_routes = {
            (("draft",), "GET"): self._read_draft,
            (("draft",), "PUT"): self._update_draft,
            (("draft", "actions", "publish"), "POST"): self._publish,
            (("draft", "actions", "files-import"), "POST"): self._import_files,
            (("draft", "files"), "GET"): self._list_files,
            (("draft", "files"), "POST"): self._init_files,
        }
        file_routes = {((), "DELETE"): self._delete_file,
                       (("content",), "PUT"): self._set_content,
                       (("commit",), "POST"): self._commit}
        if (handler := record_routes.get((tuple(rest), m))) is not None:
            rec = self.records.get(rec_id)
            if rec is None:
                return self._not_found()
            if not rec.published:
                # the PID of a draft never published is not registered: PIDUnregistered
                # (invenio-records-resources resources/errors.py ErrorHandlersMixin)
                return error(404, "The persistent identifier is not registered.")
            return handler(request, rec)
        if (handler := draft_routes.get((tuple(rest), m))) is not None:
            draft = self._draft(rec_id)
            return handler(request, draft) if draft is not None else self._not_found()
        if rest[:2] == ["draft", "files"] and len(rest) >= 3:
            key, tail = rest[2], rest[3:]
            if (file_handler := file_routes.get((tuple(tail), m))) is not None:
                draft = self._draft(rec_id)
                if draft is None:
                    return self._not_found()
                if key not in draft.files:
                    # FileKeyNotFoundError, 404 (invenio-records-resources errors.py), raised
                    # by the FileService method each file handler names
                    return error(404, f"Record '{rec_id}' has no file '{key}'.")
                return file_handler(request, draft, key)
        # flask answers 405 for a known URL and another method; 404 otherwise
        return error(404, "Not Found")

    # -- records and drafts

    def _draft(self, rec_id: str) -> Record | None:
        """The draft ``rec_id`` (a published record has none: RecordService.read_draft's
        DraftNotCreatedError, a PIDDoesNotExistError: 404)."""
        rec = self.records.get(rec_id)
        return rec if rec is not None and not rec.published else None

    @staticmethod
    def _not_found() -> Response:
        # PIDDoesNotExistError (invenio-records-resources resources/errors.py)
        return error(404, "The persistent identifier does not exist.")

    @staticmethod
    def _json_body(request: Request) -> tuple[Any, Response | None]:
        # flask-resources request_body_parser: JSON only (InvalidContentType, 415), and
        # JSONDecodeError -> 400 (ErrorHandlersMixin)
        if request.mimetype and request.mimetype != "application/json":
            return None, error(415, "Invalid 'Content-Type' header. Expected one of: "
                                    "application/json")
        try:
            return request.json(), None
        except ValueError:
            return None, error(400, "Unable to decode JSON data in request body.")

    def _search_user_records(self, request: Request) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.search_user_records (GET /api/user/records, 200) ->
        # invenio_drafts_resources/services/records/service.py RecordService.search_drafts; sort
        # options RDM_SEARCH_DRAFTS (invenio-rdm-records config.py)
        q = request.query.get("q", [""])[0]
        if q not in ("", "is_published:false"):
            return error(400, "fake: only the query is_published:false is implemented")
        sort = request.query.get("sort", ["newest"])[0]
        if sort not in ("newest", "bestmatch"):
            return error(400, "Invalid querystring parameters.")
        # AllVersionsParam("versions.is_latest_draft"): one entry per record, its latest
        latest: dict[str, Record] = {}
        for rec in self.records.values():
            if rec.parent not in latest or rec.index > latest[rec.parent].index:
                latest[rec.parent] = rec
        found = sorted(latest.values(), key=lambda r: (r.created, r.id), reverse=True)
        if q:
            found = [r for r in found if not r.published]
        size = int(request.query.get("size", ["10"])[0])
        page = int(request.query.get("page", ["1"])[0])
        if size < 1 or page < 1:
            return error(400, "Invalid querystring parameters.")
        chunk = found[(page - 1) * size: page * size]
        return Response.json(200, {"hits": {"hits": [self.resource(r) for r in chunk],
                                            "total": len(found)},
                                   "links": {"self": self._api("user/records")},
                                   "sortBy": sort})

    def _create(self, request: Request) -> Response:
        # invenio-records-resources invenio_records_resources/resources/records/resource.py
        # RecordResource.create (201) -> invenio-drafts-resources
        # invenio_drafts_resources/services/records/service.py RecordService.create
        # (raise_errors=False: the draft is saved, the errors listed); unknown vocabulary ids fail
        # the commit (invenio-records systemfields/relations/results.py RelationResult.validate,
        # mapped to 400 by invenio-rdm-records resources/config.py error_handlers)
        body, refused = self._json_body(request)
        if refused:
            return refused
        body = body or {}
        if not isinstance(body, dict):
            return field_error("_schema", "Invalid input type.")
        if message := vocabulary_error(body.get("metadata")):
            return error(400, message)
        errors = validate_metadata(body.get("metadata", {}), doi=False)
        if access_error := self._access_error(body):
            errors.append(access_error)
        rec_id = self._new_id()
        rec = Record(rec_id, self._new_id(), 1, self._stored(body), _now(),
                     files_enabled=bool((body.get("files") or {}).get("enabled", True)))
        self.records[rec_id] = rec
        return Response.json(201, self.resource(rec, errors))

    @staticmethod
    def _stored(body: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(body[k]) for k in ("metadata", "access", "custom_fields")
                if k in body}

    @staticmethod
    def _access_error(body: dict[str, Any]) -> dict[str, Any] | None:
        # AccessSchema (invenio-rdm-records services/schemas/access.py): record and files
        access = body.get("access")
        if access is None:
            return None
        for name in ("record", "files"):
            if access.get(name) not in ("public", "restricted"):
                return {"field": f"access.{name}", "messages": [REQUIRED if name not in access
                                                                else "Invalid value."]}
        return None

    def _read(self, request: Request, rec: Record) -> Response:
        # invenio-records-resources invenio_records_resources/resources/records/resource.py
        # RecordResource.read (200); the PID of a draft never published is not registered:
        # PIDUnregistered, 404 (invenio-records-resources resources/errors.py ErrorHandlersMixin)
        return Response.json(200, self.resource(rec))

    def _record_files(self, request: Request, rec: Record) -> Response:
        # invenio-rdm-records invenio_rdm_records/resources/config.py RDMRecordFilesResourceConfig
        # (/records/<pid_value>/files) -> invenio-records-resources
        # invenio_records_resources/resources/files/resource.py FileResource.search (200)
        return Response.json(200, self._file_list(rec))

    def _read_draft(self, request: Request, rec: Record) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.read_draft (200) -> invenio_drafts_resources/services/records/service.py
        # RecordService.read_draft; a published record has no draft: DraftNotCreatedError, a
        # PIDDoesNotExistError (404)
        return Response.json(200, self.resource(rec))

    def _update_draft(self, request: Request, rec: Record) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.update_draft (200) -> invenio_drafts_resources/services/records/service.py
        # RecordService.update_draft (saved with errors, like create);
        # invenio_drafts_resources/services/records/components/base.py
        # BaseRecordFilesComponent.update_draft warns about missing files
        body, refused = self._json_body(request)
        if refused:
            return refused
        body = body or {}
        if message := vocabulary_error(body.get("metadata")):
            return error(400, message)
        errors = validate_metadata(body.get("metadata", {}), doi=False)
        if access_error := self._access_error(body):
            errors.append(access_error)
        rec.body = self._stored(body)
        rec.files_enabled = bool((body.get("files") or {}).get("enabled", True))
        rec.revision += 1
        if rec.files_enabled and not rec.files:
            errors.append({"field": "files.enabled", "messages": [NO_FILES]})
        return Response.json(200, self.resource(rec, errors))

    def _publish(self, request: Request, rec: Record) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.publish (202) -> invenio_drafts_resources/services/records/service.py
        # RecordService.publish: strict validation (_validate_draft), then
        # invenio_drafts_resources/services/records/components/base.py
        # BaseRecordFilesComponent.publish (files present and committed), then invenio-rdm-records
        # invenio_rdm_records/services/pids/providers/datacite.py DataCitePIDProvider.validate (a
        # publisher)
        metadata = rec.body.get("metadata", {})
        errors = validate_metadata(metadata, doi=False)
        if errors:
            return validation_error(errors)
        if rec.files_enabled and not rec.files:
            return field_error("files.enabled", NO_FILES)
        if rec.files_enabled and not all(f.committed for f in rec.files.values()):
            return field_error("files", NOT_COMMITTED)
        if doi_errors := [e for e in validate_metadata(metadata, doi=self.doi)
                          if e["field"] == "metadata.publisher"]:
            return validation_error(doi_errors)
        rec.published = True
        rec.publishes += 1
        rec.revision += 1
        if self.next_draft.get(rec.parent) == rec.id:
            del self.next_draft[rec.parent]
        return Response.json(202, self.resource(rec))

    def _new_version(self, request: Request, rec: Record) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.new_version (201) -> invenio_drafts_resources/services/records/service.py
        # RecordService.new_version: the record must be published; an existing new-version draft is
        # handed back; else a draft with the latest version's metadata (invenio-rdm-records
        # invenio_rdm_records/services/components/metadata.py MetadataComponent.new_version drops
        # publication_date and version, then sets publication_date to today) and no files
        # (invenio_drafts_resources/services/records/components/base.py
        # BaseRecordFilesComponent.new_version copies only files.enabled)
        if (existing := self.next_draft.get(rec.parent)) is not None:
            return Response.json(201, self.resource(self.records[existing]))
        siblings = [r for r in self.records.values() if r.parent == rec.parent]
        latest = max((r for r in siblings if r.published), key=lambda r: r.index)
        body = copy.deepcopy(latest.body)
        metadata = body.setdefault("metadata", {})
        metadata.pop("version", None)
        metadata["publication_date"] = datetime.datetime.now(datetime.UTC).date().isoformat()
        new = Record(self._new_id(), rec.parent, max(r.index for r in siblings) + 1, body,
                     _now(), files_enabled=latest.files_enabled)
        self.records[new.id] = new
        self.next_draft[rec.parent] = new.id
        return Response.json(201, self.resource(new))

    def _import_files(self, request: Request, rec: Record) -> Response:
        # invenio-drafts-resources invenio_drafts_resources/resources/records/resource.py
        # RecordResource.import_files (201) -> invenio_drafts_resources/services/records/service.py
        # RecordService.import_files ->
        # invenio_drafts_resources/services/records/components/base.py
        # BaseRecordFilesComponent.import_files: files enabled, none yet, then the latest published
        # version's files are copied
        siblings = [r for r in self.records.values() if r.parent == rec.parent and r.published]
        if not siblings:
            return error(404, "The persistent identifier is not registered.")
        previous = max(siblings, key=lambda r: r.index)
        if not rec.files_enabled:
            return field_error("files.enabled", "Files support must be enabled.")
        if rec.files:
            return field_error("files.enabled", "Please remove all files first.")
        if not previous.files_enabled:
            return field_error("files.enabled", "The record has no files.")
        rec.files = {k: FakeFile(f.data, True, _now()) for k, f in previous.files.items()}
        return Response.json(201, self._file_list(rec))

    # -- draft files: invenio-rdm-records invenio_rdm_records/resources/config.py
    # RDMDraftFilesResourceConfig (url_prefix /records/<pid_value>/draft), routes of
    # invenio-records-resources invenio_records_resources/resources/files/config.py
    # FileResourceConfig

    def _list_files(self, request: Request, rec: Record) -> Response:
        # invenio-records-resources invenio_records_resources/resources/files/resource.py
        # FileResource.search (200) -> invenio_records_resources/services/files/service.py
        # FileService.list_files
        return Response.json(200, self._file_list(rec))

    def _init_files(self, request: Request, rec: Record) -> Response:
        # invenio-records-resources invenio_records_resources/resources/files/resource.py
        # FileResource.create (201) -> invenio_records_resources/services/files/service.py
        # FileService.init_files: a list of {"key"}; a key that exists is refused by
        # invenio_records_resources/records/systemfields/files/manager.py FilesManager.create
        # (invenio-files-rest InvalidKeyError, 400)
        data, refused = self._json_body(request)
        if refused:
            return refused
        if not isinstance(data, list):
            return field_error("_schema", "Invalid input type.")
        if not data:
            return field_error("_schema", "No files to upload.")
        if not rec.files_enabled:
            return error(400, "Files are not enabled.")
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not item.get("key"):
                return field_error(f"{i}.key", REQUIRED)
            if item["key"] in rec.files:
                return error(400, f"File with key {item['key']} already exists.")
        for item in data:
            rec.files[item["key"]] = FakeFile(created=_now())
        return Response.json(201, self._file_list(rec))

    def _set_content(self, request: Request, rec: Record, key: str) -> Response:
        # invenio-records-resources invenio_records_resources/resources/files/resource.py
        # FileResource.update_content (200) -> invenio_records_resources/services/files/service.py
        # FileService.set_file_content: the key must be started (FileKeyNotFoundError, 404);
        # octet-stream only (flask-resources InvalidContentType, 415); a failed transfer
        # (services/files/transfer/providers/local.py LocalTransfer.set_file_content: "already
        # committed") drops the entry and answers 200 with errors
        # (services/files/components/content.py FileContentComponent.set_file_content,
        # services/files/upload.py FileUpload._set_content_in_uow)
        if request.mimetype and request.mimetype != "application/octet-stream":
            return error(415, "Invalid 'Content-Type' header. Expected one of: "
                              "application/octet-stream")
        f = rec.files[key]
        if f.committed or key in self.fail_transfer_next:
            self.fail_transfer_next.discard(key)
            del rec.files[key]
            out = self._file(rec, key, FakeFile(created=f.created))
            out["errors"] = ["File upload transfer failed."]
            return Response.json(200, out)
        data = request.body
        if key in self.corrupt_next and data:
            self.corrupt_next.discard(key)
            data = damaged(data)
        f.data = data
        return Response.json(200, self._file(rec, key, f))

    def _commit(self, request: Request, rec: Record, key: str) -> Response:
        # invenio-records-resources invenio_records_resources/resources/files/resource.py
        # FileResource.create_commit (200) -> invenio_records_resources/services/files/service.py
        # FileService.commit_file -> services/files/components/metadata.py
        # FileMetadataComponent.commit_file -> records/systemfields/files/manager.py
        # FilesManager.commit: links the uploaded object (again, if committed already); without
        # content it raises a bare Exception
        f = rec.files[key]
        if f.data is None:
            return error(500, "Internal server error.")
        f.committed = True
        return Response.json(200, self._file(rec, key, f))

    def _delete_file(self, request: Request, rec: Record, key: str) -> Response:
        # invenio-records-resources invenio_records_resources/resources/files/resource.py
        # FileResource.delete (204) -> invenio_records_resources/services/files/service.py
        # FileService.delete_file (FileKeyNotFoundError: 404)
        del rec.files[key]
        return Response(204)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()
