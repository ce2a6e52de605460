"""One HTTP client for every REST engine (Airflow, GitHub, ...): retries, backoff, rate limits, lost answers.

What is retried, and why:

* A request that got no answer (refused, reset or dropped connection, a timeout) is sent again when it is
  ``repeatable`` (safe to repeat: reads, and writes the engine makes idempotent, such as a trigger with a fixed
  run id). When every try goes unanswered, a write raises :class:`~pipecast.errors.SubmitOutcomeUnknownError`
  (it may have taken effect: ask the engine), a read a plain SubmitError. A write that is not repeatable
  raises SubmitOutcomeUnknownError at once, unless the connection was refused (then nothing was sent).
* 429 (and an engine's own rate-limit answers, through ``rate_limit``) waits what the engine asks
  (``Retry-After`` in seconds or as a date), up to ``max_wait``; a longer wait is the caller's error to report.
* 5xx answers of repeatable requests are retried with backoff; of other writes, their outcome is unknown.

Sleeping and the clock are injectable so tests wait for nothing. Credentials travel in headers only and never
appear in an error (URLs are redacted).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.redaction import redact_credentials

TRANSIENT = frozenset({500, 502, 503, 504})
DEFAULT_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds before each new try: five tries in about 15 s
READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Response:
    """An answer: its status, headers (lower-case names) and body (decoded JSON, else text, else None)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes = field(default=b"", repr=False)  # the body as it came (a log whose text happens to be JSON)

    def retry_after(self, now: float) -> float | None:
        """Seconds the ``Retry-After`` header asks to wait (a number, or an HTTP date), if it has one."""
        value = self.headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                return None

    @property
    def server_time(self) -> float | None:
        """The server's clock (the ``Date`` header) as a POSIX time, if it sent one."""
        date = self.headers.get("date")
        try:
            return parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            return None


class Unanswered(Exception):
    """One try got no answer; ``sent`` says whether the request may have reached the server."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


@dataclass
class HttpClient:
    """Requests to one engine's API, retried as the module says.

    Attributes:
        engine: The engine's name, for messages ("Airflow", "GitHub").
        headers: Headers sent with every request (authentication...).
        timeout: Seconds to wait for each answer.
        verify: TLS verification: True, False, or the path of a CA bundle.
        delays: Seconds to wait before each new try (its length bounds the tries).
        max_wait: The longest a rate limit may make a request wait, in seconds.
        rate_limit: Seconds an engine-specific rate-limit answer asks to wait (None: not a rate limit).
        sleep: How to wait.
        clock: POSIX seconds now.
        waits: Every wait made, in order (for tests and diagnostics).
    """

    engine: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 30.0
    verify: bool | str = True
    delays: tuple[float, ...] = DEFAULT_DELAYS
    max_wait: float = 300.0
    rate_limit: Callable[[Response, float], float | None] | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    waits: list[float] = field(default_factory=list, repr=False)

    def send(self, method: str, url: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None, repeatable: bool | None = None,
             raw: bytes | None = None) -> Response:
        """Send a request and return the last answer worth keeping (any status: the caller judges it).

        Args:
            method: The HTTP method.
            url: The full URL.
            body: A JSON body.
            query: Query parameters (a list value repeats the parameter; None values are left out).
            headers: Extra headers for this request.
            repeatable: Whether sending it twice is harmless (default: reads are, writes are not).
            raw: A body of bytes sent as it is (instead of ``body``).
        """
        repeatable = method.upper() in READS if repeatable is None else repeatable
        if query:
            pairs = [(k, v) for k, values in query.items() if values is not None
                     for v in (values if isinstance(values, (list, tuple)) else [values])]
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs, safe=">=:")
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Accept": "application/json", **self.headers, **(headers or {})}
        url, basic = _without_userinfo(url)
        if basic and not any(name.lower() == "authorization" for name in all_headers):
            all_headers["Authorization"] = basic  # http://user:password@host: what a browser would send
        if data is not None and raw is None:
            all_headers.setdefault("Content-Type", "application/json")
        delays = iter(self.delays)
        tries = 0
        while True:
            tries += 1
            try:
                response = self._once(method, url, data, all_headers)
            except Unanswered as err:
                if err.sent and not repeatable:
                    raise SubmitOutcomeUnknownError(self._lost(method, url, str(err), tries)) from None
                delay = next(delays, None)
                if delay is None:
                    if method.upper() in READS or not err.sent:
                        raise SubmitError(self._unreachable(method, url, str(err), tries)) from None
                    raise SubmitOutcomeUnknownError(self._lost(method, url, str(err), tries)) from None
                self._wait(delay)
                continue
            wait = self._wait_for(response, delays, repeatable)
            if wait is None:
                if response.status in TRANSIENT and not repeatable and method.upper() not in READS:
                    raise SubmitOutcomeUnknownError(
                        f"{self.engine} answered HTTP {response.status} to {method} {redact_credentials(url)}, "
                        "which may or may not have taken effect")
                return response
            self._wait(wait)

    def _wait_for(self, response: Response, delays: Any, repeatable: bool) -> float | None:
        """Seconds to wait before sending ``response``'s request again; None keeps this answer."""
        now = self.clock()
        asked = self.rate_limit(response, now) if self.rate_limit else None
        if asked is None and response.status == 429:
            asked = response.retry_after(now)
            if asked is None:
                asked = next(delays, None)
                return asked
        if asked is not None:  # waited for, but still one of the tries ``delays`` bounds
            return asked if asked <= self.max_wait and next(delays, None) is not None else None
        if response.status in TRANSIENT and repeatable:
            return next(delays, None)
        return None

    def _once(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]) -> Response:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        context = self._ssl(url)
        handlers: list[Any] = [_SameOriginCredentials()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        try:
            with urllib.request.build_opener(*handlers).open(request, timeout=self.timeout) as answer:
                return _response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as err:
            return _response(err.code, err.headers, err.read())
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            # Refused, or the host name did not resolve: the request never left this machine.
            never_sent = isinstance(reason, (ConnectionRefusedError, socket.gaierror))
            raise Unanswered(str(reason) or type(err).__name__, sent=not never_sent) from None

    def _ssl(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("https:"):
            return None
        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)

    def _unreachable(self, method: str, url: str, reason: str, tries: int) -> str:
        return (f"cannot reach {self.engine} at {_origin(url)} ({reason}; {method} {_path(url)}, {tries} "
                f"tr{'y' if tries == 1 else 'ies'})")

    def _lost(self, method: str, url: str, reason: str, tries: int) -> str:
        return (f"{self.engine} did not answer {method} {_path(url)} at {_origin(url)} ({reason}; {tries} "
                f"tr{'y' if tries == 1 else 'ies'}): it may or may not have taken effect")


class _SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follow redirects as urllib does, but never carry credentials to another origin.

    GitHub answers a log download with a redirect to storage signed in its URL; the token must not go there.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@`` (urllib cannot send it) and the Basic header it stands for."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), f"Basic {base64.b64encode(pair).decode()}"


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return redact_credentials(f"{parts.scheme}://{parts.netloc}")


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path or "/"


def _response(status: int, headers: Any, raw: bytes) -> Response:
    lowered = {name.lower(): value for name, value in headers.items()} if headers else {}
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Response(status, lowered, body, raw)
