"""``pipecast stack ...``: register, list, describe, update, delete, use and verify stacks.

Registered on the main command by a one-line hook in :mod:`pipecast.cli`; imports stay inside the commands so
``pipecast --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's error printing (no traceback, exit 2), imported when a command runs."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pipecast.cli import _friendly as friendly

        return friendly(fn)(*args, **kwargs)

    return wrapper


def _values(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items as ``--set`` reads them: JSON when it parses, the text otherwise."""
    from pipecast.cli import _setting_values

    return _setting_values(items)


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``register`` and ``update`` share."""
    for decorator in reversed([
        click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE",
                     help="Connection setting (as submit -c); a credential only as env:VAR or keyring:SERVICE/NAME."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Target setting (as --set)."),
        click.option("--artifact-root", help="Where the runs' outputs go (an fsspec URI or a folder)."),
        click.option("--build", "build", multiple=True, metavar="KEY=VALUE",
                     help="Image build setting (repository, builder, parent_image...; see docs/shipping.md)."),
        click.option("--code", type=click.Choice(["image", "package", "none"]), default=None,
                     help="How tasks get the code (docs/shipping.md)."),
        click.option("--credentials", multiple=True, metavar="CHAIN",
                     help="A credential chain the stack relies on: docker, aws, gcp or azure (checked by verify)."),
        click.option("--description", help="One line saying what the stack is."),
        click.option("--project", is_flag=True, help="Write ./pipecast.toml (the project's, to commit) instead of "
                                                      "the user's stacks.toml."),
    ]):
        fn = decorator(fn)
    return fn


def run_command_on_stack(pipeline: Any, stack: Any, parameters: dict[str, Any], settings: dict[str, Any],
                         artifact_root: str | None, code: str | None, on_unsupported: str,
                         local_only: dict[str, Any]) -> None:
    """``pipecast run`` on a stack that is not ``local``: Docker here, or submit and wait; exit 1 unless it succeeds."""
    import sys
    from dataclasses import replace

    from pipecast.runs.store import RunStore
    from pipecast.stacks.running import run_on_stack

    for flag, given in local_only.items():
        if given:
            raise click.UsageError(f"{flag} applies to the local stack only; stack {stack.name!r} runs on "
                                   f"{stack.target!r}")
    chosen = replace(stack, settings={**stack.settings, **settings}, artifact_root=artifact_root or stack.artifact_root,
                     code=code or stack.code)
    try:
        result = run_on_stack(pipeline, parameters, chosen, echo=lambda text: click.echo(text, err=True),
                              raise_on_failure=False, on_unsupported=on_unsupported)
    except KeyboardInterrupt:
        sys.exit(130)
    run_id = getattr(result, "run_id", None) or result.id
    signal = getattr(result, "signal", None)
    click.echo(run_id)
    if signal is not None:
        sys.exit(128 + signal)
    if RunStore.default().get(run_id)["status"] != "succeeded":
        sys.exit(1)


@click.group("stack")
def stack() -> None:
    """Named targets with their settings: register once, then run anywhere with --stack or PIPECAST_STACK."""


def _target_file(project: bool) -> Any:
    from pathlib import Path

    from pipecast.stacks.files import PROJECT_FILE, project_file, user_file

    return (project_file() or Path.cwd() / PROJECT_FILE) if project else user_file()


def _save(path: Any, name: str, table: dict[str, Any] | None) -> None:
    """Write stack ``name`` (or remove it: ``table`` None) in ``path``, keeping everything else in the file."""
    from pipecast.stacks.files import read_file, write_file

    data = read_file(path)
    stacks = dict(data.get("stacks", {}))
    if table is None:
        stacks.pop(name, None)
        if data.get("active") == name:
            del data["active"]
    else:
        stacks[name] = table
    data["stacks"] = stacks
    write_file(path, data)


@stack.command("register")
@click.argument("name")
@click.option("--target", "-t", required=True, help="The target (see `pipecast targets`).")
@_options
@_friendly
def register(name: str, target: str, project: bool, **given: Any) -> None:
    """Save stack NAME: TARGET with its settings (checked against the target now)."""
    from pipecast.errors import StackError
    from pipecast.stacks.files import stacks_in
    from pipecast.stacks.model import LOCAL, NAME, Stack
    from pipecast.stacks.validate import check_stack

    if name == LOCAL:
        raise StackError(f"{LOCAL!r} is the built-in stack (this machine); register another name")
    if not NAME.fullmatch(name):
        raise StackError(f"{name!r} is not a stack name (letters, digits, '_', '.', '-'; starts with a letter)")
    path = _target_file(project)
    if name in stacks_in(path):
        raise StackError(f"stack {name!r} already exists in {path}; change it with `pipecast stack update {name} "
                         "...`, or delete it first")
    new = Stack(name=name, target=target, source=str(path), **_fields(given))
    check_stack(new)
    _save(path, name, new.to_table())
    click.echo(f"registered stack {name!r} ({target}) in {path}")


def _fields(given: dict[str, Any]) -> dict[str, Any]:
    return {"config": _values(given["config"]), "settings": _values(given["settings"]),
            "build": _values(given["build"]), "artifact_root": given["artifact_root"],
            "code": given["code"], "credentials": tuple(given["credentials"]),
            "description": given["description"] or ""}


@stack.command("update")
@click.argument("name")
@_options
@click.option("--unset", multiple=True, metavar="KEY", help="Remove a -c, --set or --build key (or artifact_root, "
                                                            "code, credentials, description).")
@_friendly
def update(name: str, project: bool, unset: Sequence[str], **given: Any) -> None:
    """Change stack NAME: given keys are replaced or added, --unset ones removed; checked again before saving."""
    from dataclasses import replace
    from pathlib import Path

    from pipecast.errors import StackError
    from pipecast.stacks.files import get_stack, stacks_in
    from pipecast.stacks.model import LOCAL
    from pipecast.stacks.validate import check_stack

    if name == LOCAL:
        raise StackError(f"{LOCAL!r} is the built-in stack and cannot change; register a local_docker or other stack")
    found = get_stack(name)
    old = stacks_in(Path(found.source))[name]  # as written (a project's relative artifact root stays relative)
    fields = _fields(given)
    config, settings, build = dict(old.config), dict(old.settings), dict(old.build)
    config.update(fields["config"])
    settings.update(fields["settings"])
    build.update(fields["build"])
    top: dict[str, Any] = {key: fields[key] for key in ("artifact_root", "code", "description") if fields[key]}
    if fields["credentials"]:
        top["credentials"] = fields["credentials"]
    for key in unset:
        holders = [table for table in (config, settings, build) if key in table]
        for table in holders:
            del table[key]
        if key in ("artifact_root", "code", "description", "credentials"):
            top[key] = () if key == "credentials" else None if key != "description" else ""
        elif not holders:
            raise StackError(f"stack {name!r} has no key {key!r} to unset")
    new = replace(old, config=config, settings=settings, build=build, **top)
    check_stack(new)
    _save(Path(old.source), name, new.to_table())
    click.echo(f"updated stack {name!r} in {old.source}")


@stack.command("delete")
@click.argument("name")
@_friendly
def delete(name: str) -> None:
    """Remove stack NAME from the file it is defined in (the project's before the user's)."""
    from pathlib import Path

    from pipecast.errors import StackError
    from pipecast.stacks.files import get_stack
    from pipecast.stacks.model import LOCAL

    if name == LOCAL:
        raise StackError(f"{LOCAL!r} is the built-in stack and cannot be deleted")
    found = get_stack(name)
    _save(Path(found.source), name, None)
    click.echo(f"deleted stack {name!r} from {found.source}")


@stack.command("use")
@click.argument("name")
@_friendly
def use(name: str) -> None:
    """Make NAME the active stack for this user ($PIPECAST_STACK still wins for a process)."""
    from pipecast.stacks.files import get_stack, read_file, user_file, write_file

    get_stack(name)
    path = user_file()
    data = read_file(path)
    data["active"] = name
    write_file(path, data)
    click.echo(f"active stack: {name!r}")


@stack.command("list")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def list_(as_json: bool) -> None:
    """Every stack, the active one marked with '*'."""
    from pipecast.stacks.files import active_name, all_stacks

    active = active_name()
    stacks = all_stacks()
    if as_json:
        click.echo(json.dumps([{"name": s.name, "target": s.target, "source": s.source, "active": s.name == active}
                               for s in stacks.values()], indent=2))
        return
    for item in sorted(stacks.values(), key=lambda s: s.name):
        mark = "*" if item.name == active else " "
        click.echo(f"{mark} {item.name:<20} {item.target:<14} {item.source}")


@stack.command("describe")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def describe(name: str | None, as_json: bool) -> None:
    """Stack NAME (default: the active one): its target, settings and where it is defined."""
    from pipecast.redaction import redact_credentials
    from pipecast.stacks.files import active_stack

    found = active_stack(name)
    table = {"name": found.name, **found.to_table(), "source": found.source}
    if as_json:
        click.echo(redact_credentials(json.dumps(table, indent=2)))
        return
    for key, value in table.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for inner, item in value.items():
                click.echo(redact_credentials(f"  {inner} = {json.dumps(item)}"))
        else:
            click.echo(redact_credentials(f"{key}: {', '.join(value) if isinstance(value, list) else value}"))


@stack.command("verify")
@click.argument("name", required=False)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds each network probe waits.")
@_friendly
def verify(name: str | None, timeout: float) -> None:
    """Check stack NAME (default: the active one) without running anything, and say what to fix."""
    import sys

    from pipecast.redaction import redact_credentials
    from pipecast.stacks.files import active_stack
    from pipecast.stacks.verify import verify_stack

    found = active_stack(name)
    checks = verify_stack(found, timeout=timeout)
    for check in checks:
        click.echo(redact_credentials(check.render()))
    failed = [c for c in checks if not c.ok]
    click.echo(f"stack {found.name!r}: {len(checks) - len(failed)} ok, {len(failed)} to fix")
    if failed:
        sys.exit(1)
