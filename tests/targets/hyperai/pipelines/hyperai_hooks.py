"""An exit handler and both hooks on hyperai (Compose over SSH); a step of the group fails when x >= limit.

Copied into the hyperai tests' image (``/code/hyperai``), so ``--fn hyperai_hooks:…`` imports it there.
"""

from pipecast import ExitHandler, pipeline, step


@step
def square(x: int) -> int:
    return x * x


@step
def check_below(x: int, limit: int) -> int:
    if x >= limit:
        raise ValueError(f"{x} is not below {limit}")
    return x


@step
def halve(value: int) -> float:
    return value / 2


@step
def failed_steps(status: dict) -> str:
    return f"{status['status']} {','.join(status['failed_steps'])}"


@step
def alert(status: dict) -> str:
    return f"alert {status['status']} {status['failed_steps']}"


@step
def celebrate() -> str:
    return "all good"


@pipeline(name="hyperai_hooks", on_failure=alert, on_success=celebrate)
def hyperai_hooks(x: int = 2, limit: int = 4):
    """The handler reads its group's status; on_failure runs when a step failed, on_success otherwise."""
    with ExitHandler() as work:
        halve(check_below(square(x), limit))
    failed_steps(work.status)
