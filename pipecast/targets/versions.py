"""The oldest engine version each target works with, and the check of the server's version at submit.

:data:`MINIMUMS` is the one table (the docs' "Minimum versions" page is generated from it). Each submit path
calls one ``check_*`` function before it creates anything: a server older than the minimum is a
:class:`~pipecast.errors.SubmitError` naming the server's version, the minimum and why (exit 2, nothing
created); a server that does not say its version, or says it in a form pipecast cannot read (a development
build, a forbidden read), gets an :class:`EngineVersionWarning` and the submit goes on.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

from packaging.version import Version

from pipecast.errors import SubmitError

__all__ = ["MINIMUMS", "EngineVersionWarning", "Minimum", "check_airflow", "check_argo_server",
           "check_cluster", "check_kubeflow", "check_kubernetes", "check_tekton", "require", "versions_table"]


@dataclass(frozen=True)
class Minimum:
    """The oldest version of an engine pipecast's files and calls work with.

    Attributes:
        engine: The engine's name, for messages.
        version: The oldest version that works.
        why: What the files or calls need that older versions lack.
        asked: How submit reads the server's version.
        targets: The targets this minimum applies to.
    """

    engine: str
    version: str
    why: str
    asked: str
    targets: str


MINIMUMS: dict[str, Minimum] = {
    "kubeflow": Minimum(
        "Kubeflow Pipelines", "2.4.0",
        "the v2beta1 API's pipeline versions (`pipeline_version_reference`) and recurring runs, and "
        "`{{$.pipeline_job_uuid}}` in runtime constants",
        "`GET /apis/v2beta1/healthz` → `tag_name`", "kubeflow"),
    "kubeflow_exit": Minimum(
        "Kubeflow Pipelines", "2.14.0",
        "an ExitHandler's handler reads its group's `taskFinalStatus`, which older backends refuse (\"task final "
        "status not supported yet\", kubeflow/pipelines#11953)",
        "`GET /apis/v2beta1/healthz` → `tag_name`", "kubeflow (pipelines with an ExitHandler)"),
    "airflow": Minimum(
        "Apache Airflow", "3.0.0",
        "DAG files import `airflow.sdk`, and submit speaks the REST API v2 and triggers runs without a logical "
        "date, all new in Airflow 3.0",
        "`GET /api/v2/version` → `version` (no credentials needed)", "airflow"),
    "airflow2": Minimum(
        "Apache Airflow 2", "2.10.0",
        "`--set airflow_version=2` DAG files use Airflow 2.10's import paths and `literal()`, and the REST "
        "API v1's `dagSources` and `parseDagFile` as 2.10 serves them",
        "`GET /api/v1/version` → `version` (no credentials needed)", "airflow (airflow_version=2)"),
    "argo": Minimum(
        "Argo Workflows", "3.6.0",
        "CronWorkflow `schedules:` (a list; older controllers read only `schedule:`) and "
        "`retryStrategy.backoff.cap` are v3.6; `podGC.deleteDelayDuration` is v3.5",
        "Argo Server's `GET /api/v1/version` → `version` (with `-c argo_server`); the Kubernetes API does not "
        "report it", "argo"),
    "tekton": Minimum(
        "Tekton Pipelines", "0.68.0",
        "the `tekton.dev/v1` objects pipecast writes (pipeline task `displayName`, PipelineRun "
        "`taskRunTemplate` and `timeouts`, `computeResources`) as the 0.68 LTS release serves them, and for "
        "control flow `matrix` over whole-array results (beta, on by default since 0.49: `enable-api-fields: "
        "beta`); the files are validated against v1.15's CRD schemas",
        "ConfigMap `pipelines-info` in namespace `tekton-pipelines` → `data.version` (Tekton's documented way)",
        "tekton"),
    "kubernetes": Minimum(
        "Kubernetes", "1.27.0",
        "Job `podFailurePolicy` with the `DisruptionTarget` pod condition (on by default since 1.26), the "
        "`batch.kubernetes.io/job-name` pod label (1.27) and CronJob `timeZone` (GA in 1.27)",
        "`GET /version` → `gitVersion`", "kubernetes, tekton"),
}


class EngineVersionWarning(UserWarning):
    """The server did not tell its version in a form pipecast can read; the submit went on."""


def parse(text: Any) -> Version | None:
    """The release in a version string (``v1.30.5-gke.1``, ``3.1.0+composer``), or None when it names none."""
    match = re.match(r"\s*v?(\d+(?:\.\d+){0,2})(?![\d.])", str(text or ""))
    return Version(match.group(1)) if match else None


def require(key: str, reported: Any, where: str) -> None:
    """Refuse a server older than ``MINIMUMS[key]``; warn when ``reported`` holds no version.

    Args:
        key: The row of :data:`MINIMUMS`.
        reported: What the server said its version is (None: it said nothing).
        where: The server, for messages (its URL, or the Kubernetes cluster).
    """
    minimum = MINIMUMS[key]
    version = parse(reported)
    if version is None:
        said = f"said {str(reported)!r}" if reported not in (None, "") else "said nothing"
        warnings.warn(f"cannot tell which {minimum.engine} version {where} runs ({minimum.asked} {said}); "
                      f"submitting anyway. pipecast needs {minimum.engine} {minimum.version} or later: {minimum.why}",
                      EngineVersionWarning, stacklevel=3)
        return
    if version < Version(minimum.version):
        raise SubmitError(f"{minimum.engine} at {where} is version {reported}, older than {minimum.version}, the "
                          f"oldest pipecast supports: {minimum.why}. Nothing was submitted; upgrade "
                          f"{minimum.engine} (see docs/versions.md)")


def unreadable(key: str, where: str, reason: str) -> None:
    """Warn that the version could not be asked (forbidden, not served); the submit goes on."""
    minimum = MINIMUMS[key]
    warnings.warn(f"cannot tell which {minimum.engine} version {where} runs ({minimum.asked}: {reason}); "
                  f"submitting anyway. pipecast needs {minimum.engine} {minimum.version} or later: {minimum.why}",
                  EngineVersionWarning, stacklevel=3)


def check_airflow(api: Any) -> None:
    """Check an Airflow REST API (:class:`~pipecast.targets.airflow.rest.AirflowApi`): 3.0+ on v2, 2.10+ on v1."""
    body = api.get("/version").body  # answers without credentials; a refusal here is the credentials' error later
    reported = body.get("version") if isinstance(body, dict) else None
    require("airflow" if api.version == 2 else "airflow2", reported, f"{api.root!r}")


def check_kubeflow(client: Any, host: Any, keys: tuple[str, ...] = ("kubeflow",)) -> None:
    """Check a KFP API server's release (its healthz ``tag_name``, which the SDK's model drops) against ``keys``.

    ``keys`` are rows of :data:`MINIMUMS`: ``kubeflow`` always, ``kubeflow_exit`` for a pipeline with an exit handler.
    """
    import kfp_server_api
    import urllib3

    try:
        answer = client._healthz_api.healthz_service_get_healthz(_preload_content=False)
        body = json.loads(answer.data or b"{}")
    except (kfp_server_api.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        # The calls that follow report an unreachable server; here it only costs the check.
        unreadable("kubeflow", repr(host), f"{type(err).__name__}: {err}")
        return
    for key in keys:
        require(key, body.get("tag_name") if isinstance(body, dict) else None, repr(host))


def check_kubernetes(cluster: Any) -> None:
    """Check the Kubernetes API server's ``/version`` (``gitVersion``)."""
    from kubernetes import client

    from pipecast.targets.kube.client import KubeError, call_api, request_timeout

    where = f"{cluster.host} ({cluster.source})"
    try:  # the raw JSON: the client's model refuses an answer that lacks any of version.Info's fields
        answer = call_api(cluster, "read the Kubernetes version", lambda: client.VersionApi(
            cluster.api_client).get_code(_request_timeout=request_timeout(), _preload_content=False))
        info = json.loads(answer.data or b"{}")
    except (KubeError, ValueError) as err:  # /version is public by default (system:public-info-viewer)
        unreadable("kubernetes", where, str(err))
        return
    require("kubernetes", info.get("gitVersion") if isinstance(info, dict) else None, where)


def check_cluster(target: str, cluster: Any) -> None:
    """The checks of a target that submits through the Kubernetes API: the cluster's, then the engine's version.

    Argo's controller does not report its version through the Kubernetes API, so ``argo`` checks nothing here
    (with ``-c argo_server`` it asks Argo Server).
    """
    if target in ("kubernetes", "tekton"):
        check_kubernetes(cluster)
    if target == "tekton":
        check_tekton(cluster)


TEKTON_NAMESPACE = "tekton-pipelines"
TEKTON_INFO = "pipelines-info"


def check_tekton(cluster: Any) -> None:
    """Check Tekton Pipelines' version: ``data.version`` of ConfigMap ``pipelines-info`` in ``tekton-pipelines``."""
    from pipecast.targets.kube.client import KubeError
    from pipecast.targets.kube.objects import Kube

    where = f"the cluster at {cluster.host}"
    try:
        info = Kube(cluster, TEKTON_NAMESPACE).get("ConfigMap", TEKTON_INFO)
    except KubeError as err:  # not installed there (OpenShift Pipelines), or no right to read it
        unreadable("tekton", where, str(err))
        return
    require("tekton", (info.get("data") or {}).get("version"), where)


def check_argo_server(server: Any) -> None:
    """Check Argo Server's ``GET /api/v1/version`` (``version``, e.g. ``v3.6.2``)."""
    answer = server.http.send("GET", f"{server.base}/api/v1/version")
    if answer.status == 401:  # it needs the token like every call: the next call reports the credentials
        return
    if answer.status != 200:
        unreadable("argo", repr(server.base), f"HTTP {answer.status}")
        return
    require("argo", answer.body.get("version") if isinstance(answer.body, dict) else None, repr(server.base))


def versions_table() -> str:
    """The docs' Minimum versions table (markdown), from :data:`MINIMUMS`."""
    rows = ["| engine | targets | oldest supported | why | how submit asks the server |", "|---|---|---|---|---|"]
    for minimum in MINIMUMS.values():
        rows.append(f"| {minimum.engine} | {minimum.targets} | {minimum.version} | {minimum.why} | {minimum.asked} |")
    return "\n".join(rows) + "\n"
