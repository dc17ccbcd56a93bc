"""The shared HTTP layer: retries and their bound, Retry-After, in-doubt requests, TLS, leaks."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from steps.errors import PubflowError
from steps.publish.http import (
    Body,
    Client,
    InDoubtError,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
    check_base_url,
    retry_after_seconds,
    server_errors,
)
from steps.publish.secrets import Redactor

from .fakes import FakeService, Request, Response, error, running

SECRET = "s3cr3t-token-abcdef0123"


class Scripted(FakeService):
    """Answers from a script, then 200 ``{"ok": true}``."""

    def __init__(self, *answers: Response) -> None:
        super().__init__()
        self.answers = list(answers)
        self.bodies: list[bytes] = []

    def route(self, request: Request) -> Response:
        self.bodies.append(request.body)
        return self.answers.pop(0) if self.answers else Response.json(200, {"ok": True})


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(service: FakeService, sleeps: list[float], attempts: int = 3, **kw: float) -> Client:
    policy = RetryPolicy(attempts=attempts, backoff=kw.pop("backoff", 1.0),
                         max_delay=kw.pop("max_delay", 60.0), read_timeout=kw.pop("read", 2.0),
                         connect_timeout=0.5, sleep=sleeps.append)
    return Client("Test", service.url, redactor=Redactor([SECRET]), policy=policy,
                  headers={"Authorization": f"Bearer {SECRET}"})


def scripted(*answers: Response) -> Iterator[Scripted]:
    return running(lambda: Scripted(*answers))


def test_retry_after_is_honoured(sleeps):
    with scripted(Response.json(429, {"message": "slow down"}, **{"Retry-After": "7"})) as s:
        assert client(s, sleeps).json("POST", "x", expect=(200,)) == {"ok": True}
    assert sleeps == [7.0] and len(s.log) == 2  # a 429 was not applied: even a POST is retried


def test_retry_after_is_bounded(sleeps):
    with scripted(Response.json(503, {}, **{"Retry-After": "86400"})) as s:
        client(s, sleeps, max_delay=30).request("GET", "x")
    assert sleeps == [30.0]


def test_retry_after_http_date():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_doubles_and_gives_up(sleeps):
    with (scripted(*[error(502, "bad gateway")] * 5) as s,
          pytest.raises(TransientHttpError, match="gave up after 3 tries") as err):
        client(s, sleeps, backoff=0.5).request("GET", "x")
    assert sleeps == [0.5, 1.0] and len(s.log) == 3
    assert "Re-run to resume" in str(err.value)


def test_500_on_a_post_is_in_doubt(sleeps):
    with scripted(error(500, "oops")) as s, pytest.raises(InDoubtError) as err:
        client(s, sleeps).request("POST", "x", body=Body(json={}))
    assert err.value.maybe_applied and len(s.log) == 1 and not sleeps


def test_500_on_a_put_is_retried(sleeps):
    with scripted(error(500, "oops"), error(504, "later")) as s:
        client(s, sleeps).request("PUT", "x", body=Body(data=b"abc"))
    assert len(s.log) == 3 and s.bodies == [b"abc"] * 3


def test_streamed_file_is_sent_again_on_retry(tmp_path, sleeps):
    data = tmp_path / "f.bin"
    data.write_bytes(b"0123456789" * 1000)
    with scripted(error(503, "busy")) as s:
        client(s, sleeps).request("PUT", "f.bin", body=Body(file=data))
    assert s.bodies == [data.read_bytes()] * 2


def test_permanent_error_carries_the_servers_message(sleeps):
    body = error(400, "Validation error.", [{"field": "metadata.title",
                                             "message": "Missing data for required field."}])
    with scripted(body) as s, pytest.raises(PermanentHttpError) as err:
        client(s, sleeps).request("PUT", "x")
    assert ("400 Bad Request: Validation error.; metadata.title: Missing data for required "
            "field.") in str(err.value)
    assert len(s.log) == 1 and not sleeps


def test_every_error_shape_becomes_one_line_of_field_and_message(sleeps):
    """Invenio's ``errors`` as Zenodo/InvenioRDM (``messages``: a list), CAP (``field``: a
    path, ``message``) and an InvenioRDM file answer (plain strings) give them, multi-line
    texts included: the same ``field: message`` parts, on one line."""
    errors = [{"field": "metadata.creators.0", "messages": ["Missing data.", "Too\nshort."]},
              {"field": ["basic_info", "cadi_id"], "message": "'X' does not match\n  '^[A-Z]'"},
              "File upload\ntransfer failed."]
    assert server_errors(errors) == [
        "metadata.creators.0: Missing data.; Too short.",
        "basic_info.cadi_id: 'X' does not match '^[A-Z]'",
        "File upload transfer failed."]
    with (scripted(error(422, "Validation\nerror.", errors)) as s,
          pytest.raises(PermanentHttpError) as err):
        client(s, sleeps).request("PATCH", "x")
    assert str(err.value).endswith(
        "422 Unprocessable Entity: Validation error.; metadata.creators.0: Missing data.; Too "
        "short.; basic_info.cadi_id: 'X' does not match '^[A-Z]'; File upload transfer failed.")
    assert "\n" not in str(err.value)


def test_401_is_explained_and_an_echoed_secret_is_masked(sleeps):
    with (scripted(error(401, f"token {SECRET} is invalid")) as s,
          pytest.raises(PermanentHttpError) as err):
        client(s, sleeps).request("GET", "x")
    assert SECRET not in str(err.value) and "[redacted]" in str(err.value)
    assert "check the access token" in str(err.value)


def test_redirects_are_not_followed(sleeps):
    redirect = Response(302, b"", {"Location": "https://elsewhere.example/steal"})
    with scripted(redirect) as s, pytest.raises(PermanentHttpError, match="unexpected redirect"):
        client(s, sleeps).request("GET", "x")
    assert len(s.log) == 1


def test_credentials_go_to_the_service_only(sleeps):
    with scripted() as s:
        c = client(s, sleeps)
        for url in ("http://127.0.0.2:1/x", "https://evil.example/api/files/b/f"):
            with pytest.raises(PermanentHttpError, match="refusing to send credentials"):
                c.request("PUT", url)
    assert not s.log


def test_base_url_rules():
    assert check_base_url("https://zenodo.org/") == "https://zenodo.org"
    assert check_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    for bad in ("http://zenodo.org", "ftp://x.org", "https://u:p@zenodo.org",
                "https://zenodo.org/?access_token=x"):
        with pytest.raises(PubflowError):
            check_base_url(bad)


def test_connection_refused_is_retried_even_for_a_post(sleeps):
    service = Scripted()
    url = service.url
    service.server.server_close()  # nothing listens there now
    policy = RetryPolicy(attempts=2, backoff=0.1, connect_timeout=0.5, sleep=sleeps.append)
    c = Client("Test", url, redactor=Redactor(), policy=policy)
    with pytest.raises(TransientHttpError, match="cannot connect") as err:
        c.request("POST", "x")
    assert not isinstance(err.value, InDoubtError) and not err.value.maybe_applied
    assert sleeps == [0.1]


def test_read_timeout(sleeps):
    with scripted() as s:
        s.inject(0, "timeout")
        assert client(s, sleeps, read=0.2).json("GET", "x") == {"ok": True}
        s.inject(0, "timeout")
        with pytest.raises(InDoubtError):
            client(s, sleeps, read=0.2).request("POST", "x")


def test_every_request_has_timeouts_and_verifies_tls(sleeps, monkeypatch):
    seen: list[dict] = []
    with scripted() as s:
        c = client(s, sleeps)
        original = c.session.request

        def spy(*args, **kwargs):
            seen.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(c.session, "request", spy)
        c.request("GET", "x")
        c.request("PUT", "y", body=Body(data=b"1"))
    assert all(k["timeout"] == (0.5, 2.0) and k["verify"] is True for k in seen)
    assert all(k["allow_redirects"] is False for k in seen)


def test_urllib3_debug_lines_hold_no_secret(sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    from steps.publish.secrets import redacted_logging

    with scripted(error(503, f"busy, {SECRET}")) as s, redacted_logging(Redactor([SECRET])):
        client(s, sleeps).request("GET", "x")
    assert "urllib3" in caplog.text and SECRET not in caplog.text


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS fake on 127.0.0.1 with a self-signed certificate (made with openssl)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    service = Scripted()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server: ThreadingHTTPServer = service.server
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield service.url.replace("http://", "https://"), cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verification_cannot_be_bypassed(tls_server, sleeps):
    url, _ = tls_server
    c = Client("Test", url, redactor=Redactor(), policy=RetryPolicy(sleep=sleeps.append))
    with pytest.raises(PermanentHttpError, match="TLS verification failed"):
        c.request("GET", "x")


def test_tls_with_a_site_ca_bundle(tls_server, sleeps, monkeypatch):
    url, cert = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    c = Client("Test", url, redactor=Redactor(), policy=RetryPolicy(sleep=sleeps.append))
    assert c.json("GET", "x") == {"ok": True}
