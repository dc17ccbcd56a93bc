"""A small REANA server on 127.0.0.1 that answers reana-client the way reana-server does.

It exists so that the tests can run the real ``reana-client`` (0.9.6 and 0.95.0a6) and see the
request REANA receives, byte for byte. Each endpoint follows reana-server's own code; its
docstring names the file and function. The answers have the shapes of the OpenAPI
specification reana-client's bravado client is built from
(``reana_commons/openapi_specifications/reana_server.json``), because bravado validates them.

* :func:`serve_reana_09` is reana-server 0.9 (branch ``maint-0.9``, release 0.9.4), the server
  reana-client 0.9.6 talks to: the client loads the workflow itself and POSTs the JSON
  specification; the server stores what it receives (reana-workflow-controller's
  ``create_workflow`` puts it in the database as JSON).
* :func:`serve_reana_095` is reana-server 0.95 with the specification-bundle protocol that
  reana-client 0.95.0a6 requires: the client uploads a ZIP of ``reana.yaml`` and the files it
  declares; the server loads it in a sandbox (reana-workflow-validator) and stores the JSON the
  sandbox prints. The sandbox's loading is delegated to a callable the test supplies
  (:func:`reana95_loader` runs REANA 0.95's own reana-commons in ``.venv-reana95``).

What is not modelled, because no test here needs it: users and quotas (one user, one token,
no quota), GitLab webhooks, workspace retention rules, operational options, and every
endpoint other than the ones below (they answer 404, as Flask does for an unknown route, and
are recorded so that a test can see it).
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..fake_services import serving

# reana_commons/config.py (0.9.11 and 0.95.0a26): REANA_WORKFLOW_ENGINES and
# REANA_WORKFLOW_NAME_ILLEGAL_CHARACTERS.
WORKFLOW_ENGINES = ("yadage", "cwl", "serial", "snakemake")
ILLEGAL_NAME_CHARACTERS = (".",)
# A cluster whose only workspace is reana_commons/config.py's SHARED_VOLUME_PATH default.
WORKSPACE_ROOT = "/var/reana"
# reana-workflow-controller/config.py: DEFAULT_NAME_FOR_WORKFLOWS.
DEFAULT_WORKFLOW_NAME = "workflow"
# What the 0.95 server advertises on /api/ping (reana_server/config.py::REANA_API_CAPABILITIES,
# read by reana_client/api/client.py::_require_workflow_specification_bundles).
BUNDLE_CAPABILITY = "workflow-specification-bundles-v1"

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass
class Workflow:
    """One created workflow: what the server stored and what was uploaded into it."""

    id: str
    name: str
    run_number: int
    specification: Any
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        """``name.run_number``, as reana-workflow-controller's ``get_workflow_name`` says it."""
        return f"{self.name}.{self.run_number}"


@dataclass
class Exchange:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeReana:
    """A running fake: its address, token, the requests it saw, the workflows it created."""

    url: str
    token: str
    exchanges: list[Exchange] = field(default_factory=list)
    workflows: list[Workflow] = field(default_factory=list)

    def accepted(self, method: str, path: str) -> list[Exchange]:
        """The requests ``method path`` that were answered with success (2xx)."""
        return [e for e in self.exchanges
                if e.method == method and e.path == path and 200 <= e.status < 300]

    def find(self, name_or_id: str) -> Workflow:
        """The workflow a name, ``name.N`` or UUID refers to.

        Follows reana_db/utils.py::_get_workflow_with_uuid_or_name: a UUID is an id, ``name.N``
        a run, a bare name the latest run. Raises ValueError when there is none, as it does.
        """
        if UUID4.fullmatch(name_or_id):
            found = [w for w in self.workflows if w.id == name_or_id]
        elif re.fullmatch(r".+\.\d+", name_or_id):
            name, number = name_or_id.rsplit(".", 1)
            found = [w for w in self.workflows if w.name == name and w.run_number == int(number)]
        else:
            found = [w for w in self.workflows if w.name == name_or_id][-1:]
        if not found:
            raise ValueError(f"REANA_WORKON is set to {name_or_id.split('.')[0]}, but that "
                             "workflow does not exist. Please set your REANA_WORKON "
                             "environment variable appropriately.")
        return found[0]

    def add_workflow(self, name: str, specification: Any) -> Workflow:
        """Create a run, as reana-workflow-controller's ``rest/workflows.py::create_workflow``.

        An empty name becomes ``workflow``; run numbers count up per name.
        """
        name = name or DEFAULT_WORKFLOW_NAME
        number = 1 + sum(w.name == name for w in self.workflows)
        workflow = Workflow(str(uuid.uuid4()), name, number, specification)
        self.workflows.append(workflow)
        return workflow


Answer = tuple[int, Any]


class HTTPRefusal(Exception):
    """A refusal with the status and JSON body reana-server sends for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _check_workflow_name(name: str) -> None:
    """reana_commons/validation/utils.py::validate_workflow_name, then the UUIDv4 check.

    reana-server turns the ValueError of the first into 403 and refuses a UUIDv4 name with
    400 (reana_server/rest/workflows.py::create_workflow).
    """
    for character in ILLEGAL_NAME_CHARACTERS:
        if character in name:
            raise HTTPRefusal(403, f'Workflow name {name} contains illegal character '
                                   f'"{character}"')
    if UUID4.fullmatch(name):
        raise HTTPRefusal(400, "Workflow name cannot be a valid UUIDv4.")


def _check_specification(spec: Any) -> None:
    """The checks reana_server/rest/workflows.py::create_workflow makes on a specification.

    ``spec["workflow"]["type"]`` (KeyError: 400, not a mapping: 500), the engine
    (``Unknown workflow type.``: 500), reana_server/validation.py::validate_workspace_path
    (reana_commons' ``validate_workspace``) and ::validate_inputs (REANAValidationError:
    400).
    """
    try:
        engine = spec["workflow"]["type"]
    except KeyError as error:
        raise HTTPRefusal(400, str(error)) from error
    except TypeError as error:
        raise HTTPRefusal(500, str(error)) from error
    if engine not in WORKFLOW_ENGINES:
        raise HTTPRefusal(500, "Unknown workflow type.")
    root = (spec.get("workspace") or {}).get("root_path")
    if root and not posixpath.join(posixpath.abspath(root), "").startswith(WORKSPACE_ROOT + "/"):
        raise HTTPRefusal(400, f'Desired workspace "{root}" is not valid.\n'
                               f"Available workspace prefix values are: {WORKSPACE_ROOT}")
    inputs = spec.get("inputs") or {}
    paths = [PurePosixPath(p) for p in (inputs.get("files") or [])
             + (inputs.get("directories") or [])]
    seen: set[PurePosixPath] = set()
    for path in paths:
        if path.is_absolute():
            raise HTTPRefusal(400, f"Input path cannot be absolute: {path}")
        if not path.parts:
            raise HTTPRefusal(400, "Input path cannot be empty")
        if ".." in path.parts:
            raise HTTPRefusal(400, f"Input path cannot contain '..': {path}")
        if path in seen:
            raise HTTPRefusal(400, f"Input path declared multiple times: {path}")
        seen.add(path)
    for x in paths:
        for y in paths:
            if x != y and x.is_relative_to(y):
                raise HTTPRefusal(400, f"Duplicate input paths '{y}' and '{x}' found. "
                                       "Please deduplicate inputs first.")


def _created(workflow: Workflow) -> Answer:
    """The 201 answer of create_workflow (reana-workflow-controller's, passed on as it is)."""
    return 201, {"message": "Workflow workspace created", "workflow_id": workflow.id,
                 "workflow_name": workflow.full_name}


class _Handler(BaseHTTPRequestHandler):
    """Dispatch, bookkeeping and JSON answers shared by both server versions."""

    state: FakeReana
    routes: tuple[tuple[str, re.Pattern[str], str], ...]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status: int
        answer: Any
        for verb, pattern, handler in self.routes:
            match = pattern.fullmatch(parts.path)
            if verb == method and match:
                try:
                    status, answer = getattr(self, handler)(*map(unquote, match.groups()))
                except HTTPRefusal as refusal:
                    status, answer = refusal.status, {"message": refusal.message}
                break
        else:
            status, answer = 404, None
        self.state.exchanges.append(Exchange(method, parts.path, self.query, status, self.body,
                                             dict(self.headers.items())))
        payload = b"<h1>Not Found</h1>" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if answer is None else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Reana09(_Handler):
    """reana-server 0.9 (``maint-0.9``; the OpenAPI spec of reana-commons 0.9.11 says 0.9.4)."""

    routes = (
        ("GET", re.compile(r"/api/ping"), "ping"),
        ("GET", re.compile(r"/api/info"), "info"),
        ("POST", re.compile(r"/api/workflows"), "create_workflow"),
        ("POST", re.compile(r"/api/workflows/([^/]+)/workspace"), "upload_file"),
        ("GET", re.compile(r"/api/workflows/([^/]+)/specification"),
         "get_workflow_specification"),
    )

    def signin_required(self) -> None:
        """reana_server/decorators.py::signin_required with a token in ``access_token``.

        No token: 401 ``User not signed in``. A token no user holds: 403 ``Token not valid.``
        (reana_server/utils.py::get_user_from_token raises ValueError, turned into 403).
        """
        if "access_token" not in self.query:
            raise HTTPRefusal(401, "User not signed in")
        if self.query["access_token"] != self.state.token:
            raise HTTPRefusal(403, "Token not valid.")

    def ping(self) -> Answer:
        """reana_server/rest/ping.py::ping: no authentication."""
        return 200, {"message": "OK", "status": "200"}

    def info(self) -> Answer:
        """reana_server/rest/info.py::info (``maint-0.9``, with the CPU and memory entries).

        Each entry has the title reana-server gives it; the values are the examples of the
        endpoint's own OpenAPI docstring, with one Kubernetes backend and one workspace, and
        ``None`` where reana-server leaves an unset limit empty (the spec marks those
        nullable).
        """
        self.signin_required()

        def entry(title: str, value: Any) -> dict[str, Any]:
            return {"title": title, "value": value}

        return 200, {
            "workspaces_available": entry("List of available workspaces", [WORKSPACE_ROOT]),
            "default_workspace": entry("Default workspace", WORKSPACE_ROOT),
            "compute_backends": entry("List of supported compute backends", ["kubernetes"]),
            "default_kubernetes_cpu_request": entry("Default CPU request for Kubernetes jobs",
                                                    None),
            "default_kubernetes_cpu_limit": entry("Default CPU limit for Kubernetes jobs", None),
            "default_kubernetes_memory_request": entry(
                "Default memory request for Kubernetes jobs", None),
            "default_kubernetes_memory_limit": entry(
                "Default memory limit for Kubernetes jobs", "3Gi"),
            "kubernetes_max_cpu_request": entry(
                "Maximum allowed CPU request for Kubernetes jobs", None),
            "kubernetes_max_cpu_limit": entry("Maximum allowed CPU limit for Kubernetes jobs",
                                              None),
            "kubernetes_max_memory_request": entry(
                "Maximum allowed memory request for Kubernetes jobs", None),
            "kubernetes_max_memory_limit": entry(
                "Maximum allowed memory limit for Kubernetes jobs", "10Gi"),
            "maximum_workspace_retention_period": entry(
                "Maximum retention period in days for workspace files", None),
            "default_kubernetes_jobs_timeout": entry("Default timeout for Kubernetes jobs",
                                                     "604800"),
            "maximum_kubernetes_jobs_timeout": entry("Maximum timeout for Kubernetes jobs",
                                                     "1209600"),
            "maximum_interactive_session_inactivity_period": entry(
                "Maximum inactivity period in days before automatic closure of interactive "
                "sessions", None),
        }

    def create_workflow(self) -> Answer:
        """reana_server/rest/workflows.py::create_workflow (0.9): the JSON specification.

        ``spec`` in the query: 501. A body that is not ``application/json``: 500. A body that
        does not decode: Flask's BadRequest, caught by the view's last ``except``: 500. Then
        the name and the specification checks, then reana-workflow-controller's
        ``create_workflow``, which stores the decoded specification as it came.
        """
        self.signin_required()
        if self.query.get("spec"):
            return 501, "Not implemented"
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind != "application/json" and not kind.endswith("+json"):
            raise HTTPRefusal(500, "Either remote repository or REANA specification needs to "
                                   "be provided")
        try:
            spec = json.loads(self.body)
        except ValueError as error:
            raise HTTPRefusal(500, "400 Bad Request: Failed to decode JSON object: "
                                   f"{error}") from error
        if isinstance(spec, dict) and "object_kind" in spec:
            raise HTTPRefusal(500, "GitLab webhooks are not part of this fake server")
        name = self.query.get("workflow_name", "")
        _check_workflow_name(name)
        _check_specification(spec)
        return _created(self.state.add_workflow(name, spec))

    def upload_file(self, workflow: str) -> Answer:
        """reana_server/rest/workflows.py::upload_file, then the controller's ``upload_file``.

        No ``file_name``: 400; a Content-Type other than application/octet-stream: 400
        (missing: 500). reana-workflow-controller (rest/workflows_workspace.py::upload_file)
        finds the workflow (unknown: 404), makes an absolute name relative and stores it.
        """
        self.signin_required()
        name = self.query.get("file_name")
        if not name:
            raise HTTPRefusal(400, "No file_name provided")
        kind = self.headers.get("Content-Type")
        if kind is None:
            raise HTTPRefusal(500, "argument of type 'NoneType' is not iterable")
        if "application/octet-stream" not in kind:
            raise HTTPRefusal(400, f"Wrong Content-Type {kind} use application/octet-stream")
        try:
            target = self.state.find(workflow)
        except ValueError as error:
            raise HTTPRefusal(404, f"REANA_WORKON is set to {workflow}, but that workflow does "
                                   "not exist. Please set your REANA_WORKON environment"
                                   "variable appropriately.") from error
        target.files[name.lstrip("/")] = self.body
        return 200, {"message": f"{name} has been successfully uploaded."}

    def get_workflow_specification(self, workflow: str) -> Answer:
        """reana_server/rest/workflows.py::get_workflow_specification: what was stored.

        ``parameters`` is the workflow's ``input_parameters``: ``{}`` until it is started
        (reana_db/models.py::Workflow.__init__). An unknown workflow: ValueError, 403.
        """
        self.signin_required()
        try:
            target = self.state.find(workflow)
        except ValueError as error:
            raise HTTPRefusal(403, str(error)) from error
        return 200, {"specification": target.specification, "parameters": {}}


Loader = Callable[[Path], dict[str, Any]]
"""Loads a staged bundle as REANA 0.95's sandbox does; see :func:`reana95_loader`."""


class _Reana095(_Handler):
    """reana-server 0.95 with the specification-bundle protocol (server 0.95.0a6 and later).

    Follows the reana-server sources that carry ``workflow-specification-bundles-v1``:
    reana_server/rest/ping.py::ping, reana_server/rest/workflows.py::create_workflow,
    reana_server/specification_bundles.py::extract_uploaded_bundle and
    reana_server/validation.py::load_and_validate_spec.
    """

    routes = (
        ("GET", re.compile(r"/api/ping"), "ping"),
        ("POST", re.compile(r"/api/workflows"), "create_workflow"),
    )
    loader: Loader
    staging: Path

    def bearer_required(self) -> None:
        """reana_server/auth/tokens.py: a JWT in ``Authorization: Bearer``; else 401.

        The fake knows one token and compares it instead of checking a signature.
        """
        given = self.headers.get("Authorization", "")
        if given != f"Bearer {self.state.token}":
            raise HTTPRefusal(401, "Invalid or missing access token.")

    def ping(self) -> Answer:
        """reana_server/rest/ping.py::ping: unauthenticated; advertises the bundle protocol."""
        return 200, {"message": "OK", "status": "200", "reana_server_version": "0.95.0a6",
                     "api_capabilities": [BUNDLE_CAPABILITY]}

    def create_workflow(self) -> Answer:
        """reana_server/rest/workflows.py::create_workflow with a multipart ``bundle``.

        A JSON body that is not a GitLab webhook is a client of the retired protocol (0.9):
        400 (one that does not decode: 500). No bundle, a field other than ``bundle``, a
        damaged or compressed ZIP, members other than those ``reana.yaml`` declares, or a
        specification that does not load or fails the policy checks: 400
        (REANAValidationError). A sandbox failure: 500. Otherwise the loaded specification
        is stored, as reana-workflow-controller does.
        """
        self.bearer_required()
        if self.query.get("spec"):
            return 501, "Not implemented"
        kind = self.headers.get("Content-Type") or ""
        if kind.split(";")[0].strip() == "application/json":
            try:
                payload = json.loads(self.body)
            except ValueError as error:
                raise HTTPRefusal(500, "An internal server error occurred.") from error
            if isinstance(payload, dict) and "object_kind" in payload:
                raise HTTPRefusal(500, "GitLab webhooks are not part of this fake server")
            if payload:
                raise HTTPRefusal(400, "This server no longer accepts a client-serialized "
                                       "'reana_specification'. Please upgrade REANA client to "
                                       "a version that uploads the workflow specification "
                                       "bundle, or connect to an older REANA cluster.")
        fields = self._form_files(kind)
        if not fields:
            raise HTTPRefusal(400, "A workflow specification bundle must be uploaded.")
        if set(fields) != {"bundle"}:
            raise HTTPRefusal(400, "Upload exactly one specification archive in the 'bundle' "
                                   "field.")
        bundle_dir, names = self._extract(fields["bundle"])
        result = self.loader(bundle_dir)
        if result.get("exit_code") == 2:
            raise HTTPRefusal(500, "An internal server error occurred.")
        if "scope_error" in result:
            raise HTTPRefusal(400, result["scope_error"])
        if result["members"] != names:
            raise HTTPRefusal(400, "Specification bundle does not match its declared "
                                   "validation scope")
        report = result["report"]
        if result["exit_code"] != 0 or not report.get("reana_specification"):
            raise HTTPRefusal(400, (report.get("error") or {}).get("message") or "load error")
        if not result["verdict"]["valid"]:
            raise HTTPRefusal(400, "; ".join(e.get("message", "")
                                             for e in result["verdict"]["errors"]))
        spec = report["reana_specification"]
        name = self.query.get("workflow_name", "")
        _check_workflow_name(name)
        _check_specification(spec)
        return _created(self.state.add_workflow(name, spec))

    def _form_files(self, kind: str) -> dict[str, bytes]:
        """The file fields of a multipart/form-data body (what Flask's ``request.files`` has)."""
        if not kind.startswith("multipart/form-data"):
            return {}
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + self.body)
        files = {}
        for part in message.iter_parts():
            if part.get_param("filename", header="content-disposition"):
                name = part.get_param("name", header="content-disposition")
                files[str(name)] = part.get_payload(decode=True)
        return files

    def _extract(self, archive: bytes) -> tuple[Path, list[str]]:
        """reana_server/specification_bundles.py::extract_uploaded_bundle, the ZIP part.

        Refuses (400) what is not a ZIP, compressed entries, unsafe paths and duplicates;
        extracts into a fresh directory and returns it with the sorted member names. The
        scope check needs reana-commons and is made with the loader's answer.
        """
        try:
            bundle = zipfile.ZipFile(io.BytesIO(archive))
        except zipfile.BadZipFile as error:
            raise HTTPRefusal(400, "The specification bundle is not a valid ZIP archive: "
                                   f"{error}") from error
        target = self.staging / uuid.uuid4().hex
        seen = set()
        with bundle:
            for info in bundle.infolist():
                path = PurePosixPath(info.filename)
                if (path.is_absolute() or ".." in path.parts or "\\" in info.filename
                        or info.filename in seen):
                    raise HTTPRefusal(400, f"Unsafe bundle path: {info.filename}")
                seen.add(info.filename)
                if info.compress_type != zipfile.ZIP_STORED:
                    raise HTTPRefusal(400, "Specification bundles must use uncompressed ZIP "
                                           "entries.")
                destination = target.joinpath(*path.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(bundle.read(info))
        if not (target / "reana.yaml").is_file():
            raise HTTPRefusal(400, "The specification bundle must contain a top-level "
                                   "reana.yaml.")
        return target, sorted(seen)


@contextlib.contextmanager
def _serve(handler: type[_Handler], token: str, **attributes: Any) -> Iterator[FakeReana]:
    state = FakeReana(url="", token=token)
    bound = type(handler.__name__, (handler,), {"state": state, **attributes})
    with serving(bound) as url:
        state.url = url
        yield state


@contextlib.contextmanager
def serve_reana_09(token: str) -> Iterator[FakeReana]:
    """Serve reana-server 0.9 on 127.0.0.1 (a free port) for one user holding ``token``."""
    with _serve(_Reana09, token) as state:
        yield state


@contextlib.contextmanager
def serve_reana_095(token: str, loader: Loader, staging: Path) -> Iterator[FakeReana]:
    """Serve reana-server 0.95 (bundle protocol); bundles are extracted under ``staging``."""
    with _serve(_Reana095, token, loader=staticmethod(loader), staging=staging) as state:
        yield state


# -- REANA 0.95's sandbox, with its own reana-commons ------------------------------------------

LOAD_095 = r"""
import contextlib, json, os, sys
from reana_commons.specification import load_reana_spec
from reana_commons.specification_paths import gather_validation_members
from reana_commons.validation.report import validate_serialized_spec
from reana_commons.validation.utils import validate_json_tree

here = os.getcwd()
spec_path = os.path.join(here, "reana.yaml")
try:
    members, _, _ = gather_validation_members(spec_path)
except Exception as error:
    print(json.dumps({"scope_error": str(error)}))
    sys.exit(0)
result = {"members": sorted(members), "exit_code": 0, "verdict": None,
          "report": {"reana_specification": None, "error": None}}
try:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
            contextlib.redirect_stderr(devnull):
        spec = load_reana_spec(spec_path, workspace_path=here)
    validate_json_tree(spec)
    json.dumps(spec)
except Exception as error:
    result["exit_code"] = 1
    result["report"]["error"] = {"code": "load", "message": str(error)}
else:
    result["report"]["reana_specification"] = spec
    result["verdict"] = validate_serialized_spec(
        spec, {"supported_backends": ["kubernetes"], "workspace_paths": ["/var/reana"]})
print(json.dumps(result))
"""
"""Loads ``reana.yaml`` in the current directory the way REANA 0.95 does on the cluster.

The calls are those of reana-workflow-validator (reana_workflow_validator/cli.py::main):
``reana_commons.specification.load_reana_spec(path, workspace_path=workdir)`` run in the
bundle's directory with the loader's output discarded, then
``reana_commons.validation.utils.validate_json_tree`` and ``json.dumps`` (the sandbox prints
the specification as JSON for the controller to read). Before loading, the members the
specification declares (reana_commons.specification_paths.gather_validation_members, as
reana_server/specification_bundles.py::extract_uploaded_bundle checks them); after it, the
server's own verdict (reana_commons.validation.report.validate_serialized_spec, as
reana_server/validation.py::_authoritative_report). Prints one JSON object.
"""


def reana95_loader(python: Path) -> Loader:
    """A :data:`Loader` running :data:`LOAD_095` with ``python`` (``.venv-reana95``)."""

    def load(bundle_dir: Path) -> dict[str, Any]:
        done = subprocess.run([str(python), "-c", LOAD_095], cwd=bundle_dir,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            return {"members": None, "exit_code": 2, "report": {"error": {
                "code": "internal", "message": done.stderr[-2000:]}}}
        return json.loads(done.stdout.strip().splitlines()[-1])

    return load
