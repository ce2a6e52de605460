"""Local servers answering as the managed Airflows' access layers are documented to, for the auth tests.

* :class:`FakeGoogleToken`: Google's OAuth 2.0 token endpoint for service accounts ("Using OAuth 2.0 for Server
  to Server Applications"; RFC 7523): ``POST`` form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and a signed JWT ``assertion`` → ``{"access_token", "expires_in", "token_type": "Bearer"}``; a bad signature is
  ``400 {"error": "invalid_grant"}``. A service account key file whose ``token_uri`` is this server makes
  google-auth's Application Default Credentials use it (google-auth ignores ``token_uri`` in ``authorized_user``
  files, so those cannot be pointed here).
* :class:`FakeMwaa`: Amazon MWAA's API (AWS API Reference, Amazon MWAA: ``GetEnvironment`` ``GET
  /environments/{Name}``; ``InvokeRestApi`` ``POST /restapi/{Name}`` with JSON ``Path``, ``Method``,
  ``QueryParameters``, ``Body`` → ``{"RestApiStatusCode", "RestApiResponse"}``; an Airflow 4xx is HTTP 400
  ``RestApiClientException`` and a 5xx ``RestApiServerException``, both carrying ``RestApiStatusCode`` and
  ``RestApiResponse``; an unknown environment 404 ``ResourceNotFoundException``; shapes as in botocore's
  ``mwaa/2020-07-01/service-2.json``). Requests must be SigV4-signed for service ``airflow`` in the region.
  ``InvokeRestApi`` calls the environment's Airflow (a :mod:`fake_airflow` server, API v2 for Airflow 3), as
  MWAA calls its web server. ``lose`` names calls whose answer is lost after Airflow did them (a dropped
  connection), as a network between the client and MWAA can.

Both bind 127.0.0.1 only and record what they receive.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                answer = owner.handle(self.command, self.path, dict(self.headers), raw)
                if answer is None:  # done, and the answer lost: the connection closes with nothing sent
                    self.close_connection = True
                    return
                status, body, headers = answer
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle  # noqa: N815

        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeGoogleToken(_Server):
    """Issues ``token-1``, ``token-2``, ... to one service account; records each grant's form and claims.

    The grant is Google's server-to-server flow (RFC 7523): ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
    and an RS256 ``assertion`` whose ``iss`` is the account's email, ``aud`` Google's token URI and ``scope`` the
    scopes asked for; a signature that does not verify with the account's public key, or a disabled account
    (``revoked``), is ``400 {"error": "invalid_grant"}``.
    """

    def __init__(self, client_email: str, public_key: Any, expires_in: int = 3599) -> None:
        super().__init__()
        self.client_email, self.public_key, self.expires_in = client_email, public_key, expires_in
        self.issued: list[str] = []
        self.revoked = False

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        claims = _verified_claims(form.get("assertion", ""), self.public_key)
        with self.lock:
            self.requests.append({"method": method, "path": path, "form": form, "claims": claims})
            if method != "POST" or path != "/token" or form.get("grant_type") != JWT_BEARER:
                return 400, {"error": "unsupported_grant_type"}, {}
            if claims is None or self.revoked or claims.get("iss") != self.client_email or \
                    claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}
            token = f"token-{len(self.issued) + 1}"
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}, {}


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # the assertion's aud, wherever it is posted


def _verified_claims(assertion: str, public_key: Any) -> dict[str, Any] | None:
    """The claims of an RS256 JWT whose signature verifies with ``public_key``, else None."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    try:
        header, payload, signature = assertion.split(".")
        if json.loads(decode(header)).get("alg") != "RS256":
            return None
        public_key.verify(decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        claims: dict[str, Any] = json.loads(decode(payload))
        return claims
    except (ValueError, InvalidSignature):
        return None


class FakeMwaa(_Server):
    """One MWAA environment, ``name`` in ``region``, whose Airflow (3.x, API v2) is served at ``airflow_url``."""

    def __init__(self, name: str, region: str, airflow_url: str, airflow_version: str = "3.0.6") -> None:
        super().__init__()
        self.name, self.region, self.airflow_url, self.airflow_version = name, region, airflow_url, airflow_version
        self.lose: list[tuple[str, str]] = []  # (Method, Path) of InvokeRestApi calls to do, then not answer
        self.webserver = f"0123abcd-4567-89ef-0123-456789abcdef.c2.airflow.{region}.amazonaws.com"

    @staticmethod
    def _error(status: int, kind: str, message: str, **fields: Any) -> tuple[int, Any, dict[str, str]]:
        return status, {"message": message, **fields}, {"x-amzn-ErrorType": kind}

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body,
                                  "authorization": headers.get("Authorization", "")})
        credential = headers.get("Authorization", "")
        if not credential.startswith("AWS4-HMAC-SHA256 Credential=") or \
                f"/{self.region}/airflow/aws4_request" not in credential:
            return self._error(403, "AccessDeniedException", "Missing or invalid SigV4 signature")
        kind, _, name = path.strip("/").partition("/")
        if name != self.name:
            return self._error(404, "ResourceNotFoundException", f"Environment {name} not found")
        if method == "GET" and kind == "environments":
            return 200, {"Environment": {
                "Name": self.name, "Arn": f"arn:aws:airflow:{self.region}:123456789012:environment/{self.name}",
                "AirflowVersion": self.airflow_version, "Status": "AVAILABLE", "WebserverUrl": self.webserver,
                "WebserverAccessMode": "PUBLIC_ONLY"}}, {}
        if method == "POST" and kind == "restapi":
            answer = self._invoke(body or {})
            call = (str((body or {}).get("Method")), str((body or {}).get("Path")))
            with self.lock:
                if call in self.lose:
                    self.lose.remove(call)
                    return None
            return answer
        return self._error(400, "ValidationException", f"{method} {path} is not an MWAA operation")

    def _invoke(self, call: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if not str(call.get("Path", "")).startswith("/") or call.get("Method") not in (
                "GET", "PUT", "POST", "PATCH", "DELETE"):
            return self._error(400, "ValidationException", "Path and Method are required")
        prefix = "/api/v2" if self.airflow_version.startswith("3") else "/api/v1"
        url = f"{self.airflow_url}{prefix}{call['Path']}"
        query = call.get("QueryParameters") or {}
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if call.get("Body") is None else json.dumps(call["Body"]).encode()
        request = urllib.request.Request(url, data=data, method=call["Method"],
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read()
        response = json.loads(text) if text else None
        if status >= 500:
            return self._error(400, "RestApiServerException", "Airflow answered a server error",
                               RestApiStatusCode=status, RestApiResponse=response)
        if status >= 400:
            return self._error(400, "RestApiClientException", "Airflow answered a client error",
                               RestApiStatusCode=status, RestApiResponse=response)
        return 200, {"RestApiStatusCode": status, "RestApiResponse": response}, {}
