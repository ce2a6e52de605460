"""The flow, in one place: build → compile → submit → track, and run here (in this process or with Docker).

``pipecast`` commands and ``PipelineDef`` methods call these functions; targets implement the contract in
:mod:`pipecast.targets.base` and never record runs themselves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipecast.compiler import ir
from pipecast.compiler.drawing import graph_record
from pipecast.errors import (
    ParameterError,
    PipecastError,
    Problem,
    Severity,
    SubmitError,
    SubmitOutcomeUnknownError,
    UnsupportedFeatureError,
    UnsupportedFeatureWarning,
    ValidationError,
)
from pipecast.redaction import redact_credentials
from pipecast.runs.tracking import RunHandle, track
from pipecast.targets.base import Bundle, EmitContext, Feature, SubmitRequest, Target

if TYPE_CHECKING:
    from pipecast.runs.status import EngineRun
    from pipecast.runs.store import RunStore
    from pipecast.runtime.local_runner import LocalRun
    from pipecast.targets.local_docker import ComposeCommands, Runner

__all__ = ["DockerRun", "EmitOptions", "RunHandle", "compile_pipeline", "run_here", "run_with_docker",
           "submit_pipeline", "track"]


@dataclass(frozen=True, slots=True)
class EmitOptions:
    """Options of one compile: ``--set`` settings and what to do with unsupported features."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    on_unsupported: str = "error"  # or "warn"
    images: Mapping[str, str] = field(default_factory=dict)  # step -> image built for it (pipecast build)
    code_sha256: str | None = None  # tasks import the steps from this code package (under the artifact root)


def compile_pipeline(pipeline: ir.Pipeline, target_name: str, options: EmitOptions | None = None) -> Bundle:
    """Check and emit ``pipeline`` for a target; raise with every problem, or attach them as warnings."""
    options = options or EmitOptions()
    bundle, context = _emit(pipeline, target_name, options)
    return _finish(bundle, context, options)


def _emit(pipeline: ir.Pipeline, target_name: str, options: EmitOptions) -> tuple[Bundle, EmitContext]:
    """Emit, keeping every problem in the context (``_finish`` decides what they mean)."""
    from pipecast.targets.gcpause import paused_gc
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    with paused_gc():  # the checks too: a full collection of a 10,000-step IR cost 50 ms in random rounds
        return _checked_emit(pipeline, target, options)


def _checked_emit(pipeline: ir.Pipeline, target: Target, options: EmitOptions) -> tuple[Bundle, EmitContext]:
    from pipecast.targets.checks import check_null_parameters, parse_settings
    from pipecast.targets.lowering import code_package

    context = EmitContext(target=target.name, overrides=dict(options.settings), images=dict(options.images))
    parse_settings(pipeline, target, options.settings, context)
    check_null_parameters(pipeline, target, context)
    target.check(pipeline, context)
    _check_map_sizes(pipeline, context)
    if target.refuses_control_flow(pipeline):  # reported by check(); emitting would drop the loop or branch
        return Bundle(target.name, ()), context
    try:
        with code_package(options.code_sha256):
            bundle = target.emit(pipeline, context)
    except ValidationError as err:  # e.g. engine names that collide
        context.errors.extend(err.problems)
        bundle = Bundle(target.name, ())
    return replace(bundle, settings=context.settings), context


def _check_map_sizes(pipeline: ir.Pipeline, context: EmitContext) -> None:
    """A map over a list parameter: its default within the engine's map-size limit (see map_limits)."""
    from pipecast.targets.map_limits import check_defaults

    check_defaults(pipeline, context)


def compile_with_build(pipeline: ir.Pipeline, target_name: str, options: EmitOptions,
                       build: Mapping[str, Any] | None = None, log: Callable[[str], None] | None = None) -> Bundle:
    """Compile; when steps need an image and have none, build and push it first (``pipecast build``).

    The image is built only when the target needs one for a step that names none (``@step(image=)``,
    ``@pipeline(image=)``, ``--set image=``/``--image``) and the build settings' ``auto`` is on. ``emit`` stays
    pure: the built images, named by digest, are an input of the second compile.
    """
    from pipecast.build.images import build_images, step_images
    from pipecast.build.settings import build_settings

    bundle, context = _emit(pipeline, target_name, options)
    # Anything else wrong fails the compile first: nothing is built for a pipeline that cannot be submitted.
    others = [p for p in context.errors if p.step not in context.missing_images or "no container image" not in
              p.message] + (context.problems if options.on_unsupported == "error" else [])
    if not context.missing_images or others or options.images or not build_settings(pipeline, build or {}).auto:
        return _finish(bundle, context, options)
    from pipecast.targets.registry import get_target

    root = getattr(context.settings, "artifact_root", None) or pipeline.artifact_root
    push = target_name != "local_docker" or bool(build_settings(pipeline, build or {}).repository)
    extra = get_target(target_name).image_requirements(pipeline, context.settings)
    images = build_images(pipeline, build, push=push, artifact_root=root, log=log or print, extra=extra)
    return compile_pipeline(pipeline, target_name, replace(options, images=step_images(images)))


def target_image_requirements(pipeline: ir.Pipeline, target_name: str | None,
                              settings: Mapping[str, Any]) -> tuple[str, ...]:
    """What ``target_name`` adds to the images built for ``pipeline`` with ``--set settings`` (none: no target).

    ``pipecast build --target`` and ``--dockerfile`` show the image ``submit`` would build. The settings are read
    as the compile reads them; a bad one is left for the compile to report.
    """
    if not target_name:
        return ()
    from pipecast.targets.checks import parse_settings
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    context = EmitContext(target=target.name, overrides=dict(settings))
    parse_settings(pipeline, target, settings, context)
    return target.image_requirements(pipeline, context.settings)


def _finish(bundle: Bundle, context: EmitContext, options: EmitOptions) -> Bundle:
    if not context.problems and not context.errors:
        return bundle
    if options.on_unsupported == "warn" and not context.errors:
        warnings = tuple(
            Problem(p.message, p.step, p.location, p.fix, Severity.WARNING, p.target) for p in context.problems
        )
        return replace(bundle, warnings=bundle.warnings + warnings)
    problems = context.errors + context.problems
    hint = "" if context.errors else "; --on-unsupported=warn to compile anyway"
    raise UnsupportedFeatureError(
        problems,
        summary=f"cannot compile for {context.target!r} ({len(problems)} problem"
                f"{'s' if len(problems) != 1 else ''}{hint})",
    )


def submit_pipeline(
    pipeline: ir.Pipeline,
    target_name: str,
    parameters: Mapping[str, Any],
    settings: Mapping[str, Any],
    config: Mapping[str, Any],
    on_unsupported: str = "error",
    warn: Callable[[str], None] | None = None,
    build: Mapping[str, Any] | None = None,
    code: str | None = None,
) -> RunHandle:
    """Compile, submit and record a run; return its handle.

    With ``on_unsupported="warn"`` each feature the engine cannot express goes to ``warn`` (default: a Python
    :class:`~pipecast.errors.UnsupportedFeatureWarning`) and into the run's record, and the run is submitted.
    The run is recorded before the target submits it; what the target notes (the engine's run id, its URL) is
    recorded as soon as it is known, so a submit whose answer is lost can still be tracked. Steps that need an
    image and name none get one built and pushed first (``build``: the build settings; see
    :func:`compile_with_build`). With ``code="package"`` the import root is archived, named in every task
    command and uploaded to the artifact root before the engine sees the run (see :mod:`pipecast.build.shipping`).
    """
    from pipecast.runs.store import RunStore, new_run_id
    from pipecast.targets.registry import get_target

    target = get_target(target_name)
    values = _submittable_values(target, pipeline, parameters)  # refused before anything is compiled or recorded
    _check_submitted_map_sizes(pipeline, target, settings, values)
    if any(p.include_file for p in pipeline.parameters):  # stored where the engine's tasks read them
        from pipecast.runtime.include import ingest

        values = ingest(pipeline, values, pipeline.artifact_root or settings.get("artifact_root"))
    shipped = _prepare_code(pipeline, settings, code)
    if shipped:  # an image built for this run needs no code in it: the package brings it
        build = {**(build or {}), "code": "none"}
    bundle = compile_with_build(pipeline, target_name, EmitOptions(
        settings=settings, on_unsupported=on_unsupported,
        code_sha256=shipped.package.sha256 if shipped else None), build, log=warn)
    if shipped:
        from pipecast.build.package import upload_package

        upload_package(shipped.package, shipped.artifact_root)
    notices = [problem.render() for problem in bundle.warnings]
    for notice in notices:
        if warn is None:
            warnings.warn(notice, UnsupportedFeatureWarning, stacklevel=3)
        else:
            warn(notice)
    store = RunStore.default()
    run_id = new_run_id(pipeline.name)
    store.create_run(run_id, pipeline=pipeline.name, target=target.name, parameters=values, status="pending",
                     metadata={"warnings": notices} if notices else None)
    store.record_graph(run_id, graph_record(pipeline))

    def note(*, engine_run_id: str | None = None, url: str | None = None, **metadata: Any) -> None:
        store.note_run(run_id, engine_run_id=engine_run_id, url=url, metadata=metadata)

    engine = _start(SubmitRequest(target, pipeline, bundle, values, config, run_id, note), store)
    store.note_run(run_id, engine_run_id=engine.engine_run_id, url=engine.url, metadata=engine.metadata)
    return RunHandle(engine, store)


def _check_submitted_map_sizes(pipeline: ir.Pipeline, target: Target, settings: Mapping[str, Any],
                               values: Mapping[str, Any]) -> None:
    """The run's list values within the engine's map-size limit, before anything is built or submitted."""
    from pipecast.targets.map_limits import check_values

    check_values(pipeline, target, settings, values)


def _prepare_code(pipeline: ir.Pipeline, settings: Mapping[str, Any], code: str | None) -> Any:
    """The prepared code package when ``code`` is ``"package"``; None for ``image``/``none`` (nothing to ship)."""
    if code is None or code == "image" or code == "none":
        return None
    from pipecast.build.shipping import CODE_MODES, prepare_package

    if code not in CODE_MODES:
        raise PipecastError(f"unknown code delivery mode {code!r}; choose one of {', '.join(CODE_MODES)}")
    return prepare_package(pipeline, pipeline.artifact_root or settings.get("artifact_root"))


def _submittable_values(target: Target, pipeline: ir.Pipeline, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameter values, defaults applied; raise if ``target`` cannot take the run at all."""
    from pipecast.runtime.params import resolve_parameters
    from pipecast.targets.checks import null_parameter_reason

    if not target.can_submit:
        how = target.capabilities.get(Feature.SUBMIT)
        detail = f": {how.note}" if how and how.note else "; compile it with --out DIR and deploy the files yourself"
        raise SubmitError(f"target {target.name!r} does not submit runs{detail}")
    values = resolve_parameters(pipeline, parameters)
    nulls = sorted(name for name, value in parameters.items() if value is None and name in values)
    if nulls and not target.carries_null_parameters:
        raise ParameterError(f"parameter{'s' if len(nulls) > 1 else ''} {', '.join(map(repr, nulls))} "
                             f"given as None: {null_parameter_reason(target)}; pass a real value of its type "
                             "(e.g. 0, '', [] or {}) that the step treats as 'not set'")
    return values


def _start(request: SubmitRequest, store: RunStore) -> EngineRun:
    """Have the target submit ``request``; a failure is recorded (``unknown`` when the engine may have the run)."""
    run_id = request.run_id
    try:
        return request.target.start(request)
    except BaseException as err:
        if isinstance(err, PipecastError):  # its message may quote a -c URL with a password in it
            err.args = (redact_credentials(str(err)),)
        if isinstance(err, SubmitOutcomeUnknownError):
            store.update_status(run_id, "unknown", detail=f"submit outcome unknown: {err}; `pipecast runs wait "
                                                          f"{run_id}` asks the engine again")
        else:
            store.update_status(run_id, "failed", detail=f"submit failed: {err}")
        raise


def run_here(pipeline: ir.Pipeline, parameters: Mapping[str, Any] | None = None, **options: Any) -> LocalRun:
    """Run ``pipeline`` on this machine (the ``local`` target) and return the finished run."""
    from pipecast.runtime.local_runner import run_pipeline

    return run_pipeline(pipeline, dict(parameters or {}), **options)


@dataclass
class DockerRun:
    """A finished ``local_docker`` run: its id, status, the folder of its files and the commands run.

    ``signal`` is the signal that cancelled the run (SIGINT for Ctrl-C, SIGTERM), else None.
    """

    id: str
    status: str
    url: str
    commands: list[list[str]] = field(default_factory=list)
    signal: int | None = None


def run_with_docker(pipeline: ir.Pipeline, parameters: Mapping[str, Any], *, settings: Mapping[str, Any] | None = None,
                    artifact_root: str | None = None, on_unsupported: str = "error",
                    warn: Callable[[str], None] | None = None, runner: Runner | None = None,
                    code: str | None = None, build: Mapping[str, Any] | None = None) -> DockerRun:
    """Run ``pipeline`` with Docker Compose here (``pipecast run --target local_docker``) and record the run.

    ``on_unsupported="warn"`` runs despite features Compose cannot express, passing each warning to ``warn``;
    ``runner`` runs the docker commands (default: :func:`subprocess.run`); ``code="package"`` ships the code
    as a package through the artifact root (any image with pipecast runs it). Steps with no image get one built
    by the local engine first, as submit does (:func:`compile_with_build`; ``build``: the build settings; no
    push unless a repository is set). Ctrl-C or SIGTERM cancels the run:
    the containers are stopped (each step records itself cancelled) and removed. Each step's log is kept in
    ``logs/<step>.log`` beside the run's Compose file.
    """
    import os
    import subprocess

    from pipecast.compiler.naming import rule_for
    from pipecast.runs.store import RunStore, new_run_id
    from pipecast.runtime.artifacts import ArtifactStore, pipecast_home
    from pipecast.runtime.params import resolve_parameters
    from pipecast.targets.compose import compose_environment, has_exit_steps, service_names
    from pipecast.targets.local_docker import (
        COMPOSE_FILE,
        check_docker,
        compose_commands,
        interrupt_signal,
        run_exit_steps_after_cancel,
        run_up,
        signals_held,
        sigterm_interrupts,
    )

    runner = runner or subprocess.run
    values = resolve_parameters(pipeline, dict(parameters))
    pipeline, chosen = _docker_settings(pipeline, settings or {}, artifact_root)
    root = chosen["artifact_root"]
    local = root.startswith("file://")
    shipped = _prepare_code(pipeline, chosen, code)
    if shipped:  # an image built for this run needs no code in it: the package brings it
        build = {**(build or {}), "code": "none"}
    bundle = compile_with_build(pipeline, "local_docker", EmitOptions(
        settings=chosen, on_unsupported=on_unsupported, code_sha256=shipped.package.sha256 if shipped else None),
        build, log=warn)
    for problem in bundle.warnings:
        (warn or print)(problem.render())
    check_docker(runner)
    run_id = new_run_id(pipeline.name)
    folder = os.path.join(pipecast_home(), "docker", run_id)
    bundle.write(folder)
    compose_file = os.path.join(folder, COMPOSE_FILE)
    if local:
        os.makedirs(root[len("file://"):], exist_ok=True)
    if shipped:
        from pipecast.build.package import upload_package

        upload_package(shipped.package, root)
    env = {**os.environ, **compose_environment(pipeline, values, run_id)}
    artifacts = ArtifactStore(root)
    url = artifacts.url(artifacts.run_dir(pipeline.name, run_id))
    store = RunStore.default()
    logs = os.path.join(folder, "logs")
    store.create_run(run_id, pipeline=pipeline.name, target="local_docker", parameters=values, status="running",
                     url=url, metadata={"artifact_root": root, "compose_file": compose_file, "logs": logs})
    store.record_graph(run_id, graph_record(pipeline))
    commands = compose_commands(compose_file, rule_for("dns1123_label").apply(run_id),
                                abort_on_failure=not has_exit_steps(pipeline))
    stopped_by = None
    try:
        with sigterm_interrupts():
            up = run_up(runner, commands.up, env)
    except KeyboardInterrupt as interrupt:
        stopped_by = interrupt_signal(interrupt)
    if stopped_by is not None and has_exit_steps(pipeline):
        run_exit_steps_after_cancel(runner, commands, env, pipeline, service_names(pipeline, "local_docker"),
                                    lambda step: _record_cancelled(artifacts, pipeline.name, run_id, step))
    with signals_held():
        if stopped_by is not None:
            runner(commands.stop, env=env, capture_output=True, text=True)
        codes = _docker_outcome(runner, commands, env, service_names(pipeline, "local_docker"), logs)
        rows = _step_rows(pipeline, artifacts, run_id, codes)
        store.record_steps(run_id, rows)
        if stopped_by is not None:
            store.update_status(run_id, "cancelled", detail=f"interrupted ({signal_name(stopped_by)})")
            return DockerRun(run_id, "cancelled", url, [commands.up, commands.stop, commands.down], stopped_by)
        failed = [row for row in rows if row["status"] == "failed"]
        status = "succeeded" if up.returncode == 0 and not failed else "failed"
        detail = "; ".join(f"step {row['step']!r} failed: {row['error']}" for row in failed) or \
            f"docker compose up exited with status {up.returncode}"
        store.update_status(run_id, status, detail=None if status == "succeeded" else detail)
    return DockerRun(run_id, status, url, [commands.up, commands.down])


def _record_cancelled(artifacts: Any, pipeline: str, run_id: str, step: str) -> None:
    """Record ``step`` cancelled unless its runtime recorded it (a step that never started, as pipecast run does)."""
    from pipecast.runtime.executor import now
    from pipecast.runtime.inline_flow import CANCELLED

    path = f"{artifacts.step_dir(pipeline, run_id, step)}/meta.json"
    if not artifacts.exists(path):
        artifacts.write_json(path, {"step": step, "status": "cancelled", "error": CANCELLED, "ended_at": now()})


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _docker_outcome(runner: Runner, commands: ComposeCommands, env: Mapping[str, str], services: Mapping[str, str],
                    logs: str) -> dict[str, int]:
    """Each step's container exit code, by step; each step's log is written to ``logs/<step>.log``.

    Then the project's containers and network are removed, whatever happened before.
    """
    import os

    from pipecast.targets.local_docker import exit_codes, split_logs

    try:
        listed = runner(commands.ps, env=env, capture_output=True, text=True)
        codes = exit_codes(listed.stdout) if listed.returncode == 0 else {}
        output = runner(commands.logs, env=env, capture_output=True, text=True)
        os.makedirs(logs, exist_ok=True)
        for step, text in split_logs(output.stdout or "", services).items():
            with open(os.path.join(logs, f"{step}.log"), "w", encoding="utf-8") as handle:
                handle.write(text)
    finally:
        runner(commands.down, env=env, capture_output=True, text=True)
    return {step: codes[service] for step, service in services.items() if service in codes}


def _docker_settings(pipeline: ir.Pipeline, settings: Mapping[str, Any],
                     artifact_root: str | None) -> tuple[ir.Pipeline, dict[str, Any]]:
    """The pipeline and the ``--set`` settings a Docker run compiles with.

    The artifact root is chosen; for a folder here, it replaces the pipeline's own root and the containers run as
    the user running pipecast. An ``image`` given here replaces the pipeline's own image (``@pipeline(image=)``):
    a run here is where an image is tried out; a step's own ``@step(image=)`` still wins. The settings given
    are read as the compile will read them (the pipeline's
    ``settings=``, then ``--set``); a bad one is left for the compile to report, with every other problem.
    """
    import os

    from pipecast.runtime.artifacts import ArtifactStore, default_root
    from pipecast.targets.local_docker import LocalDockerSettings, LocalDockerTarget
    from pipecast.targets.settings import pipeline_layers

    layers = pipeline_layers(pipeline, LocalDockerTarget.name, settings)
    given = LocalDockerSettings.parse(layers, target=LocalDockerTarget.name, report=lambda problem: None)
    root = ArtifactStore(artifact_root or pipeline.artifact_root or given.artifact_root or default_root()).uri
    chosen = {**settings, "artifact_root": root}
    if settings.get("image"):
        pipeline = replace(pipeline, image=None)
    if root.startswith("file://"):
        if given.user is None and hasattr(os, "getuid"):
            chosen["user"] = f"{os.getuid()}:{os.getgid()}"  # outputs in the mounted folder stay yours
        pipeline = replace(pipeline, artifact_root=root)  # the pipeline's own root must not win over this one
    return pipeline, chosen


def _step_rows(pipeline: ir.Pipeline, artifacts: Any, run_id: str,
               exit_codes: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Each step's result, read from the metadata the runtime wrote.

    A container that ended non-zero without writing any failed (e.g. the image lacks the code); a step with
    neither never ran.
    """
    rows: list[dict[str, Any]] = []
    names = [step.name for step in pipeline.steps]
    while names:
        name = names.pop(0)
        try:
            meta = artifacts.read_json(f"{artifacts.step_dir(pipeline.name, run_id, name)}/meta.json")
        except PipecastError:
            code = (exit_codes or {}).get(name)
            if code:
                rows.append({"step": name, "status": "failed",
                             "error": f"its container exited with status {code} (see its log)"})
            else:
                rows.append({"step": name, "status": "skipped"})
            continue
        state = meta.get("status")
        names += meta.get("instances", [])  # a mapped step's items, each with a record (pipecast.runtime.inline_flow)
        status = ("cached" if meta.get("cached") else "done") if state == "succeeded" else \
            state if state in ("cancelled", "skipped") else "failed"
        rows.append({"step": name, "status": status, "cached": bool(meta.get("cached")),
                     "attempts": meta.get("attempt", 0), "started_at": meta.get("started_at"),
                     "ended_at": meta.get("ended_at"), "error": meta.get("error") or meta.get("reason")})
    return rows
