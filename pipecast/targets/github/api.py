"""GitHub's REST API, with the standard library only: dispatch a workflow, find its run, track it.

Rate limits (403/429 with ``x-ratelimit-*`` or ``retry-after`` headers), 5xx answers and dropped
connections are retried with backoff, within bounds. A request that must not be done twice (a dispatch:
GitHub gives it no idempotency key) is retried only when GitHub surely did not act on it (a refused
connection, a rate limit); when the outcome is unknown (a dropped connection, a timeout, a 5xx) the client
raises :class:`OutcomeUnknownError` and the caller asks GitHub what happened. Sleeping and the clock are
injectable so tests run fast. The token comes from the environment (``GITHUB_TOKEN``, ``GH_TOKEN``) or the
submit config and is sent only in the ``Authorization`` header: never logged, recorded or emitted.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from pipecast.errors import SubmitError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
TOKEN_ENV = ("GITHUB_TOKEN", "GH_TOKEN")


class OutcomeUnknownError(SubmitError):
    """GitHub may or may not have done a request that must not be repeated blindly."""


def _never_sent(err: BaseException) -> bool:
    """Whether a connection error means the request never reached GitHub (so it cannot have been done)."""
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


@dataclass
class Response:
    """An answer of the API: status, headers (lower-case names) and the decoded JSON body, if any."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class GitHubClient:
    """A small client for ``api_url`` (``https://api.github.com``, or ``https://HOST/api/v3`` on Enterprise).

    Attributes:
        api_url: The API's base URL.
        token: A token with ``actions: write`` (and ``contents: read``) on the repository.
        attempts: Tries per request before giving up on 5xx answers and dropped connections.
        backoff: Seconds before the first retry; doubled each time.
        max_wait: The longest a rate limit may make us wait, in seconds; longer is an error.
        timeout: Seconds one HTTP request may take.
        sleep: How to wait (tests pass a recorder).
        clock: Epoch seconds now (compared with ``x-ratelimit-reset``).
    """

    api_url: str
    token: str
    attempts: int = 5
    backoff: float = 1.0
    max_wait: float = 900.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    waits: list[float] = field(default_factory=list)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, ok: tuple[int, ...] = (200,),
                accept: str = "application/vnd.github+json", repeatable: bool = True) -> Response:
        """Send one request (retried as the module says); raise SubmitError unless the status is in ``ok``.

        ``repeatable=False``: a dropped connection, a timeout or a 5xx answer raises
        :class:`OutcomeUnknownError` instead of sending the request again.
        """
        url = self.api_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query, safe=">=:")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": accept, "X-GitHub-Api-Version": API_VERSION,
                   "Authorization": f"Bearer {self.token}", "User-Agent": "pipecast"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._send(urllib.request.Request(url, data=data, headers=headers, method=method))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if not repeatable and not _never_sent(err):
                    raise OutcomeUnknownError(f"no answer from GitHub to {method} {path}: {err}") from None
                if attempt == self.attempts:
                    raise SubmitError(f"cannot reach GitHub at {self.api_url!r} ({method} {path}): {err}") from None
                self._wait(delay)
                delay *= 2
                continue
            if response.status in ok:
                return response
            wait = self._rate_limit_wait(response)
            if wait is not None:
                if wait > self.max_wait:
                    raise SubmitError(f"GitHub's rate limit for this token resets in {wait:.0f}s, longer than the "
                                      f"{self.max_wait:.0f}s pipecast waits ({method} {path}); try again later")
                self._wait(wait)
                continue
            if response.status >= 500 and not repeatable:
                raise OutcomeUnknownError(_explain(method, path, response))
            if response.status >= 500 and attempt < self.attempts:
                self._wait(delay)
                delay *= 2
                continue
            raise SubmitError(_explain(method, path, response))
        raise SubmitError(f"GitHub kept refusing {method} {path} (rate limited or failing) after "
                          f"{self.attempts} tries")

    def _send(self, request: urllib.request.Request) -> Response:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return _response(answer.status, dict(answer.headers.items()), answer.read())
        except urllib.error.HTTPError as err:
            return _response(err.code, dict(err.headers.items()), err.read())

    def _rate_limit_wait(self, response: Response) -> float | None:
        """Seconds to wait before retrying a rate-limited answer, as GitHub documents; None if not one."""
        if response.status not in (403, 429):
            return None
        headers = response.headers
        if "retry-after" in headers:
            try:
                return max(float(headers["retry-after"]), 0.0)
            except ValueError:
                return 60.0
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            try:
                return max(float(headers["x-ratelimit-reset"]) - self.clock(), 0.0) + 1.0
            except ValueError:
                return 60.0
        if response.status == 429:
            return 60.0  # a secondary limit without headers: GitHub says to wait at least a minute
        return None  # a 403 that is not a rate limit: a permission problem, reported as is

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)


def _response(status: int, headers: Mapping[str, str], raw: bytes) -> Response:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Response(status, {k.lower(): v for k, v in headers.items()}, body)


def _explain(method: str, path: str, response: Response) -> str:
    message = response.body.get("message") if isinstance(response.body, dict) else response.body
    hint = {
        401: "the token is missing, wrong or expired",
        403: "the token lacks a permission (dispatching needs `actions: write`)",
        404: "the repository or workflow does not exist, or the token cannot see it",
        422: "GitHub rejected the request (is the workflow on that ref, with a workflow_dispatch trigger?)",
    }.get(response.status, "")
    return f"GitHub answered {response.status} to {method} {path}: {message!r}" + (f"; {hint}" if hint else "")


def token_from(config: Mapping[str, Any]) -> str:
    """The token: config ``token``, else ``$GITHUB_TOKEN``, else ``$GH_TOKEN``."""
    token = config.get("token") or next((os.environ[k] for k in TOKEN_ENV if os.environ.get(k)), None)
    if not token:
        raise SubmitError("no GitHub token: set GITHUB_TOKEN (or GH_TOKEN) to a token with `actions: write` on "
                          "the repository")
    return str(token)


def server_date(response: Response, fallback: float) -> float:
    """The server's clock from the ``Date`` header (so our own clock's skew does not matter)."""
    try:
        return parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return fallback


def web_to_api(html_url: str) -> tuple[str, str, str]:
    """``(api_url, "owner/repo", run id)`` from a run's page URL (github.com or an Enterprise host)."""
    parsed = urllib.parse.urlsplit(html_url)
    parts = parsed.path.strip("/").split("/")
    if len(parts) < 5 or parts[2:4] != ["actions", "runs"]:
        raise SubmitError(f"{html_url!r} is not a GitHub Actions run URL (…/OWNER/REPO/actions/runs/ID)")
    host = parsed.netloc
    api = DEFAULT_API_URL if host in ("github.com", "www.github.com") else f"{parsed.scheme}://{host}/api/v3"
    return api, f"{parts[0]}/{parts[1]}", parts[4]
