"""Lowering pieces shared by the Kubernetes custom-resource targets (Tekton and Argo Workflows).

Both engines run one container per step on Kubernetes, so they share the image and artifact-root
rules, the Go duration format, labels, the retry plan, the object-size limit and, above all, the rules
that keep values data (DESIGN §3) once the kubelet expands ``$(VAR)`` in a container's command, args
and env values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecast.compiler import ir, naming
from pipecast.compiler.units import parse_duration
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.kube import pod as kube
from pipecast.targets.kube.pod import ETCD_OBJECT_LIMIT, env_list, kubelet_escape  # noqa: F401 - kept importable here

MANAGED_BY = {"app.kubernetes.io/managed-by": "pipecast"}
PIPELINE_LABEL = "pipecast.dev/pipeline"
STEP_LABEL = "pipecast.dev/step"
RUN_ANNOTATION = "pipecast.dev/run-id"
TAGS_ANNOTATION = "pipecast.dev/tags"


# Env the kubelet itself gives every container: "service links" for the Services of its namespace
# (always for the API server's ``kubernetes`` Service): KUBERNETES_SERVICE_HOST, DB_PORT_5432_TCP_ADDR, ...
_SERVICE_LINK = re.compile(r"[A-Z_][A-Z0-9_]*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
                           r"|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)")
KUBELET_CHANGE_FIX = ("avoid '$$' and '$(NAME)' (NAME an env variable of the step's container) in the value, "
                      "or use a target that passes values verbatim, such as 'kubeflow'")


def kubelet_change(text: str, defined: Collection[str], *, prefixes: tuple[str, ...] = ()) -> str | None:
    """Why the kubelet's ``$(VAR)`` expansion would change ``text`` in a container's args or env, or None.

    Scans as the kubelet expands (``third_party/forked/golang/expansion``): ``$$`` becomes ``$``, and
    ``$(NAME)`` becomes the variable's value when the container defines NAME; other ``$(…)``, such as
    ``$(whoami)`` with no ``whoami`` variable, stay as written.

    Args:
        text: The text the engine substitutes (a parameter value as the target renders it).
        defined: Env names the container's ``env`` list defines (its env values and secrets).
        prefixes: Name prefixes of env the engine adds to the container (Argo's ``ARGO_…``); the
            kubelet's service-link names (``KUBERNETES_SERVICE_HOST``…) always count as defined.
    """
    cursor = 0
    while cursor < len(text) - 1:
        if text[cursor] != "$":
            cursor += 1
            continue
        following = text[cursor + 1]
        if following == "$":
            return "it contains '$$', which the kubelet turns into '$'"
        if following == "(":
            end = text.find(")", cursor + 2)
            if end >= 0:
                name = text[cursor + 2:end]
                if name in defined or name.startswith(prefixes) or _SERVICE_LINK.fullmatch(name):
                    return (f"it contains {text[cursor:end + 1]!r}, which the kubelet replaces with the "
                            f"container's env variable {name!r}")
                cursor = end + 1
                continue
        cursor += 2  # the kubelet consumes the character after a lone '$'
    return None


ValueChange = Callable[[str], str | None]  # why an engine would change a value it substitutes, or None


def parameter_value_problems(pipeline: ir.Pipeline, values: Mapping[str, Any], what: str, *,
                             prefixes: tuple[str, ...] = (), engine_change: ValueChange | None = None,
                             engine_fix: str = "") -> list[tuple[ir.Step, str, str]]:
    """(first step, message, fix) for every parameter in ``values`` that would reach a step's container changed.

    The engine substitutes a parameter's text into the container args of each step that binds it; the
    engine's later passes (``engine_change``) and then the kubelet's ``$(VAR)``/``$$`` expansion against the
    container's env see that text again, and neither has an escape for it. ``what`` names the values in the
    message (``"default"``, ``"value"``).
    """
    problems: list[tuple[ir.Step, str, str]] = []
    reported: set[str] = set()
    for step in pipeline.steps:
        names = {item["name"] for item in env_list(pipeline, step)}
        for binding in step.bindings:
            name = binding.parameter
            if binding.kind is not ir.BindingKind.PARAMETER or name is None or name not in values \
                    or name in reported:
                continue
            text = render_parameter(pipeline.parameter(name).type, values[name])
            reason, fix = (engine_change(text) if engine_change else None), engine_fix
            if reason is None:
                reason, fix = kubelet_change(text, names, prefixes=prefixes), KUBELET_CHANGE_FIX
                reason = reason and (f"{reason} (the kubelet expands $(VAR) in container args and env after the "
                                     f"engine substitutes the value, and Kubernetes has no escape for it)")
            if reason:
                reported.add(name)
                problems.append((step, f"the {what} of parameter {name!r} would reach step {step.name!r} changed: "
                                       f"{reason}", fix))
    return problems


def check_parameter_defaults(pipeline: ir.Pipeline, context: EmitContext, *, prefixes: tuple[str, ...] = (),
                             engine_change: ValueChange | None = None, engine_fix: str = "") -> None:
    """Report every parameter default the engine or the kubelet would change (:func:`parameter_value_problems`)."""
    defaults = {p.name: p.default for p in pipeline.parameters if not p.required}
    for step, message, fix in parameter_value_problems(pipeline, defaults, "default", prefixes=prefixes,
                                                       engine_change=engine_change, engine_fix=engine_fix):
        context.unsupported(message, step=step, fix=fix)


def go_duration(seconds: float) -> str:
    """Seconds as a Go ``time.Duration`` string, which both engines parse: ``5400 -> "1h30m"``."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if millis:
        text += f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis / 1000:g}s"
    return text or "0s"



def labels(pipeline: ir.Pipeline) -> dict[str, str]:
    """Labels every object pipecast creates carries (label values are DNS-1123 safe)."""
    return {**MANAGED_BY, PIPELINE_LABEL: naming.pipeline_resource_name(pipeline.name)}


def object_annotations(pipeline: ir.Pipeline, description_key: str | None = None) -> dict[str, str]:
    """The pipeline's tags (comma-separated) and, under ``description_key``, its description."""
    found: dict[str, str] = {}
    if description_key and pipeline.description:
        found[description_key] = pipeline.description
    if pipeline.tags:
        found[TAGS_ANNOTATION] = ",".join(pipeline.tags)
    return found


def metadata(name: str, pipeline: ir.Pipeline, namespace: str | None, *, generate: bool = False,
             annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``metadata`` of a top-level object: a fixed ``name`` (or ``generateName`` for runs), namespace, labels."""
    meta: dict[str, Any] = {"generateName": f"{name}-"} if generate else {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = labels(pipeline)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def task_names(pipeline: ir.Pipeline, target: str) -> dict[str, str]:
    """Step name → DNS-1123 task name; collisions raise ValidationError (compile lists them)."""
    return naming.engine_names(target, [s.name for s in pipeline.steps],
                               locations={s.name: str(s.location) for s in pipeline.steps}, target=target)


def image_of(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext) -> str:
    """Step image → pipeline image → ``image`` setting; an error naming the step when none is set."""
    image = pipeline.image_of(step) or context.setting(pipeline, "image", step=step)
    if not isinstance(image, str) or not image:
        context.error(f"step {step.name!r} has no container image", step=step,
                      fix="pass image= to @step or @pipeline, or --set image=REGISTRY/IMAGE:TAG")
        return "MISSING-IMAGE"
    return image


def artifact_root_of(pipeline: ir.Pipeline, context: EmitContext) -> str:
    """Pipeline ``artifact_root`` → ``artifact_root`` setting; every task pod must reach it."""
    root = pipeline.artifact_root or context.setting(pipeline, "artifact_root")
    if not isinstance(root, str) or not root:
        context.error(f"pipeline {pipeline.name!r} has no artifact root that every task pod can reach",
                      fix="pass artifact_root= to @pipeline or --set artifact_root=s3://BUCKET/PREFIX "
                          "(or gs://…, az://…)")
        return "MISSING-ARTIFACT-ROOT"
    return root


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """Who retries a step: the engine (``native``) or the runtime inside the task (``runtime``)."""

    native: bool
    runtime: bool


def retry_plan(step: ir.Step, *, native_delay: bool, native_backoff: Callable[[float], bool]) -> RetryPlan:
    """Native retries when the engine can honour the step's delay and backoff, else the runtime's.

    Args:
        step: The step.
        native_delay: Whether the engine can wait between tries.
        native_backoff: Whether the engine can express this backoff factor.
    """
    if step.retry.attempts <= 1:
        return RetryPlan(native=False, runtime=False)
    waits = step.retry.delay_seconds > 0
    if waits and not (native_delay and native_backoff(step.retry.backoff)):
        return RetryPlan(native=False, runtime=True)
    return RetryPlan(native=True, runtime=False)


def command_of(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, syntax: EngineSyntax, *,
               forbidden: Iterable[str], plan: RetryPlan) -> list[str]:
    """The exec-form runtime command with the engine's placeholders, after checking its literal text.

    Literal text (names, the function path, the artifact root) must not contain anything the engine or
    the kubelet would substitute; constants are percent-encoded by the runtime, so they never do.
    """
    neutral = EngineSyntax(run_id="RUN", parameter=lambda p: "VALUE", artifact_root=syntax.artifact_root,
                           python=syntax.python)
    literal = step_command(pipeline, step, neutral, runtime_retry=plan.runtime, runtime_timeout=plan.runtime)
    marks = ("$", *forbidden)
    for arg in literal:
        found = [m for m in marks if m in arg]
        if found:
            context.error(f"the command of step {step.name!r} would contain {found[0]!r} in {arg!r}, which the "
                          f"engine or the kubelet would substitute", step=step,
                          fix="remove it from the step name, pipeline name or artifact root")
    return step_command(pipeline, step, syntax, runtime_retry=plan.runtime, runtime_timeout=plan.runtime)


def object_size(document: Mapping[str, Any]) -> int:
    """Bytes of ``document`` as the API server stores it (compact JSON)."""
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def size_problem(document: Mapping[str, Any]) -> str | None:
    """A message if ``document`` is over the API server's object limit (etcd's 1 MiB), else None."""
    size = object_size(document)
    if size <= ETCD_OBJECT_LIMIT:
        return None
    kind = document.get("kind", "object")
    name = document.get("metadata", {}).get("name") or document.get("metadata", {}).get("generateName", "")
    return (f"{kind} {name!r} is {size} bytes; Kubernetes stores objects of at most {ETCD_OBJECT_LIMIT} bytes "
            f"(1 MiB)")


def check_sizes(documents: Iterable[Mapping[str, Any]], context: EmitContext) -> None:
    """Report every document over the object limit."""
    for document in documents:
        problem = size_problem(document)
        if problem:
            context.error(problem, fix="pass large values as artifacts or parameters instead of constants, "
                                       "or split the pipeline")


def duration_setting(pipeline: ir.Pipeline, context: EmitContext, key: str) -> float | None:
    """A duration setting (``"2h"`` or seconds) as seconds; an error when it does not parse."""
    value = context.setting(pipeline, key)
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is None:
        context.error(f"setting {key!r} must be a duration such as '2h' or a number of seconds, got {value!r}")
    return seconds


def mapping_setting(pipeline: ir.Pipeline, context: EmitContext, key: str,
                    step: ir.Step | None = None) -> dict[str, str]:
    """A ``{str: str}`` setting (node selector), empty when unset; a bad one is reported once."""
    value = context.setting(pipeline, key, step=step)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        message = f"setting {key!r} must be a mapping of label to value, got {value!r}"
        own = step is not None and any(s.target == context.target and s.key == key for s in step.settings)
        if not any(p.message == message for p in context.errors):
            context.error(message, step=step if own else None, fix=f"--set '{key}={{\"disktype\": \"ssd\"}}'")
        return {}
    return dict(sorted(value.items()))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a pod may run: its nodeSelector and tolerations (empty when unset)."""

    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]


def pod_placement(pipeline: ir.Pipeline, context: EmitContext, step: ir.Step | None = None) -> Placement:
    """The placement every pod of the run gets (``step`` None), or the one ``step``'s pod needs: its own
    ``node_selector``/``tolerations`` settings, else the pipeline's, with the node label of its GPU type."""
    selector = mapping_setting(pipeline, context, "node_selector", step)
    if step is not None:
        selector = kube.with_gpu_selector(selector, pipeline, step, context)
    return Placement(selector, kube.tolerations(pipeline, context, step))


def string_setting(pipeline: ir.Pipeline, context: EmitContext, key: str, *, dns: bool = False) -> str | None:
    """A text setting; with ``dns`` it must already be a DNS-1123 name (namespaces, service accounts)."""
    value = context.setting(pipeline, key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or (dns and naming.rule_for("dns1123_label").apply(value) != value):
        rule = " a DNS-1123 name ([a-z0-9-], at most 63 characters)" if dns else " text"
        context.error(f"setting {key!r} must be{rule}, got {value!r}")
        return None
    return value


def bool_setting(pipeline: ir.Pipeline, context: EmitContext, key: str) -> bool:
    value = context.setting(pipeline, key, False)
    if not isinstance(value, bool):
        context.error(f"setting {key!r} must be true or false, got {value!r}")
        return False
    return value
