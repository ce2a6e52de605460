"""The SageMaker replayer (DESIGN §4): run a pipeline definition's steps here, as SageMaker would.

It reads only the emitted JSON: steps are ordered by their ``DependsOn``; ``Get``/``Std:Join`` are
evaluated as SageMaker documents them (a parameter's value as text, ``Execution.PipelineExecutionId``
as the execution id, ``Std:Join`` joining its values with ``On``), and only in the fields where pipeline
variables are accepted: a processing job's ``ContainerEntrypoint``/``ContainerArguments`` items (AWS's
pipeline-definition schema, ``StringArgumentValue``; the sagemaker SDK's ``Processor.run(arguments=...)``)
and ``Environment`` values; a training job's ``Environment`` values only (the SDK's estimators and
``ModelTrainer`` take pipeline variables in ``environment``, never in container arguments). A function
anywhere else fails the replay. Each step's container entrypoint and arguments then run with its
``Environment``. It shares no code with the target on purpose.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from tests.helpers.replay import run_task


def as_text(value: Any) -> str:
    """A parameter's value as SageMaker substitutes it into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(value: Any, parameters: Mapping[str, str], execution_id: str) -> str:
    if isinstance(value, str):
        return value
    if "Get" in value:
        path = value["Get"]
        if path == "Execution.PipelineExecutionId":
            return execution_id
        assert path.startswith("Parameters."), f"replay cannot resolve {path!r}"
        return parameters[path[len("Parameters."):]]
    join = value["Std:Join"]
    return join.get("On", "").join(evaluate(v, parameters, execution_id) for v in join["Values"])


def order_steps(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steps in an order that respects every ``DependsOn`` (a cycle or unknown name fails)."""
    steps = {s["Name"]: s for s in definition["Steps"]}
    done: list[str] = []
    pending = list(steps)
    while pending:
        ready = [n for n in pending if all(d in done for d in steps[n].get("DependsOn", []))]
        assert ready, f"steps {pending!r} wait on each other or on unknown steps"
        done += ready
        pending = [n for n in pending if n not in ready]
    return [steps[n] for n in done]


def commands(definition_text: str, parameters: list[dict[str, str]], execution_id: str
             ) -> list[tuple[str, list[str], dict[str, str]]]:
    """``(step name, argv, env)`` of every step, in dependency order, with values substituted."""
    definition = json.loads(definition_text)
    values = {p["Name"]: as_text(p["DefaultValue"]) for p in definition.get("Parameters", []) if "DefaultValue" in p}
    values.update({p["Name"]: p["Value"] for p in parameters})
    result = []
    for step in order_steps(definition):
        arguments = step["Arguments"]
        spec = arguments["AppSpecification"] if step["Type"] == "Processing" else arguments["AlgorithmSpecification"]
        words = spec["ContainerEntrypoint"] + spec["ContainerArguments"]
        if step["Type"] != "Processing":
            assert all(isinstance(w, str) for w in words), \
                f"{step['Name']}: SageMaker substitutes no pipeline function in a training job's container command"
        argv = [evaluate(v, values, execution_id) for v in words]
        env = {k: evaluate(v, values, execution_id) for k, v in arguments.get("Environment", {}).items()}
        result.append((step["Name"], argv, env))
    return result


def replay(definition_text: str, parameters: list[dict[str, str]], execution_id: str) -> list[str]:
    """Run every step; return the step names in the order they ran."""
    ran = []
    # `python` in the image is the one holding pipecast: here, the interpreter running the tests.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    for name, argv, env in commands(definition_text, parameters, execution_id):
        run_task(argv, {**env, "PATH": path})
        ran.append(name)
    return ran
