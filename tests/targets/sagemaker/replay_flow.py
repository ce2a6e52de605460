"""The SageMaker replayer for ConditionSteps: runs steps, evaluates conditions and skips as SageMaker does.

Only what SageMaker documents, and nothing more generous:

- A ``Condition`` step evaluates its ``Conditions`` (every one must hold) and marks its ``IfSteps`` ready for
  execution when they all do, else its ``ElseSteps`` (sagemaker SDK, ``ConditionStep``: "If all of the conditions in
  the condition list evaluate to True, the if_steps are marked as ready for execution. Otherwise, the else_steps
  are marked as ready for execution"; AWS developer guide, "Condition step"). Steps of a branch not marked never
  run.
- A step starts when every step it depends on — its ``DependsOn`` and every step its arguments reference with
  ``Get: Steps.X…`` (AWS, "Pipelines overview": data dependencies come from property references) — has succeeded.
  A step whose dependency never ran never starts (SageMaker ANDs dependencies: aws/sagemaker-python-sdk#3565), and
  no step may depend on a condition step (SageMaker refuses the pipeline, same issue).
- ``Std:JsonGet`` reads the property file a processing step declared in ``PropertyFiles``: the file ``FilePath``
  in the folder of its ``OutputName`` output, uploaded when the job ended (AWS, "Property files"; the SDK's
  ``PropertyFile``/``JsonGet``). The output's ``LocalPath`` is the job's mount; here it is a temporary folder,
  substituted where a container word starts with it. ``Path`` is a JsonPath: only plain members are resolved, any
  other path fails the replay.
- Comparisons (``Equals``, ``GreaterThan``…, ``In``, ``Not``, ``Or``): ordering only between numbers, equality and
  membership only between values of one JSON type; anything else fails the replay instead of guessing how
  SageMaker would coerce it. Parameters are typed by their declared ``Type``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.helpers.replay import run_task
from tests.targets.sagemaker.replay import as_text, evaluate

_ORDER = {"GreaterThan": lambda a, b: a > b, "GreaterThanOrEqualTo": lambda a, b: a >= b,
          "LessThan": lambda a, b: a < b, "LessThanOrEqualTo": lambda a, b: a <= b}
_MEMBER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def flatten(steps: list[dict[str, Any]], branch: tuple[str, str] | None = None
            ) -> Iterator[tuple[dict[str, Any], tuple[str, str] | None]]:
    """Every step with the (condition step, "IfSteps"/"ElseSteps") branch it sits in (None: the top)."""
    for step in steps:
        yield step, branch
        if step["Type"] == "Condition":
            for key in ("IfSteps", "ElseSteps"):
                yield from flatten(step["Arguments"].get(key, []), (step["Name"], key))


def references(value: Any) -> set[str]:
    """Steps a value references with ``Get: Steps.NAME…``."""
    if isinstance(value, dict):
        found = set()
        if isinstance(value.get("Get"), str) and value["Get"].startswith("Steps."):
            found.add(value["Get"].split(".")[1])
        for item in value.values():
            found |= references(item)
        return found
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


class FlowReplay:
    """One execution of a definition: which steps ran, each condition's outcome, property files read."""

    def __init__(self, definition_text: str, parameters: list[dict[str, str]], execution_id: str) -> None:
        self.definition = json.loads(definition_text)
        declared = {p["Name"]: p for p in self.definition.get("Parameters", [])}
        self.text = {name: as_text(p["DefaultValue"]) for name, p in declared.items() if "DefaultValue" in p}
        self.text.update({p["Name"]: p["Value"] for p in parameters})
        self.types = {name: p["Type"] for name, p in declared.items()}
        self.execution_id = execution_id
        self.ran: list[str] = []
        self.outcomes: dict[str, bool] = {}
        self.property_files: dict[tuple[str, str], Any] = {}

    def run(self) -> list[str]:
        steps = list(flatten(self.definition["Steps"]))
        names = [s["Name"] for s, _ in steps]
        assert len(names) == len(set(names)), f"step names repeat: {names}"
        by_name = {s["Name"]: (s, branch) for s, branch in steps}
        for step, _ in steps:  # SageMaker refuses a condition step as a dependency (sagemaker-python-sdk#3565)
            named = [d for d in step.get("DependsOn", []) if by_name[d][0]["Type"] == "Condition"]
            assert not named, f"{step['Name']} depends on condition step(s) {named}"
        marked = {name for name, (_, branch) in by_name.items() if branch is None}
        pending = list(names)
        while True:
            ready = [n for n in pending
                     if n in marked and all(d in self.ran for d in self._dependencies(by_name[n][0]))]
            if not ready:
                return self.ran  # the rest never start: unmarked, or behind a step that never ran
            name = ready[0]
            pending.remove(name)
            step = by_name[name][0]
            if step["Type"] == "Condition":
                outcome = all(self._holds(c) for c in step["Arguments"]["Conditions"])
                self.outcomes[name] = outcome
                chosen = step["Arguments"].get("IfSteps" if outcome else "ElseSteps", [])
                marked |= {s["Name"] for s in chosen}
            else:
                self._run_job(step)
            self.ran.append(name)

    def _dependencies(self, step: dict[str, Any]) -> set[str]:
        arguments = step["Arguments"]
        if step["Type"] == "Condition":
            arguments = arguments["Conditions"]  # its branches' own references are theirs
        return set(step.get("DependsOn", [])) | references(arguments)

    def _run_job(self, step: dict[str, Any]) -> None:
        assert step["Type"] == "Processing" or "PropertyFiles" not in step, "only processing steps have them"
        arguments = step["Arguments"]
        spec = arguments["AppSpecification"] if step["Type"] == "Processing" else arguments["AlgorithmSpecification"]
        words = [evaluate(v, self.text, self.execution_id) for v in spec["ContainerEntrypoint"]
                 + spec["ContainerArguments"]]
        env = {k: evaluate(v, self.text, self.execution_id) for k, v in arguments.get("Environment", {}).items()}
        with tempfile.TemporaryDirectory() as mount:
            outputs = {}
            for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
                local = output["S3Output"]["LocalPath"]
                folder = Path(mount) / output["OutputName"]
                folder.mkdir()
                outputs[output["OutputName"]] = folder
                words = [str(folder) + w[len(local):] if w == local or w.startswith(local + "/") else w
                         for w in words]
            path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
            run_task(words, {**env, "PATH": path})
            for declared in step.get("PropertyFiles", []):
                file = outputs[declared["OutputName"]] / declared["FilePath"]
                self.property_files[(step["Name"], declared["PropertyFileName"])] = json.loads(file.read_text())

    def _value(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "Std:JsonGet" in value:
            spec = value["Std:JsonGet"]
            _, step, kind, name = spec["PropertyFile"]["Get"].split(".")
            assert kind == "PropertyFiles", spec
            assert step in self.ran, f"{step} has not run: its property file does not exist"
            document = self.property_files[(step, name)]
            for member in spec["Path"].split("."):
                assert _MEMBER.match(member), f"the replay resolves plain JsonPath members only: {spec['Path']!r}"
                document = document[member]
            return document
        path = value["Get"]
        assert path.startswith("Parameters."), f"the replay cannot resolve {path!r} in a condition"
        name = path[len("Parameters."):]
        text, kind = self.text[name], self.types[name]
        return {"Integer": int, "Float": float, "Boolean": lambda t: t == "true", "String": str}[kind](text)

    def _holds(self, condition: Mapping[str, Any]) -> bool:
        kind = condition["Type"]
        if kind == "Not":
            return not self._holds(condition["Condition"])
        if kind == "Or":
            return any(self._holds(c) for c in condition["Conditions"])
        if kind == "In":
            query = self._value(condition["QueryValue"])
            values = [self._value(v) for v in condition["Values"]]
            for value in values:
                _same_type(query, value)
            return query in values
        left, right = self._value(condition["LeftValue"]), self._value(condition["RightValue"])
        if kind == "Equals":
            _same_type(left, right)
            return bool(left == right)
        assert _number(left) and _number(right), f"{kind} orders numbers only here: {left!r}, {right!r}"
        return bool(_ORDER[kind](left, right))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_type(left: Any, right: Any) -> None:
    assert type(left) is type(right), f"the replay does not guess how SageMaker compares {left!r} and {right!r}"
