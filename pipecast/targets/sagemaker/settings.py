"""The sagemaker target's settings, typed once: role, image and artifact store, names, instances, schedule."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pipecast.targets.sagemaker.instances import PROCESSING, TRAINING
from pipecast.targets.sagemaker.job_args import estimator_args_problem, processor_args_problem, tags_problem
from pipecast.targets.sagemaker.metrics import names_problem
from pipecast.targets.settings import ContainerSettings, Json, setting

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
INLINE_DEFINITION_LIMIT = 100 * 1024  # the sagemaker SDK's threshold for sending a definition through S3
MAX_INSTANCE_COUNT = {PROCESSING: 100, TRAINING: 10_000}  # ProcessingInstanceCount / TrainingInstanceCount

ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9-]+$")


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    return lambda value: None if pattern.match(value) else what


def _between(low: int, high: int) -> Callable[[int], str | None]:
    return lambda value: None if low <= value <= high else f"must be an integer from {low} to {high}"


@dataclass(frozen=True, kw_only=True)
class SageMakerSettings(ContainerSettings):
    """Settings of the sagemaker target (``--set KEY=VALUE`` or ``settings={"sagemaker": {...}}``)."""

    renamed: ClassVar[Mapping[str, str]] = {"schedule_timezone": "timezone", "max_parallel_steps": "max_parallel"}

    artifact_root: str | None = setting(
        None, "object-store URI every step reads and writes (s3://…); default s3://<bucket>/pipecast", step=False,
        example="artifact_root=s3://bucket/prefix")
    role_arn: str | None = setting(
        None, "IAM role ARN the pipeline and its jobs run as (required)", step=False,
        check=_matches(ROLE_ARN, "is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
        example="role_arn=arn:aws:iam::123456789012:role/pipecast")
    bucket: str | None = setting(
        None, "S3 bucket for the default artifact root and for large definitions", step=False,
        check=_matches(_BUCKET, "is not an S3 bucket name (give the name, without s3://)"),
        example="bucket=acme-pipelines")
    region: str | None = setting(
        None, "AWS region written into the schedule's target ARN (submit uses the client's region)", step=False,
        check=_matches(_REGION, "is not an AWS region"), example="region=us-east-1")
    pipeline_name: str | None = setting(
        None, "SageMaker pipeline name (default: the pipecast name with SageMaker's characters)", step=False)
    instance_type: str = setting(
        DEFAULT_INSTANCE_TYPE, "ml.* instance type: a step's own value beats its resources; the pipeline's is the "
                               "type of steps without resources",
        check=_matches(_INSTANCE_TYPE, "is not a SageMaker instance type such as 'ml.m5.xlarge'"),
        example="instance_type=ml.m5.xlarge")
    instance_count: int = setting(
        1, "instances per job (every instance runs the step's command; processing jobs take up to 100)",
        check=_between(1, MAX_INSTANCE_COUNT[TRAINING]))
    volume_size_gb: int = setting(30, "storage volume per instance in GB", check=_between(1, 16_384))
    step_type: Literal["processing", "training"] = setting(
        PROCESSING, "the SageMaker step type: a Processing job, or a Training job")
    metrics: tuple[str, ...] = setting(
        [], "training steps: metric names SageMaker reads from the job's log (MetricDefinitions), each printed by "
            "the runtime from the step's Metrics outputs and log_metadata numbers; at most 40",
        check=names_problem, example="'metrics=[\"accuracy\", \"loss\"]'")
    python: str = setting("python", "the Python interpreter in the image", step=False)
    max_parallel: int | None = setting(
        None, "ParallelismConfiguration.MaxParallelExecutionSteps of the pipeline", step=False,
        check=_between(1, 2**31 - 1))
    schedule_role_arn: str | None = setting(
        None, "role EventBridge Scheduler assumes to start the pipeline (default: role_arn)", step=False,
        check=_matches(ROLE_ARN, "is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"))
    timezone: str = setting("UTC", "time zone of the schedule's cron expression", step=False,
                            example="timezone=Europe/Paris")
    inline_definition_limit: int = setting(
        INLINE_DEFINITION_LIMIT, "bytes above which the definition is uploaded to S3 at submit", step=False,
        check=_between(1, 2**31 - 1))
    processor_args: Mapping[str, Json] = setting(
        {}, "escape hatch for processing steps: sagemaker Processor arguments network_config (subnets, "
            "security_group_ids, enable_network_isolation, encrypt_inter_container_traffic), volume_kms_key, tags",
        check=processor_args_problem,
        example="'processor_args={\"volume_kms_key\": \"alias/ml\", \"tags\": {\"team\": \"ml\"}}'")
    estimator_args: Mapping[str, Json] = setting(
        {}, "escape hatch for training steps: sagemaker Estimator arguments subnets, security_group_ids, "
            "enable_network_isolation, encrypt_inter_container_traffic, volume_kms_key, output_kms_key, tags, "
            "use_spot_instances with max_wait, checkpoint_s3_uri",
        check=estimator_args_problem,
        example="'estimator_args={\"output_kms_key\": \"alias/ml\", \"enable_network_isolation\": true}'")
    pipeline_tags: Mapping[str, str] = setting(
        {}, "tags of the SageMaker pipeline (CreatePipeline Tags), beside the pipeline's own tags (keys with an "
            "empty value); a job's tags are processor_args/estimator_args tags", step=False, check=tags_problem,
        example="'pipeline_tags={\"team\": \"ml\"}'")
