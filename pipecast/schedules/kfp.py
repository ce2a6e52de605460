"""Kubeflow Pipelines and Vertex AI schedules, through their APIs (``kfp.Client``, ``google-cloud-aiplatform``).

Submit keeps one schedule per pipeline, named ``"<pipeline> (pipecast schedule)"``: on KFP a recurring run
(re-created, the old one deleted: the v2beta1 API cannot edit one), on Vertex a ``Schedule`` updated in place
(``schedules.patch``). Both are found again by that display name. Only Vertex reports the next run time.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target
from pipecast.targets.kube.client import check_config

SUFFIX = " (pipecast schedule)"
PAGE = 100


def _display_name(pipeline: str) -> str:
    return f"{pipeline}{SUFFIX}"


# ---- Kubeflow Pipelines: recurring runs (v2beta1) ----

def _kfp(target: Target, config: Mapping[str, Any]) -> Any:
    from pipecast.targets.kfpspec.kubeflow_api import _api_error, _Connection, _failures

    check_config(target.name, config, target.connection_keys())
    try:
        return _Connection(None, config)
    except _failures() as err:
        raise _api_error("connect", err) from err


def _recurring_runs(connection: Any) -> list[Any]:
    """Every recurring run pipecast made (display name ``… (pipecast schedule)``), page by page."""
    from pipecast.targets.kfpspec.kubeflow_api import _api_error, _failures, _quiet, verdict
    from pipecast.targets.kfpspec.retrying import call

    found, token = [], ""
    while True:
        try:
            with _quiet():
                page = call(functools.partial(connection.client.list_recurring_runs, page_token=token,
                                              page_size=PAGE, namespace=connection.namespace), verdict)
        except _failures() as err:
            raise _api_error("list the recurring runs", err) from err
        found += [r for r in page.recurring_runs or [] if str(r.display_name or "").endswith(SUFFIX)]
        token = page.next_page_token or ""
        if not token:
            return found


def _kfp_row(connection: Any, recurring: Any) -> Schedule:
    trigger = recurring.trigger
    cron = getattr(getattr(trigger, "cron_schedule", None), "cron", None) or ""
    identifier = str(recurring.recurring_run_id)
    # The run page's form (central dashboard's in multi-user deployments), on the UI's recurring-run route.
    page = connection.url(identifier).replace("#/runs/details/", "#/recurringrun/details/")
    return Schedule(pipeline=str(recurring.display_name)[: -len(SUFFIX)], target="kubeflow", schedule=cron,
                    id=identifier, state=str(recurring.status or "").lower() or None, url=page)


def list_kubeflow(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The recurring runs pipecast made."""
    connection = _kfp(target, config)
    return [_kfp_row(connection, r) for r in _recurring_runs(connection)]


def delete_kubeflow(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's recurring run(s) (one per experiment it was submitted to); runs are left alone."""
    from pipecast.targets.kfpspec.kubeflow_api import _api_error, _failures, _quiet, verdict
    from pipecast.targets.kfpspec.retrying import call

    connection = _kfp(target, config)
    done = []
    for recurring in _recurring_runs(connection):
        if recurring.display_name != _display_name(pipeline):
            continue
        identifier = str(recurring.recurring_run_id)
        try:
            with _quiet():
                call(functools.partial(connection.client.delete_recurring_run, identifier), verdict)
        except _failures() as err:
            if getattr(err, "status", None) != 404:  # 404: deleted meanwhile, as wanted
                raise _api_error(f"delete recurring run {identifier!r}", err) from err
        done.append(f"deleted recurring run {identifier} ({recurring.display_name!r}, experiment "
                    f"{recurring.experiment_id}); its runs are left alone")
    return done


# ---- Vertex AI: PipelineJobSchedule ----

def _vertex(target: Target, config: Mapping[str, Any]) -> tuple[str, str]:
    from pipecast.targets.kfpspec.vertex_api import DEFAULT_LOCATION, _init_sdk

    check_config(target.name, config, target.connection_keys())
    project = config.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUD_ML_PROJECT_ID")
    if not project:
        raise SubmitError("no Google Cloud project: pass --config project=PROJECT or set $GOOGLE_CLOUD_PROJECT")
    location = config.get("location") or os.environ.get("GOOGLE_CLOUD_REGION") or DEFAULT_LOCATION
    _init_sdk(None, config)
    return str(project), str(location)


def _vertex_schedules(project: str, location: str, display_name: str | None) -> list[Any]:
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    try:
        found = aiplatform.PipelineJobSchedule.list(
            filter=f"display_name={json.dumps(display_name)}" if display_name else None,
            project=project, location=location)
    except auth_exceptions.GoogleAuthError as err:
        raise SubmitError(f"no Google Cloud credentials for Vertex AI ({err}); run `gcloud auth "
                          "application-default login` or set $GOOGLE_APPLICATION_CREDENTIALS") from err
    except api_exceptions.GoogleAPIError as err:
        raise SubmitError(f"Vertex AI refused to list the schedules of {project}/{location}: {err}") from err
    wanted = display_name or ""
    return [s for s in found if (s.display_name == wanted if display_name else str(s.display_name).endswith(SUFFIX))]


def _when(value: Any) -> str | None:
    if not value:
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.replace("+00:00", "Z")


def _vertex_row(schedule: Any, project: str, location: str) -> Schedule:
    resource = schedule._gca_resource
    identifier = str(resource.name).rsplit("/", 1)[-1]
    # The console page the SDK's PipelineJobSchedule._dashboard_uri() names.
    return Schedule(pipeline=str(resource.display_name)[: -len(SUFFIX)], target="vertex", schedule=resource.cron,
                    id=str(resource.name), next_run=_when(resource.next_run_time),
                    state=getattr(resource.state, "name", str(resource.state)).lower(),
                    url=f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/schedules/"
                        f"{identifier}?project={project}")


def list_vertex(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The Vertex schedules pipecast made in the project and location."""
    project, location = _vertex(target, config)
    return [_vertex_row(s, project, location) for s in _vertex_schedules(project, location, None)]


def delete_vertex(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's Vertex schedule (``schedules.delete``); the jobs it created are left alone."""
    from google.api_core import exceptions as api_exceptions

    project, location = _vertex(target, config)
    done = []
    for schedule in _vertex_schedules(project, location, _display_name(pipeline)):
        name = str(schedule.resource_name)
        try:
            schedule.delete()
        except api_exceptions.NotFound:
            pass  # deleted meanwhile, as wanted
        except api_exceptions.GoogleAPIError as err:
            raise SubmitError(f"Vertex AI refused to delete schedule {name!r}: {err}") from err
        done.append(f"deleted Vertex schedule {name}; the pipeline jobs it created are left alone")
    return done
