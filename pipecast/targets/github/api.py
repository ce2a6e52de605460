"""GitHub's REST API through pipecast's HTTP client: the token, GitHub's rate limits, errors that say the fix.

:class:`~pipecast.http.HttpClient` retries what is safe to retry and turns a write whose answer was lost into
:class:`~pipecast.errors.SubmitOutcomeUnknownError`; this module adds what is GitHub's own: its headers, its
rate-limit answers (403 or 429 with ``x-ratelimit-*`` or ``retry-after``, which :func:`rate_limit_wait`
reads as GitHub documents them) and the meaning of its error statuses. The token comes from the
environment (``GITHUB_TOKEN``, ``GH_TOKEN``) or the submit config and is sent only in the ``Authorization``
header: never logged, recorded or emitted.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.errors import SubmitError
from pipecast.http import HttpClient, Response

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
TOKEN_ENV = ("GITHUB_TOKEN", "GH_TOKEN")
JSON = "application/vnd.github+json"
MAX_RATE_LIMIT_WAIT = 900.0  # seconds; a limit that resets later is an error telling the user to come back
SECONDARY_LIMIT_WAIT = 60.0  # GitHub: without headers, wait at least a minute after a secondary rate limit


def rate_limit_wait(response: Response, now: float) -> float | None:
    """Seconds a rate-limited answer asks to wait, as GitHub documents it ("Rate limits for the REST API").

    None when ``response`` is no rate limit (a 403 without these headers is a permission problem).
    """
    if response.status not in (403, 429):
        return None
    headers = response.headers
    if "retry-after" in headers:
        asked = response.retry_after(now)
        return SECONDARY_LIMIT_WAIT if asked is None else asked
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(float(headers["x-ratelimit-reset"]) - now, 0.0) + 1.0
        except ValueError:
            return SECONDARY_LIMIT_WAIT
    return SECONDARY_LIMIT_WAIT if response.status == 429 else None


@dataclass
class GitHubApi:
    """Requests to ``api_url`` (``https://api.github.com``, or ``https://HOST/api/v3`` on Enterprise Server).

    Attributes:
        api_url: The API's base URL.
        http: The client that sends them (its delays bound the tries; its sleep and clock are injectable).
    """

    api_url: str
    http: HttpClient

    @classmethod
    def connect(cls, api_url: str, token: str, *, backoff: float = 1.0, max_wait: float = MAX_RATE_LIMIT_WAIT,
                sleep: Callable[[float], None] = time.sleep) -> GitHubApi:
        """A client with the token; ``backoff`` seconds before the first retry, doubled each time (5 tries)."""
        http = HttpClient(
            "GitHub", headers={"Accept": JSON, "X-GitHub-Api-Version": API_VERSION,
                               "Authorization": f"Bearer {token}", "User-Agent": "pipecast"},
            delays=tuple(backoff * 2**n for n in range(4)), max_wait=max_wait, rate_limit=rate_limit_wait,
            sleep=sleep)
        return cls(api_url.rstrip("/"), http)

    @property
    def tries(self) -> int:
        """How many times one request may be sent."""
        return len(self.http.delays) + 1

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                ok: tuple[int, ...] = (200,), accept: str = JSON, repeatable: bool | None = None) -> Response:
        """Send one request; raise SubmitError (saying what to fix) unless the answer's status is in ``ok``.

        ``repeatable`` as :meth:`HttpClient.send` takes it (default: reads are); a write that is not repeatable
        and gets no answer raises SubmitOutcomeUnknownError.
        """
        response = self.http.send(method, self.api_url + path, body=body, query=query, headers={"Accept": accept},
                                  repeatable=repeatable)
        if response.status in ok:
            return response
        wait = rate_limit_wait(response, self.http.clock())
        if wait is not None:
            raise SubmitError(f"GitHub's rate limit for this token resets in {wait:.0f}s, longer than the "
                              f"{self.http.max_wait:.0f}s pipecast waits ({method} {path}); try again later")
        raise SubmitError(_explain(method, path, response))


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


def web_to_api(html_url: str) -> tuple[str, str, str]:
    """``(api_url, "owner/repo", run id)`` from a run's page URL (github.com or an Enterprise host)."""
    parsed = urllib.parse.urlsplit(html_url)
    parts = parsed.path.strip("/").split("/")
    if len(parts) < 5 or parts[2:4] != ["actions", "runs"]:
        raise SubmitError(f"{html_url!r} is not a GitHub Actions run URL (…/OWNER/REPO/actions/runs/ID)")
    host = parsed.netloc
    api = DEFAULT_API_URL if host in ("github.com", "www.github.com") else f"{parsed.scheme}://{host}/api/v3"
    return api, f"{parts[0]}/{parts[1]}", parts[4]


def web_url(api_url: str, repo: str, run: Any) -> str:
    """A run's page from the API's URL (``api.github.com`` → ``github.com``; Enterprise: the same host)."""
    parsed = urllib.parse.urlsplit(api_url)
    host = "github.com" if parsed.netloc == "api.github.com" else parsed.netloc
    return f"{parsed.scheme}://{host}/{repo}/actions/runs/{run}"
