"""Entry point: ``python -m pipecast.runtime run ...`` (arguments in :mod:`pipecast.runtime.command`)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one step; exit 0 on success, 1 if the step failed, 2 on bad arguments or setup."""
    from pipecast.errors import PipecastError, StepFailedError
    from pipecast.runtime.command import parse_invocation
    from pipecast.runtime.executor import execute_step

    # The user's code is imported by module path; the working directory is where engines put it.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        invocation = parse_invocation(sys.argv[1:] if argv is None else argv)
        result = execute_step(invocation)
    except StepFailedError as err:
        print(f"pipecast: {err}", file=sys.stderr)
        return 1
    except PipecastError as err:
        print(f"pipecast: error: {err}", file=sys.stderr)
        return 2
    state = "cached" if result.cached else result.status
    print(f"pipecast: step {result.step!r} {state} (run {invocation.run_id})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
