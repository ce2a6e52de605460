"""Reaching the Kubernetes API: one way to load the client, one way to call it, one translation of its errors.

Every Kubernetes-based target that talks to a cluster (tekton, argo, kubernetes and its driver) connects with
:func:`connect` and sends every call through :func:`call_api`: bounded by a timeout, retried when its answer
was lost (connection dropped, timed out) or the server asked to wait (429/5xx with Retry-After, as client-go
does), and failing with a message that says which server and which configuration were used. The
``kubernetes`` client is imported lazily; importing this module costs nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError

REQUEST_TIMEOUT = 30.0  # seconds to connect, and again to read the answer, of any one API call
ATTEMPTS = 4  # tries of one API call whose answer was lost
RETRY_DELAY = 1.0  # seconds before the second try, doubled before each further one
MAX_RETRY_AFTER = 30.0  # the longest wait a server's Retry-After is honoured for
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    """The API server calls go to, for messages that say where: client, address, configuration, namespace."""

    api_client: Any
    host: str
    source: str  # e.g. "kubeconfig '~/.kube/config', context 'prod'"
    namespace: str | None = None  # the kubeconfig context's namespace, or the pod's


class KubeError(SubmitError):
    """The API server answered a call with an error ``status`` (404, 409, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_config(target: str, config: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse ``--config`` keys the target's connection class does not declare (a typo would otherwise be ignored)."""
    known = list(known)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for target {target!r}; known: {list(known)!r}")


def connect(config: Mapping[str, Any]) -> Cluster:
    """The cluster ``--config`` names, by kubectl's rule.

    ``in_cluster=true`` uses the pod's service account; ``kubeconfig``/``context`` (or ``in_cluster=false``)
    the kubeconfig. With none of them: the kubeconfig (``$KUBECONFIG``, else ``~/.kube/config``) when one
    exists, else the pod's service account when running in a pod (``$KUBERNETES_SERVICE_HOST``), as client-go
    falls back to in-cluster credentials.
    """
    from kubernetes import config as kube_config

    in_cluster = _flag(config.get("in_cluster"))
    path, context = config.get("kubeconfig"), config.get("context")
    if in_cluster is None and path is None and context is None:
        in_cluster = not _kubeconfig_exists() and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        return _in_cluster() if in_cluster else _from_kubeconfig(path, context)
    except (kube_config.ConfigException, OSError) as err:
        raise SubmitError(f"cannot load the Kubernetes configuration: {err}; pass --config kubeconfig=PATH "
                          "(and context=NAME), set KUBECONFIG, or --config in_cluster=true inside a pod") from None


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise SubmitError(f"--config in_cluster must be true or false, got {value!r}")


def _kubeconfig_exists() -> bool:
    paths = (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)
    return any(path and os.path.exists(os.path.expanduser(path)) for path in paths)


def _in_cluster() -> Cluster:
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    kube_config.load_incluster_config(client_configuration=configuration)
    namespace = None
    if os.path.exists(SERVICE_ACCOUNT_NAMESPACE):
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            namespace = handle.read().strip() or None
    return Cluster(client.ApiClient(configuration), configuration.host, describe_source(None, None, in_cluster=True),
                   namespace)


def _from_kubeconfig(path: str | None, context: str | None) -> Cluster:
    from kubernetes import config as kube_config

    # The client reads $KUBECONFIG once, when imported: name the file(s) as the environment says now.
    path = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
    api = kube_config.new_client_from_config(config_file=path, context=context, persist_config=False)
    contexts, active = kube_config.list_kube_config_contexts(config_file=path)
    chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
    return Cluster(api, api.configuration.host, describe_source(path, (chosen or {}).get("name")),
                   (chosen or {}).get("context", {}).get("namespace"))


def describe_source(kubeconfig: str | None, context: str | None, *, in_cluster: bool = False) -> str:
    """Where the client's configuration came from, for messages: the kubeconfig and context, or in-cluster."""
    if in_cluster:
        return "in-cluster service account"
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return f"kubeconfig {path!r}" + (f", context {context!r}" if context else "")


def request_timeout() -> tuple[float, float]:
    """The client's ``_request_timeout``: a (connect, read) pair, since it ignores a lone float."""
    return (REQUEST_TIMEOUT, REQUEST_TIMEOUT)


def call_api(cluster: Cluster, what: str, send: Callable[[], T], *, write: bool = False) -> T:
    """``send()`` one API call (passing ``_request_timeout=request_timeout()``), retried when its answer was lost.

    A connection error or timeout is tried again up to :data:`ATTEMPTS` times, backing off, and so is a
    429 or 5xx that carries Retry-After (client-go's rule). Writes are retried as well: callers name every
    object they write and read a 409 as "done already" (see :func:`pipecast.targets.kube.objects.apply`).

    Raises:
        KubeError: the server refused the call (status, its message and a hint).
        SubmitOutcomeUnknownError: a ``write`` that may have reached the server never got an answer.
        SubmitError: the server could not be reached; says where, with which configuration, and the fix.
    """
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    maybe_sent = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return send()
        except ApiException as err:
            if not err.status:  # the client's own failure before any answer, e.g. a TLS handshake
                raise SubmitError(f"cannot {what}: {err.reason}; {_where(cluster)}") from None
            wait = _retry_after(err)
            if wait is None or attempt == ATTEMPTS:
                raise api_error(what, err) from None
        except (OSError, HTTPError) as err:
            maybe_sent = maybe_sent or _maybe_sent(err)
            if attempt == ATTEMPTS:
                reason = f"cannot {what}: no answer from the Kubernetes API server after {ATTEMPTS} tries " \
                         f"({_cause(err)}); {_where(cluster)}"
                raise (SubmitOutcomeUnknownError if write and maybe_sent else SubmitError)(reason) from None
            wait = RETRY_DELAY * 2 ** (attempt - 1)
        time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def _where(cluster: Cluster) -> str:
    return (f"the API server is {cluster.host} ({cluster.source}); check that it is up and reachable from here "
            "(`kubectl cluster-info`), or choose the cluster with --config kubeconfig=PATH and --config context=NAME")


def _cause(err: BaseException) -> str:
    """The underlying reason of a urllib3 error (``MaxRetryError`` wraps the connection error)."""
    reason = getattr(err, "reason", None)
    return str(reason if isinstance(reason, BaseException) else err)


def _maybe_sent(err: BaseException) -> bool:
    """Whether the request may have reached the server (no: the connection was never made)."""
    from urllib3.exceptions import ConnectTimeoutError

    reason = getattr(err, "reason", None)
    cause = reason if isinstance(reason, BaseException) else err
    return not isinstance(cause, (ConnectTimeoutError, ConnectionRefusedError))


def _retry_after(err: Any) -> float | None:
    """Seconds to wait before trying again, when the server said so (429 or 5xx with Retry-After)."""
    if err.status != 429 and err.status < 500:
        return None
    try:
        seconds = float((err.headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def api_error(what: str, err: Any) -> KubeError:
    """The SubmitError for an API server's error answer: what failed, its status and message, and a hint."""
    message = err.reason
    try:
        import json

        message = json.loads(err.body).get("message") or message
    except (TypeError, ValueError, AttributeError):
        pass
    hint = {401: "check your credentials", 403: "your account lacks RBAC rights for this",
            404: "does the namespace exist, and, for Tekton or Argo, the engine's CRD?"}.get(err.status, "")
    return KubeError(err.status, f"cannot {what}: {err.status} {message}" + (f" ({hint})" if hint else ""))
