"""Checking a stack against its target before it is saved: the same checks ``-c`` and ``--set`` get at submit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.errors import PipecastError, Problem, ValidationError
from pipecast.stacks.model import CHAINS, Stack
from pipecast.stacks.secrets import credential_problems, is_reference, reference_problems

HERE = ("local", "local_docker")  # targets that run on this machine: they take no -c connection settings


def check_stack(stack: Stack) -> None:
    """Raise ValidationError listing every problem of ``stack`` (unknown keys, bad values, credentials)."""
    problems = stack_problems(stack)
    if problems:
        raise ValidationError(problems, summary=f"stack {stack.name!r} is invalid ({len(problems)} problem"
                                                f"{'s' if len(problems) != 1 else ''})")


def stack_problems(stack: Stack) -> list[Problem]:
    """Every problem of ``stack``, for its target's settings, connection settings and build settings."""
    from pipecast.targets.registry import get_target

    where = f"stack {stack.name!r}"
    try:
        target = get_target(stack.target)
    except PipecastError as err:
        return [Problem(str(err), location=where, fix="see `pipecast targets` for the names")]
    problems = credential_problems(stack.name, "config", stack.config)
    problems += credential_problems(stack.name, "settings", stack.settings)
    problems += credential_problems(stack.name, "build", stack.build)
    problems += credential_problems(stack.name, "artifact_root", {"artifact_root": stack.artifact_root or ""})
    problems += credential_problems(stack.name, "description", {"description": stack.description})
    problems += reference_problems(stack.name, stack.config)
    problems += _settings_problems(stack, target, where)
    problems += _config_problems(stack, target, where)
    problems += _build_problems(stack, where)
    for chain in stack.credentials:
        if chain not in CHAINS:
            problems.append(Problem(f"unknown credential chain {chain!r}", location=where,
                                    fix=f"name one of {', '.join(CHAINS)}"))
    return problems


def _parse(cls: Any, values: Mapping[str, Any], source: str, target: str, where: str) -> list[Problem]:
    from pipecast.targets.settings import Layer

    found: list[Problem] = []
    cls.parse([Layer(source, dict(values), where)], target=target, report=found.append)
    return found


def _settings_problems(stack: Stack, target: Any, where: str) -> list[Problem]:
    settings = dict(stack.settings)
    spec = target.settings_class.spec()
    problems: list[Problem] = []
    if stack.artifact_root:
        if "artifact_root" in settings:
            problems.append(Problem("the artifact root is given twice (--artifact-root and --set "
                                    "artifact_root)", location=where, fix="give it once, with --artifact-root"))
        elif target.name not in HERE and "artifact_root" not in spec:
            problems.append(Problem(f"target {target.name!r} takes no artifact root", location=where,
                                    fix="leave --artifact-root out"))
        elif "artifact_root" in spec:
            settings["artifact_root"] = stack.artifact_root
    connection = set(target.connection_keys()) - set(spec)
    for key in sorted(set(settings) & connection):
        problems.append(Problem(f"{key!r} is a connection setting of {target.name!r}, given with --set",
                                location=where, fix=f"give it with -c {key}=..."))
        del settings[key]
    problems += _parse(target.settings_class, settings, "the stack's --set", target.name, where)
    if stack.code is not None:
        from pipecast.build.shipping import CODE_MODES

        if target.name == "local":
            problems.append(Problem("the local target imports the code here; it takes no code mode",
                                    location=where, fix="leave --code out, or use target local_docker"))
        elif stack.code not in CODE_MODES:
            problems.append(Problem(f"unknown code delivery mode {stack.code!r}", location=where,
                                    fix=f"choose one of {', '.join(CODE_MODES)}"))
    return problems


def _config_problems(stack: Stack, target: Any, where: str) -> list[Problem]:
    if not stack.config:
        return []
    if target.name in HERE:
        return [Problem(f"target {target.name!r} runs on this machine and takes no -c connection settings",
                        location=where, fix="leave -c out")]
    if target.connection_class is None:
        return []  # the target declares no connection settings: its submit checks them
    spec = target.connection_class.spec()
    # A reference's value is only known when the stack is used: its key is checked, its type then.
    plain = {k: v for k, v in stack.config.items() if not is_reference(v) or k not in spec}
    return [Problem(p.message.replace("setting", "connection setting", 1), location=where,
                    fix=(p.fix or "").replace("known settings", "known connection settings"), target=target.name)
            for p in _parse(target.connection_class, plain, "the stack's -c", target.name, where)]


def _build_problems(stack: Stack, where: str) -> list[Problem]:
    if not stack.build:
        return []
    if stack.target == "local":
        return [Problem("the local target builds no image", location=where,
                        fix="leave the build settings out, or use target local_docker")]
    from pipecast.build.settings import BuildSettings

    return _parse(BuildSettings, stack.build, "the stack's build settings", "build", where)
