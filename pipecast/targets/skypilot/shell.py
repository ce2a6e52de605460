"""Bash text for SkyPilot's ``setup``/``run`` scripts: every literal word quoted, env vars as ``"${NAME}"``.

Values never become shell code: the runtime command is built with markers where an env var goes
(:func:`var`), and :func:`shell_word` turns each argument into quoted literal text around ``"${NAME}"``.
"""

from __future__ import annotations

import re
import shlex

from pipecast.runtime.inline_flow import CANCELLED_ENV, STOPPED_ENV

RUN_ID_VAR = "PIPECAST_RUN_ID"

# The first id of a managed-job pipeline names the whole run: each task gets its own SKYPILOT_TASK_ID,
# and SKYPILOT_TASK_IDS lists all of them, one a line. `sky launch` sets only SKYPILOT_TASK_ID.
RUN_ID_PRELUDE = (
    "set -euo pipefail\n"
    f'{RUN_ID_VAR}="${{SKYPILOT_TASK_IDS:-${{SKYPILOT_TASK_ID}}}}"\n'
    f"{RUN_ID_VAR}=\"${{{RUN_ID_VAR}%%$'\\n'*}}\"\n"
)

# A pipeline with exit handlers or hooks: a failed step does not end the script (its `||` keeps `set -e` from
# acting). The first failure's status is kept, PIPECAST_FLOW_STOPPED tells later steps' runtime that the run stops
# (ordinary steps record themselves skipped; handlers and hooks still run), and the script ends with that status.
FAILED_VAR = "pipecast_status"
# Cancelling the job (`sky cancel`) SIGTERMs the script and the running step together: SkyPilot 0.14.1's
# sky/skylet/log_lib.py `run_with_log` starts the script in a session of its own, watched by
# sky/skylet/subprocess_daemon.py, which SIGTERMs the script and its children once the job driver that
# `sky/skylet/job_lib.py` `cancel_jobs` SIGTERMed has gone, and SIGKILLs them 30 s later. The trap keeps the
# script going: bash runs it once the running step's runtime has recorded itself cancelled and exited, and it
# exports CANCELLED_ENV, so each later ordinary step records itself cancelled while the exit handlers and the
# on_failure hook run (status `cancelled`), as `pipecast run` does; then the script exits 128 + the signal.
# A second signal ends the script once the running handler has exited (it got the signal too): as `pipecast run`,
# a second Ctrl-C aborts the handlers.
# (SkyPilot runs the script with `bash -i`, which without a trap ignores SIGTERM: the steps after the cancelled
# one would go on until the SIGKILL.)
SIGNAL_VAR = "pipecast_signal"
FINALLY_PRELUDE = (
    f"{FAILED_VAR}=0\n"
    f'pipecast_failed() {{ if [ "${{{FAILED_VAR}}}" -eq 0 ]; then {FAILED_VAR}="$1"; fi; '
    f"export {STOPPED_ENV}=1; }}\n"
    f'pipecast_cancelled() {{ if [ -n "${{{SIGNAL_VAR}:-}}" ]; then exit "$1"; fi; '
    f'{SIGNAL_VAR}="$1"; export {CANCELLED_ENV}=1; }}\n'
    "trap 'pipecast_cancelled 143' TERM\n"
    "trap 'pipecast_cancelled 130' INT\n"
)
# The env vars the run script itself sets (with PIPECAST_ARTIFACT_ROOT, a task env): a step's env of the same
# name would reach the whole script, e.g. STOPPED_ENV making every later step record itself skipped.
SCRIPT_ENV = frozenset({RUN_ID_VAR, STOPPED_ENV, CANCELLED_ENV})
FINALLY_STEP = ' || pipecast_failed "$?"'
FINALLY_END = f'exit "${{{SIGNAL_VAR}:-${{{FAILED_VAR}}}}}"\n'

_PLACEHOLDER = re.compile("\x00([^\x00]*)\x00")


def var(name: str) -> str:
    """A marker for an env var inside a runtime argument, turned into ``"${name}"`` when quoting."""
    return f"\x00{name}\x00"


def shell_word(arg: str) -> str:
    """Quote one argument for bash: literal text with :func:`shlex.quote`, env markers as ``"${NAME}"``."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(arg):
        if match.start() > position:
            parts.append(shlex.quote(arg[position:match.start()]))
        parts.append(f'"${{{match.group(1)}}}"')
        position = match.end()
    if position < len(arg) or not parts:
        parts.append(shlex.quote(arg[position:]))
    return "".join(parts)


def shell_command(argv: list[str]) -> str:
    """The command as bash text, one ``--flag value`` pair a line so a reader can follow it."""
    lines = [" ".join(shell_word(a) for a in argv[:4])]  # python -m pipecast.runtime run
    rest = argv[4:]
    i = 0
    while i < len(rest):
        if rest[i].startswith("--") and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            lines.append(f"{shell_word(rest[i])} {shell_word(rest[i + 1])}")
            i += 2
        else:
            lines.append(shell_word(rest[i]))
            i += 1
    return " \\\n  ".join(lines)
