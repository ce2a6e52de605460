"""Stacks: a target with its connection and deployment settings, saved once under a name (docs/stacks.md).

``pipecast stack register NAME --target T -c ... --set ...``, then ``pipecast run REF``, ``pipecast submit --stack
NAME`` or calling a pipeline in Python run there. Names load on first use, so ``pipecast --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipecast.stacks.files import active_name, active_stack, all_stacks, get_stack
    from pipecast.stacks.model import LOCAL, Stack

__all__ = ["LOCAL", "Stack", "active_name", "active_stack", "all_stacks", "get_stack"]
_HOMES = {"LOCAL": "pipecast.stacks.model", "Stack": "pipecast.stacks.model", "active_name": "pipecast.stacks.files",
          "active_stack": "pipecast.stacks.files", "all_stacks": "pipecast.stacks.files",
          "get_stack": "pipecast.stacks.files"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipecast.stacks' has no attribute {name!r}")
    return getattr(import_module(home), name)
