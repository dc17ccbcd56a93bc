"""The one HTTP layer every publisher uses: timeouts, bounded retries, TLS, no leaks.

* Every request has a connect and a read timeout; TLS certificates are always verified
  (``requests`` honours ``REQUESTS_CA_BUNDLE`` for a site CA; nothing here can turn
  verification off), and plain ``http://`` is refused except on the loopback interface.
* Credentials travel only in headers or form fields given to :class:`Client`, and only to the
  configured service's origin: a link a server hands back that points elsewhere is refused.
* Transient failures are retried with exponential backoff, up to a bound, honouring
  ``Retry-After``: connection failures, timeouts, 408, 429, 5xx. A request that is not
  idempotent (creating a record, publishing) is repeated only when the failure shows it was
  not applied (connection refused, 408, 429, 503); otherwise :class:`InDoubtError` tells the
  caller to find out what the server did before trying again.
* Permanent failures (400, 401, 403, 404, 409, 413, ...) stop at once, with the server's own
  message.
* Redirects are not followed: the services' APIs answer directly, and a redirect would carry
  the request (and its credentials) somewhere unplanned.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from steps import __version__
from steps.errors import PubflowError
from steps.publish.secrets import Redactor

log = logging.getLogger(__name__)

USER_AGENT = f"pubflow/{__version__} (steps.publish; python-requests/{requests.__version__})"

#: Methods whose repetition cannot change the outcome (RFC 9110, section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

#: Statuses that say the request was not applied: safe to repeat even a POST.
NOT_APPLIED = frozenset({408, 429, 503})

#: Statuses worth another try for idempotent requests.
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try, and how long to wait.

    Attributes:
        attempts: Tries per request (1 means no retry).
        backoff: Wait before the second try, in seconds; doubled for each further try.
        max_delay: Upper bound of any single wait (also of a server's ``Retry-After``).
        connect_timeout: Seconds to establish a connection.
        read_timeout: Seconds to wait for a response once the request is sent.
        sleep: How to wait (tests pass a recorder).
    """

    attempts: int = 5
    backoff: float = 2.0
    max_delay: float = 120.0
    connect_timeout: float = 15.0
    read_timeout: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise PubflowError(f"retry attempts must be at least 1 (got {self.attempts})")
        if min(self.backoff, self.max_delay) < 0 or min(self.connect_timeout,
                                                         self.read_timeout) <= 0:
            raise PubflowError("backoff and delays must be >= 0 and timeouts > 0")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        wait = self.backoff * 2 ** (attempt - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay)


class HttpError(PubflowError):
    """A request to a service failed.

    Attributes:
        status: The HTTP status, if there was a response.
        maybe_applied: Whether the server may have carried the request out (False when it
            refused it, or when it was never received or explicitly not processed).
    """

    maybe_applied = False

    def __init__(self, message: str, *, status: int | None = None,
                 maybe_applied: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        if maybe_applied is not None:
            self.maybe_applied = maybe_applied


class PermanentHttpError(HttpError):
    """The service refused the request; repeating it will not help."""


class TransientHttpError(HttpError):
    """The request failed for a passing reason and the retries ran out; re-run later."""


class InDoubtError(TransientHttpError):
    """A request that is not idempotent may or may not have been applied.

    The caller must look at the remote state before doing anything else.
    """

    maybe_applied = True


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (it is either a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def server_errors(errors: Any) -> list[str]:
    """An Invenio ``errors`` list as lines: ``field: message`` each.

    Zenodo and InvenioRDM (flask-resources, marshmallow) give ``{"field": "a.b",
    "messages": [...]}``, CAP (invenio-rest ``FieldError``) ``{"field": [path], "message"}``;
    an InvenioRDM file answer lists plain strings.
    """
    found = []
    for err in errors if isinstance(errors, list) else []:
        if not isinstance(err, Mapping):
            found.append(_one_line(err))
            continue
        where = err.get("field")
        if isinstance(where, list):
            where = ".".join(str(p) for p in where)
        messages = err.get("messages")
        if isinstance(messages, list):
            messages = "; ".join(map(str, messages))
        text = _one_line(err.get("message") or messages or "")
        found.append(f"{where}: {text}" if where else text)
    return found


def server_message(response: requests.Response, limit: int = 500) -> str:
    """The error a service put in its response, as one line.

    Zenodo and CAP (Invenio) answer ``{"status": ..., "message": ..., "errors": [...]}``
    (:func:`server_errors`); HEPData ``{"message": ...}``. Anything else: the text.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, Mapping):
        if body.get("message"):
            parts.append(_one_line(body["message"]))
        parts += server_errors(body.get("errors"))
    if not parts:
        text = _one_line(response.text)
        parts.append(text or response.reason or "no message")
    message = "; ".join(parts)
    return message if len(message) <= limit else message[: limit - 3] + "..."


def display_url(url: str) -> str:
    """A URL without its query string and fragment (nothing secret ever goes there, but a
    server's link might carry one)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the default port made explicit)."""
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def check_base_url(url: str) -> str:
    """A service base URL, checked: https (or http on loopback only), no query, no userinfo.

    Returns:
        The URL without a trailing slash.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PubflowError(f"not an http(s) URL: {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise PubflowError(f"refusing plain http for {parts.hostname}: credentials would travel "
                           "unencrypted; use https")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise PubflowError(f"the base URL must not carry credentials, a query or a fragment: "
                           f"{display_url(url)}")
    return url.rstrip("/")


@dataclass
class Body:
    """What a request sends, re-creatable for each try (files are re-opened).

    Attributes:
        json: A JSON document.
        data: Raw bytes or text.
        file: A file streamed as the raw body.
        form: Form fields (with ``files``: multipart).
        files: Multipart file fields: name -> (file name, path).
        content_type: Overrides the content type (e.g. JSON Patch).
    """

    json: Any = None
    data: bytes | str | None = None
    file: Path | None = None
    form: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, Path]] | None = None
    content_type: str | None = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[dict[str, Any]]:
        """Keyword arguments for ``requests``, with any files open for the duration."""
        kwargs: dict[str, Any] = {}
        headers: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            if self.json is not None:
                kwargs["json"] = self.json
            if self.data is not None:
                kwargs["data"] = self.data
            if self.file is not None:
                handle: IO[bytes] = stack.enter_context(open(self.file, "rb"))
                kwargs["data"] = handle
                headers["Content-Type"] = "application/octet-stream"
            if self.form is not None:
                kwargs["data"] = dict(self.form)
            if self.files is not None:
                kwargs["files"] = {
                    name: (filename, stack.enter_context(open(path, "rb")),
                           "application/octet-stream")
                    for name, (filename, path) in self.files.items()
                }
            if self.content_type:
                headers["Content-Type"] = self.content_type
            kwargs["headers"] = headers
            yield kwargs


class Client:
    """Requests to one service, with its credentials, timeouts and retry policy.

    Args:
        service: Its name, for messages (``Zenodo``, ``HEPData``, ``CAP``).
        base_url: Where the service lives (checked by :func:`check_base_url`).
        redactor: Secrets to keep out of every message.
        policy: Timeouts and retries.
        headers: Headers for every request (e.g. ``Authorization``).
        session: A ``requests.Session`` to use (a new one by default).
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        redactor: Redactor,
        policy: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.service = service
        self.base_url = check_base_url(base_url)
        self.redactor = redactor
        self.policy = policy
        self.session = session or requests.Session()
        # Certificates are always checked; REQUESTS_CA_BUNDLE may name a site CA bundle.
        self.session.verify = True
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self.session.headers.update(headers or {})
        self.requests_sent = 0

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    def url(self, path: str) -> str:
        """An absolute URL for a path under the base URL (absolute URLs pass unchanged)."""
        if urlsplit(path).scheme:
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def _check_target(self, url: str) -> None:
        if origin(url) != origin(self.base_url):
            raise PermanentHttpError(
                f"{self.service}: refusing to send credentials to {display_url(url)}, "
                f"which is not {self.base_url}")

    def _fail(self, cls: type[HttpError], text: str, status: int | None = None,
              maybe_applied: bool | None = None) -> HttpError:
        return cls(self.redactor.scrub(f"{self.service}: {text}"), status=status,
                   maybe_applied=maybe_applied)

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: Collection[int] = (200,),
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        what: str = "",
    ) -> requests.Response:
        """Send a request, retrying transient failures; return the expected response.

        Args:
            method: HTTP method.
            path: A path under the base URL, or an absolute URL on the same origin.
            expect: The statuses the service documents for success; any other 2xx is
                success too (logged), since the server carried the request out.
            body: What to send.
            params: Query parameters (never secrets).
            headers: Extra headers.
            idempotent: Whether repeating the request is harmless (default: by method).
            what: What the request does, for messages ("create the deposition").

        Raises:
            PermanentHttpError: The service refused (4xx), or an unexpected answer.
            TransientHttpError: Retries exhausted.
            InDoubtError: A non-idempotent request may have been applied.
        """
        method = method.upper()
        url = self.url(path)
        self._check_target(url)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        label = f"{method} {display_url(url)}" + (f" ({what})" if what else "")
        body = body or Body()
        last = ""
        applied = False  # whether a failed try may have been carried out
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            log.debug("%s: %s, try %d", self.service, label, attempt)
            try:
                with body.opened() as kwargs:
                    extra = {**kwargs.pop("headers"), **(headers or {})}
                    self.requests_sent += 1
                    response = self.session.request(
                        method, url, params=params, headers=extra, allow_redirects=False,
                        timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                        verify=True, **kwargs)
            except requests.exceptions.SSLError as err:
                raise self._fail(
                    PermanentHttpError,
                    f"{label}: TLS verification failed ({type(err).__name__}); pubflow never "
                    "turns verification off: if the site uses its own CA, point "
                    "REQUESTS_CA_BUNDLE at it") from None
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as err:
                if _nothing_sent(err):
                    last = f"cannot connect ({_short(err)})"
                else:
                    last = f"no answer ({_short(err)})"
                    applied = True
                    if not idempotent:
                        raise self._fail(
                            InDoubtError, f"{label}: {last}; the request may have been applied"
                        ) from None
            except requests.exceptions.RequestException as err:
                raise self._fail(PermanentHttpError, f"{label}: {_short(err)}") from None
            else:
                status = response.status_code
                if status in expect:
                    log.info("%s: %s -> %d", self.service, label, status)
                    return response
                if 200 <= status < 300:
                    # the server did it, whatever status it chose to say so with: a create
                    # answered 200 instead of 201 exists, and forgetting it makes an orphan
                    log.warning("%s: %s -> %d (expected %s); taken as done", self.service,
                                label, status, "/".join(map(str, sorted(expect))))
                    return response
                message = server_message(response)
                last = f"{status} {response.reason}: {message}"
                if status in NOT_APPLIED or (idempotent and status in TRANSIENT):
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    applied = applied or status not in NOT_APPLIED
                elif status in TRANSIENT:
                    raise self._fail(InDoubtError, f"{label}: {last}; the request may have "
                                     "been applied", status)
                elif 300 <= status < 400:
                    location = display_url(response.headers.get("Location", "?"))
                    raise self._fail(PermanentHttpError,
                                     f"{label}: unexpected redirect ({status}) to {location}",
                                     status)
                else:
                    raise self._fail(PermanentHttpError, f"{label}: {last}{_hint(status)}",
                                     status)
            if attempt < self.policy.attempts:
                wait = self.policy.delay(attempt, retry_after)
                log.warning("%s: %s: %s; retrying in %.3g s (try %d of %d)", self.service,
                            label, self.redactor.scrub(last), wait, attempt + 1,
                            self.policy.attempts)
                self.policy.sleep(wait)
        raise self._fail(TransientHttpError,
                         f"{label}: {last}; gave up after {self.policy.attempts} tries. "
                         "Re-run to resume: the state file records what is already done",
                         maybe_applied=applied)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, returning the response's JSON (an error if it is not JSON)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self._fail(PermanentHttpError,
                             f"{method} {display_url(self.url(path))}: the answer is not JSON "
                             f"({' '.join(response.text.split())[:120]!r})") from None


def _nothing_sent(err: requests.exceptions.RequestException) -> bool:
    """Whether the request never left: no connection could be made (refused, DNS, timeout)."""
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return True
    reason = err.args[0] if err.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError
                      | urllib3.exceptions.ConnectTimeoutError)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _hint(status: int) -> str:
    return {
        401: " (check the access token: is it set, valid, and for this site? A sandbox "
             "needs its own token)",
        403: " (check the access token: Zenodo answers a missing or invalid token with 403; "
             "or the credentials lack the permission, or the record no longer accepts this "
             "change)",
        413: " (the upload is too large for the service)",
    }.get(status, "")
