"""One component and executor per distinct step shape, shared by every task that has it.

A 1,000-step pipeline calling one function with the same image, resources and settings needs one component and
one executor, not a thousand (the IR of the 1,000-step ladder was 96% of the 1 MiB Kubernetes object limit).
What differs between such tasks is the runtime's ``--step``, ``--const`` and ``--upstream`` values: they
become component inputs (STRING) that each task sets as a ``runtimeValue.constant``, which the launcher
substitutes into the args like any other input placeholder. Names follow kfp's compiler
(``kfp/dsl/utils.py`` ``make_name_unique_by_adding_index``): ``comp-<function>``, then ``comp-<function>-2``
for the next distinct shape of the same function, and the matching ``exec-`` label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

from pipecast.compiler import ir

# The runtime's options whose value is the task's own (its step name, its constant arguments, its upstream
# steps), not the function's: pipecast/runtime/command.py.
PER_TASK = {"--step": "step", "--const": "const", "--upstream": "upstream"}


def task_arguments(args: list[str], placeholder: Callable[[str], str]) -> tuple[list[str], dict[str, str]]:
    """``args`` with each per-task value replaced by an input placeholder, and those inputs' values by name."""
    shared: list[str] = []
    values: dict[str, str] = {}
    kind = None
    for arg in args:
        if kind is None:
            shared.append(arg)
            kind = PER_TASK.get(arg)
            continue
        if kind == "step":
            name, prefix, value = "pipecast_step", "", arg
        else:
            key, _, value = arg.partition("=")
            name, prefix = f"pipecast_{kind}_{key}", f"{key}="
        name = unique(name, values, "_")
        values[name] = value
        shared.append(prefix + placeholder(name))
        kind = None
    return shared, values


def unique(name: str, taken: Collection[str], delimiter: str = "-") -> str:
    """``name``, or ``name-2``, ``name-3``... whichever is free (kfp's ``make_name_unique_by_adding_index``)."""
    if name not in taken:
        return name
    index = 2
    while f"{name}{delimiter}{index}" in taken:
        index += 1
    return f"{name}{delimiter}{index}"


def base_name(step: ir.Step) -> str:
    """The function's name as kfp's ``sanitize_k8s_name`` writes a component's (``load_data`` → ``load-data``)."""
    return re.sub(r"-+", "-", re.sub(r"[^-a-z0-9]", "-", step.function.qualname.lower())).strip("-") or "step"


def shape_key(*parts: Any) -> str:
    """A canonical text of what makes two tasks' component and executor the same."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))
