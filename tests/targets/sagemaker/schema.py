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
    """The schema with the three documented gaps closed (SOURCE.md, "Known gaps")."""
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
    return schema


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
    """``Get`` paths that name nothing: an undeclared parameter, or anything but the execution id."""
    declared = {p["Name"] for p in definition.get("Parameters", [])}
    problems = []
    for function in functions(definition):
        path = function.get("Get")
        if path is None:
            continue
        if path == "Execution.PipelineExecutionId":
            continue
        if path.startswith("Parameters.") and path.removeprefix("Parameters.") in declared:
            continue
        problems.append(path)
    return problems


def shared_copy() -> Path | None:
    """The shared copy the project copy was taken from, when this checkout has it beside it."""
    return SHARED_COPY if SHARED_COPY.exists() else None
