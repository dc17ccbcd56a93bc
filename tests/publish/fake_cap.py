"""A fake CERN Analysis Preservation: the deposit REST API (Invenio-Deposit), strict.

``GET /api/me`` (the account's ``deposit_groups``), ``GET /api/deposits/`` (search, Invenio
hits), ``POST /api/deposits/`` (``$ana_type``), ``GET``/``PUT``/``PATCH /api/deposits/<pid>``
(JSON Patch only as ``application/json-patch+json``), ``POST .../actions/{publish,edit}``, and
the files API on ``links.bucket``. Authentication by ``Authorization: Bearer``.

Every deposit body is validated against CAP's own schema (``tests/data/cap/schemas``, copied
from cernanalysispreservation/analysispreservation.cern.ch, see ``tests/data/cap/SOURCE.md``)
where and as the server does it (read in its repository at the commit SOURCE.md names):

* create, PUT and PATCH: Draft 7 with ``required`` switched off (a draft may be incomplete)
  and the unique-CADI-id check; a create is refused with ``400 {"status", "message":
  "Validation error: <the best-matching error>."}`` (invenio-records raises jsonschema's
  error, invenio-records-rest turns it into ``JSONSchemaValidationError``), a PUT or PATCH
  with ``422`` and every error as ``{"field": [path], "message"}`` (``DepositValidationError``);
* publish: plain Draft 7, ``required`` included, ``422`` with every error
  (``RecordValidationError``).

Nothing is stored when a request is refused (the server's transaction is rolled back).
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT7

from .fakes import (
    FakeService,
    Request,
    Response,
    bearer,
    bucket_change,
    by_method,
    error,
    md5,
)

#: CAP's schema fixtures, as the repository ships them (tests/data/cap/SOURCE.md).
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "cap" / "schemas"
#: Where CAP serves them (cap/config.py JSONSCHEMAS_HOST, SCHEMAS_DEPOSIT_PREFIX and
#: SCHEMAS_RECORD_PREFIX; cap/modules/schemas/resolvers.py resolve_by_path).
SCHEMA_HOST = "https://analysispreservation.cern.ch/schemas/"
DEPOSIT_PREFIX = "deposits/records/"
RECORD_PREFIX = "records/"

#: What CAP's JSON loader strips and ``CAPDeposit.update`` pops from a PUT body
#: (cap/modules/deposit/api.py pop_from_data; PRESERVE_FIELDS keeps general_title).
PUT_IGNORES = ("general_title", "$schema")
#: JSON Patch paths ``CAPDeposit.patch`` drops (cap/modules/deposit/api.py pop_from_data_patch).
PATCH_DROPS = ("/_deposit", "/_access", "/_files", "/_experiment", "/_fetched_from",
               "/_user_edited", "/$schema")
VALIDATION_ERROR = "Validation error. Try again with valid data"
INVALID_ACTION = "Invalid action"  # invenio_deposit/views/rest.py create_error_handlers
ME = "physicist@example.org"


def load_fixtures(directory: Path = SCHEMAS) -> dict[str, dict[str, Any]]:
    """CAP's schema fixtures by name (``cms-analysis``, ``publication``, ...)."""
    fixtures = {}
    for path in sorted(directory.glob("*.json")):
        fixture = json.loads(path.read_text())
        fixtures[fixture["name"]] = fixture
    return fixtures


def schema_url(fixture: dict[str, Any], prefix: str = DEPOSIT_PREFIX) -> str:
    """The URL CAP gives a schema (``$schema`` of a deposit, the target of a ``$ref``)."""
    return f"{SCHEMA_HOST}{prefix}{fixture['name']}-v{fixture['version']}.json"


def record_schema(fixture: dict[str, Any]) -> dict[str, Any]:
    """The schema a published record is checked against (cap/modules/schemas/models.py:
    with ``use_deposit_as_record`` the record schema is the deposit schema)."""
    if fixture.get("use_deposit_as_record"):
        return fixture["deposit_schema"]
    return fixture.get("record_schema") or {}


def as_draft7(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema without its ``$schema``: CAP validates with Draft 7 classes whatever a schema
    declares (jsonschema 3.2 never switches), while jsonschema 4 would switch to the
    declared draft (draft-04 here) on following a ``$ref``."""
    return {k: v for k, v in schema.items() if k != "$schema"}


def registry(fixtures: dict[str, dict[str, Any]]) -> Registry:
    """Every schema at its URL, as CAP's resolver serves it, with Draft 7 rules."""
    resources = []
    for fixture in fixtures.values():
        resources.append((schema_url(fixture),
                          DRAFT7.create_resource(as_draft7(fixture["deposit_schema"]))))
        resources.append((schema_url(fixture, RECORD_PREFIX),
                          DRAFT7.create_resource(as_draft7(record_schema(fixture)))))
    return Registry().with_resources(resources)


def error_path(err: ValidationError) -> list[Any]:
    """The ``field`` CAP reports: the instance path, plus the property list of a
    ``required`` error (cap/modules/records/errors.py get_error_path)."""
    path = list(err.absolute_path)
    if err.validator == "required":
        path += list(err.validator_value)
    return path


def clean_empty(value: Any) -> Any:
    """What CAP's JSON loader keeps: empty values ("", [], {}, 0, false, null) dropped
    at every depth (cap/modules/deposit/utils.py clean_empty_values)."""
    if isinstance(value, list):
        return [v for v in (clean_empty(v) for v in value) if v]
    if isinstance(value, dict):
        return {k: v for k, v in ((k, clean_empty(v)) for k, v in value.items()) if v}
    return value


def json_v1_load(body: Any) -> Any:
    """CAP's ``application/json`` loader (cap/modules/deposit/loaders.py json_v1_loader):
    top-level ``_`` fields are dropped, then empty values."""
    if not isinstance(body, dict):
        return body
    return clean_empty({k: v for k, v in body.items() if not k.startswith("_")})


@dataclass
class Deposit:
    pid: str
    schema: str
    bucket: str
    metadata: dict[str, Any]
    owner: str = ME
    status: str = "draft"
    publishes: int = 0
    revision: int = 0
    files: dict[str, bytes] = field(default_factory=dict)


def _no_check(*_: Any) -> None:
    """A keyword CAP switches off (``required`` on drafts)."""
    return None


class FakeCAP(FakeService):
    """CAP for one account, accepting ``tokens``, allowed to create ``groups`` deposits."""

    def __init__(self, tokens: set[str], groups: tuple[str, ...] = ("cms-analysis",)) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.groups = groups
        self.deposits: dict[str, Deposit] = {}
        self.fixtures = load_fixtures()
        self.registry = registry(self.fixtures)

    # -- validation ---------------------------------------------------------------------

    def _cadi_holders(self, cadi: Any) -> set[str]:
        """The deposits whose stored CADI id is ``cadi`` (cap/modules/experiments/utils/
        cadi.py get_uuids_with_same_cadi_id searches the cms-analysis deposits index, where
        ``basic_info.cadi_id`` is a keyword: an exact match)."""
        return {d.pid for d in self.deposits.values() if d.schema == "cms-analysis"
                and (d.metadata.get("basic_info") or {}).get("cadi_id") == cadi}

    def _draft_errors(self, dep_schema: str, data: dict[str, Any],
                      pid: str | None) -> Iterator[ValidationError]:
        """Errors of a draft body: cap/modules/deposit/validators/__init__.py
        NoRequiredValidator (Draft 7, ``required`` off, ``x-validate-unique-cadi`` on)."""

        def unique_cadi(validator: Any, value: Any, instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
            # cap/modules/experiments/validators.py validate_unique_cadi; the deposit's own
            # id among the holders clears it (cap/modules/deposit/api.py CAPDeposit.validate)
            holders = self._cadi_holders(instance)
            if holders and (pid is None or pid not in holders):
                yield ValidationError("This ID is already attached to another record")

        cls = extend(Draft7Validator, {"required": _no_check,
                                       "x-validate-unique-cadi": unique_cadi})
        fixture = self.fixtures[dep_schema]
        validator = cls({"$ref": schema_url(fixture)}, registry=self.registry)
        return validator.iter_errors(data)

    def _record_errors(self, dep: Deposit) -> list[ValidationError]:
        """Errors of a deposit to publish: cap/modules/records/api.py CAPRecord.validate
        (cap/modules/records/validators.py RecordValidator: plain Draft 7)."""
        fixture = self.fixtures[dep.schema]
        validator = Draft7Validator({"$ref": schema_url(fixture, RECORD_PREFIX)},
                                    registry=self.registry)
        return list(validator.iter_errors(dep.metadata))

    @staticmethod
    def _field_errors(status: int, errors: list[ValidationError]) -> Response:
        """invenio_rest.errors.RESTException.get_body with FieldErrors."""
        return error(status, VALIDATION_ERROR,
                     [{"field": error_path(e), "message": str(e.message)} for e in errors])

    # -- resources ----------------------------------------------------------------------

    def resource(self, dep: Deposit) -> dict[str, Any]:
        base = f"{self.url}/api/deposits/{dep.pid}"
        out = {
            "id": dep.pid, "type": "deposit", "status": dep.status, "revision": dep.revision,
            "experiment": "CMS", "schema": {"name": dep.schema,
                                            "version": self.fixtures[dep.schema]["version"]},
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

    def add_foreign_deposit(self, metadata: dict[str, Any],
                            schema: str = "cms-analysis") -> Deposit:
        """A deposit of another CAP user (in the search index, not in this account's list)."""
        dep = Deposit(uuid.uuid4().hex, schema, str(uuid.uuid4()), copy.deepcopy(metadata),
                      owner="someone-else@example.org")
        self.deposits[dep.pid] = dep
        return dep

    def route(self, request: Request) -> Response:
        if not bearer(request, self.tokens):
            # invenio-oauth2server's Bearer token check (cap/config.py permission factories)
            return error(401, "You are not authorized to access the server (invalid access "
                              "token?)")
        parts = request.path.strip("/").split("/")
        if parts == ["api", "me"] and request.method == "GET":
            # cap/modules/user/views.py get_user and get_user_deposit_groups
            return Response.json(200, {"email": ME, "deposit_groups": [
                {"deposit_group": g, "name": self.fixtures[g]["fullname"],
                 "schema_path": f"{DEPOSIT_PREFIX}{g}-v{self.fixtures[g]['version']}.json"}
                for g in self.groups if g in self.fixtures]})
        if parts[:2] == ["api", "deposits"]:
            return self._deposits(request, parts[2:])
        if parts[:2] == ["api", "files"] and len(parts) == 4:
            return self._object(request, parts[2], parts[3])
        return error(404, "Not found")

    def _deposits(self, request: Request, rest: list[str]) -> Response:
        m = request.method
        if not rest:
            return by_method(request, {"GET": lambda: self._search(request),
                                       "POST": lambda: self._create(request)})
        dep = self.deposits.get(rest[0])
        if dep is None:
            # invenio_records_rest/errors.py PIDDoesNotExistRESTError
            return error(404, "PID does not exist.")
        if len(rest) == 1:
            return by_method(request, {"GET": lambda: self._read(dep),
                                       "PUT": lambda: self._put(request, dep),
                                       "PATCH": lambda: self._patch(request, dep)})
        if len(rest) == 3 and rest[1] == "actions" and m == "POST":
            if rest[2] == "publish":
                return self._publish(dep)
            if rest[2] == "edit":
                return self._edit(dep)
        return error(404, "Not found")

    def _search(self, request: Request) -> Response:
        """``GET /api/deposits/``: invenio_records_rest/views.py RecordsListResource.get with
        cap/modules/search/query.py cap_search_factory (by_me: created_by the user)."""
        by_me = request.query.get("by_me", [""])[0].lower() == "true"
        hits = [self.resource(d) for d in self.deposits.values() if not by_me or d.owner == ME]
        return Response.json(200, {"hits": {"hits": hits, "total": len(hits)}})

    def _read(self, dep: Deposit) -> Response:
        """``GET /api/deposits/<pid>``: invenio_records_rest/views.py RecordResource.get,
        CAP's serializer (cap/modules/deposit/serializers) reduced to the fields pubflow
        reads."""
        return Response.json(200, self.resource(dep))

    @staticmethod
    def _body(request: Request) -> tuple[Any, Response | None]:
        """The JSON body, or the refusal of a malformed or empty one, as ``_create``,
        ``_put`` and ``_patch`` below each answer it."""
        try:
            body = request.json()
        except ValueError:
            body = None
        if body is None:
            return None, error(400, "Could not load data.")
        return body, None

    def _commit(self, dep: Deposit, metadata: dict[str, Any]) -> Response:
        """Store a PUT's or PATCH's result once CAPDeposit.validate passes on commit (422,
        DepositValidationError)."""
        errors = list(self._draft_errors(dep.schema, metadata, dep.pid))
        if errors:
            return self._field_errors(422, errors)
        dep.metadata = metadata
        dep.revision += 1
        return Response.json(200, self.resource(dep))

    def _create(self, request: Request) -> Response:
        """``POST /api/deposits/``: invenio_records_rest/views.py RecordsListResource.post
        (fork cernanalysispreservation/invenio-records-rest), with
        cap/modules/deposit/permissions.py CreateDepositPermission.get_schema_access, then
        cap/modules/deposit/loaders.py json_v1_loader, then cap/modules/deposit/api.py
        CAPDeposit.create and _preprocess_create_data; the schema check is
        invenio_records/api.py Record.create -> Record.validate (invenio-records 1.3.0) with
        NoRequiredValidator: jsonschema.validate raises the best match, answered by
        invenio_records_rest/errors.py JSONSchemaValidationError (400)."""
        body, refused = self._body(request)
        if refused:
            return refused
        if not isinstance(body, dict):
            return error(400, "Could not load data.")
        if "$schema" in body:
            name = next((n for n, f in self.fixtures.items()
                         if schema_url(f) == body["$schema"]), None)
            if name is None:
                return error(400, f"Schema {body['$schema']} doesnt exist.")
        elif "$ana_type" in body:
            name = body["$ana_type"]
            if name not in self.fixtures:
                return error(400, f"Schema with name {name} doesnt exist.")
        else:
            return error(400, "You have to specify either $schema or $ana_type")
        if name not in self.groups:
            return error(403, "You don't have the permission to access the requested "
                              "resource. It is either read-protected or not readable by the "
                              "server.")
        # the loader runs after the permission check, which reads the schema
        if request.mimetype not in ("application/json", "application/json-patch+json"):
            return error(415, f'Unsupported media type "{request.mimetype}".')
        data = json_v1_load(body) if request.mimetype == "application/json" else dict(body)
        data.pop("$ana_type", None)
        data.pop("$schema", None)
        found = best_match(self._draft_errors(name, data, None))
        if found is not None:
            return error(400, f"Validation error: {found.message}.")
        dep = Deposit(uuid.uuid4().hex, name, str(uuid.uuid4()), data)
        self.deposits[dep.pid] = dep
        return Response.json(201, self.resource(dep))

    def _put(self, request: Request, dep: Deposit) -> Response:
        """``PUT /api/deposits/<pid>``: invenio_records_rest/views.py RecordResource.put
        (clear, update, commit) with cap/modules/deposit/api.py CAPDeposit.clear (keeps
        PRESERVE_FIELDS), CAPDeposit.update (pop_from_data) and CAPDeposit.validate on
        commit (422, DepositValidationError); invenio_deposit/api.py has_status refuses a
        published deposit (403)."""
        if request.mimetype not in ("application/json", "application/json-patch+json"):
            return error(415, f'Unsupported media type "{request.mimetype}".')
        body, refused = self._body(request)
        if refused:
            return refused
        if dep.status != "draft":
            return error(403, INVALID_ACTION)
        data = json_v1_load(body) if request.mimetype == "application/json" else body
        if not isinstance(data, dict):
            return error(400, "Could not load data.")
        new = {k: v for k, v in dep.metadata.items() if k in PUT_IGNORES}
        new.update({k: v for k, v in data.items() if k not in PUT_IGNORES})
        return self._commit(dep, new)

    def _patch(self, request: Request, dep: Deposit) -> Response:
        """``PATCH /api/deposits/<pid>``: invenio_records_rest/views.py RecordResource.patch
        (require_content_types: 415; a patch that does not apply: PatchJSONFailureRESTError,
        400) with cap/modules/deposit/api.py CAPDeposit.patch (pop_from_data_patch),
        invenio_deposit/api.py Deposit.patch (has_status: 403 when published) and
        CAPDeposit.validate on commit (422, DepositValidationError)."""
        if request.mimetype != "application/json-patch+json":
            return error(415, "Invalid 'Content-Type' header. Expected one of: "
                              "application/json-patch+json")
        ops, refused = self._body(request)
        if refused:
            return refused
        if isinstance(ops, list):
            ops = [op for op in ops if not (isinstance(op, dict)
                                            and op.get("path") in PATCH_DROPS)]
        try:
            patched = jsonpatch.apply_patch(dep.metadata, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError):
            return error(400, "Could not patch JSON.")
        if dep.status != "draft":
            return error(403, INVALID_ACTION)
        return self._commit(dep, patched)

    def _publish(self, dep: Deposit) -> Response:
        """``POST .../actions/publish``: invenio_deposit/views/rest.py
        DepositActionResource.post (202) with cap/modules/deposit/api.py CAPDeposit.publish
        and invenio_deposit/api.py Deposit.publish (has_status: 403), whose
        _publish_new creates a CAPRecord: cap/modules/records/api.py CAPRecord.validate (422,
        RecordValidationError, ``required`` enforced)."""
        if dep.status != "draft":
            return error(403, INVALID_ACTION)
        errors = self._record_errors(dep)
        if errors:
            return self._field_errors(422, errors)
        dep.status = "published"
        dep.publishes += 1
        return Response.json(202, self.resource(dep))

    def _edit(self, dep: Deposit) -> Response:
        """``POST .../actions/edit``: invenio_deposit/views/rest.py DepositActionResource.post
        (201) with invenio_deposit/api.py Deposit.edit (has_status published: 403) and
        cap/modules/deposit/api.py CAPDeposit.edit (unlocks the bucket)."""
        if dep.status != "published":
            return error(403, INVALID_ACTION)
        dep.status = "draft"
        return Response.json(201, self.resource(dep))

    def _object(self, request: Request, bucket: str, key: str) -> Response:
        """``links.bucket``: invenio_files_rest/views.py ObjectResource (put, delete) through
        fakes.bucket_change; a published deposit's bucket is locked (invenio_deposit/api.py
        Deposit._process_files)."""
        dep = next((d for d in self.deposits.values() if d.bucket == bucket), None)
        if dep is None:
            return error(404, "Bucket does not exist.")
        changed = bucket_change(request, dep.files, key, locked=dep.status == "published")
        if changed is not None:
            return changed
        return error(405, "Method not allowed")
