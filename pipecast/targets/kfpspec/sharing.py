"""One component and executor per distinct step shape, shared by every task that has it.

A 1,000-step pipeline calling one function with the same image, resources and settings needs one component and
one executor, not a thousand (the IR of the 1,000-step ladder alone was 96% of 1 MiB, and the bound is on more
than the IR: the KFP backend compiles it into an Argo Workflow, which holds its specs again plus two tasks a step,
and which Argo's workflow controller fails over 1 MiB, :data:`.workflow_size.WORKFLOW_LIMIT`).
What differs between such tasks is the runtime's ``--step``, ``--const`` and ``--upstream`` values: together
they become one component input, ``pipecast_task`` (STRING), which each task sets as a ``runtimeValue.constant``
holding those arguments as a JSON list, and which the launcher substitutes into the args like any other input
placeholder (``--kfp-task``, decoded by :func:`pipecast.runtime.publish_kfp.expand_task`). One input instead of
one per value keeps a task small: each input costs a task three nested YAML mappings. The run id cannot join
it: the driver swaps a constant only when it *is* a job placeholder (see ``builder.RUN_ID_INPUT``).
Names follow kfp's compiler
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
PER_TASK = frozenset({"--step", "--const", "--upstream"})
TASK_INPUT = "pipecast_task"
TASK_OPTION = "--kfp-task"  # pipecast/runtime/publish_kfp.py


def task_arguments(args: list[str], placeholder: Callable[[str], str],
                   name: str = TASK_INPUT) -> tuple[list[str], dict[str, str]]:
    """``args`` with the per-task options replaced by one input placeholder, and that input's value by name.

    The value is the per-task options and their values, in order, as compact JSON (ASCII, so that no engine
    re-encodes it); a step without any keeps ``args`` as they are. ``name``: the input (the two hooks sharing
    one exit task each have their own, :mod:`.hooks`).
    """
    shared: list[str] = []
    own: list[str] = []
    at = None
    pending = False
    for arg in args:
        if pending:
            own.append(arg)
            pending = False
        elif arg in PER_TASK:
            if at is None:
                at = len(shared)
            own.append(arg)
            pending = True
        else:
            shared.append(arg)
    if at is None:
        return shared, {}
    shared[at:at] = [TASK_OPTION, placeholder(name)]
    return shared, {name: json.dumps(own, separators=(",", ":"))}


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
