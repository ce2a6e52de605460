"""Checks the runtime makes on its own arguments before it reads or writes anything.

Two defences that do not trust the engine or the compiler:

- a value the engine substitutes that still holds an engine placeholder (``{{ run_id }}``,
  ``${{ github.run_id }}``, ``$(context.pipelineRun.name)``, ``${VAR}``, percent-encoded or not) means the engine
  did not substitute it, and is refused by one rule (:func:`check_substituted`): the run id (every run would
  share one run folder), the step name and upstream references (a map item's index), a map item's index, the
  logical time;
- a pipeline, run, step or output name that could leave the artifact root (``..``, an absolute path, a path
  separator) is refused, whatever the store (``file://``, ``s3://``, ``gs://``, ``az://``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from pipecast.errors import ArtifactError, PipecastError

# Template syntaxes of the engines we target: Jinja/Argo/KFP/Azure ``{{ }}`` and GitHub ``${{ }}``,
# Tekton/Kubernetes ``$( )``, shell/Compose ``${ }``, EventBridge Scheduler's ``<aws.scheduler.…>`` keywords.
# An unterminated one counts too (a truncated id).
_PLACEHOLDER = re.compile(r"\$?\{\{.*?(?:\}\}|$)|\$\(.*?(?:\)|$)|\$\{.*?(?:\}|$)|<aws\.scheduler\.[^>]*>?",
                          re.DOTALL)

# Percent-encoding may be applied more than once on the way (a URL inside a URL); three rounds cover it.
_DECODE_ROUNDS = 3


def unsubstituted_placeholder(text: str) -> str | None:
    """The first engine placeholder in ``text`` (decoded from percent-encoding if need be), or None."""
    candidate = text
    for _ in range(_DECODE_ROUNDS + 1):
        found = _PLACEHOLDER.search(candidate)
        if found:
            return found.group(0)
        decoded = urllib.parse.unquote(candidate)
        if decoded == candidate:
            return None
        candidate = decoded
    return None


def check_substituted(what: str, value: str, consequence: str, error: type[PipecastError] = PipecastError) -> None:
    """Refuse ``value`` when the engine left a placeholder in it: the one rule for every substituted value.

    ``what`` names the value (``"run id"``, ``"step name"``...), ``consequence`` says what reading it anyway
    would do. Only for values that can never hold template text themselves (ids, names, indices, times), never
    for a parameter's or a constant's value, which is the user's data.
    """
    placeholder = unsubstituted_placeholder(value)
    if placeholder is None:
        return
    encoded = "" if placeholder in value else " (percent-encoded)"
    raise error(
        f"{what} {value!r} still holds the engine placeholder {placeholder!r}{encoded}: the engine did not "
        f"substitute it, so {consequence}. The task's command must carry a placeholder that this engine "
        "substitutes in that position; recompile with the current pipecast, and report it if the file was "
        "emitted by pipecast"
    )


def check_run_id(run_id: str) -> None:
    """Refuse a run id the engine left unsubstituted."""
    check_substituted("run id", run_id, "every run of this pipeline would share one run folder and read each "
                                        "other's outputs")


def check_path_name(kind: str, name: str) -> None:
    """Refuse a name that is not one plain path segment under the artifact root."""
    problem = None
    if name in ("", ".", ".."):
        problem = "names a relative folder ('.' or '..')" if name else "is empty"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif "\x00" in name:
        problem = "contains a NUL character"
    if problem:
        raise ArtifactError(
            f"{kind} {name!r} {problem}: it would leave its folder under the artifact root. "
            f"A {kind} must be one path segment without '/', '\\\\', or '..'; rename it"
        )


def check_names(pipeline: str, run_id: str, step: str, outputs: Iterable[str] = (),
                upstream: Iterable[tuple[str, str]] = ()) -> None:
    """Check every name that becomes part of a path, before anything is read or written."""
    check_path_name("pipeline name", pipeline)
    check_path_name("run id", run_id)
    check_path_name("step name", step)
    for output in outputs:
        check_path_name("output name", output)
    for upstream_step, upstream_output in upstream:
        check_path_name("step name", upstream_step)
        check_path_name("output name", upstream_output)
