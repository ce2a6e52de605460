"""What GitHub Actions does with a workflow, as far as the tests need it, written from GitHub's documentation.

- :func:`load_workflow` reads YAML as GitHub does (YAML 1.2: ``on`` is a string key).
- :func:`render` evaluates a ``${{ }}`` template: GitHub scans for ``}}`` outside '…' string literals, and
  the expression language's literals double a quote to escape it. Only what pipecast emits is supported
  (context paths, string literals, ``||``); anything else fails loudly, so a change in the emitter cannot
  slip past the replay unnoticed.
- :func:`replay` runs a workflow's jobs on this machine in ``needs`` order, each in a fresh runner temp
  folder, moving data only through a simulated artifact service (upload-artifact / download-artifact).
  Each field is evaluated with only the contexts GitHub makes available there ("Context availability" in
  docs.github.com's contexts reference): the workflow's ``env`` sees ``github``, ``secrets`` and ``inputs``
  (no ``runner``, no ``env``), and is evaluated twice, as act does; a step's ``env``, ``with`` and
  ``working-directory`` also see ``runner`` and
  the ``env`` of the levels above (never the step's own other keys).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from pipecast.targets.github.layout import install_script
from tests.helpers.cases import ROOT
from tests.helpers.replay import run_task

WORKFLOW_ENV_CONTEXTS = ("github", "secrets", "inputs")  # and `vars`, which pipecast never uses


def load_workflow(text: str) -> dict[str, Any]:
    """The workflow as GitHub reads it (YAML 1.2, so ``on`` stays a string)."""
    return _plain(YAML(typ="safe", pure=True).load(text))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ExpressionError(AssertionError):
    """The template uses something this model of GitHub does not know (so the test fails)."""


def render(template: Any, contexts: Mapping[str, Any]) -> str:
    """Evaluate a template string the way the runner does, giving the text an env var or field receives."""
    text = _to_string(template)
    out: list[str] = []
    index = 0
    while True:
        start = text.find("${{", index)
        if start < 0:
            out.append(text[index:])
            return "".join(out)
        out.append(text[index:start])
        end = _expression_end(text, start + 3)
        out.append(_to_string(evaluate(text[start + 3:end], contexts)))
        index = end + 2


def _expression_end(text: str, position: int) -> int:
    in_string = False
    for i in range(position, len(text) - 1):
        if text[i] == "'":
            in_string = not in_string  # a doubled quote '' toggles twice: still right
        elif not in_string and text[i] == "}" and text[i + 1] == "}":
            return i
    raise ExpressionError(f"unclosed expression in {text!r}")


def evaluate(expression: str, contexts: Mapping[str, Any]) -> Any:
    """Evaluate ``a || b || …`` of string literals and context paths."""
    tokens = _tokens(expression)
    result: Any = None
    for position, token in enumerate(tokens):
        if position % 2:
            if token != "||":
                raise ExpressionError(f"operator {token!r} is not modelled ({expression!r})")
            continue
        value = token[1] if isinstance(token, tuple) else _lookup(token, contexts)
        if position == 0 or not _truthy(result):
            result = value
    return result


def _tokens(expression: str) -> list[Any]:
    tokens: list[Any] = []
    i = 0
    while i < len(expression):
        char = expression[i]
        if char.isspace():
            i += 1
        elif char == "'":
            j, value = i + 1, []
            while True:
                if j >= len(expression):
                    raise ExpressionError(f"unterminated string in {expression!r}")
                if expression[j] == "'":
                    if expression[j + 1:j + 2] == "'":
                        value.append("'")
                        j += 2
                        continue
                    break
                value.append(expression[j])
                j += 1
            tokens.append(("str", "".join(value)))
            i = j + 1
        elif expression.startswith("||", i):
            tokens.append("||")
            i += 2
        else:
            j = i
            while j < len(expression) and (expression[j].isalnum() or expression[j] in "_-."):
                j += 1
            if j == i:
                raise ExpressionError(f"unexpected {char!r} in {expression!r}")
            tokens.append(expression[i:j])
            i = j
    return tokens


def _lookup(path: str, contexts: Mapping[str, Any]) -> Any:
    head, *rest = path.split(".")
    if head not in contexts:
        raise ExpressionError(f"context {head!r} is not modelled ({path!r})")
    value: Any = contexts[head]
    for part in rest:
        value = value.get(part) if isinstance(value, Mapping) else None  # missing properties are null
    return value


def _truthy(value: Any) -> bool:
    return value not in (None, "", 0, False)


def _to_string(value: Any) -> str:
    """GitHub's conversion of a value to the text of a field: null → '', booleans → true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def dispatch_inputs(workflow: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """The ``inputs`` context of a workflow_dispatch: given values typed by the input, else the defaults."""
    declared = workflow["on"]["workflow_dispatch"]["inputs"]
    unknown = set(given) - set(declared)
    assert not unknown, f"inputs {sorted(unknown)} are not declared; GitHub answers 422"
    inputs: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            text = given[name]
            kind = spec.get("type", "string")
            inputs[name] = (float(text) if kind == "number" else text.lower() == "true" if kind == "boolean"
                            else text)
        else:
            assert not spec.get("required"), f"required input {name!r} was not given; GitHub answers 422"
            inputs[name] = spec.get("default", "")
    return inputs


@dataclass
class Replay:
    """The result of a replay: where each job ran and what the artifact service holds."""

    artifacts: Path
    jobs_run: list[str] = field(default_factory=list)
    environments: dict[str, dict[str, str]] = field(default_factory=dict)


def job_order(workflow: Mapping[str, Any]) -> list[str]:
    """Jobs in an order that respects ``needs`` (the YAML order among the ready ones)."""
    jobs = workflow["jobs"]
    needs = {job: list(spec.get("needs", [])) for job, spec in jobs.items()}
    done: list[str] = []
    while len(done) < len(jobs):
        ready = [j for j in jobs if j not in done and all(n in done for n in needs[j])]
        assert ready, f"needs form a cycle or name unknown jobs: {needs}"
        done.append(ready[0])
    return done


def replay(workflow_text: str, work: Path, *, event: str = "workflow_dispatch", inputs: Mapping[str, str] = (),
           run_id: str = "4242", secrets: Mapping[str, str] = ()) -> Replay:
    """Run every job of the workflow here, as GitHub would, and return the artifact service's folder."""
    workflow = load_workflow(workflow_text)
    given = dict(inputs)
    input_context = dispatch_inputs(workflow, given) if event == "workflow_dispatch" else {}
    result = Replay(artifacts=work / "artifact-service")
    result.artifacts.mkdir(parents=True)
    for job_id in job_order(workflow):
        temp = work / "runners" / job_id / "temp"  # every job gets a fresh machine
        temp.mkdir(parents=True)
        contexts = {"github": {"run_id": run_id, "run_attempt": "1", "event_name": event},
                    "runner": {"temp": str(temp)}, "inputs": input_context, "secrets": dict(secrets)}
        workflow_contexts = {k: contexts[k] for k in WORKFLOW_ENV_CONTEXTS}
        # Evaluated twice, as act 0.2.89 does (again where the job reads it): a value that only survives one
        # evaluation fails here as it fails under a real runner (test_act.py).
        workflow_env = {k: render(render(v, workflow_contexts), workflow_contexts)
                        for k, v in workflow.get("env", {}).items()}
        for step in workflow["jobs"][job_id]["steps"]:
            _run_step(step, contexts, workflow_env, event, result, job_id)
        result.jobs_run.append(job_id)
    return result


def _run_step(step: Mapping[str, Any], contexts: Mapping[str, Any], workflow_env: Mapping[str, str],
              event: str, result: Replay, job_id: str) -> None:
    uses = step.get("uses", "")
    with_ = {k: render(v, contexts) for k, v in step.get("with", {}).items()}
    if uses.startswith(("actions/checkout@", "actions/setup-python@")):
        return  # this checkout is the repository; this interpreter is the Python
    if uses.startswith("actions/upload-artifact@"):
        source = Path(with_["path"])
        assert source.is_dir() and any(source.rglob("*")), f"{job_id}: nothing to upload at {source}"
        shutil.copytree(source, result.artifacts / with_["name"], dirs_exist_ok=with_.get("overwrite") == "true")
        return
    if uses.startswith("actions/download-artifact@"):
        stored = result.artifacts / with_["name"]
        assert stored.is_dir(), f"{job_id}: artifact {with_['name']!r} was never uploaded"
        shutil.copytree(stored, Path(with_["path"]))
        return
    assert not uses, f"{job_id}: action {uses!r} is not modelled"
    script = step["run"]
    if step.get("name") == "Install pipecast" and script == install_script(None):
        return  # pipecast is installed in this interpreter already (test_act.py runs the install for real)
    assert "${{" not in script, "a run: script must not hold expressions"
    env = dict(workflow_env)
    env.update({k: render(v, {**contexts, "env": env}) for k, v in step.get("env", {}).items()})
    result.environments[job_id] = env
    full_env = {**env, "GITHUB_EVENT_NAME": event, "RUNNER_TEMP": contexts["runner"]["temp"],
                "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    workdir = render(step["working-directory"], {**contexts, "env": env}) if "working-directory" in step else None
    shell = step.get("shell")
    assert shell == "bash", f"{job_id}: steps run with shell: bash, got {shell!r}"
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]  # GitHub's `bash` shell
    run_task(command, env=full_env, cwd=ROOT / workdir if workdir else ROOT)  # the checkout is this repository


def merge_artifacts(result: Replay, pipeline: str, run_id: str, steps: Mapping[str, str], root: Path) -> Path:
    """Lay the uploaded step folders out as an artifact root (``<pipeline>/runs/<run>/<step>``)."""
    for step, artifact in steps.items():
        shutil.copytree(result.artifacts / artifact, root / pipeline / "runs" / run_id / step)
    return root
