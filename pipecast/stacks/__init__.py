"""Stacks: a target with its connection and deployment settings, saved once under a name (docs/stacks.md).

``pipecast stack register NAME --target T -c ... --set ...``, then ``pipecast run REF``, ``pipecast submit --stack
NAME`` or calling a pipeline in Python run there. Importing this package imports no engine SDK.
"""

from __future__ import annotations

from pipecast.stacks.files import active_name, active_stack, all_stacks, get_stack
from pipecast.stacks.model import LOCAL, Stack

__all__ = ["LOCAL", "Stack", "active_name", "active_stack", "all_stacks", "get_stack"]
