"""Retrying requests to the Kubeflow Pipelines and Vertex AI APIs, and resolving a create whose answer was lost.

A failed request means one of three things, and each SDK's errors are sorted into them by a classifier:

- ``FINAL``: the engine refused (a 4xx other than 429). Raised at once.
- ``NOT_DONE``: the engine did not act (429, or the connection was refused before anything was sent). The
  request is sent again after a pause (the server's ``Retry-After`` when it gives one).
- ``UNKNOWN``: the request left and no answer came back (the connection dropped or timed out, or a 5xx from
  a server that may have done the work). A read is simply sent again. A create is never sent again blindly:
  the engine is first asked for the object under the name pipecast chose for it, and only if it has none is
  the create repeated. ``EXISTS`` (a create refused because the name is taken) is resolved the same way.

So a submit ends with the run the engine has, found by asking it, never with a second run; when the engine
cannot even be asked, it ends with :class:`~pipecast.errors.SubmitOutcomeUnknownError` (the run is recorded as
``unknown`` and ``pipecast runs wait`` asks again), never with a run recorded as failed while it may exist.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.http import Response

T = TypeVar("T")


class Outcome(enum.Enum):
    """What a failed request tells about the engine's state."""

    FINAL = "final"
    NOT_DONE = "not done"
    UNKNOWN = "unknown"
    EXISTS = "exists"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A classified failure and the pause the server asked for (seconds), if it asked."""

    outcome: Outcome
    wait: float | None = None


Classifier = Callable[[BaseException], Verdict]


@dataclass
class Backoff:
    """How often and how long to retry.

    Attributes:
        attempts: Tries per request (the first included).
        first_delay: Seconds before the second try; multiplied by ``factor`` after each try.
        factor: Growth of the pause between tries.
        max_delay: The longest pause pipecast chooses itself.
        max_wait: The longest ``Retry-After`` honoured; a longer one ends the retries.
        sleep: How to wait (tests shorten the pauses, never skip them).
    """

    attempts: int = 6
    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    max_wait: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    def pause(self, attempt: int, verdict: Verdict) -> bool:
        """Wait before try ``attempt + 1``; False when no pause is allowed (the server asked for too long)."""
        if verdict.wait is not None:
            if verdict.wait > self.max_wait:
                return False
            self.sleep(verdict.wait)
            return True
        self.sleep(min(self.first_delay * self.factor ** (attempt - 1), self.max_delay))
        return True


# The policy the submit clients use; tests replace it with one that pauses for milliseconds.
BACKOFF = Backoff()


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not headers:
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    return Response(0, lowered, None).retry_after(time.time())  # read as pipecast's HTTP client reads it


def call(request: Callable[[], T], classify: Classifier, backoff: Backoff | None = None) -> T:
    """Send an idempotent request, again after ``NOT_DONE`` and ``UNKNOWN`` failures; raise the last error."""
    policy = backoff or BACKOFF
    for attempt in range(1, policy.attempts + 1):
        try:
            return request()
        except Exception as err:
            verdict = classify(err)
            if verdict.outcome in (Outcome.FINAL, Outcome.EXISTS) or attempt == policy.attempts:
                raise
            if not policy.pause(attempt, verdict):
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass(frozen=True, slots=True)
class Creation:
    """What a create makes, for the error when it is not confirmed.

    Attributes:
        engine: The engine's name ("Vertex AI").
        what: What is created ("run", "pipeline job").
        name: The name pipecast chose for it, by which the engine is asked.
        place: Where it is looked for (" in experiment 'Default'"), or "".
        explain: The engine's wording of a failed request.
    """

    engine: str
    what: str
    name: str
    place: str = ""
    explain: Callable[[BaseException], str] = str

    def not_created(self, last: BaseException) -> SubmitError:
        """The engine was asked and has none: nothing was created."""
        return SubmitError(f"{self.explain(last)}; {self.engine} has no {self.what} named {self.name!r}{self.place}, "
                           "so none was created")

    def unknown(self, last: BaseException, lookup: BaseException) -> SubmitOutcomeUnknownError:
        """Nobody can tell whether the engine created it.

        The create's answer was lost and the engine could not be asked.
        """
        return SubmitOutcomeUnknownError(
            f"whether {self.engine} created the {self.what} named {self.name!r}{self.place} is unknown: "
            f"{self.explain(last)}, and asking for it failed too ({self.explain(lookup)})")


def create_once(create: Callable[[], T], find: Callable[[], T | None], classify: Classifier, creation: Creation,
                backoff: Backoff | None = None, *, retry_find: bool = True) -> T:
    """Create an object the engine may already have made for a request whose answer was lost.

    ``find`` asks the engine for the object under the name pipecast chose (None if it has none). It is
    called after ``EXISTS``, and after an ``UNKNOWN`` failure once the pause is over (so a slow server can
    finish); the create is sent again only when it found nothing. Raises at once for ``FINAL``, and for
    ``EXISTS`` when the name is held by something that is not ours; when the tries are used up, a SubmitError
    if the engine has no such object, SubmitOutcomeUnknownError if it could not be asked. ``retry_find=False``
    for an SDK whose reads retry themselves.
    """
    policy = backoff or BACKOFF
    for attempt in range(1, policy.attempts + 1):
        try:
            return create()
        except Exception as err:
            verdict = classify(err)
            if verdict.outcome is Outcome.FINAL:
                raise
            if verdict.outcome is Outcome.EXISTS:
                found = _look(find, classify, policy, retry_find, creation, err)
                if found is None:
                    raise
                return found
            paused = attempt < policy.attempts and policy.pause(attempt, verdict)
            if verdict.outcome is Outcome.UNKNOWN:
                found = _look(find, classify, policy, retry_find, creation, err)
                if found is not None:
                    return found
            if not paused:
                raise creation.not_created(err) from err
    raise AssertionError("unreachable: the last attempt returns or raises")


def _look(find: Callable[[], T | None], classify: Classifier, policy: Backoff, retry: bool, creation: Creation,
          failed: BaseException) -> T | None:
    try:
        return call(find, classify, policy) if retry else find()
    except Exception as err:
        raise creation.unknown(failed, err) from err
