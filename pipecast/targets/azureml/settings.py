"""The azureml target's settings, typed once: image and artifact root, compute, experiment, schedule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pipecast.targets.azureml.fields import job_fields_problem, node_fields_problem
from pipecast.targets.settings import ContainerSettings, Json, setting

_EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")


def experiment_problem(name: str) -> str | None:
    """Why Azure ML would refuse ``name`` as an experiment name, or None."""
    return None if _EXPERIMENT.fullmatch(name) else \
        "breaks Azure ML's rule (1-255 letters, digits, _ and -, starting with a letter or digit)"


@dataclass(frozen=True, kw_only=True)
class AzureMLSettings(ContainerSettings):
    """Settings of the azureml target (``--set KEY=VALUE`` or ``settings={"azureml": {...}}``)."""

    renamed: ClassVar[Mapping[str, str]] = {"schedule_time_zone": "timezone"}

    compute: str | None = setting(
        None, "default compute of the pipeline (a cluster name, azureml:<name>, or serverless; default "
              "serverless); in a step's settings: that node's compute", example="compute=cpu-cluster")
    instance_type: str | None = setting(
        None, "resources.instance_type of the nodes (serverless or Kubernetes compute); per step too",
        example="instance_type=Standard_NC6s_v3")
    experiment_name: str | None = setting(
        None, "the Azure ML experiment (default: the pipeline name)", step=False, check=experiment_problem,
        example="experiment_name=nightly")
    continue_on_step_failure: bool = setting(
        False, "keep running independent nodes after one fails", step=False)
    control_flow_preview: bool = setting(
        False, "lower maps and conditions to Azure ML's parallel_for and if_else nodes, a preview: create the job "
               "with AZURE_ML_CLI_PRIVATE_FEATURES_ENABLED=true (pipecast submit sets it)", step=False)
    timezone: str = setting("UTC", "time zone of the schedule's cron trigger", step=False,
                            example="'timezone=Pacific Standard Time'")
    node_fields: Mapping[str, Json] = setting(
        {}, "escape hatch: command node fields merged onto each node (resources.instance_count/shm_size/"
            "docker_args, queue_settings, identity, tags, properties); fields pipecast writes are refused",
        check=node_fields_problem,
        example="'node_fields={\"resources\": {\"shm_size\": \"8g\"}, \"queue_settings\": {\"job_tier\": "
                "\"spot\"}}'")
    job_fields: Mapping[str, Json] = setting(
        {}, "escape hatch: pipeline job fields merged onto the job (identity, tags, properties, "
            "settings.default_datastore/force_rerun)", step=False, check=job_fields_problem,
        example="'job_fields={\"identity\": {\"type\": \"user_identity\"}}'")
