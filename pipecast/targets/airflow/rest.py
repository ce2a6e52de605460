"""A small client of Airflow's stable REST API, on the standard library: v2 (Airflow 3) or v1 (Airflow 2).

The version is asked for (``-c api_version=1|2``) or found out: Airflow 2 answers 404 at ``/api/v2/version``.
Every request pipecast sends is safe to repeat (reads, a PATCH to a state, and a trigger with a fixed run id that
Airflow answers 409 when the run exists), so a dropped connection, a timeout, a 5xx answer and a 429 (after its
``Retry-After``, as the GitHub client does) are tried again, a bounded number of times with backoff.
Authentication, in this order: a bearer token (config ``token`` or ``$PIPECAST_AIRFLOW_TOKEN``), else a
username and password — on v2 exchanged for a token at ``POST /auth/token`` (what Airflow 3's simple and FAB
auth managers serve), on v1 sent as HTTP Basic (Airflow 2's ``basic_auth`` API backend) — else no
credentials. Credentials are read from the config or the environment and are never stored or logged.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from pipecast.errors import SubmitError

API_PREFIXES = {1: "/api/v1", 2: "/api/v2"}
TRANSIENT = (500, 502, 503, 504)
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds before each new try: five tries in about 15 s
MAX_RETRY_AFTER = 300.0  # seconds: the longest a 429's Retry-After may make pipecast wait


class Unanswered(SubmitError):
    """Airflow did not answer (refused or dropped connection, timeout) after every try: whether a request
    that changes something took effect is unknown."""


@dataclass
class Response:
    """An answer of the API: its status, its JSON body (None if not JSON) and its headers (lower-case names)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def server_time(self) -> float | None:
        """The server's clock (the ``Date`` header) as a POSIX time, if it sent one."""
        date = self.headers.get("date")
        return parsedate_to_datetime(date).timestamp() if date else None

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


@dataclass
class AirflowApi:
    """Calls to one Airflow deployment's REST API.

    Attributes:
        base_url: The deployment's URL (the UI and, by default, the API live under it).
        api_url: Where the REST API lives, if not at ``base_url``.
        token: A bearer token, if one is given.
        username: User to log in as when no token is given.
        password: That user's password.
        timeout: Seconds to wait for each HTTP answer.
        verify: TLS verification: True, False, or the path of a CA bundle.
        api_version: 2 (Airflow 3) or 1 (Airflow 2); None until found out by the first request.
        retry_delays: Seconds to wait before each new try of a request that got no usable answer.
        sleep: How to wait (tests pass a recorder).
        clock: POSIX seconds now (for a ``Retry-After`` given as a date).
    """

    base_url: str
    api_url: str | None = None
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    verify: bool | str = True
    api_version: int | None = None
    retry_delays: tuple[float, ...] = field(default_factory=lambda: RETRY_DELAYS)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AirflowApi:
        """Read the connection from ``config`` (``-c key=value``), falling back to the environment."""
        base = config.get("base_url") or config.get("url") or os.environ.get("PIPECAST_AIRFLOW_URL")
        if not base:
            raise SubmitError("no Airflow URL: pass -c base_url=https://airflow.example.com (or set "
                              "PIPECAST_AIRFLOW_URL)")
        env = os.environ
        verify = config.get("verify", True)
        if isinstance(verify, str) and verify.lower() in ("true", "false"):
            verify = verify.lower() == "true"
        version = config.get("api_version")
        if version is not None and str(version) not in ("1", "2"):
            raise SubmitError(f"api_version must be 1 (Airflow 2) or 2 (Airflow 3), not {version!r}")
        return cls(
            base_url=str(base).rstrip("/"),
            api_url=str(config["api_url"]).rstrip("/") if config.get("api_url") else None,
            token=config.get("token") or env.get("PIPECAST_AIRFLOW_TOKEN"),
            username=config.get("username") or env.get("PIPECAST_AIRFLOW_USERNAME") or env.get("AIRFLOW_USERNAME"),
            password=config.get("password") or env.get("PIPECAST_AIRFLOW_PASSWORD") or env.get("AIRFLOW_PASSWORD"),
            timeout=float(config.get("request_timeout", 30.0)),
            verify=verify,
            api_version=int(version) if version is not None else None,
        )

    @property
    def root(self) -> str:
        """The API's root URL (``/api/v2`` or ``/api/v1`` is appended to paths)."""
        return self.api_url or self.base_url

    @property
    def version(self) -> int:
        """The REST API's major version: 2 on Airflow 3, 1 on Airflow 2."""
        if self.api_version is None:
            # /version needs no credentials on either; only Airflow 2 answers 404 for v2.
            answer = self._call("GET", f"{self.root}{API_PREFIXES[2]}/version", None, authenticated=False)
            self.api_version = 1 if answer.status == 404 else 2
        return self.api_version

    def run_url(self, dag_id: str, run_id: str) -> str:
        """The run's page in the Airflow UI: ``<base>/dags/<dag_id>/runs/<run_id>`` on Airflow 3, the grid view
        with the run selected on Airflow 2."""
        if self.version == 1:
            return f"{self.base_url}/dags/{quote_segment(dag_id)}/grid?dag_run_id={quote_segment(run_id)}"
        return f"{self.base_url}/dags/{quote_segment(dag_id)}/runs/{quote_segment(run_id)}"

    def get(self, path: str, **query: Any) -> Response:
        return self.request("GET", path, query=query)

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                accept: tuple[int, ...] = ()) -> Response:
        """Call ``/api/v<version> + path``; answers >= 400 raise SubmitError unless listed in ``accept``."""
        url = f"{self.root}{API_PREFIXES[self.version]}{path}"
        if query:
            url += "?" + urllib.parse.urlencode([(k, v) for k, values in query.items() if values is not None
                                                 for v in (values if isinstance(values, list) else [values])])
        response = self._call(method, url, body)
        if response.status == 401 and self.username and self.password and self.version == 2:
            self.token = None  # expired: log in again once
            response = self._call(method, url, body)
        if response.status >= 400 and response.status not in accept:
            raise SubmitError(self._failure(method, path, response))
        return response

    def _call(self, method: str, url: str, body: Any, *, authenticated: bool = True) -> Response:
        """Send one request; try it again (see the module docstring) until it gets an answer worth keeping."""
        delays = iter(self.retry_delays)
        while True:
            headers = self._auth_header() if authenticated else {}
            try:
                response = self._send(method, url, body, headers)
            except Unanswered:
                delay = next(delays, None)
                if delay is None:
                    raise
                self.sleep(delay)
                continue
            wait = self._retry_wait(response, delays)
            if wait is None:
                return response
            self.sleep(wait)

    def _retry_wait(self, response: Response, delays: Iterator[float]) -> float | None:
        """Seconds to wait before trying ``response``'s request again; None: keep this answer."""
        if response.status == 429:
            asked = response.retry_after(self.clock())
            delay = next(delays, None)
            if delay is None or (asked is not None and asked > MAX_RETRY_AFTER):
                return None  # reported as the 429 it is
            return delay if asked is None else asked
        if response.status in TRANSIENT:  # a busy database or a restarting server
            return next(delays, None)
        return None

    def _auth_header(self) -> dict[str, str]:
        if not self.token and self.username and self.password:
            if self.version == 1:
                pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
                return {"Authorization": f"Basic {pair}"}
            self.token = self._login()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _login(self) -> str:
        url = f"{self.root}/auth/token"
        response = self._call("POST", url, {"username": self.username, "password": self.password},
                              authenticated=False)
        if response.status >= 400 or not isinstance(response.body, dict) or "access_token" not in response.body:
            raise SubmitError(f"Airflow at {self.root!r} refused the login of user {self.username!r} "
                              f"(HTTP {response.status}); check the username and password "
                              "(-c username=..., $AIRFLOW_PASSWORD) or pass a token ($PIPECAST_AIRFLOW_TOKEN)")
        return str(response.body["access_token"])

    def _send(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/json", **({"Content-Type": "application/json"} if data else {}), **headers,
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl()) as answer:
                return Response(answer.status, _json(answer.read()), _lower(answer.headers))
        except urllib.error.HTTPError as err:
            return Response(err.code, _json(err.read()), _lower(err.headers))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            # Refused, reset or dropped before the whole answer came (RemoteDisconnected, IncompleteRead), or
            # a timeout: the request may or may not have reached Airflow.
            reason = getattr(err, "reason", None) or str(err) or type(err).__name__
            raise Unanswered(
                f"cannot reach Airflow at {self.root!r} ({reason}; {len(self.retry_delays) + 1} tries); check that "
                "its API server is running and that base_url points at it (the REST API is served at "
                "<base_url>/api/v2, or /api/v1 on Airflow 2)"
            ) from None

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.root.startswith("https:"):
            return None
        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)

    def _failure(self, method: str, path: str, response: Response) -> str:
        detail = response.body.get("detail") if isinstance(response.body, dict) else response.body
        if response.status in (401, 403):
            backend = (" and that Airflow 2's [api] auth_backends includes airflow.api.auth.backend.basic_auth"
                       if self.api_version == 1 else "")
            return (f"Airflow at {self.root!r} answered HTTP {response.status} to {method} {path}: {detail}; "
                    "check the credentials ($PIPECAST_AIRFLOW_TOKEN, or AIRFLOW_USERNAME/AIRFLOW_PASSWORD), "
                    f"that the user may trigger DAGs{backend}")
        if response.status == 429:
            return (f"Airflow at {self.root!r} (or a proxy in front of it) kept answering HTTP 429 Too Many Requests "
                    f"to {method} {path} after {len(self.retry_delays) + 1} tries, or asked to wait longer than "
                    f"{MAX_RETRY_AFTER:g}s: {detail}; try again later")
        return f"Airflow at {self.root!r} answered HTTP {response.status} to {method} {path}: {detail}"


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()} if headers else {}


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", "replace")


def quote_segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")
