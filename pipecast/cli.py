"""The ``pipecast`` command line. Imports stay inside commands so ``pipecast --help`` is fast."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print pipecast errors without a traceback and exit with their code (2 for user errors)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipecast.errors import PipecastError
        from pipecast.redaction import redact_credentials

        try:
            return fn(*args, **kwargs)
        except PipecastError as err:
            click.echo(f"error: {redact_credentials(str(err))}", err=True)
            sys.exit(err.exit_code)

    return wrapper


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=what)
        result[key] = value
    return result


def _setting_values(items: Sequence[str]) -> dict[str, Any]:
    """``--set k=v``: JSON when it parses (numbers, true, lists), the text otherwise."""
    values: dict[str, Any] = {}
    for key, text in _pairs(items, "--set").items():
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def _build(reference: str) -> Any:
    from pipecast.compiler.loader import load_pipeline

    return load_pipeline(reference).build()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipecast")
def main() -> None:
    """Compile plain-Python ML pipelines for workflow engines, submit and track them, or run them here."""


@main.command()
@click.argument("reference", metavar="REF")
@click.option("--target", "-t", required=True, help="Target name (see `pipecast targets`).")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Write the files here (default: stdout).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Target setting, repeatable.")
@click.option("--on-unsupported", type=click.Choice(["error", "warn"]), default="error", show_default=True,
              help="What to do with features the engine cannot express.")
@_friendly
def compile(reference: str, target: str, out: str | None, settings: Sequence[str], on_unsupported: str) -> None:
    """Compile REF (FILE[:PIPELINE]) into the engine's files."""
    from pipecast.flow import EmitOptions, compile_pipeline

    pipeline = _build(reference)
    bundle = compile_pipeline(pipeline, target, EmitOptions(_setting_values(settings), on_unsupported))
    for warning in bundle.warnings:
        click.echo(warning.render(), err=True)
    if out is None:
        if len(bundle.files) != 1:
            raise click.UsageError(f"target {target!r} emits {len(bundle.files)} files; pass --out DIR")
        click.echo(bundle.files[0][1], nl=False)
        return
    from pipecast.targets.out_dir import write_owned

    done = write_owned(bundle.files, out, target=bundle.target, pipeline=pipeline.name)
    for path in done.written:
        click.echo(f"wrote {os.path.relpath(path)}", err=True)
    for path in done.removed:
        click.echo(f"removed {os.path.relpath(path)} (written by an earlier compile, no longer emitted)", err=True)
    for path in done.kept:
        click.echo(f"warning: left {os.path.relpath(path)}: an earlier compile wrote it and this one does not, but "
                   f"it changed since; remove it if it is not yours", err=True)


@main.command()
@click.argument("reference", metavar="REF")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="Pipeline parameter.")
@click.option("--workers", "-w", type=int, help="Steps run at once (default: CPU count, at most 8).")
@click.option("--no-cache", is_flag=True, help="Run every step, reuse nothing.")
@click.option("--continue-on-failure", is_flag=True, help="Keep running steps that do not depend on a failure.")
@click.option("--artifact-root", help="Where outputs go (default: the pipeline's, else ~/.pipecast/artifacts).")
@click.option("--quiet", "-q", is_flag=True, help="No progress view.")
@click.option("--target", "-t", type=click.Choice(["local", "local_docker"]), default=None,
              help="local: this Python environment; local_docker: one container per step (needs Docker). "
                   "Default: the active stack (docs/stacks.md).")
@click.option("--stack", "-s", "stack_name", metavar="NAME",
              help="Run on this stack (default: $PIPECAST_STACK, else `pipecast stack use`, else local).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Setting of the target (over the stack's), repeatable; not for local.")
@click.option("--on-unsupported", type=click.Choice(["error", "warn"]), default="error", show_default=True,
              help="local_docker: what to do with features Compose cannot express.")
@click.option("--code", type=click.Choice(["image", "package", "none"]), default=None,
              help="How tasks get the code: baked into the image (default), or a package of the import root "
                   "shipped through the artifact root (any image with pipecast runs it; see docs/shipping.md).")
@_friendly
def run(reference: str, params: Sequence[str], workers: int | None, no_cache: bool, continue_on_failure: bool,
        artifact_root: str | None, quiet: bool, target: str | None, stack_name: str | None, settings: Sequence[str],
        on_unsupported: str, code: str | None) -> None:
    """Run REF on the active stack (this machine unless you chose another), wait, and print the run's id."""
    from pipecast.runtime.local_runner import Progress, run_pipeline
    from pipecast.runtime.progress import default_progress

    pipeline = _build(reference)
    stack = None
    if target is None:
        from pipecast.stacks.cli import run_command_on_stack
        from pipecast.stacks.files import active_stack

        stack = active_stack(stack_name)
        if stack.target != "local":
            run_command_on_stack(pipeline, stack, _pairs(params, "--param"), _setting_values(settings),
                                 artifact_root, code, on_unsupported, {"--workers": workers, "--no-cache": no_cache,
                                                                       "--continue-on-failure": continue_on_failure})
            return
        target, artifact_root = "local", artifact_root or stack.artifact_root
    elif stack_name:
        raise click.UsageError("give --target or --stack, not both (a stack names its target)")
    if target == "local_docker":
        _run_docker(pipeline, params, workers, no_cache, continue_on_failure, artifact_root, settings,
                    on_unsupported, code)
        return
    if code:
        raise click.UsageError("--code applies to --target local_docker only (a local run imports the code here)")
    if settings:
        raise click.UsageError("--set applies to --target local_docker only")
    progress = Progress() if quiet else default_progress()
    try:
        result = run_pipeline(pipeline, _pairs(params, "--param"), workers=workers, cache=not no_cache,
                              fail_fast=not continue_on_failure, artifact_root=artifact_root, progress=progress,
                              raise_on_failure=False)
    except KeyboardInterrupt as stop:
        click.echo("interrupted: run cancelled", err=True)
        sys.stderr.flush()
        os._exit(128 + getattr(stop, "signum", 2))  # 130 for Ctrl-C, 143 for SIGTERM; running threads must not hold it
    if stack is not None:
        from pipecast.stacks.running import note_stack

        note_stack(result.id, stack.name)
    click.echo(result.id)
    if result.status != "succeeded":
        sys.exit(1)


def _run_docker(pipeline: Any, params: Sequence[str], workers: int | None, no_cache: bool,
                continue_on_failure: bool, artifact_root: str | None, settings: Sequence[str],
                on_unsupported: str, code: str | None = None) -> None:
    """``pipecast run --target local_docker``: the pipeline as a Compose project on this machine's Docker."""
    from pipecast.flow import run_with_docker

    for given, flag in ((workers, "--workers"), (no_cache, "--no-cache"), (continue_on_failure,
                                                                          "--continue-on-failure")):
        if given:
            raise click.UsageError(f"{flag} applies to --target local only")
    result = run_with_docker(pipeline, _pairs(params, "--param"), settings=_setting_values(settings),
                             artifact_root=artifact_root, on_unsupported=on_unsupported,
                             warn=lambda text: click.echo(text, err=True), code=code)
    if result.signal is not None:
        click.echo(f"interrupted: run {result.id} cancelled", err=True)
    click.echo(result.id)
    if result.status != "succeeded":
        sys.exit(128 + result.signal if result.signal is not None else 1)


@main.command()
@click.argument("reference", metavar="REF")
@click.option("--target", "-t", help="The engine (see `pipecast targets`); default: the stack's.")
@click.option("--stack", "-s", "stack_name", metavar="NAME",
              help="Take the target, -c, --set, build and code settings from this stack (default with no --target: "
                   "the active stack); flags given here override them.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Target setting, repeatable.")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE",
              help="Connection setting (host, namespace...); credentials come from the environment.")
@click.option("--on-unsupported", type=click.Choice(["error", "warn"]), default="error", show_default=True,
              help="What to do with features the engine cannot express (warn: submit anyway).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to finish.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds --wait waits.")
@click.option("--image", help="Run every step in this image (no build); same as --set image=IMAGE.")
@click.option("--repository", help="Push the image submit builds here (REGISTRY/NAME); see `pipecast build`.")
@click.option("--builder", help="Build with docker, buildah, or a registered builder.")
@click.option("--code", type=click.Choice(["image", "package", "none"]), default=None,
              help="How tasks get the code: baked into the image (default), or a package of the import root "
                   "shipped through the artifact root (any image with pipecast runs it; see docs/shipping.md).")
@_friendly
def submit(reference: str, target: str | None, stack_name: str | None, params: Sequence[str], settings: Sequence[str],
           config: Sequence[str], on_unsupported: str, wait_: bool, timeout: float, image: str | None,
           repository: str | None, builder: str | None, code: str | None) -> None:
    """Compile REF, submit it to an engine and print the run's URL.

    A container target's steps that name no image get one built and pushed first (docs/shipping.md).
    """
    from pipecast.flow import submit_pipeline
    from pipecast.redaction import redact_credentials

    pipeline = _build(reference)
    values = _setting_values(settings)
    if image:
        values["image"] = image
    connection = _setting_values(config)
    build = {"repository": repository, "builder": builder}
    stack = None
    if target is None or stack_name:
        from pipecast.stacks.running import stack_submission

        stack, target, values, connection, build, code = stack_submission(stack_name, target, values, connection,
                                                                          build, code)
    handle = submit_pipeline(pipeline, target, _pairs(params, "--param"), values, connection, on_unsupported,
                             warn=lambda text: click.echo(redact_credentials(text), err=True), build=build, code=code)
    if stack is not None:
        from pipecast.stacks.running import note_stack

        note_stack(handle.run_id, stack)
    click.echo(redact_credentials(f"run {handle.run_id}: {handle.url or handle.engine_run_id}"))
    if wait_:
        status = handle.wait(timeout)
        click.echo(redact_credentials(f"{status.value}{': ' + handle.detail if handle.detail else ''}"))
        if status.value != "succeeded":
            sys.exit(1)


@main.command("build")
@click.argument("reference", metavar="REF")
@click.option("--target", "-t", help="The target the image is for (its artifact_root setting picks the fsspec "
                                     "backend installed).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Target setting, repeatable.")
@click.option("--push", is_flag=True, help="Push to --repository and print the image by digest (REPO@sha256:...).")
@click.option("--dockerfile", "print_dockerfile", is_flag=True, help="Print the Dockerfile(s); build nothing.")
@click.option("--builder", help="docker (default), buildah, or a builder registered under pipecast.builders.")
@click.option("--parent-image", help="The image to build on (Python 3 with pip and venv).")
@click.option("--from-dockerfile", "own_dockerfile", metavar="PATH",
              help="Your own Dockerfile, built first and used as the parent (path relative to the import root).")
@click.option("--repository", help="Where the image goes, REGISTRY/NAME; the tag is the content hash.")
@click.option("--wheelhouse/--no-wheelhouse", default=None,
              help="Resolve the requirements to wheels here and ship them (installs with no index).")
@_friendly
def build_image(reference: str, target: str | None, settings: Sequence[str], push: bool, print_dockerfile: bool,
                builder: str | None, parent_image: str | None, own_dockerfile: str | None, repository: str | None,
                wheelhouse: bool | None) -> None:
    """Build the image(s) REF's steps run in: its code, its requirements and pipecast itself.

    Prints each image's reference: by digest once pushed. An image whose tag (a hash of everything in it) is
    already in the registry is not built again.
    """
    from pipecast.build.images import build_images, dockerfiles
    from pipecast.flow import target_image_requirements

    pipeline = _build(reference)
    overrides = {"builder": builder, "parent_image": parent_image, "dockerfile": own_dockerfile,
                 "repository": repository, "wheelhouse": wheelhouse}
    root = _artifact_root(pipeline, target, _setting_values(settings))
    extra = target_image_requirements(pipeline, target, _setting_values(settings))  # e.g. tekton's cron pod
    if print_dockerfile:
        texts = [text for _, text in dockerfiles(pipeline, overrides, artifact_root=root, extra=extra)]
        if not texts:
            click.echo(f"nothing to build: every step of {pipeline.name!r} names its own image", err=True)
        click.echo("\n".join(texts), nl=False)
        return
    images = build_images(pipeline, overrides, push=push, artifact_root=root,
                          log=lambda line: click.echo(line, err=True), extra=extra)
    if not images:
        click.echo(f"nothing to build: every step of {pipeline.name!r} names its own image", err=True)
    for image in images:
        what = "built" if image.built else "unchanged, not rebuilt"
        click.echo(f"{', '.join(image.steps)}: {what} in {image.seconds:.1f}s", err=True)
        click.echo(image.reference)


def _artifact_root(pipeline: Any, target: str | None, settings: dict[str, Any]) -> str | None:
    """The artifact root the tasks of ``target`` use: the pipeline's, ``--set``, or the pipeline's settings."""
    if pipeline.artifact_root or not target:
        return str(pipeline.artifact_root) if pipeline.artifact_root else None
    root = settings.get("artifact_root") or pipeline.settings_for(target).get("artifact_root")
    return str(root) if root else None


@main.command()
@click.argument("reference", metavar="REF")
@click.option("--json", "as_json", is_flag=True, help="Print the IR as JSON.")
@_friendly
def inspect(reference: str, as_json: bool) -> None:
    """Validate REF and print its IR."""
    pipeline = _build(reference)
    if as_json:
        click.echo(pipeline.to_json(), nl=False)
        return
    from pipecast.compiler.graph import topological_order

    click.echo(f"pipeline {pipeline.name!r} (IR v{pipeline.written_version()}) at {pipeline.location}")
    for param in pipeline.parameters:
        default = "required" if param.required else f"= {param.default_json}"
        click.echo(f"  param {param.name}: {param.type.value} {default}")
    for name in topological_order(pipeline):
        step = pipeline.step(name)
        upstream = ", ".join(step.upstream()) or "-"
        outs = ", ".join(o.name for o in step.outputs) or "-"
        click.echo(f"  step {name} [{step.function.path}] after: {upstream} -> {outs}  ({step.location})")


@main.command()
@click.argument("reference", metavar="REF")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write .mmd, .svg or .png (needs Graphviz).")
@_friendly
def graph(reference: str, out: str | None) -> None:
    """Print the DAG of REF as Mermaid, or draw it with Graphviz."""
    from pipecast.compiler.drawing import render_graph

    pipeline = _build(reference)
    text = render_graph(pipeline, out)
    if text is not None:
        click.echo(text, nl=False)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--settings", "settings_of", metavar="TARGET", help="Print the settings TARGET takes (--set, settings=).")
@_friendly
def targets(as_json: bool, settings_of: str | None) -> None:
    """List every target with its status and capabilities, or one target's settings."""
    from pipecast.targets.listing import describe_settings, describe_targets

    click.echo(describe_settings(settings_of) if settings_of else describe_targets(as_json), nl=False)


@main.group()
def runs() -> None:
    """Runs recorded in the run store."""


@runs.command("list")
@click.option("--pipeline")
@click.option("--stack", help="Only the runs made on this stack.")
@click.option("--status", help="Only the runs in this status (succeeded, failed, running...).")
@click.option("--limit", type=int, default=20, show_default=True)
@_friendly
def runs_list(pipeline: str | None, stack: str | None, status: str | None, limit: int) -> None:
    """The newest runs."""
    from pipecast.redaction import redact_credentials
    from pipecast.runs.client import Client

    client = Client()
    client.store.reap_stale_local_runs()
    for run_ in client.list_pipeline_runs(pipeline, limit, stack=stack, status=status):
        click.echo(redact_credentials(f"{run_.id}  {run_.target:<10} {run_.status:<10} {run_.created_at}  "
                                      f"{run_.url or ''}"))


@runs.command("show")
@click.argument("name_or_id")
@_friendly
def runs_show(name_or_id: str) -> None:
    """One run (by id, or the newest of a pipeline) as JSON, with each step's outputs and logged metadata."""
    from pipecast.redaction import redact_credentials
    from pipecast.runs.artifacts import with_artifacts
    from pipecast.runs.store import RunStore

    store = RunStore.default()
    record = store.get(name_or_id)
    click.echo(redact_credentials(json.dumps(with_artifacts(record, store.graph(record["id"])), indent=2)))


@runs.command("wait")
@click.argument("name_or_id")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE")
@_friendly
def runs_wait(name_or_id: str, timeout: float, config: Sequence[str]) -> None:
    """Wait for a submitted run to finish."""
    from pipecast.runs.tracking import track

    handle = track(name_or_id, _setting_values(config))
    status = handle.wait(timeout)
    click.echo(status.value)
    if status.value != "succeeded":
        sys.exit(1)


@runs.command("logs")
@click.argument("name_or_id")
@click.option("--step", "-s", metavar="STEP", help="Only this step's log (its pipecast name).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run (or the step) ends.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds --follow follows at most.")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE")
@_friendly
def runs_logs(name_or_id: str, step: str | None, follow: bool, timeout: float, config: Sequence[str]) -> None:
    """Print a run's step logs: every step's in order with a header each, or one step's."""
    from pipecast.redaction import redact_credentials
    from pipecast.runs.logs import run_logs

    try:
        for line in run_logs(name_or_id, _setting_values(config), step, follow, timeout):
            click.echo(redact_credentials(line))
    except KeyboardInterrupt:  # ctrl-c ends a --follow; the run itself goes on
        sys.stdout.flush()
        sys.exit(130)


@runs.command("cancel")
@click.argument("name_or_id")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE")
@_friendly
def runs_cancel(name_or_id: str, config: Sequence[str]) -> None:
    """Cancel a submitted run."""
    from pipecast.runs.tracking import track

    track(name_or_id, _setting_values(config)).cancel()
    click.echo("cancel requested")


@main.group()
def schedules() -> None:
    """Schedules pipecast made on engines: list them, delete one (docs/schedules.md)."""


@schedules.command("list")
@click.option("--target", "-t", "targets_", multiple=True, metavar="TARGET",
              help="Ask this target's engine (repeatable; default: every target the run store has runs on).")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE",
              help="Connection setting, as for submit (each target gets the keys it takes).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@_friendly
def schedules_list(targets_: Sequence[str], config: Sequence[str], as_json: bool) -> None:
    """The schedules on each engine: pipeline, target, cron, next run, state, id and UI URL."""
    from pipecast.redaction import redact_credentials
    from pipecast.schedules import render_json, render_table
    from pipecast.schedules.asking import list_everywhere

    found, failures = list_everywhere(list(targets_), _setting_values(config))
    if found or not failures:
        click.echo(redact_credentials(render_json(found) if as_json else render_table(found)), nl=False)
    for failure in failures:
        click.echo(f"error: {redact_credentials(failure)}", err=True)
    if failures:
        sys.exit(2)


@schedules.command("delete")
@click.argument("pipeline")
@click.option("--target", "-t", required=True, help="The target whose engine holds the schedule.")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE", help="Connection setting, as for submit.")
@_friendly
def schedules_delete(pipeline: str, target: str, config: Sequence[str]) -> None:
    """Delete PIPELINE's schedule on TARGET's engine (its runs are left alone)."""
    from pipecast.redaction import redact_credentials
    from pipecast.schedules import delete_schedule

    for line in delete_schedule(target, pipeline, _setting_values(config)):
        click.echo(redact_credentials(line))


def _add_stack_commands() -> None:
    """``pipecast stack ...`` lives in its own module (pipecast/stacks/cli.py)."""
    from pipecast.stacks.cli import stack

    main.add_command(stack)


_add_stack_commands()


def _add_ui_command() -> None:
    """``pipecast ui`` lives in pipecast/ui/cli.py (its server is imported only when it runs)."""
    from pipecast.ui.cli import ui

    main.add_command(ui)


_add_ui_command()


if __name__ == "__main__":
    main()
