"""A small client of Airflow's stable REST API: v2 (Airflow 3) or v1 (Airflow 2).

It is built on :class:`pipecast.http.HttpClient`.

The version is asked for (``-c api_version=1|2``) or found out: Airflow 2 answers 404 at ``/api/v2/version``.
Every request pipecast sends is safe to repeat (reads, a PATCH to a state, a re-parse request, a login, and a
trigger with a fixed run id that Airflow answers 409 when the run exists), so each is sent as ``repeatable``:
the shared client tries again after a lost answer, a 5xx and a 429 (after its ``Retry-After``), a bounded
number of times with backoff.
Authentication, in this order: a bearer token (config ``token`` or ``$PIPECAST_AIRFLOW_TOKEN``), else a
username and password — on v2 exchanged for a token at ``POST /auth/token`` (what Airflow 3's simple and FAB
auth managers serve) and exchanged again once on a 401, on v1 sent as HTTP Basic (Airflow 2's ``basic_auth``
API backend) — else no credentials. Credentials are read from the config or the environment and are never
stored or logged.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipecast.errors import SubmitError
from pipecast.http import DEFAULT_DELAYS, HttpClient, Response
from pipecast.targets.airflow.cloud import AUTH_MODES, GoogleToken, MwaaAccess, mwaa_api_version
from pipecast.targets.settings import Duration, SettingValueError, convert

API_PREFIXES = {1: "/api/v1", 2: "/api/v2"}
RETRY_DELAYS = DEFAULT_DELAYS  # seconds before each new try: five tries in about 15 s
MAX_RETRY_AFTER = 300.0  # seconds: the longest a 429's Retry-After may make pipecast wait
_REACH_FIX = ("check that its API server is running and that base_url points at it (the REST API is served at "
              "<base_url>/api/v2, or /api/v1 on Airflow 2)")


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
        google: Cloud Composer: Google access tokens, sent with every request (``-c auth=composer``).
        mwaa: Amazon MWAA: requests go through its ``InvokeRestApi`` instead of HTTP (``-c auth=mwaa``).
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
    google: GoogleToken | None = field(default=None, repr=False)
    mwaa: MwaaAccess | None = field(default=None, repr=False)
    http: HttpClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.http = HttpClient("Airflow", timeout=self.timeout, verify=self.verify, delays=tuple(self.retry_delays),
                               max_wait=MAX_RETRY_AFTER, sleep=self.sleep, clock=self.clock)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AirflowApi:
        """Read the connection from ``config`` (``-c key=value``), falling back to the environment."""
        auth = str(config.get("auth") or "airflow")
        if auth not in AUTH_MODES:
            raise SubmitError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
        base = config.get("base_url") or config.get("url") or os.environ.get("PIPECAST_AIRFLOW_URL")
        given = sorted(key for key in ("token", "username", "password") if config.get(key))
        if auth != "airflow" and given:
            raise SubmitError(f"-c auth={auth} authenticates with your cloud identity; drop -c {', '.join(given)}")
        if auth == "mwaa":
            return cls._mwaa(config, base)
        if not base:
            raise SubmitError("no Airflow URL: pass -c base_url=https://airflow.example.com (or set "
                              "PIPECAST_AIRFLOW_URL)")
        env = os.environ if auth == "airflow" else {}  # Airflow's own credentials only without a cloud's
        version = config.get("api_version")
        if version is not None and config_value(config, "api_version", int, None) not in (1, 2):
            raise SubmitError(f"api_version must be 1 (Airflow 2) or 2 (Airflow 3), not {version!r}")
        return cls(
            base_url=str(base).rstrip("/"),
            api_url=str(config["api_url"]).rstrip("/") if config.get("api_url") else None,
            token=config.get("token") or env.get("PIPECAST_AIRFLOW_TOKEN"),
            username=config.get("username") or env.get("PIPECAST_AIRFLOW_USERNAME") or env.get("AIRFLOW_USERNAME"),
            password=config.get("password") or env.get("PIPECAST_AIRFLOW_PASSWORD") or env.get("AIRFLOW_PASSWORD"),
            timeout=config_value(config, "request_timeout", Duration, 30.0),
            verify=config_value(config, "verify", bool | str, True),
            api_version=config_value(config, "api_version", int, None),
            google=GoogleToken() if auth == "composer" else None,
        )

    @classmethod
    def _mwaa(cls, config: Mapping[str, Any], base: str | None) -> AirflowApi:
        """An MWAA environment's API: its UI host and Airflow version from ``GetEnvironment``."""
        if not config.get("environment"):
            raise SubmitError("-c auth=mwaa needs the environment's name: -c environment=NAME (and -c region=...)")
        timeout = config_value(config, "request_timeout", Duration, 30.0)
        mwaa = MwaaAccess(str(config["environment"]), config.get("region"), config.get("endpoint_url"), timeout)
        environment = mwaa.describe()
        host = str(environment.get("WebserverUrl") or "")  # the UI's host name (a URL kept as it is)
        return cls(base_url=str(base or (host if "://" in host else f"https://{host}")).rstrip("/"), mwaa=mwaa,
                   timeout=timeout, api_version=mwaa_api_version(environment.get("AirflowVersion", "")))

    @property
    def auth(self) -> str:
        """How requests are authenticated: ``airflow`` (token, user or none), ``composer`` or ``mwaa``."""
        return "mwaa" if self.mwaa else "composer" if self.google else "airflow"

    @property
    def root(self) -> str:
        """The API's root URL (``/api/v2`` or ``/api/v1`` is appended to paths)."""
        return self.api_url or self.base_url

    @property
    def version(self) -> int:
        """The REST API's major version: 2 on Airflow 3, 1 on Airflow 2."""
        if self.api_version is None:
            # /version needs no credentials on either; only Airflow 2 answers 404 for v2.
            url = f"{self.root}{API_PREFIXES[2]}/version"
            answer = self._send("GET", url, authenticated=False)
            if answer.status == 401 and self.google is not None:  # Composer's proxy refused the token: a new one
                answer = self._send("GET", url, authenticated=False, refresh=True)
            self.api_version = 1 if answer.status == 404 else 2
        return self.api_version

    def run_url(self, dag_id: str, run_id: str) -> str:
        """The run's page in the Airflow UI.

        ``<base>/dags/<dag_id>/runs/<run_id>`` on Airflow 3, the grid view with the run selected on Airflow 2.
        """
        if self.version == 1:
            return f"{self.base_url}/dags/{quote_segment(dag_id)}/grid?dag_run_id={quote_segment(run_id)}"
        return f"{self.base_url}/dags/{quote_segment(dag_id)}/runs/{quote_segment(run_id)}"

    def get(self, path: str, **query: Any) -> Response:
        """``GET /api/v<version> + path`` with ``query``; an answer >= 400 raises SubmitError."""
        return self.request("GET", path, query=query)

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                accept: tuple[int, ...] = ()) -> Response:
        """Call ``/api/v<version> + path``; answers >= 400 raise SubmitError unless listed in ``accept``."""
        if self.mwaa is not None:  # MWAA's InvokeRestApi takes the path under /api/v1 (or /api/v2)
            response = self.mwaa.send(method, path, body, query)
            if response.status >= 400 and response.status not in accept:
                raise SubmitError(self._failure(method, path, response))
            return response
        url = f"{self.root}{API_PREFIXES[self.version]}{path}"
        response = self._send(method, url, body, query)
        if response.status == 401 and self.google is not None:  # revoked or expired early: a new token, once
            response = self._send(method, url, body, query, refresh=True)
        elif response.status == 401 and self.username and self.password and self.version == 2:
            self.token = None  # expired: log in again once
            response = self._send(method, url, body, query)
        if response.status >= 400 and response.status not in accept:
            raise SubmitError(self._failure(method, path, response))
        return response

    def _send(self, method: str, url: str, body: Any = None, query: Mapping[str, Any] | None = None, *,
              authenticated: bool = True, refresh: bool = False) -> Response:
        """One request through the shared client (every request of this API is safe to repeat).

        Composer's token goes with every request: its proxy lets nothing through without one.
        """
        headers = self.google.header(refresh) if self.google is not None else {}
        if authenticated:
            headers.update(self._auth_header())
        try:
            return self.http.send(method, url, body=body, query=query, headers=headers, repeatable=True)
        except SubmitError as err:  # no answer after every try: the same kind of error, saying what to check
            raise type(err)(f"{err}; {_REACH_FIX}") from None

    def _auth_header(self) -> dict[str, str]:
        if not self.token and self.username and self.password:
            if self.version == 1:
                pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
                return {"Authorization": f"Basic {pair}"}
            self.token = self._login()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _login(self) -> str:
        response = self._send("POST", f"{self.root}/auth/token", {"username": self.username,
                                                                 "password": self.password}, authenticated=False)
        if response.status >= 400 or not isinstance(response.body, dict) or "access_token" not in response.body:
            raise SubmitError(f"Airflow at {self.root!r} refused the login of user {self.username!r} "
                              f"(HTTP {response.status}); check the username and password "
                              "(-c username=..., $AIRFLOW_PASSWORD) or pass a token ($PIPECAST_AIRFLOW_TOKEN)")
        return str(response.body["access_token"])

    def _failure(self, method: str, path: str, response: Response) -> str:
        detail = response.body.get("detail") if isinstance(response.body, dict) else response.body
        if response.status in (401, 403) and self.auth != "airflow":
            who = ("the Google identity of Application Default Credentials needs the Composer User role (and an "
                   "Airflow role that may trigger DAGs)" if self.google else
                   "the IAM identity needs airflow:InvokeRestApi, and its Airflow role must allow this")
            return f"Airflow at {self.root!r} answered HTTP {response.status} to {method} {path}: {detail}; {who}"
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


def config_value(config: Mapping[str, Any], key: str, kind: Any, default: Any) -> Any:
    """``config[key]`` as a value of ``kind`` (``-c`` gives JSON or text), or ``default`` when it is not given."""
    raw = config.get(key)
    if raw is None:
        return default
    try:
        return convert(kind, raw)
    except SettingValueError as err:
        raise SubmitError(f"config {key!r} {err}, got {raw!r}") from None


def quote_segment(text: str) -> str:
    """``text`` as one path segment of a URL (``/`` and every other reserved character escaped)."""
    return urllib.parse.quote(text, safe="")
