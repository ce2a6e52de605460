"""One pipecast step as one SageMaker pipeline step: a Processing job, or a Training job on request.

Both kinds run the pipecast runtime's command (exec form) in the step's image. A processing job's
entrypoint is the command's first three words and its arguments the rest, with the run id and parameters
as pipeline functions in the arguments. A training job takes pipeline functions only in its
``Environment``, so its entrypoint is :data:`~pipecast.targets.sagemaker.expressions.LAUNCHER`, which
puts those variables into the command (see :mod:`pipecast.targets.sagemaker.expressions`). Limits from
SageMaker's API model (botocore) are checked here, at compile time, where the values are known.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import Problem
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.lowering import (
    env_in_effect,
    retry_plan,
    runtime_command,
    set_by_step,
    step_image,
    worst_case_whole_seconds,
)
from pipecast.targets.sagemaker import expressions, flow, job_args, metrics, outputs
from pipecast.targets.sagemaker.instances import PROCESSING, TRAINING, choose_instance
from pipecast.targets.sagemaker.schedule import LOGICAL_TIME_PARAMETER
from pipecast.targets.sagemaker.settings import MAX_INSTANCE_COUNT, SageMakerSettings

# Limits from botocore's SageMaker model (service-2.json) for CreateProcessingJob / CreateTrainingJob.
MAX_ARGUMENT_LENGTH = 256  # ContainerArgument and ContainerEntrypointString
MAX_ARGUMENTS = 100  # ContainerArguments and ContainerEntrypoint items
MAX_ENV_VALUE = {PROCESSING: 256, TRAINING: 512}  # ProcessingEnvironmentValue / TrainingEnvironmentValue
MAX_ENV_ENTRIES = 100
MAX_RUNTIME = {PROCESSING: 777_600, TRAINING: 28 * 86_400}  # seconds
MAX_DESCRIPTION = 4096  # a step's Description in the definition schema
NOMINAL_EXECUTION_ID = "x" * 12  # SageMaker execution ids are 12 characters

_ENV_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# The exception types SageMaker's step retry policies accept. None of them is a failure of the user's
# code (a job's AlgorithmError): those are retried by the runtime, inside the job.
STEP_EXCEPTIONS = ("Step.SERVICE_FAULT", "Step.THROTTLING")
JOB_EXCEPTIONS = ("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT")

STEP_TYPES = {PROCESSING: "Processing", TRAINING: "Training"}


class StepLowering:
    """Lowers the steps of one pipeline; reports problems to the EmitContext."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext, artifact_root: str,
                 step_names: Mapping[str, str], parameter_names: Mapping[str, str], *,
                 logical_time: bool = False) -> None:
        self.pipeline = pipeline
        self.logical_time = logical_time  # a scheduled pipeline: every step gets its run's scheduled time
        self.context = context
        self.settings: SageMakerSettings = context.settings
        self.artifact_root = artifact_root
        self.step_names = step_names
        self.parameter_names = parameter_names
        self.notices: list[Problem] = []  # steps whose typed outputs Studio does not list, and why
        self.syntax = EngineSyntax(
            run_id=expressions.RUN_ID_PLACEHOLDER,
            parameter=lambda p: expressions.parameter_placeholder(p.name),
            artifact_root=artifact_root,
            python=self.settings.python,
        )
        # The text SageMaker substitutes for each parameter's default, to check argument lengths early.
        self.default_text = {
            parameter_names[p.name]: render_parameter(p.type, p.default)
            for p in pipeline.parameters if p.default is not None
        }

    def step(self, step: ir.Step, publish: list[str] | None = None) -> dict[str, Any]:
        """The SageMaker step for ``step``; ``publish``: its outputs a condition reads (a property file)."""
        own: SageMakerSettings = self.context.settings_for(step)
        job = own.step_type
        # SageMaker's RetryPolicies never retry a failure of the step's code: the runtime retries, and then
        # also bounds each try (MaxRuntimeInSeconds bounds them all).
        plan = retry_plan(step, engine_retries=False)
        command = runtime_command(self.pipeline, step, self.syntax, plan)
        output_config: dict[str, Any] = {"Outputs": []}
        if publish:
            uri = expressions.to_expression(f"{self.artifact_root.rstrip('/')}/{self.pipeline.name}/sagemaker/"
                                            f"{expressions.RUN_ID_PLACEHOLDER}/{self.step_names[step.name]}/"
                                            f"{flow.PROPERTY_FILE}", self.parameter_names)
            publish_argv, output_config, property_files = flow.property_file_arguments(uri, publish)
            command += publish_argv
        if job == TRAINING:  # typed outputs go where SageMaker uploads a training job's model and output data
            training_argv, extra = outputs.training_arguments(step)
            command += training_argv + metrics.arguments(own.metrics)
            if extra:
                self.notices.append(outputs.extra_models(step, extra))
        elif own.metrics:  # only a training job has MetricDefinitions (CreateProcessingJob has none)
            self.notices.append(metrics.not_training(step))
        entrypoint, container_arguments, execution_env = self._container_command(step, job, command)
        image = step_image(self.pipeline, step, self.context, why="SageMaker runs every step in one")
        instance_type = self._instance_type(step, job)
        count = own.instance_count
        if count > MAX_INSTANCE_COUNT[job]:
            self.context.error(f"setting 'instance_count' is {count}; SageMaker {job} jobs take at most "
                               f"{MAX_INSTANCE_COUNT[job]} instances", step=step,
                               fix=f"--set instance_count={MAX_INSTANCE_COUNT[job]} or less")
        environment = self._environment(step, job, execution_env)
        max_runtime = self._max_runtime(step, job)

        result: dict[str, Any] = {"Name": self.step_names[step.name], "Type": STEP_TYPES[job]}
        if step.description:
            result["Description"] = step.description[:MAX_DESCRIPTION]
        depends = [self.step_names[name] for name in step.upstream()]
        if depends:
            result["DependsOn"] = depends
        cluster = {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": own.volume_size_gb}
        if job == PROCESSING:
            args: dict[str, Any] = {
                "ProcessingResources": {"ClusterConfig": cluster},
                "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": entrypoint,
                                     "ContainerArguments": container_arguments},
                "RoleArn": self.settings.role_arn or "",
            }
        else:
            args = {
                "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File",
                                           "ContainerEntrypoint": entrypoint,
                                           "ContainerArguments": container_arguments,
                                           **({"MetricDefinitions": metrics.definitions(own.metrics)}
                                              if own.metrics else {})},
                # SageMaker uploads /opt/ml/model (a typed Model output, see .outputs) and /opt/ml/output/data
                # under S3OutputPath/<job name>/output/; pipecast's own copy of every output is in the artifact root.
                "OutputDataConfig": {"S3OutputPath": f"{self.artifact_root.rstrip('/')}/"
                                                     f"{self.pipeline.name}/sagemaker/training-output"},
                "ResourceConfig": cluster,
                "RoleArn": self.settings.role_arn or "",
            }
        listed = self._artifact_outputs(step, job, 1 if publish else 0)
        if job == PROCESSING and (publish or listed):
            args["ProcessingOutputConfig"] = {"Outputs": output_config["Outputs"] + listed}
        if environment:
            args["Environment"] = environment
        if max_runtime is not None:
            args["StoppingCondition"] = {"MaxRuntimeInSeconds": max_runtime}
        self._job_args(step, job, own, args)
        result["Arguments"] = args
        if publish and job == PROCESSING:
            result["PropertyFiles"] = property_files
        if plan.runtime:  # and SageMaker retries what it can: service and job-infrastructure errors
            result["RetryPolicies"] = retry_policies(step.retry)
        return result

    def _artifact_outputs(self, step: ir.Step, job: str, taken: int) -> list[dict[str, Any]]:
        """The processing outputs that list the step's typed artifacts in Studio (see :mod:`.outputs`)."""
        if job != PROCESSING:
            return []  # a training job's go to its model and output data (StepLowering.step)
        listed, why = outputs.artifact_outputs(self.pipeline, step, self.artifact_root, self.parameter_names, taken)
        if why:
            self.notices.append(outputs.unlisted(step, why))
        return listed

    def _job_args(self, step: ir.Step, job: str, own: SageMakerSettings, args: dict[str, Any]) -> None:
        """The escape hatch: the step's processor_args or estimator_args, where its job request holds them."""
        other = TRAINING if job == PROCESSING else PROCESSING
        if set_by_step(step, self.context, job_args.SETTING[other]):
            self.context.error(f"the step sets {job_args.SETTING[other]}, but it runs a {job} job", step=step,
                               fix=f"use {job_args.SETTING[job]}, or settings={{'sagemaker': "
                                   f"{{'step_type': {other!r}}}}}")
        problem = job_args.apply(args, job, getattr(own, job_args.SETTING[job]))
        if problem:
            self.context.error(problem, step=step, fix="raise max_wait, or lower the step's timeout or retries")

    def _container_command(self, step: ir.Step, job: str,
                           command: list[str]) -> tuple[list[str], list[Any], dict[str, Any]]:
        """The entrypoint, the container arguments, and the environment that carries the run's values.

        A processing job takes pipeline functions in its arguments; a training job only in its environment,
        so its entrypoint is the launcher that puts them into the command.
        """
        execution_env: dict[str, Any] = {}
        if job == TRAINING:
            entrypoint = [self.settings.python, "-c", expressions.LAUNCHER]
            container_arguments: list[Any] = [expressions.to_launcher_text(word) for word in command]
            for token in dict.fromkeys(t for word in command for t in expressions.placeholders(word)):
                execution_env[expressions.environment_name(token)] = expressions.token_expression(
                    token, self.parameter_names)
            self._check_launcher_command(step, entrypoint, container_arguments, execution_env)
            return entrypoint, container_arguments, execution_env
        entrypoint, arguments = command[:3], command[3:]
        self._check_command(step, entrypoint, arguments)
        return entrypoint, [expressions.to_expression(a, self.parameter_names) for a in arguments], execution_env

    def _instance_type(self, step: ir.Step, job: str) -> str:
        """The step's own instance type, else the pipeline's for a step without resources, else the table's."""
        if set_by_step(step, self.context, "instance_type") or not step.resources:
            return str(self.context.settings_for(step).instance_type)
        chosen, reason = choose_instance(step.resources, job)
        if chosen is None:
            self.context.unsupported(f"no SageMaker instance type for the step's resources: {reason}", step=step,
                                     fix="set the step's instance type: settings={'sagemaker': "
                                         "{'instance_type': 'ml.…'}}")
            return str(self.settings.instance_type)
        return chosen.name

    def _check_command(self, step: ir.Step, entrypoint: list[str], arguments: list[str]) -> None:
        if len(arguments) > MAX_ARGUMENTS:
            self.context.unsupported(
                f"the step's runtime command has {len(arguments)} arguments; SageMaker allows {MAX_ARGUMENTS}",
                step=step, fix="pass fewer inputs: group values into one dict input")
        for word in entrypoint:
            if len(word) > MAX_ARGUMENT_LENGTH:
                self.context.error(f"python {word!r} is longer than SageMaker's {MAX_ARGUMENT_LENGTH} characters",
                                   fix="--set python=<a shorter path>")
        for argument in arguments:
            length = self._length_with_defaults(argument)
            if length is not None and length > MAX_ARGUMENT_LENGTH:
                self.context.unsupported(
                    f"runtime argument {argument[:60]!r}… is {length} characters with its default values; "
                    f"SageMaker allows {MAX_ARGUMENT_LENGTH} per container argument",
                    step=step, fix="produce long values in an upstream step and pass its output (outputs travel "
                                   "through the artifact store, not the command line)")

    def _length_with_defaults(self, argument: str) -> int | None:
        """The argument's length once substituted, or ``None`` if a parameter has no default to measure."""
        if not expressions.has_placeholder(argument):
            return len(argument)
        try:
            return len(expressions.resolve(expressions.to_expression(argument, self.parameter_names),
                                           self.default_text, NOMINAL_EXECUTION_ID))
        except KeyError:
            return None

    def _check_launcher_command(self, step: ir.Step, entrypoint: list[str], arguments: list[str],
                                execution_env: Mapping[str, Any]) -> None:
        """A training job's limits: its text as written, and each value its environment receives."""
        if len(arguments) > MAX_ARGUMENTS:
            self.context.unsupported(
                f"the step's runtime command has {len(arguments)} arguments; SageMaker allows {MAX_ARGUMENTS}",
                step=step, fix="pass fewer inputs: group values into one dict input")
        for word in (*entrypoint, *arguments):
            if len(word) > MAX_ARGUMENT_LENGTH:
                self.context.unsupported(
                    f"runtime argument {word[:60]!r}… is {len(word)} characters; SageMaker allows "
                    f"{MAX_ARGUMENT_LENGTH} per container argument", step=step,
                    fix="produce long values in an upstream step and pass its output (outputs travel through "
                        "the artifact store, not the command line)")
        for name, value in execution_env.items():
            text = self.default_text.get(str(value["Get"]).removeprefix("Parameters."), "")
            if len(text) > MAX_ENV_VALUE[TRAINING]:
                self.context.unsupported(
                    f"the default of the parameter in {name!r} is {len(text)} characters; a training job's "
                    f"environment values hold {MAX_ENV_VALUE[TRAINING]}", step=step, fix="shorten the default")

    def _environment(self, step: ir.Step, job: str, execution_env: Mapping[str, Any]) -> dict[str, Any]:
        env: dict[str, Any] = dict(env_in_effect(self.pipeline, step))
        for name in sorted(set(env) & set(execution_env)):
            self.context.error(f"environment variable {name!r} is where a training job gets a value of the run",
                               step=step, fix="rename the variable (PIPECAST_* names are pipecast's)")
        limit = MAX_ENV_VALUE[job]
        for key, value in env.items():
            if not _ENV_NAME.match(key) or len(key) > 256:
                self.context.error(f"environment variable name {key!r} is not allowed by SageMaker "
                                   "([a-zA-Z_][a-zA-Z0-9_]*, up to 256 characters)", step=step)
            if len(value) > limit:
                self.context.error(
                    f"environment variable {key!r} is {len(value)} characters; SageMaker {job} jobs allow {limit}",
                    step=step, fix="shorten it, or pass the value as a step input")
        env.update(execution_env)
        if self.logical_time and LOGICAL_TIME_VAR not in env:  # a value the user set stays (as on Argo)
            env[LOGICAL_TIME_VAR] = {"Get": f"Parameters.{LOGICAL_TIME_PARAMETER}"}
        if len(env) > MAX_ENV_ENTRIES:
            self.context.error(f"the step has {len(env)} environment variables with pipecast's; SageMaker allows "
                               f"{MAX_ENV_ENTRIES}", step=step)
        return env

    def _max_runtime(self, step: ir.Step, job: str) -> int | None:
        """``MaxRuntimeInSeconds``: the timeout, or with runtime retries a bound on every try and delay."""
        seconds = worst_case_whole_seconds(step)
        if seconds is not None and seconds > MAX_RUNTIME[job]:
            self.context.unsupported(
                f"the step may run {seconds}s (timeout × tries + retry delays); SageMaker {job} jobs stop after "
                f"{MAX_RUNTIME[job]}s", step=step, fix="lower the timeout or the retries")
        return seconds


def retry_policies(retry: ir.RetryPolicy) -> list[dict[str, Any]]:
    """Retry policies for the failures SageMaker can retry itself: service faults and job infrastructure.

    ``ExceptionType`` is a list, as AWS documents the field and the sagemaker SDK emits it.
    """
    timing = {"IntervalSeconds": max(1, math.ceil(retry.delay_seconds)), "BackoffRate": float(retry.backoff),
              "MaxAttempts": retry.retries}
    return [{"ExceptionType": list(STEP_EXCEPTIONS), **timing}, {"ExceptionType": list(JOB_EXCEPTIONS), **timing}]
