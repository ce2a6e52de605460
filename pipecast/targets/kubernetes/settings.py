"""Compile settings of the ``kubernetes`` target (``--set``, or ``settings={"kubernetes": {...}}``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipecast.targets.kube.settings import KubeConnection, PodSettings, dns_label_problem, dns_subdomain_problem
from pipecast.targets.settings import ContainerSettings, setting

DEFAULT_NAMESPACE = "default"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600  # a week: time to read a run's state and logs, then the namespace stays clean


def _at_least(minimum: float) -> Callable[[float], str | None]:
    def problem(value: float) -> str | None:
        return f"must be at least {minimum:g}" if value < minimum else None
    return problem


@dataclass(frozen=True, kw_only=True)
class KubernetesSettings(PodSettings, ContainerSettings):
    """The driver Job, its step Jobs and the CronJob: where they go and how the driver paces the run."""

    artifact_pvc: str | None = setting(
        None, "a ReadWriteMany PersistentVolumeClaim mounted in every step pod at the path of a file:///path "
              "artifact root (the one way a local root works here)", step=False, check=dns_subdomain_problem,
        example="artifact_pvc=shared-artifacts")
    namespace: str = setting(DEFAULT_NAMESPACE, "namespace of every object (at submit, -c namespace= wins)",
                             step=False, check=dns_label_problem, example="namespace=pipelines")
    driver_image: str | None = setting(
        None, "image of the driver Job, with pipecast[kubernetes] installed (default: the pipeline's image, else "
              "image, else the image pipecast submit builds, which then holds the kubernetes client)", step=False,
        example="driver_image=ghcr.io/acme/pipecast:1.0")
    max_parallel: int = setting(8, "step Jobs the driver runs at once", step=False, check=_at_least(1))
    poll_seconds: float = setting(
        5.0, "seconds between the driver's checks of its Jobs (keep it under 10, Kubernetes' first pod backoff, so "
             "a retry delay is applied before the next try starts)", step=False, check=_at_least(0.05))
    timezone: str | None = setting(None, "CronJob timeZone, e.g. 'Europe/Paris' (default: the controller manager's, "
                                         "usually UTC)", step=False, example="timezone=Europe/Paris")
    ttl_seconds_after_finished: int | None = setting(
        DEFAULT_TTL_SECONDS, "delete a finished run (driver Job and, through it, its step Jobs and pods) after this "
                             "many seconds; null keeps it until deleted by hand", step=False, check=_at_least(0),
        example="ttl_seconds_after_finished=86400")


@dataclass(frozen=True, kw_only=True)
class KubernetesConnection(KubeConnection):
    """The cluster, and the Kubernetes Dashboard the run's link points at (``pipecast submit -c KEY=VALUE``)."""

    dashboard_url: str | None = setting(None, "Kubernetes Dashboard base URL for the run's link")
