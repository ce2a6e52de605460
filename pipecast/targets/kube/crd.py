"""What the Kubernetes custom-resource targets (Tekton and Argo Workflows) share.

Both engines run one container per step on Kubernetes, so they share the Go duration format, labels and
metadata, the check of a command's literal text and, above all, the rules that keep values data (DESIGN §3)
once the kubelet expands ``$(VAR)`` in a container's command, args and env values. What differs between them
at submit and while tracking is data, an :class:`Engine`; :mod:`pipecast.targets.kube.submit` does the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pipecast.compiler import ir, naming
from pipecast.runs.status import RunStatus
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.params import render_parameter
from pipecast.targets.base import EmitContext, Target
from pipecast.targets.kube.objects import CustomKind
from pipecast.targets.kube.pod import env_list
from pipecast.targets.lowering import RetryPlan, runtime_command

MANAGED_BY = {"app.kubernetes.io/managed-by": "pipecast"}
PIPELINE_LABEL = "pipecast.dev/pipeline"
STEP_LABEL = "pipecast.dev/step"
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


def check_command_text(pipeline: ir.Pipeline, step: ir.Step, context: EmitContext, syntax: EngineSyntax,
                       plan: RetryPlan, *, forbidden: tuple[str, ...] = ()) -> None:
    """Report literal text of the step's command that the engine or the kubelet would substitute.

    Literal text (names, the function path, the artifact root) must not contain ``$`` or the engine's own
    ``forbidden`` marks; the placeholders the engine fills are left out of the check, and constants are
    percent-encoded by the runtime, so they never do.
    """
    neutral = EngineSyntax(run_id="RUN", parameter=lambda p: "VALUE", artifact_root=syntax.artifact_root,
                           python=syntax.python)
    marks = ("$", *forbidden)
    for arg in runtime_command(pipeline, step, neutral, plan):
        found = [m for m in marks if m in arg]
        if found:
            context.error(f"the command of step {step.name!r} would contain {found[0]!r} in {arg!r}, which the "
                          f"engine or the kubelet would substitute", step=step,
                          fix="remove it from the step name, pipeline name or artifact root")


@dataclass(frozen=True)
class Engine:
    """What differs between the engines whose runs are custom resources, at submit and while tracking.

    Attributes:
        group: API group (``tekton.dev``).
        version: API version (``v1``).
        plurals: Every kind submit and the run handle touch, mapped to its plural (``PipelineRun``:
            ``pipelineruns``).
        definition_kinds: Kinds created or replaced before the run (``Pipeline``).
        run_kind: The kind of the run object (``PipelineRun``).
        set_parameters: Writes run parameter values into the run object.
        read_status: Maps a run object to a RunStatus and a message.
        failure_detail: Names what failed (``task 'x' failed: …``) given the run's namespace
            (a :class:`~pipecast.targets.kube.objects.Kube`) and the failed run object.
        cancel_patch: The merge patch that cancels a run.
        ui_setting: The ``--config`` key of the UI base URL.
        ui_env: The environment variable read when the config has no UI base URL.
        default_ui: The UI base URL when none is configured (the engine's port-forward address).
        ui_url: Builds a run's URL from the base, namespace and name.
        injected_env: Name prefixes of env the engine adds to each step container (see :func:`kubelet_change`).
        value_change: Why the engine's own later substitution passes would change a parameter value it
            inserted into a step's args, or None (see :func:`parameter_value_problems`).
        value_change_fix: The fix named with ``value_change``'s problems.
        check_access: Called with the namespace's :class:`Kube`, the definitions and the run object just before
            the first write; raises SubmitError when the caller or the run lacks a right.
        pod_run_label: The label the engine puts on every pod of a run, whose value is the run object's name.
        pod_step_label: The label whose value names a pod's step (its DNS-1123 task name, or the step's name).
        step_container: The name of the container that runs a step in its pod (whose log is the step's).
        check_run: Called with the pipeline, the definitions and run object, and the run's parameter values
            before any request; raises SubmitError for what the engine would take but a pod could not run.
    """

    group: str
    version: str
    plurals: Mapping[str, str]
    definition_kinds: tuple[str, ...]
    run_kind: str
    set_parameters: Callable[[dict[str, Any], ir.Pipeline, Mapping[str, Any]], None]
    read_status: Callable[[Mapping[str, Any]], tuple[RunStatus, str]]
    failure_detail: Callable[[Any, Mapping[str, Any]], str]
    cancel_patch: Mapping[str, Any]
    ui_setting: str
    ui_env: str
    default_ui: str
    ui_url: Callable[[str, str, str], str]
    injected_env: tuple[str, ...] = ()
    value_change: Callable[[str], str | None] | None = None
    value_change_fix: str = ""
    check_access: Callable[[Any, list[dict[str, Any]], dict[str, Any]], None] | None = None
    pod_run_label: str = ""
    pod_step_label: str = STEP_LABEL
    step_container: str = ""
    check_run: Callable[[ir.Pipeline, list[dict[str, Any]], Mapping[str, Any]], None] | None = None

    @property
    def api_version(self) -> str:
        """``group/version``, as the objects' ``apiVersion`` says."""
        return f"{self.group}/{self.version}"

    def custom_kinds(self) -> dict[str, CustomKind]:
        """Where the API serves each kind this engine uses."""
        return {kind: CustomKind(self.group, self.version, plural) for kind, plural in self.plurals.items()}


class CustomResourceTarget(Target):
    """A target whose runs are custom resources: its :class:`Engine` says how they are submitted and tracked."""

    engine: ClassVar[Engine]
    sdk_modules = ("kubernetes",)
    submit_module = "pipecast.targets.kube.submit"
