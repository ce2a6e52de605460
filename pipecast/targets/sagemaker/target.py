"""The ``sagemaker`` target: a SageMaker Pipelines definition (JSON, Version 2020-12-01).

Files emitted, for a pipeline ``NAME``:

- ``NAME.pipeline.json``: the pipeline definition, the ``PipelineDefinition`` of CreatePipeline.
- ``NAME.create-pipeline.json``: the rest of the CreatePipeline request (name, role, description, tags),
  usable as ``aws sagemaker create-pipeline --cli-input-json file://NAME.create-pipeline.json
  --pipeline-definition file://NAME.pipeline.json --client-request-token <token>``.
- ``NAME.schedule.json`` (pipelines with a schedule): the EventBridge Scheduler CreateSchedule request
  that starts the pipeline on the schedule.

``submit`` creates or updates the pipeline with boto3, creates or updates the schedule, and starts an
execution (see :mod:`pipecast.targets.sagemaker.submit`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import engine_names, rule_for
from pipecast.targets.base import (
    Bundle,
    EmitContext,
    Feature,
    RunHandle,
    Target,
    emulated,
    native,
    unsupported,
)
from pipecast.targets.sagemaker.schedule import eventbridge_cron
from pipecast.targets.sagemaker.steps import PipelineSettings, StepLowering
from pipecast.targets.serialize import dump_json

VERSION = "2020-12-01"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
INLINE_DEFINITION_LIMIT = 100 * 1024  # the sagemaker SDK's threshold for sending a definition through S3
MAX_DEFINITION = 1024 * 1024  # an inline PipelineDefinition's maximum length in botocore's model
MAX_PARAMETER_DEFAULT = 4096  # a String parameter's DefaultValue (definition schema)
MAX_PIPELINE_DESCRIPTION = 3072  # PipelineDescription (botocore)

_PARAMETER_TYPES = {
    ir.TypeName.STR: "String", ir.TypeName.INT: "Integer", ir.TypeName.FLOAT: "Float",
    ir.TypeName.BOOL: "Boolean", ir.TypeName.DICT: "String", ir.TypeName.LIST: "String",
}
_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_TAG = re.compile(r"^[\w\s.:/=+\-@]{1,128}$")
# Settings that only make sense for the whole pipeline (a step's own value would be ignored).
_PIPELINE_ONLY = ("artifact_root", "bucket", "image", "inline_definition_limit", "max_parallel_steps",
                  "pipeline_name", "python", "region", "role_arn", "schedule_role_arn", "schedule_timezone")


class SageMakerTarget(Target):
    """Amazon SageMaker Pipelines: one Processing (or Training) job per step, submitted with boto3."""

    name = "sagemaker"
    description = "Amazon SageMaker Pipelines: pipeline definition JSON, submitted and tracked with boto3"
    extra = "sagemaker"
    sdk_modules = ("boto3",)
    capabilities = {
        Feature.PARAMETERS: native("typed pipeline parameters read with {'Get': 'Parameters.x'}; dict/list "
                                   "parameters are String parameters holding JSON"),
        Feature.DATA_PASSING: native("values go through the artifact store; every data edge is a DependsOn"),
        Feature.AFTER: native("DependsOn"),
        Feature.RESOURCES: native("mapped to an ml.* instance type (table in the docs), or the instance_type "
                                  "setting"),
        Feature.GPU: native("mapped to a GPU instance type by gpu_type (t4, a10g, l4, v100, a100, h100)"),
        Feature.RETRY: emulated("the runtime retries the step inside its job (--attempts): SageMaker's "
                                "RetryPolicies cover only service and job-infrastructure errors, never a failure "
                                "of the step's code; those policies are emitted too, with the same count"),
        Feature.RETRY_BACKOFF: emulated("the runtime's --retry-backoff; also the BackoffRate of the "
                                        "infrastructure RetryPolicies"),
        Feature.TIMEOUT: native("StoppingCondition.MaxRuntimeInSeconds; with retries the runtime stops each "
                                "try and MaxRuntimeInSeconds bounds all tries with their delays"),
        Feature.CACHE: emulated("the runtime's cache in the artifact store; SageMaker's CacheConfig is not "
                                "used because a step it skips writes no outputs for the new execution id"),
        Feature.SCHEDULE: native("an EventBridge Scheduler schedule that starts the pipeline, created at submit "
                                 "(NAME.schedule.json)"),
        Feature.ENV: native("Environment (values up to 256 characters in processing jobs, 512 in training)"),
        Feature.SECRETS: unsupported("SageMaker jobs cannot take an environment variable from a secret store; "
                                     "Environment values are plain text in the job's description. Read the "
                                     "secret from AWS Secrets Manager in the step instead"),
        Feature.STEP_IMAGE: native("ImageUri / TrainingImage per step"),
        Feature.SUBMIT: native("boto3: CreatePipeline or UpdatePipeline, then StartPipelineExecution"),
        Feature.STATUS: native("DescribePipelineExecution; cancel is StopPipelineExecution"),
        Feature.UI_URL: native("the execution's page in SageMaker Studio (config studio_domain_id), or the "
                               "url_template config"),
    }
    settings_help = {
        "role_arn": "IAM role ARN the pipeline and its jobs run as (required)",
        "image": "container image (ECR URI) for steps without their own image",
        "artifact_root": "object-store URI every step reads and writes (s3://…); default s3://<bucket>/pipecast",
        "bucket": "S3 bucket for the default artifact root and for large definitions",
        "region": "AWS region written into the schedule's target ARN (submit uses the client's region)",
        "pipeline_name": "SageMaker pipeline name (default: the pipecast name with SageMaker's characters)",
        "instance_type": "ml.* instance type: a step's own value beats its resources; the pipeline's is the "
                         f"default for steps without resources ({DEFAULT_INSTANCE_TYPE})",
        "instance_count": "instances per job (default 1; every instance runs the step's command)",
        "volume_size_gb": "storage volume per instance in GB (default 30)",
        "step_type": "'processing' (default) or 'training': the SageMaker step type, per step or pipeline",
        "python": "the Python interpreter in the image (default 'python')",
        "max_parallel_steps": "ParallelismConfiguration.MaxParallelExecutionSteps of the pipeline",
        "schedule_role_arn": "role EventBridge Scheduler assumes to start the pipeline (default role_arn)",
        "schedule_timezone": "time zone of the schedule's cron expression (default UTC)",
        "inline_definition_limit": f"bytes above which the definition is uploaded to S3 at submit "
                                   f"(default {INLINE_DEFINITION_LIMIT})",
    }

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        self._check_setting_keys(pipeline, context)
        settings = self._pipeline_settings(pipeline, context)
        locations = {s.name: str(s.location) for s in pipeline.steps}
        step_names = engine_names("sagemaker", [s.name for s in pipeline.steps], locations=locations,
                                  target=self.name)
        parameter_names = engine_names("sagemaker", [p.name for p in pipeline.parameters], target=self.name)
        lowering = StepLowering(pipeline, context, settings, step_names, parameter_names)
        definition = {
            "Version": VERSION,
            "Parameters": [self._parameter(p, parameter_names[p.name], context) for p in pipeline.parameters],
            "Steps": [lowering.step(step) for step in pipeline.steps],
        }
        text = dump_json(definition)
        sagemaker_name = rule_for("sagemaker_pipeline").apply(
            str(context.setting(pipeline, "pipeline_name", pipeline.name)))
        request = self._create_request(pipeline, context, settings, sagemaker_name, len(text.encode()))
        files = [(f"{pipeline.name}.pipeline.json", text), (f"{pipeline.name}.create-pipeline.json",
                                                              dump_json(request))]
        if pipeline.schedule:
            schedule = self._schedule_request(pipeline, context, settings, sagemaker_name)
            files.append((f"{pipeline.name}.schedule.json", dump_json(schedule)))
        return Bundle(self.name, tuple(files))

    def _check_setting_keys(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        for item in pipeline.settings:
            if item.target == self.name and item.key not in self.settings_help:
                context.error(f"unknown setting {item.key!r} for target {self.name!r}; known: "
                              f"{sorted(self.settings_help)!r}")
        for step in pipeline.steps:
            for item in step.settings:
                if item.target != self.name:
                    continue
                if item.key not in self.settings_help:
                    context.error(f"unknown setting {item.key!r} for target {self.name!r}; known: "
                                  f"{sorted(self.settings_help)!r}", step=step)
                elif item.key in _PIPELINE_ONLY:
                    context.error(f"setting {item.key!r} applies to the whole pipeline, not to one step",
                                  step=step, fix=f"move {item.key!r} to @pipeline(settings=...) or --set")

    def _pipeline_settings(self, pipeline: ir.Pipeline, context: EmitContext) -> PipelineSettings:
        role = context.setting(pipeline, "role_arn")
        if not role:
            context.error("SageMaker needs an IAM role for the pipeline and its jobs; no role_arn is set",
                          fix="--set role_arn=arn:aws:iam::<account>:role/<role>")
        elif not isinstance(role, str) or not _ROLE_ARN.match(role):
            context.error(f"role_arn {role!r} is not an IAM role ARN", fix="use arn:aws:iam::<account>:role/<name>")
        bucket = context.setting(pipeline, "bucket")
        if bucket is not None and (not isinstance(bucket, str) or not _BUCKET.match(bucket)):
            context.error(f"bucket {bucket!r} is not an S3 bucket name", fix="give the bucket's name, without s3://")
        root = pipeline.artifact_root or context.setting(pipeline, "artifact_root")
        if not root and bucket:
            root = f"s3://{bucket}/pipecast"
        if not root:
            context.error("SageMaker jobs need an artifact root every step can reach; none is set",
                          fix="--set artifact_root=s3://<bucket>/<prefix> (or --set bucket=<bucket>)")
        python = context.setting(pipeline, "python", "python")
        default_type = context.setting(pipeline, "instance_type", DEFAULT_INSTANCE_TYPE)
        return PipelineSettings(role_arn=str(role or ""), artifact_root=str(root or ""),
                                image=context.setting(pipeline, "image"), python=str(python),
                                default_instance_type=str(default_type))

    def _parameter(self, param: ir.Parameter, name: str, context: EmitContext) -> dict[str, Any]:
        entry: dict[str, Any] = {"Name": name, "Type": _PARAMETER_TYPES.get(param.type, "String")}
        if param.type not in _PARAMETER_TYPES:
            context.unsupported(f"parameter {param.name!r} has type {param.type.value!r}, which SageMaker "
                                "parameters cannot carry", location=str(param.location or ""))
        if param.default_json is None:
            return entry
        value = param.default
        if value is None:
            context.unsupported(f"parameter {param.name!r} defaults to None; SageMaker parameters cannot be null",
                                location=str(param.location or ""), fix="give it a real default")
            return entry
        if param.type in (ir.TypeName.DICT, ir.TypeName.LIST):
            value = ir.canonical_json(value)
        elif param.type is ir.TypeName.FLOAT:
            value = float(value)
        if isinstance(value, str) and len(value) > MAX_PARAMETER_DEFAULT:
            context.error(f"parameter {param.name!r} has a default of {len(value)} characters; SageMaker allows "
                          f"{MAX_PARAMETER_DEFAULT}", fix="shorten the default")
        entry["DefaultValue"] = value
        return entry

    def _create_request(self, pipeline: ir.Pipeline, context: EmitContext, settings: PipelineSettings,
                        sagemaker_name: str, size: int) -> dict[str, Any]:
        request: dict[str, Any] = {"PipelineName": sagemaker_name, "RoleArn": settings.role_arn}
        if pipeline.description:
            request["PipelineDescription"] = pipeline.description[:MAX_PIPELINE_DESCRIPTION]
        tags = []
        for tag in pipeline.tags:
            if not _TAG.match(tag) or tag.lower().startswith("aws:"):
                context.error(f"tag {tag!r} is not a valid AWS tag key", fix="use letters, digits, spaces and _.:/=+-@")
            tags.append({"Key": tag, "Value": ""})
        if tags:
            request["Tags"] = tags
        parallel = context.setting(pipeline, "max_parallel_steps")
        if parallel is not None:
            if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
                context.error(f"max_parallel_steps {parallel!r} must be a positive integer")
            request["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": parallel}
        limit = context.setting(pipeline, "inline_definition_limit", INLINE_DEFINITION_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            context.error(f"inline_definition_limit {limit!r} must be a positive number of bytes")
        elif size > limit:
            request["PipelineDefinitionS3Location"] = self._definition_location(pipeline, context, sagemaker_name)
        elif size > MAX_DEFINITION:
            context.error(f"the pipeline definition is {size} bytes; SageMaker takes {MAX_DEFINITION} inline",
                          fix=f"lower inline_definition_limit (default {INLINE_DEFINITION_LIMIT}) so it goes "
                              "through S3")
        return request

    def _definition_location(self, pipeline: ir.Pipeline, context: EmitContext, name: str) -> dict[str, str]:
        root = str(pipeline.artifact_root or context.setting(pipeline, "artifact_root") or "")
        bucket = context.setting(pipeline, "bucket")
        if root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://"):].partition("/")
            key = f"{prefix.strip('/')}/{pipeline.name}/sagemaker/{name}.pipeline.json".lstrip("/")
        elif bucket:
            key = f"pipecast/{pipeline.name}/sagemaker/{name}.pipeline.json"
        else:
            context.error("the definition is too large to send inline and there is no S3 bucket to upload it to",
                          fix="--set bucket=<bucket> or an s3:// artifact_root")
            bucket, key = "", ""
        return {"Bucket": str(bucket), "ObjectKey": key}

    def _schedule_request(self, pipeline: ir.Pipeline, context: EmitContext, settings: PipelineSettings,
                          sagemaker_name: str) -> dict[str, Any]:
        expression, reason = eventbridge_cron(pipeline.schedule or "")
        if expression is None:
            context.unsupported(f"schedule {pipeline.schedule!r} cannot be an EventBridge schedule: {reason}",
                                location=str(pipeline.location or ""),
                                fix="use either a day of the month or days of the week, not both")
        for param in pipeline.parameters:
            if param.required:
                context.unsupported(f"parameter {param.name!r} has no default, so a scheduled run cannot start",
                                    location=str(param.location or ""), fix="give it a default")
        region = context.setting(pipeline, "region")
        if not region or not isinstance(region, str) or not _REGION.match(region):
            context.error(f"the schedule targets the pipeline's ARN, which names its region; region is {region!r}",
                          fix="--set region=<aws region>, e.g. us-east-1")
        match = _ROLE_ARN.match(settings.role_arn)
        partition, account = match.groups() if match else ("aws", "")
        schedule_role = context.setting(pipeline, "schedule_role_arn", settings.role_arn)
        if not isinstance(schedule_role, str) or not _ROLE_ARN.match(schedule_role):
            context.error(f"schedule_role_arn {schedule_role!r} is not an IAM role ARN")
        return {
            "Name": rule_for("eventbridge_schedule").apply(sagemaker_name),
            "Description": f"Starts SageMaker pipeline {sagemaker_name} (pipecast pipeline {pipeline.name})"[:512],
            "ScheduleExpression": expression or "",
            "ScheduleExpressionTimezone": str(context.setting(pipeline, "schedule_timezone", "UTC")),
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            # SageMaker ARNs hold lower-cased names; submit replaces this with the ARN CreatePipeline returns.
            "Target": {"Arn": f"arn:{partition}:sagemaker:{region}:{account}:pipeline/{sagemaker_name.lower()}",
                       "RoleArn": str(schedule_role)},
        }

    def submit(self, pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
               config: Mapping[str, Any], run_id: str) -> RunHandle:
        from pipecast.targets.registry import require_extra
        from pipecast.targets.sagemaker.submit import submit_bundle

        require_extra(self)
        return submit_bundle(pipeline, bundle, parameters, config, run_id)

    def handle(self, record: Mapping[str, Any], config: Mapping[str, Any]) -> RunHandle:
        from pipecast.targets.registry import require_extra
        from pipecast.targets.sagemaker.submit import reconnect

        require_extra(self)
        return reconnect(record, config)
