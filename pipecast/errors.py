"""The one error family of pipecast.

User errors (bad pipeline code, bad input, unsupported features, unreachable engines) derive from
:class:`PipecastError`; the CLI prints them without a traceback and exits with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    """How serious a problem is."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a pipeline: what is wrong, where, and how to fix it.

    Attributes:
        message: What is wrong and the rule it breaks, with names quoted by ``!r``.
        step: The step's node name, if the problem belongs to a step.
        location: ``file:line`` of the step call or pipeline definition, if known.
        fix: How to fix it.
        severity: Error or warning.
        target: The target that reported it, for capability problems.
    """

    message: str
    step: str | None = None
    location: str | None = None
    fix: str | None = None
    severity: Severity = Severity.ERROR
    target: str | None = None

    def render(self) -> str:
        """Return the problem as one or two human-readable lines."""
        where = []
        if self.location:
            where.append(self.location)
        if self.step:
            where.append(f"step {self.step!r}")
        if self.target:
            where.append(f"target {self.target!r}")
        head = f"{': '.join(where)}: " if where else ""
        text = f"{self.severity.value}: {head}{self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class PipecastError(Exception):
    """Base of every error pipecast raises on purpose."""

    exit_code = 2


class PipelineDefinitionError(PipecastError):
    """The pipeline code itself is wrong (raised while tracing)."""


class ValidationError(PipecastError):
    """One or more problems were found; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], summary: str = "") -> None:
        self.problems = tuple(problems)
        count = sum(1 for p in self.problems if p.severity is Severity.ERROR)
        head = summary or f"{count} problem{'s' if count != 1 else ''} found"
        body = "\n".join(p.render() for p in self.problems)
        super().__init__(f"{head}:\n{body}" if body else head)


class UnsupportedFeatureError(ValidationError):
    """A target cannot express a feature the pipeline uses."""


class UnsupportedFeatureWarning(UserWarning):
    """A feature the target cannot express, submitted anyway because the caller asked for warnings."""


class LoadError(PipecastError):
    """A pipeline file or module could not be loaded."""


class TargetNotFoundError(PipecastError):
    """No target is registered under the requested name."""


class MissingExtraError(PipecastError):
    """A target's SDK is not installed; the message names the pip command."""


class ParameterError(PipecastError):
    """A run parameter is unknown or has the wrong type."""


class StepFailedError(PipecastError):
    """A step failed while running."""

    exit_code = 1


class RunFailedError(PipecastError):
    """A pipeline run ended in failure."""

    exit_code = 1


class SubmitError(PipecastError):
    """Submitting to or talking with an engine failed (unreachable, refused, timed out)."""


class RunNotFoundError(PipecastError):
    """No run with that id or pipeline name is in the run store."""


class OutputError(PipecastError):
    """Files could not be written where the user asked (``--out``)."""


class ArtifactError(PipecastError):
    """An artifact could not be found, read or written."""


class ContextError(PipecastError):
    """``pipecast.context()``/``log_metadata`` outside a running step, or metadata that is not JSON."""


class CodeMismatchError(PipecastError):
    """A task would run other code than was compiled: another source hash, pipecast version or code package."""


class SubmitOutcomeUnknownError(SubmitError):
    """A submit request may or may not have reached the engine.

    Its answer was lost and the engine could not be asked. The run is recorded as ``unknown``, not failed;
    ``pipecast runs wait`` asks the engine again.
    """


class BuildError(PipecastError):
    """An image could not be built, pushed or found (``pipecast build``); ``fix`` says what to do."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.fix = fix
        super().__init__(f"{message}\n    fix: {fix}" if fix else message)


class StackError(PipecastError):
    """A stack (``pipecast stack``, ``pipecast.toml``) is unknown, malformed or would store a credential."""
