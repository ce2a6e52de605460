"""Azure ML schedules: the pipeline's ``JobSchedule`` (``<pipeline>_schedule``), through ``azure-ai-ml``.

``pipecast submit -c schedule=true`` creates it or updates it in place (``begin_create_or_update`` of that
name). A pipecast schedule is named ``<pipeline>_schedule`` with the display name ``<pipeline> schedule``, as
``<pipeline>.schedule.yml`` says. Azure ML reports no next run. Deleting it leaves the jobs it created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.schedules import Schedule
from pipecast.targets.base import Target

KEYS = ("subscription_id", "resource_group", "workspace", "credential", "cloud", "resource_manager_url")


def _client(config: Mapping[str, Any]) -> Any:
    from pipecast.targets.azureml.submit import make_client

    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise SubmitError(f"unknown --config key(s) {unknown!r} for the schedules of target 'azureml'; known: "
                          f"{list(KEYS)!r}")
    return make_client(config)


def _ours(client: Any) -> list[tuple[str, Any]]:
    """(pipeline, JobSchedule) of every schedule pipecast named, enabled or not."""
    try:  # "All": ScheduleListViewType.ALL of the REST client, whose default is enabled ones only
        found = list(client.schedules.list(list_view_type="All"))
    except Exception as err:  # azure-core's HttpResponseError, ClientAuthenticationError, ...
        raise SubmitError(f"Azure ML refused to list the schedules: {err}") from err
    return [(str(s.name)[: -len("_schedule")], s) for s in found
            if str(s.name).endswith("_schedule") and s.display_name == f"{str(s.name)[: -len('_schedule')]} schedule"]


def list_schedules(target: Target, config: Mapping[str, Any]) -> list[Schedule]:
    """The workspace's pipecast schedules."""
    rows = []
    for pipeline, schedule in _ours(_client(config)):
        trigger = schedule.trigger
        expression = str(getattr(trigger, "expression", "") or "")
        zone = getattr(trigger, "time_zone", None)
        rows.append(Schedule(pipeline=pipeline, target=target.name,
                             schedule=f"{expression} ({zone})" if zone else expression, id=str(schedule.name),
                             state="enabled" if schedule.is_enabled else "disabled"))
    return rows


def delete_schedule(target: Target, pipeline: str, config: Mapping[str, Any]) -> list[str]:
    """Delete the pipeline's JobSchedule; the jobs it created stay."""
    client = _client(config)
    done = []
    for name_of, schedule in _ours(client):
        if name_of != pipeline:
            continue
        try:
            client.schedules.begin_delete(schedule.name).result()
        except Exception as err:
            raise SubmitError(f"Azure ML refused to delete schedule {schedule.name!r}: {err}") from err
        done.append(f"deleted Azure ML schedule {schedule.name}; the jobs it created are left alone")
    return done
