"""A base for local stand-ins of the services: loopback HTTP, routing, faults, a request log.

Each fake follows its service's documented API closely enough that pubflow's production
client code runs unchanged against it (request shapes, status codes, headers, links, error
bodies), and stays strict: it refuses what the real service refuses.

Faults are injected by request number (0-based, counting every request the server receives):

* ``drop``: the request is read, then the connection is closed without an answer; nothing
  happened on the server.
* ``lost``: the request is carried out, then the connection is closed without an answer.
* ``timeout``: the request is carried out, and the answer never comes (the server waits until
  the client gives up).
* ``500``: an internal error; nothing happened.
* ``429``: rate limited (``Retry-After: 0``); nothing happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("drop", "lost", "timeout", "500", "429")


@dataclass
class Request:
    """A request as the fake sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def mimetype(self) -> str:
        """The body's media type: ``Content-Type`` without its parameters (what Flask's
        ``request.mimetype`` is, which the Invenio services decide by)."""
        return self.header("Content-Type").split(";")[0].strip()


@dataclass
class Response:
    """An answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, **headers: str) -> Response:
        return cls(status, json.dumps(obj).encode(),
                   {"Content-Type": "application/json", **headers})


def error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    """An Invenio-style error body: ``{"status", "message"[, "errors"]}``."""
    body: dict[str, Any] = {"status": status, "message": message}
    if errors:
        body["errors"] = errors
    return Response.json(status, body)


def validation_error(errors: list[dict[str, Any]]) -> Response:
    """400 as invenio-records-resources' HTTPJSONValidationException renders a marshmallow
    ValidationError (resources/errors.py): Zenodo's (zenodo-rdm runs on it) and
    InvenioRDM's."""
    return error(400, "A validation error occurred.", errors)


def field_error(where: str, message: str) -> Response:
    """:func:`validation_error` of one field with one message."""
    return validation_error([{"field": where, "messages": [message]}])


def by_method(request: Request, handlers: dict[str, Callable[[], Response]]) -> Response:
    """The handler of the request's method; 405 for any other method on a known URL."""
    handler = handlers.get(request.method)
    return handler() if handler is not None else error(405, "Method not allowed")


def damaged(data: bytes) -> bytes:
    """The data with its last bit flipped: what a fake stores of an upload it corrupts."""
    return data[:-1] + bytes([data[-1] ^ 1]) if data else data


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def bucket_change(request: Request, objects: dict[str, bytes], key: str, *, locked: bool,
                  stored: Callable[[bytes], bytes] | None = None,
                  **answer: Any) -> Response | None:
    """``PUT`` or ``DELETE`` of ``{bucket}/{key}`` as Invenio-Files-REST (Zenodo's and CAP's
    files API) answers it; None for any other method, which the fake answers itself.

    Args:
        request: The request.
        objects: The bucket's objects (name -> content), changed here.
        key: The object's name.
        locked: Whether the bucket belongs to a published deposit (no changes: 403).
        stored: What is stored of the uploaded body (default: the body itself).
        answer: Further fields of the answer to a ``PUT``.
    """
    if request.method not in ("PUT", "DELETE"):
        return None
    if locked:
        return error(403, "Bucket is locked for modifications.")
    if request.method == "PUT":
        data = request.body if stored is None else stored(request.body)
        objects[key] = data
        return Response.json(200, {"key": key, "size": len(data), "checksum": f"md5:{md5(data)}",
                                   **answer, "is_head": True, "delete_marker": False})
    if objects.pop(key, None) is None:
        return error(404, "Object does not exists.")
    return Response(204)


class FakeService:
    """A fake web service on ``127.0.0.1`` (ephemeral port), run in a thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.log: list[tuple[str, str]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.faults: dict[int, str] = {}
        self.count = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                service._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        # a short poll interval: shutdown() waits for the loop to notice
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def inject(self, index: int, kind: str) -> None:
        """Make request number ``index`` (counted from now on) fail with ``kind``."""
        assert kind in FAULT_KINDS, kind
        with self.lock:
            self.faults[self.count + index] = kind

    def route(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- plumbing ---------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(handler.command, parts.path, parse_qs(parts.query,
                                                                 keep_blank_values=True),
                          {k.lower(): v for k, v in handler.headers.items()}, body)
        with self.lock:
            index = self.count
            self.count += 1
            fault = self.faults.pop(index, None)
            self.log.append((request.method, parts.path + (f"?{parts.query}"
                                                            if parts.query else "")))
            self.headers_seen.append(request.headers)
            if fault in ("drop", "500", "429"):
                response = {
                    "drop": None,
                    "500": Response(500, b"<h1>Internal Server Error</h1>",
                                    {"Content-Type": "text/html"}),
                    "429": Response.json(429, {"status": 429, "message": "Too many requests"},
                                         **{"Retry-After": "0"}),
                }[fault]
            else:
                try:
                    response = self.route(request)
                except Exception as err:  # a bug in the fake must show, not hang the test
                    response = error(599, f"fake server error: {type(err).__name__}: {err}")
        if fault in ("drop", "lost"):
            _abort(handler)
            return
        if fault == "timeout":
            with contextlib.suppress(OSError):
                handler.connection.settimeout(10)
                handler.rfile.read(1)  # returns when the client gives up and closes
            _abort(handler)
            return
        assert response is not None
        with contextlib.suppress(OSError):
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            handler.wfile.write(response.body)


def _abort(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection with no answer at all."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def running(factory: Callable[[], FakeService]) -> Iterator[FakeService]:
    """A started fake, stopped afterwards."""
    service = factory().start()
    try:
        yield service
    finally:
        service.stop()


def bearer(request: Request, tokens: set[str]) -> bool:
    """Whether the request carries ``Authorization: Bearer <a valid token>``."""
    value = request.header("Authorization")
    return value.startswith("Bearer ") and value[len("Bearer "):] in tokens
