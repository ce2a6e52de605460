"""What a KFP/Vertex task declares it produces, so that the engine's UI shows it.

Each step's component declares, in ``outputDefinitions``:

- an output **parameter** per scalar output (``str``, ``int``, ``float``, ``bool``), typed as kfp's compiler types
  a ``dsl.OutputPath(int)`` and the like. The KFP launcher reads each one, after the container exits, from
  the file the executor input names (``outputs.parameters[name].outputFile``) and fails the task if it is
  missing (``backend/src/v2/component/launcher_v2.go``, ``collectOutputParameters``);
- one output **artifact**, :data:`OUTPUT_ARTIFACT` (``system.Artifact``), whose URI is the step's folder in
  pipecast's artifact store (the runtime names it in ``executor_output.json``; see
  :mod:`pipecast.runtime.kfp_outputs`);
- an output artifact per **typed** output (``-> Model``, ``Output[Metrics]``…), named after it and typed as kfp
  2.17 types ``Output[Model]`` (``system.Model``, schemaVersion ``0.0.1``): its URI is the output's file or
  folder, its metadata the artifact's (a Metrics artifact's metrics, as ``Metrics.log_metric`` records them).

The runtime learns where to write from the executor input, ``{{$}}`` — the placeholder kfp's own Python
components pass as ``--executor_input`` (``kfp/dsl/placeholders.py``, ``ExecutorInputPlaceholder``), which
the KFP launcher (``compileCmdAndArgs``) and Vertex AI substitute.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext

OUTPUT_ARTIFACT = "pipecast_outputs"
EXECUTOR_INPUT_FLAG = "--kfp-executor-input"
EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"  # kfp.dsl.placeholders.ExecutorInputPlaceholder
ARTIFACT_TYPE = {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}  # kfp.dsl.Artifact

# The outputs small and plain enough for an output parameter, and the parameterType kfp 2.17's compiler gives
# the matching dsl.OutputPath (kfp/dsl/types/type_utils.py, PARAMETER_TYPES_MAPPING). Dicts, lists and Python
# objects stay in pipecast's artifact store only: their size is unbounded.
SCALAR_TYPES: Mapping[ir.TypeName, str] = {
    ir.TypeName.STR: "STRING",
    ir.TypeName.INT: "NUMBER_INTEGER",
    ir.TypeName.FLOAT: "NUMBER_DOUBLE",
    ir.TypeName.BOOL: "BOOLEAN",
}


def artifact_type(schema: str) -> dict[str, str]:
    """The artifactType kfp's compiler gives ``Output[<schema>]`` (kfp/dsl/types/artifact_types.py)."""
    return {"schemaTitle": f"system.{schema}", "schemaVersion": "0.0.1"}


def typed_outputs(step: ir.Step, lists: Collection[str] = ()) -> dict[str, str]:
    """The step's typed outputs that become output artifacts of their own, with their schema, by name.

    An output a map iterates stays a LIST output parameter only (one name, one kind, as kfp's compiler requires).
    """
    return {out.name: out.artifact for out in sorted(step.outputs, key=lambda o: o.name)
            if out.artifact and out.name not in output_parameters(step, lists)}


def executor_input_args() -> list[str]:
    """The runtime arguments that hand it the executor input."""
    return [EXECUTOR_INPUT_FLAG, EXECUTOR_INPUT_PLACEHOLDER]


def output_parameters(step: ir.Step, lists: Collection[str] = ()) -> dict[str, str]:
    """The step's outputs that become output parameters, with their parameterType, by name.

    ``lists`` are the step's list outputs a map iterates: the engine expands the map over them, so they are
    LIST output parameters too (bounded by the runtime, :mod:`pipecast.runtime.publish_kfp`).
    """
    return {out.name: SCALAR_TYPES.get(out.type, "LIST") for out in sorted(step.outputs, key=lambda o: o.name)
            if out.type in SCALAR_TYPES or out.name in lists}


def output_definitions(step: ir.Step, lists: Collection[str] = ()) -> dict[str, Any]:
    """The component's ``outputDefinitions``, keys in the order kfp's compiler writes them."""
    typed = typed_outputs(step, lists)
    artifacts = {OUTPUT_ARTIFACT: {"artifactType": dict(ARTIFACT_TYPE)},
                 **{name: {"artifactType": artifact_type(schema)} for name, schema in typed.items()}}
    definitions: dict[str, Any] = {"artifacts": dict(sorted(artifacts.items()))}
    parameters = output_parameters(step, lists)
    if parameters:
        definitions["parameters"] = {name: {"parameterType": kind} for name, kind in parameters.items()}
    return definitions


def check_output_names(step: ir.Step, context: EmitContext, title: str, engine: str) -> None:
    """An output may not take the name of the step's artifact (one namespace holds both)."""
    if any(out.name == OUTPUT_ARTIFACT for out in step.outputs):
        context.error(f"step {step.name!r} has an output named {OUTPUT_ARTIFACT!r}, the output artifact that "
                      f"shows the step's folder in the {title} UI", step=step,
                      fix=f"rename the output (names starting with 'pipecast_' are the {engine} target's own)")
