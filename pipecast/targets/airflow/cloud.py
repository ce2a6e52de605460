"""Reaching a managed Airflow's REST API: Cloud Composer (Google ADC) and Amazon MWAA (``InvokeRestApi``).

``-c auth=composer``: the API of a Composer 2/3 environment is served at its ``airflowUri`` and wants a Google
OAuth2 access token (``Authorization: Bearer``) for an identity with access to the environment. The token
comes from Application Default Credentials (``google.auth.default``, scope ``cloud-platform``): a service
account key in ``$GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, or the metadata
server of the VM or pod. It is refreshed when it expires, and once more on a 401.

``-c auth=mwaa``: MWAA's ``InvokeRestApi`` (``POST /restapi/{Name}`` with ``Path``, ``Method``,
``QueryParameters`` and ``Body``; AWS API Reference, Amazon MWAA, InvokeRestApi) calls the environment's
Airflow REST API with the caller's IAM identity (``airflow:InvokeRestApi``), through boto3's credential chain;
Airflow's answer comes back as ``RestApiStatusCode`` and ``RestApiResponse``, and an Airflow error as a
``RestApiClientException``/``RestApiServerException`` carrying the same two fields. ``GetEnvironment`` gives
the UI's host (``WebserverUrl``) and the Airflow version (so the API version).

Neither library is imported until a submit asks for it; no credential is stored or logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.http import Response

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AUTH_MODES = ("airflow", "composer", "mwaa")


class GoogleToken:
    """Bearer headers from Application Default Credentials, refreshed when expired (or when asked to)."""

    def __init__(self) -> None:
        self._credentials: Any = None

    def header(self, refresh: bool = False) -> dict[str, str]:
        """``{"Authorization": "Bearer <access token>"}``; ``refresh`` gets a new token even if this one is valid."""
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.requests
        except ImportError:
            raise SubmitError("-c auth=composer needs google-auth: pip install 'pipecast[composer]'") from None
        try:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=[SCOPE])
            if refresh or not self._credentials.valid:
                self._credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.DefaultCredentialsError as err:
            raise SubmitError(f"no Google credentials for Cloud Composer: {err}; run `gcloud auth "
                              "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                              "account key, or run where the metadata server gives one") from None
        except google.auth.exceptions.GoogleAuthError as err:  # RefreshError, TransportError
            raise SubmitError(f"cannot get a Google access token for Cloud Composer: {err}; check the "
                              "credentials of Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, "
                              "`gcloud auth application-default login`)") from None
        return {"Authorization": f"Bearer {self._credentials.token}"}


class MwaaAccess:
    """One MWAA environment's Airflow REST API through ``InvokeRestApi``.

    Args:
        environment: The environment's name.
        region: Its AWS region (None: boto3's default, ``$AWS_REGION``).
        endpoint_url: Another MWAA endpoint (a VPC endpoint, a local test server); host prefixes are then not
            added to it.
        timeout: Seconds to wait to connect, and for each answer.
    """

    def __init__(self, environment: str, region: str | None = None, endpoint_url: str | None = None,
                 timeout: float = 30.0) -> None:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError
        except ImportError:
            raise SubmitError("-c auth=mwaa needs boto3: pip install 'pipecast[mwaa]'") from None
        self.environment = environment
        self.endpoint_url = endpoint_url
        config = Config(inject_host_prefix=endpoint_url is None, retries={"mode": "standard"},
                        connect_timeout=timeout, read_timeout=timeout)
        try:
            self.client = boto3.session.Session().client("mwaa", region_name=region, endpoint_url=endpoint_url,
                                                         config=config)
        except BotoCoreError as err:  # NoRegionError and kin: configuration, not a request
            raise SubmitError(f"cannot set up the MWAA client: {err}; pass -c region=REGION") from None

    def describe(self) -> dict[str, Any]:
        """The environment (``GetEnvironment``): ``WebserverUrl``, ``AirflowVersion``, ``Status``..."""
        environment: dict[str, Any] = self._call("GetEnvironment", lambda: self.client.get_environment(
            Name=self.environment))["Environment"]
        return environment

    def send(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Response:
        """Airflow's answer to ``method path`` (relative to ``/api/v1`` or ``/api/v2``), whatever its status."""
        arguments: dict[str, Any] = {"Name": self.environment, "Path": path, "Method": method}
        if query:
            arguments["QueryParameters"] = {k: v for k, v in query.items() if v is not None}
        if body is not None:
            arguments["Body"] = body
        try:
            answer = self._call(f"InvokeRestApi {method} {path}", lambda: self.client.invoke_rest_api(**arguments),
                                write=method != "GET")
        except _AirflowAnswered as err:
            return err.response
        return Response(int(answer["RestApiStatusCode"]), {}, answer.get("RestApiResponse"))

    def _call(self, what: str, send: Any, *, write: bool = False) -> Any:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        try:
            return send()
        except ClientError as err:
            error = err.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("RestApiClientException", "RestApiServerException"):  # Airflow's own error answer
                raise _AirflowAnswered(Response(int(err.response.get("RestApiStatusCode") or 400), {},
                                                err.response.get("RestApiResponse"))) from None
            hint = {"AccessDeniedException": "the identity needs airflow:InvokeRestApi (and airflow:GetEnvironment) "
                                             "on the environment, and an Airflow role that may trigger DAGs",
                    "ResourceNotFoundException": "check -c environment and -c region"}.get(code, "")
            raise SubmitError(f"MWAA refused {what} on environment {self.environment!r}: {code}: "
                              f"{error.get('Message', '')}" + (f" ({hint})" if hint else "")) from None
        except NoCredentialsError:
            raise SubmitError("no AWS credentials for MWAA: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY, or run where an instance or pod role gives them") from None
        except (ReadTimeoutError, ConnectionClosedError) as err:
            if write:  # sent, and the answer lost: Airflow may have done it
                raise SubmitOutcomeUnknownError(f"MWAA did not answer {what} on environment "
                                                f"{self.environment!r} ({err}): it may or may not have taken "
                                                "effect") from None
            raise SubmitError(f"MWAA did not answer {what} on environment {self.environment!r}: {err}") from None
        except (EndpointConnectionError, BotoCoreError) as err:
            raise SubmitError(f"cannot reach MWAA for {what} on environment {self.environment!r}: {err}") from None


class _AirflowAnswered(Exception):
    """Airflow answered an error status through InvokeRestApi (not MWAA refusing the call)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def mwaa_api_version(airflow_version: str) -> int:
    """The REST API's major version for an environment's ``AirflowVersion``: 2 on Airflow 3, else 1."""
    return 2 if str(airflow_version).split(".")[0] == "3" else 1
