"""The runtime checks that it runs the code that was compiled, with the pipecast that compiled it.

Every task command carries ``--source-hash`` (the step function's source hash from the IR: a sha256 of the
function's source text, decorators included, first 16 hex digits, see
:func:`pipecast.compiler.signatures.source_hash`) and ``--pipecast-version``. The runtime recomputes both from
what it actually imports and refuses a mismatch before the step runs, so a stale image never runs old code
and records it as a success.

What the hash covers is the step function itself: a change to a helper it calls in another function or
module is not caught here. A code package (``--code-sha256``, see :mod:`pipecast.runtime.code_package`) is
verified whole by its sha256, and an image built by ``pipecast build`` is referenced by digest, which cover
the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipecast.errors import CodeMismatchError

_REBUILD = ("rebuild the image with the code as compiled (pipecast build REF --push, or submit again, which "
            "builds it) and submit again, or ship the code as a package (--code package)")


def check_version(step: str, compiled: str | None) -> None:
    """Refuse a pipecast here other than the one that compiled the pipeline (``compiled``; None: not checked)."""
    import pipecast

    if compiled is None or compiled == pipecast.__version__:
        return
    raise CodeMismatchError(
        f"step {step!r}: this task runs pipecast {pipecast.__version__} but the pipeline was compiled with pipecast "
        f"{compiled}; fix: install pipecast=={compiled} in the task's image ({_REBUILD}), or compile and submit "
        f"again with pipecast {pipecast.__version__}")


def check_source(step: str, function: str, fn: Callable[..., Any], compiled: str | None) -> str:
    """Refuse a step function whose source hash differs from the compiled one; return the hash here."""
    from pipecast.compiler.signatures import source_hash

    here = source_hash(fn)
    if compiled is not None and compiled != here:
        where = getattr(getattr(fn, "__code__", None), "co_filename", "?")
        raise CodeMismatchError(
            f"step {step!r}: the step function {function!r} imported here ({where}) has source hash {here}, but "
            f"the pipeline was compiled from source hash {compiled}: this task would run other code than was "
            f"compiled (a stale image?); fix: {_REBUILD}")
    return here
