"""AWS's published SageMaker pipeline-definition schema, as a validator, with its gaps patched in memory.

The schema is the project copy in ``tests/schemas/sagemaker/`` (see SOURCE.md there for its origin and
the gaps patched here); tests never read ``../shared``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from tests.helpers.cases import ROOT

SCHEMA_PATH = ROOT / "tests" / "schemas" / "sagemaker" / "pipeline-definition.schema.json"
SHARED_COPY = ROOT.parent / "shared" / "schemas" / "sagemaker" / "pipeline-definition.schema.json"


@lru_cache(maxsize=1)
def raw_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def patched_schema() -> dict[str, Any]:
    """The schema with the documented gaps closed (SOURCE.md, "Known gaps")."""
    schema = copy.deepcopy(raw_schema())
    definitions = schema["definitions"]
    # 1. Std:Join wherever a string argument is accepted, with a well-formed definition.
    definitions["JoinFunction"] = {
        "type": "object",
        "properties": {"Std:Join": {
            "type": "object",
            "properties": {
                "On": {"type": "string"},
                "Values": {"type": "array", "items": {"oneOf": [
                    {"type": "string"}, {"$ref": "#/definitions/GetFunction"}]}},
            },
            "required": ["Values"],
            "additionalProperties": False,
        }},
        "required": ["Std:Join"],
        "additionalProperties": False,
    }
    definitions["StringArgumentValue"]["oneOf"].append({"$ref": "#/definitions/JoinFunction"})
    # 2. ExceptionType is a list of the same enum.
    exception_type = definitions["RetryPolicy"]["properties"]["ExceptionType"]
    definitions["RetryPolicy"]["properties"]["ExceptionType"] = {
        "type": "array", "minItems": 1, "items": exception_type}
    # 3. Training jobs' container entrypoint, arguments and environment (CreateTrainingJob has them).
    processing = definitions["ProcessingArgs"]["properties"]
    training = definitions["TrainingStep"]["properties"]["Arguments"]["properties"]
    algorithm = training["AlgorithmSpecification"]["properties"]
    algorithm["ContainerEntrypoint"] = processing["AppSpecification"]["properties"]["ContainerEntrypoint"]
    algorithm["ContainerArguments"] = processing["AppSpecification"]["properties"]["ContainerArguments"]
    training["Environment"] = processing["Environment"]
    _patch_conditions(definitions)
    return schema


def _patch_conditions(definitions: dict[str, Any]) -> None:
    """4-6: conditions as the sagemaker SDK writes them, nested condition steps, property files."""
    definitions["JsonGetFunction"] = {
        "type": "object",
        "properties": {"Std:JsonGet": {
            "type": "object",
            "properties": {"PropertyFile": {"$ref": "#/definitions/GetFunction"}, "Path": {"type": "string"}},
            "required": ["PropertyFile", "Path"],
            "additionalProperties": False,
        }},
        "required": ["Std:JsonGet"],
        "additionalProperties": False,
    }
    value = {"anyOf": [{"type": ["string", "number", "boolean"]}, {"$ref": "#/definitions/GetFunction"},
                       {"$ref": "#/definitions/JsonGetFunction"}]}
    binary = definitions["BinaryCondition"]["properties"]
    for side in ("LeftValue", "RightValue"):
        binary[side]["anyOf"].append({"$ref": "#/definitions/JsonGetFunction"})
    any_condition = {"anyOf": [{"$ref": f"#/definitions/{name}"}
                               for name in ("BinaryCondition", "InCondition", "OrCondition", "NotCondition")]}
    definitions["InCondition"] = {
        "type": "object",
        "properties": {"Type": {"type": "string", "enum": ["In"]}, "QueryValue": value,
                       "Values": {"type": "array", "items": value}},
        "required": ["Type", "QueryValue", "Values"],
        "additionalProperties": False,
    }
    definitions["NotCondition"] = {
        "type": "object",
        "properties": {"Type": {"type": "string", "enum": ["Not"]}, "Condition": any_condition},
        "required": ["Type", "Condition"],
        "additionalProperties": False,
    }
    definitions["OrCondition"]["properties"]["Conditions"]["items"] = any_condition
    arguments = definitions["ConditionStep"]["properties"]["Arguments"]["properties"]
    arguments["Conditions"]["items"] = any_condition
    for branch in ("IfSteps", "ElseSteps"):
        arguments[branch]["items"]["oneOf"].append({"$ref": "#/definitions/ConditionStep"})
    definitions["ProcessingStep"]["properties"]["PropertyFiles"] = {"type": "array", "items": {
        "type": "object",
        "properties": {key: {"type": "string"} for key in ("PropertyFileName", "OutputName", "FilePath")},
        "required": ["PropertyFileName", "OutputName", "FilePath"],
        "additionalProperties": False,
    }}


@lru_cache(maxsize=2)
def validator(patched: bool = True) -> jsonschema.Draft7Validator:
    schema = patched_schema() if patched else raw_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(definition: dict[str, Any], patched: bool = True) -> list[str]:
    """Every validation error, each with the path of the failing value."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(patched).iter_errors(definition)]


def functions(value: Any) -> Iterator[dict[str, Any]]:
    """Every ``Get`` and ``Std:Join`` object anywhere in ``value``."""
    if isinstance(value, dict):
        if "Get" in value or "Std:Join" in value:
            yield value
        for item in value.values():
            yield from functions(item)
    elif isinstance(value, list):
        for item in value:
            yield from functions(item)


def unresolved_references(definition: dict[str, Any]) -> list[str]:
    """``Get`` paths that name nothing: an undeclared parameter, a step's undeclared property file, or else."""
    declared = {p["Name"] for p in definition.get("Parameters", [])}
    property_files = {f"Steps.{step['Name']}.PropertyFiles.{file['PropertyFileName']}"
                      for step in all_steps(definition["Steps"]) for file in step.get("PropertyFiles", [])}
    problems = []
    for function in functions(definition):
        path = function.get("Get")
        if path is None:
            continue
        if path == "Execution.PipelineExecutionId" or path in property_files:
            continue
        if path.startswith("Parameters.") and path.removeprefix("Parameters.") in declared:
            continue
        problems.append(path)
    return problems


def all_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every step, with those inside condition steps' branches."""
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                yield from all_steps(step["Arguments"].get(branch, []))


def shared_copy() -> Path | None:
    """The shared copy the project copy was taken from, when this checkout has it beside it."""
    return SHARED_COPY if SHARED_COPY.exists() else None
