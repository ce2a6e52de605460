"""Every placeholder pipecast emits sits where the kfp SDK's own compiler puts the same placeholder (DESIGN §4).

For each golden case, the equivalent pipeline is written with the kfp SDK (2.17): one container component per
step (``dsl.ContainerSpec`` with the step's command and args), the pipeline parameters the step reads passed as
task arguments, and the run id passed as ``dsl.PIPELINE_JOB_ID_PLACEHOLDER`` to an input named
``pipecast_run_id``. Each scalar output (str, int, float, bool) is a ``dsl.OutputPath`` of its type, the step's
folder a ``dsl.Output[dsl.Artifact]`` named ``pipecast_outputs``, and the container's args end with
``--kfp-executor-input {{$}}`` (the runtime reads its output paths from the executor input, as kfp's own Python
components do). The step's own values (``--step``/``--const``/``--upstream``) are str task arguments: kfp's
compiler gives every task its own component, while pipecast shares one among tasks of the same shape
(kfpspec/sharing.py), so pipecast's file is compared after giving each task its own copy (:func:`per_task`).
kfp's compiler then decides where each placeholder goes: component input and output definitions, task
arguments (``componentInputParameter``, ``runtimeValue.constant``), container args. pipecast's file must
agree, placeholder by placeholder.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl

import pipecast
from pipecast.compiler import ir
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.targets.kfpspec import schedule_time, sharing
from pipecast.targets.kfpspec.builder import parameter_default
from tests.helpers.cases import case, compile_case, golden_settings
from tests.targets.kfp.support import documents, parse_strictly

RUN_ID_INPUT = "pipecast_run_id"  # the input that carries the run id, as a kfp user would name it
CASES = ["quickstart", "ml_training", "diamond_after", "full_options", "hostile", "gather"]
PYTHON_TYPES: dict[ir.TypeName, type] = {
    ir.TypeName.STR: str, ir.TypeName.INT: int, ir.TypeName.FLOAT: float, ir.TypeName.BOOL: bool,
    ir.TypeName.DICT: dict, ir.TypeName.LIST: list, ir.TypeName.ANY: str,
}
SCALAR_OUTPUTS: dict[ir.TypeName, type] = {
    ir.TypeName.STR: str, ir.TypeName.INT: int, ir.TypeName.FLOAT: float, ir.TypeName.BOOL: bool,
}
OUTPUT_ARTIFACT = "pipecast_outputs"
EXECUTOR_INPUT_ARGS = ["--kfp-executor-input", "{{$}}"]  # {{$}}: kfp.dsl.placeholders.ExecutorInputPlaceholder
_MARK = re.compile("\x00([^\x00]+)\x00")  # stands for an input in the args until kfp gives its placeholder
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*}}")


def _with_signature(fn: Any, name: str, parameters: list[inspect.Parameter]) -> Any:
    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = inspect.Signature(parameters)
    fn.__annotations__ = {p.name: p.annotation for p in parameters}
    return fn


def _component(task_name: str, inputs: dict[str, type], image: str, command: list[str],
               outputs: dict[str, Any] | None = None) -> Any:
    """A kfp container component taking ``inputs`` (and producing ``outputs``, kfp output annotations by name)
    whose container runs ``command``, where each marked input is what kfp gives the component for it (the
    placeholder object alone, or its text inside a longer arg)."""
    outputs = outputs or {}

    def body(*values: Any) -> dsl.ContainerSpec:
        by_name = dict(zip([*inputs, *outputs], values, strict=True))

        def arg(text: str) -> Any:
            whole = _MARK.fullmatch(text)
            if whole:
                return by_name[whole[1]]
            return _MARK.sub(lambda m: str(by_name[m[1]]), text)  # an f-string, as a kfp user writes it

        return dsl.ContainerSpec(image=image, command=command[:3], args=[arg(part) for part in command[3:]])

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t)
              for n, t in {**inputs, **outputs}.items()]
    return dsl.container_component(_with_signature(body, task_name.replace("-", "_"), params))


def _arguments(step: ir.Step) -> dict[str, str]:
    """Each pipeline parameter the step reads → the step function's argument it is bound to (the first, by
    name); written out here, not taken from the builder, so the two are compared."""
    found: dict[str, str] = {}
    for binding in sorted(step.bindings, key=lambda b: b.input):
        if binding.kind is ir.BindingKind.PARAMETER and binding.parameter:
            found.setdefault(binding.parameter, binding.input)
    return found


def kfp_compiled(pipeline_ir: ir.Pipeline, ours: dict[str, Any], target: str, tmp_path: Any) -> dict[str, Any]:
    """The kfp compiler's PipelineSpec for the pipeline pipecast's file describes."""
    tasks = ours["root"]["dag"]["tasks"]
    task_of_step = {task["taskInfo"]["name"]: name for name, task in tasks.items()}
    params = {p.name: p for p in pipeline_ir.parameters}
    marker = "\x00{}\x00".format
    components = {}
    constants: dict[str, dict[str, str]] = {}
    for step in pipeline_ir.steps:
        task_name = task_of_step[step.name]
        container = ours["deploymentSpec"]["executors"][f"exec-{task_name}"]["container"]
        artifact_root = container["args"][container["args"].index("--artifact-root") + 1]
        args = _arguments(step)
        syntax = EngineSyntax(run_id=marker(RUN_ID_INPUT), parameter=lambda p, args=args: marker(args[p.name]),
                              artifact_root=artifact_root, python=container["command"][0])
        # A kfp user's component takes the step function's arguments (not the pipeline's parameter names).
        command = step_command(pipeline_ir, step, syntax, runtime_timeout=target == "vertex")
        shared_args, constants[step.name] = sharing.task_arguments(command[3:], marker)
        if pipeline_ir.schedule:  # the schedule time, as kfp passes dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
            constants[step.name][schedule_time.INPUT] = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
        inputs = ({arg: PYTHON_TYPES[params[name].type] for name, arg in args.items()}
                  | dict.fromkeys(constants[step.name], str) | {RUN_ID_INPUT: str})
        command = [*command[:3], *shared_args, *EXECUTOR_INPUT_ARGS,
                   *(schedule_time.args(marker) if pipeline_ir.schedule else [])]
        outputs: dict[str, Any] = {out.name: dsl.OutputPath(SCALAR_OUTPUTS[out.type]) for out in step.outputs
                                   if out.type in SCALAR_OUTPUTS}
        outputs[OUTPUT_ARTIFACT] = dsl.Output[dsl.Artifact]
        components[step.name] = _component(task_name, inputs, container["image"], command, outputs)

    def body(*values: Any) -> None:
        channels = dict(zip([p.name for p in pipeline_ir.parameters], values, strict=True))
        made: dict[str, Any] = {}
        for step in pipeline_ir.steps:  # traced order: every upstream step comes first
            task = components[step.name](**{arg: channels[name] for name, arg in _arguments(step).items()},
                                         **constants[step.name], **{RUN_ID_INPUT: dsl.PIPELINE_JOB_ID_PLACEHOLDER})
            task.set_caching_options(False)
            for upstream in sorted(step.upstream()):
                task.after(made[upstream])
            made[step.name] = task

    signature = [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=PYTHON_TYPES[p.type],
                                   **({} if p.required else {"default": parameter_default(p)}))
                 for p in pipeline_ir.parameters]
    kfp_pipeline = dsl.pipeline(name=ours["pipelineInfo"]["name"])(
        _with_signature(body, pipeline_ir.name, signature))
    path = tmp_path / "kfp.yaml"
    compiler.Compiler().compile(kfp_pipeline, str(path))
    text = path.read_text()
    # kfp's header comment lists parameter defaults and breaks on one holding a newline (the hostile case):
    # read the spec from its first key on.
    return yaml.safe_load(text[text.index("\ncomponents:\n") + 1:])


def per_task(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with each task given its own copy of its (shared) component and executor, named as kfp names
    them (``comp-<task>``, ``exec-<task>``)."""
    spec = copy.deepcopy(spec)
    components, executors = {}, {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        executors[f"exec-{name}"] = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        components[f"comp-{name}"] = {**component, "executorLabel": f"exec-{name}"}
        task["componentRef"] = {"name": f"comp-{name}"}
    spec["components"], spec["deploymentSpec"]["executors"] = dict(sorted(components.items())), executors
    return spec


def placeholders(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every ``{{$…}}`` placeholder in ``node`` with the path of keys (and list positions) leading to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from placeholders(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from placeholders(value, (*path, str(index)))
    elif isinstance(node, str):
        for found in _PLACEHOLDER.findall(node):
            yield path, found


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
@pytest.mark.parametrize("case_name", CASES)
def test_placeholders_sit_where_the_kfp_compiler_puts_them(case_name, target, tmp_path):
    pipeline_ir = case(case_name).build()
    bundle = compile_case(target, pipeline_ir, golden=True, on_unsupported="warn").bundle
    ours = per_task(documents(bundle[bundle.main_file])[0])
    theirs = kfp_compiled(pipeline_ir, ours, target, tmp_path)

    assert sorted(placeholders(ours)) == sorted(placeholders(theirs))
    assert any(p == "{{$.pipeline_job_uuid}}" for _, p in placeholders(ours))
    assert ours["components"].keys() == theirs["components"].keys()
    for name, component in ours["components"].items():
        assert component["inputDefinitions"] == theirs["components"][name]["inputDefinitions"], name
        assert component["outputDefinitions"] == theirs["components"][name]["outputDefinitions"], name
    for name, task in ours["root"]["dag"]["tasks"].items():
        kfp_task = theirs["root"]["dag"]["tasks"][name]
        assert task["inputs"] == kfp_task["inputs"], name
        assert task.get("dependentTasks") == kfp_task.get("dependentTasks"), name
        assert task["componentRef"] == kfp_task["componentRef"], name
        assert task["taskInfo"]["name"] == pipeline_ir.step(task["taskInfo"]["name"]).name
    for name, executor in ours["deploymentSpec"]["executors"].items():
        kfp_container = theirs["deploymentSpec"]["executors"][name]["container"]
        assert executor["container"]["args"] == kfp_container["args"], name
        assert executor["container"]["command"] == kfp_container["command"], name
    ours_root = ours["root"].get("inputDefinitions", {}).get("parameters", {})
    theirs_root = theirs["root"].get("inputDefinitions", {}).get("parameters", {})
    assert ours_root == theirs_root  # kfp writes int defaults as 10.0: equal to pipecast's 10


def test_the_old_run_id_form_is_not_what_kfp_compiles():
    """Before: the job placeholder straight in the args, where no KFP launcher substitutes it."""
    pipeline_ir = case("quickstart").build()
    bundle = compile_case("kubeflow", pipeline_ir, golden=True).bundle
    ours, _ = documents(bundle[bundle.main_file])
    where = {path[:2] for path, found in placeholders(ours) if found == "{{$.pipeline_job_uuid}}"}
    assert where == {("root", "dag")}  # only as the runtime constant of task inputs


@pipecast.step(timeout="90s", secrets=[pipecast.Secret("db-credentials", key="password", env="DB_PASSWORD")])
def guarded() -> int:
    return 1


@pipecast.pipeline(name="pod_settings")
def pod_settings():
    guarded()


def test_the_platform_spec_is_what_kfp_kubernetes_writes(tmp_path):
    """Timeouts, secrets and the pod settings (node selector, tolerations, image pull secrets) land in the
    executor's KubernetesExecutorConfig exactly as kfp-kubernetes 2.17's setters write them."""
    from kfp import kubernetes

    settings = {**golden_settings("kubeflow"), "node_selector": {"pool": "ml"}, "image_pull_secrets": ["regcred"],
                "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoExecute", "toleration_seconds": 30},
                                {"key": "nvidia.com/gpu", "operator": "Exists"}]}
    bundle = compile_case("kubeflow", pod_settings, settings=settings).bundle
    ours = documents(bundle[bundle.main_file])[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    component = _component("guarded", {}, "ghcr.io/acme/pipecast:1.0", ["python", "-m", "pipecast.runtime"])

    @dsl.pipeline(name="pod-settings")
    def kfp_pipeline():  # no "-> None": under `from __future__ import annotations` kfp reads it as an output
        task = component()
        kubernetes.set_timeout(task, 90)
        kubernetes.set_image_pull_secrets(task, ["regcred"])
        kubernetes.add_node_selector(task, "pool", "ml")
        kubernetes.use_secret_as_env(task, "db-credentials", {"password": "DB_PASSWORD"})
        kubernetes.add_toleration(task, key="dedicated", operator="Equal", value="ml", effect="NoExecute",
                                  toleration_seconds=30)
        kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists")

    path = tmp_path / "kfp.yaml"
    compiler.Compiler().compile(kfp_pipeline, str(path))
    theirs = list(yaml.safe_load_all(path.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert ours == theirs


@pipecast.step
def scale(count: int, factor: float) -> float:
    return count * factor


@pipecast.pipeline(name="renamed_inputs", image="ghcr.io/acme/pipecast:1.0", artifact_root="gs://acme/artifacts")
def renamed_inputs(n: int = 3, ratio: float = 0.5):
    scale(n, ratio)


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_component_inputs_are_named_after_the_function_arguments(target, tmp_path):
    """A step reading parameter ``n`` as its argument ``count``: the component's input is ``count`` (fed from the
    pipeline's ``n``), as kfp's compiler names a component's inputs after its function's arguments."""
    pipeline_ir = renamed_inputs.build()
    bundle = compile_case(target, pipeline_ir).bundle
    parse_strictly(bundle[bundle.main_file])
    ours = per_task(documents(bundle[bundle.main_file])[0])
    theirs = kfp_compiled(pipeline_ir, ours, target, tmp_path)
    component = ours["components"]["comp-scale"]
    assert set(component["inputDefinitions"]["parameters"]) == {"count", "factor", "pipecast_task", RUN_ID_INPUT}
    assert component["inputDefinitions"] == theirs["components"]["comp-scale"]["inputDefinitions"]
    task = ours["root"]["dag"]["tasks"]["scale"]
    assert task["inputs"]["parameters"]["count"] == {"componentInputParameter": "n"}
    assert task["inputs"] == theirs["root"]["dag"]["tasks"]["scale"]["inputs"]
    assert sorted(placeholders(ours)) == sorted(placeholders(theirs))
    assert "--param" in (args := ours["deploymentSpec"]["executors"]["exec-scale"]["container"]["args"])
    assert "count=int:{{$.inputs.parameters['count']}}" in args


@pipecast.step
def takes_run_id(pipecast_run_id: str) -> str:
    return pipecast_run_id


@pipecast.pipeline(name="run_id_argument", image="ghcr.io/acme/pipecast:1.0", artifact_root="gs://acme/artifacts")
def run_id_argument(rid: str = "x"):
    takes_run_id(rid)


def test_an_argument_named_like_the_run_id_input_is_an_error():
    with pytest.raises(UnsupportedFeatureError, match="step 'takes_run_id' has an argument named 'pipecast_run_id'"):
        compile_case("kubeflow", run_id_argument)
