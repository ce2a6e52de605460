"""The runtime's command line, built from the IR and parsed back: the contract with every engine.

Every engine task runs ``python -m pipecast.runtime run ARGS``. The arguments are plain strings, one
value each (no shell), so every engine's exec-form command can carry them. Engine-specific text
(placeholders for parameters and the run id) comes from an :class:`EngineSyntax`.

Arguments::

    --fn MODULE:QUALNAME  --pipeline NAME  --step NAME  --run-id ID  --artifact-root URI
    --param INPUT=TYPE:VALUE      a pipeline parameter as the engine substitutes it (TYPE: str|int|float|bool|dict|list)
    --const INPUT=ENCODED         a constant: canonical JSON, percent-encoded
    --upstream INPUT=STEP/OUTPUT  an output of another step in the same run
    --gather INPUT=ENCODED        a literal list or dict of several values: its template (canonical JSON,
                                  percent-encoded; see :mod:`pipecast.compiler.gather`), filled in from the
                                  hidden inputs it names, which the other arguments bind
    --output NAME                 the step's outputs, in order
    --no-cache                    do not reuse earlier outputs
    --attempts N --retry-delay S --retry-backoff F [--retry-max-delay S]   retries done by the runtime
    --timeout S                   a timeout enforced by the runtime: each try runs in a child process that is
                                  killed (with its process group) at the deadline
    --source-hash H --pipecast-version V   what was compiled: the runtime refuses other code or another pipecast
                                  (see :mod:`pipecast.runtime.verify`)
    --code-sha256 H [--code-package URI]   import the step from the code package with this sha256 (package
                                  delivery): ``ARTIFACT_ROOT/.pipecast/code/H.tar.gz`` unless a URI is given;
                                  verified by its sha256 (see :mod:`pipecast.runtime.code_package`)

KFP and Vertex AI (the engine substitutes the value; see :mod:`pipecast.runtime.kfp_outputs`)::

    --kfp-executor-input JSON     the task's ExecutorInput: after the step, write its scalar outputs and its
                                  folder's URI where the engine collects a task's outputs
    --kfp-item, --kfp-items, --kfp-item-input, --kfp-collect, --kfp-collect-inner   map items (see
                                  :mod:`pipecast.runtime.publish_kfp`)

GitHub Actions (see :mod:`pipecast.runtime.publish_github`)::

    --github-output NAME          after the step, write output NAME to $GITHUB_OUTPUT (a decision value)
    --github-items NAME           after the step, write items_NAME (the indices of list output NAME) there
    --github-status INPUT         bind INPUT to the final status built from $PIPECAST_GITHUB_NEEDS
    --github-item INPUT=COMBINE:INDEX   bind INPUT to a map's item $PIPECAST_GITHUB_INDEX (lists in INPUT#k)
    --github-collect INPUT=COMBINE:STEP/OUTPUT   bind INPUT to every item's OUTPUT of a mapped STEP

Argo Workflows: ``--argo-flow``, ``--argo-flow-param``, ``--argo-one-of``, ``--argo-status``, ``--argo-covers``
(see :mod:`pipecast.runtime.publish_argo`)
Azure ML: ``--azureml-if``, ``--azureml-value``, ``--azureml-items``, ``--azureml-index``, ``--azureml-flow``,
``--azureml-flow-param``, ``--azureml-item``, ``--azureml-collect``, ``--azureml-output``, ``--azureml-mlflow``,
``--azureml-logical-time``
(see :mod:`pipecast.runtime.publish_azureml`).
Tekton: ``--tekton-index``, ``--tekton-item``, ``--tekton-collect``, ``--tekton-one-of``, ``--tekton-status``
(see :mod:`pipecast.runtime.publish_tekton`)

SageMaker Pipelines (see :mod:`pipecast.runtime.publish_sagemaker`)::

    --sagemaker-property-file PATH --sagemaker-publish NAME   after the step, write output NAME to the JSON
                                  property file PATH, which a ConditionStep reads with Std:JsonGet
    --sagemaker-model NAME --sagemaker-output-data NAME   after a training step, copy output NAME into
                                  /opt/ml/model or /opt/ml/output/data/NAME, which SageMaker uploads
    --sagemaker-metric NAME       after a training step, print `pipecast-metric NAME=VALUE` for the job's
                                  MetricDefinitions

Internal (a supervising runtime or the local runner starting one try in a child; targets never emit them)::

    --try-number N --try-id ID    run only try N, record ID in meta.json; no retries, no timeout
    --collected INPUT=ENCODED     a mapped step's outputs collected as a list (nested JSON of [step, output])
    --quiet                       print nothing on success or step failure (the supervisor reports them)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pipecast
from pipecast.compiler import ir
from pipecast.compiler.ir import canonical_json
from pipecast.runtime import publish_argo, publish_azureml, publish_kfp, publish_sagemaker, publish_tekton
from pipecast.runtime.executor import StepInvocation, Upstream
from pipecast.runtime.params import decode_constant, decode_parameter, encode_constant

MODULE = "pipecast.runtime"


@dataclass(frozen=True, slots=True)
class EngineSyntax:
    """How an engine spells the values it substitutes into a task's command.

    Attributes:
        run_id: The engine's run-id placeholder, e.g. ``"{{ run_id }}"``.
        parameter: Returns the placeholder for a pipeline parameter, e.g. ``"{{ params.lr }}"``.
        artifact_root: The artifact root URI as it should appear in the command.
        python: The Python executable in the task's environment.
        code_sha256: The sha256 of the code package tasks import the steps from (package delivery; None: the
            code is in the image).
        code_package: Its URI, when not the usual place under the artifact root.
    """

    run_id: str
    parameter: Callable[[ir.Parameter], str]
    artifact_root: str
    python: str = "python"
    code_sha256: str | None = None
    code_package: str | None = None


def runtime_args(
    pipeline: ir.Pipeline,
    step: ir.Step,
    syntax: EngineSyntax,
    *,
    runtime_retry: bool = False,
    runtime_timeout: bool = False,
) -> list[str]:
    """The arguments after ``python -m pipecast.runtime`` for ``step``.

    ``runtime_retry``/``runtime_timeout`` make the runtime do retries and the timeout itself, for
    engines that cannot (say so in the target's capability table).
    """
    args = [
        "run",
        "--fn", step.function.path,
        "--pipeline", pipeline.name,
        "--step", step.name,
        "--run-id", syntax.run_id,
        "--artifact-root", syntax.artifact_root,
        "--source-hash", step.function.source_hash, "--pipecast-version", pipecast.__version__,
    ]
    if syntax.code_sha256:
        args += ["--code-sha256", syntax.code_sha256]
        if syntax.code_package:
            args += ["--code-package", syntax.code_package]
    params = {p.name: p for p in pipeline.parameters}
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.PARAMETER:
            param = params[binding.parameter or ""]
            args += ["--param", f"{binding.input}={param.type.value}:{syntax.parameter(param)}"]
        elif binding.kind is ir.BindingKind.OUTPUT:
            args += ["--upstream", f"{binding.input}={binding.step}/{binding.output}"]
        elif binding.kind is ir.BindingKind.CONSTANT:
            args += ["--const", f"{binding.input}={encode_constant(binding.value_json or 'null')}"]
        elif binding.kind is ir.BindingKind.GATHER:
            args += ["--gather", f"{binding.input}={encode_constant(binding.value_json or 'null')}"]
    for output in step.outputs:
        args += ["--output", output.name]
    if not step.cache:
        args.append("--no-cache")
    if runtime_retry and step.retry.attempts > 1:
        args += ["--attempts", str(step.retry.attempts), "--retry-delay", f"{step.retry.delay_seconds:g}",
                 "--retry-backoff", f"{step.retry.backoff:g}"]
        if step.retry.max_delay_seconds is not None:
            args += ["--retry-max-delay", f"{step.retry.max_delay_seconds:g}"]
    if runtime_timeout and step.timeout_seconds:
        args += ["--timeout", f"{step.timeout_seconds:g}"]
    return args


def step_command(pipeline: ir.Pipeline, step: ir.Step, syntax: EngineSyntax, **options: bool) -> list[str]:
    """The whole command: ``[python, "-m", "pipecast.runtime", ...runtime_args]``."""
    return [syntax.python, "-m", MODULE, *runtime_args(pipeline, step, syntax, **options)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipecast.runtime",
                                     description="Run one pipecast step (the program inside every engine task).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one step")
    run.add_argument("--fn", required=True)
    run.add_argument("--pipeline", required=True)
    run.add_argument("--step", required=True)
    run.add_argument("--run-id", required=True)
    run.add_argument("--artifact-root", required=True)
    run.add_argument("--param", action="append", default=[])
    run.add_argument("--const", action="append", default=[])
    run.add_argument("--upstream", action="append", default=[])
    run.add_argument("--collected", action="append", default=[], help=argparse.SUPPRESS)
    run.add_argument("--gather", action="append", default=[])
    run.add_argument("--output", action="append", default=[])
    run.add_argument("--no-cache", action="store_true")
    run.add_argument("--attempts", type=int, default=1)
    run.add_argument("--retry-delay", type=float, default=0.0)
    run.add_argument("--retry-backoff", type=float, default=1.0)
    run.add_argument("--retry-max-delay", type=float, default=None)
    run.add_argument("--timeout", type=float, default=None)
    run.add_argument("--source-hash", default=None)
    run.add_argument("--pipecast-version", default=None)
    run.add_argument("--code-package", default=None)
    run.add_argument("--code-sha256", default=None)
    run.add_argument("--kfp-executor-input", default=None)
    run.add_argument("--github-output", action="append", default=[])
    run.add_argument("--github-status", action="append", default=[])
    run.add_argument("--github-items", action="append", default=[])
    run.add_argument("--github-item", action="append", default=[])
    run.add_argument("--github-collect", action="append", default=[])
    publish_kfp.add_arguments(run)
    publish_argo.add_arguments(run)
    publish_azureml.add_arguments(run)
    publish_sagemaker.add_arguments(run)
    publish_tekton.add_arguments(run)
    run.add_argument("--try-number", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--try-id", default=None, help=argparse.SUPPRESS)
    run.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    return parser


@dataclass(frozen=True, slots=True)
class TryOptions:
    """The options that are not the step's invocation: one supervised try's (internal), the KFP executor input."""

    number: int | None = None
    id: str | None = None
    quiet: bool = False
    kfp_executor_input: str | None = None
    github_outputs: tuple[str, ...] = ()
    github_status: tuple[str, ...] = ()
    github_items: tuple[str, ...] = ()
    github_lists: tuple[str, ...] = ()
    github_collect: tuple[str, ...] = ()
    azureml_publish: tuple[str, ...] = ()
    sagemaker_property_file: str | None = None
    sagemaker_publish: tuple[str, ...] = ()
    sagemaker_model: str | None = None
    sagemaker_output_data: tuple[str, ...] = ()
    sagemaker_metrics: tuple[str, ...] = ()


def parse_command(argv: Sequence[str]) -> tuple[StepInvocation, TryOptions]:
    """Parse the runtime's command line: the invocation and the internal options of a supervised try."""
    return publish_kfp.choose_hook(list(argv), _parse)  # one command, or both KFP hooks' (the one that runs)


def _parse(argv: list[str], alone: bool) -> tuple[StepInvocation, TryOptions]:
    ns = _parser().parse_args(publish_kfp.expand_task(argv))
    ns.kfp_hook_alone = alone
    options = TryOptions(ns.try_number, ns.try_id, ns.quiet, ns.kfp_executor_input,
                         github_outputs=tuple(ns.github_output), github_status=tuple(ns.github_status),
                         github_items=tuple(ns.github_item), github_lists=tuple(ns.github_items),
                         github_collect=tuple(ns.github_collect), azureml_publish=publish_azureml.publish_specs(ns),
                         sagemaker_property_file=ns.sagemaker_property_file,
                         sagemaker_publish=tuple(ns.sagemaker_publish), sagemaker_model=ns.sagemaker_model,
                         sagemaker_output_data=tuple(ns.sagemaker_output_data),
                         sagemaker_metrics=tuple(ns.sagemaker_metric))
    invocation = publish_azureml.apply(publish_argo.apply(publish_kfp.apply(_invocation(ns), ns), ns), ns)
    return publish_tekton.apply(invocation, ns), options


def _invocation(ns: argparse.Namespace) -> StepInvocation:
    values = {}
    for item in ns.param:
        name, _, typed = item.partition("=")
        kind, _, text = typed.partition(":")
        values[name] = decode_parameter(kind, text)
    parameters = tuple(values)
    for item in ns.const:
        name, _, encoded = item.partition("=")
        values[name] = decode_constant(encoded)
    upstream: dict[str, Upstream | tuple[Any, ...]] = {}
    for item in ns.upstream:
        name, _, ref = item.partition("=")
        step, _, output = ref.rpartition("/")
        upstream[name] = Upstream(step=step, output=output)
    for item in ns.collected:
        name, _, encoded = item.partition("=")
        upstream[name] = _from_nested(decode_constant(encoded))
    return StepInvocation(
        function=ns.fn,
        pipeline=ns.pipeline,
        step=ns.step,
        run_id=ns.run_id,
        artifact_root=ns.artifact_root,
        values=values,
        upstream=upstream,
        outputs=tuple(ns.output),
        cache=not ns.no_cache,
        retry=RetryPolicyArgs(ns),
        timeout_seconds=ns.timeout,
        source_hash=ns.source_hash,
        pipecast_version=ns.pipecast_version,
        code_package=ns.code_package,
        code_sha256=ns.code_sha256,
        parameters=parameters,
        gathers=_gathers(ns.gather),
    )


def _gathers(items: Sequence[str]) -> dict[str, Any]:
    gathers = {}
    for item in items:
        name, _, encoded = item.partition("=")
        gathers[name] = decode_constant(encoded)
    return gathers


def try_args(inv: StepInvocation, options: TryOptions) -> list[str]:
    """The arguments after ``python -m pipecast.runtime`` that run one try of ``inv`` in a child process.

    Values are already decoded, so JSON carries them exactly: parameters as ``json`` parameters (the step
    context lists them), the rest as constants.
    """
    args = ["run", "--fn", inv.function, "--pipeline", inv.pipeline, "--step", inv.step, "--run-id", inv.run_id,
            "--artifact-root", inv.artifact_root]
    for name, value in inv.values.items():
        if name in inv.parameters:
            args += ["--param", f"{name}=json:{canonical_json(value)}"]
        else:
            args += ["--const", f"{name}={encode_constant(canonical_json(value))}"]
    for name, source in inv.upstream.items():
        if isinstance(source, Upstream):
            args += ["--upstream", f"{name}={source.step}/{source.output}"]
        else:  # a mapped step's outputs, collected in item order
            args += ["--collected", f"{name}={encode_constant(canonical_json(_nested(source)))}"]
    for name, template in inv.gathers.items():
        args += ["--gather", f"{name}={encode_constant(canonical_json(template))}"]
    for output in inv.outputs:
        args += ["--output", output]
    if not inv.cache:
        args.append("--no-cache")
    args += _verified_args(inv)
    if options.number is not None:
        args += ["--try-number", str(options.number)]
    if options.id is not None:
        args += ["--try-id", options.id]
    if options.quiet:
        args.append("--quiet")
    return args


def _nested(source: Upstream | tuple[Any, ...]) -> Any:
    return [source.step, source.output] if isinstance(source, Upstream) else {"items": [_nested(s) for s in source]}


def _from_nested(data: Any) -> Upstream | tuple[Any, ...]:
    if isinstance(data, dict):
        return tuple(_from_nested(item) for item in data["items"])
    return Upstream(step=data[0], output=data[1])


def _verified_args(inv: StepInvocation) -> list[str]:
    """The arguments that say what was compiled and where the code comes from, passed on to a try's child."""
    args = []
    for flag, value in (("--source-hash", inv.source_hash), ("--pipecast-version", inv.pipecast_version),
                        ("--code-sha256", inv.code_sha256), ("--code-package", inv.code_package)):
        if value is not None:
            args += [flag, value]
    return args


def RetryPolicyArgs(ns: argparse.Namespace) -> ir.RetryPolicy:  # noqa: N802 - reads like a constructor
    """The retry policy given by the runtime's ``--attempts`` and ``--retry-*`` arguments."""
    return ir.RetryPolicy(attempts=max(ns.attempts, 1), delay_seconds=ns.retry_delay,
                          backoff=ns.retry_backoff, max_delay_seconds=ns.retry_max_delay)


def invocation_for(
    pipeline: ir.Pipeline, step: ir.Step, run_id: str, artifact_root: str, parameters: dict[str, object]
) -> StepInvocation:
    """The invocation of ``step`` built straight from the IR (what the local runner uses)."""
    values: dict[str, object] = {}
    upstream = {}
    gathers = {}
    bound = []
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.PARAMETER:
            values[binding.input] = parameters[binding.parameter or ""]
            bound.append(binding.input)
        elif binding.kind is ir.BindingKind.CONSTANT:
            values[binding.input] = binding.value
        elif binding.kind is ir.BindingKind.OUTPUT:
            upstream[binding.input] = Upstream(step=binding.step or "", output=binding.output or "")
        elif binding.kind is ir.BindingKind.GATHER:
            gathers[binding.input] = binding.value
    return StepInvocation(
        function=step.function.path,
        pipeline=pipeline.name,
        step=step.name,
        run_id=run_id,
        artifact_root=artifact_root,
        values=values,
        upstream=upstream,
        outputs=tuple(o.name for o in step.outputs),
        cache=step.cache,
        retry=step.retry,
        timeout_seconds=step.timeout_seconds,
        source_hash=step.function.source_hash,
        pipecast_version=pipecast.__version__,
        parameters=tuple(bound),
        gathers=gathers,
    )
