"""Control-flow pipelines for the github target (issue 16): one per construct, and one act runs.

Imported by the runtime as ``flow_pipelines`` (the act run sets ``working_directory`` to this folder).
"""

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, pipeline, step


@step
def measure(scale: float) -> float:
    return round(0.9 * scale, 4)


@step
def is_ready(score: float) -> bool:
    return score > 0.1


@step
def promote(score: float) -> str:
    return f"promoted at {score}"


@step
def stage(score: float) -> str:
    return f"staged at {score}"


@step
def keep(score: float) -> str:
    return f"kept at {score}"


@step
def announce(decision: str) -> str:
    return decision.upper()


@step
def fail_on(score: float, limit: float) -> float:
    if score > limit:
        raise ValueError(f"score {score} is over {limit}")
    return score


@step
def report(status: dict) -> str:
    failed = ",".join(status["failed_steps"])
    return f"{status['status']}:{failed}"


@step
def alert(status: dict) -> str:
    return f"alert {status['status']}"


@step
def celebrate() -> str:
    return "all good"


@step
def square(x: float) -> float:
    return x * x


@step
def total(values: list) -> float:
    return round(sum(values), 6)


@pipeline(name="gh_branches", description="if/elif/else on outputs and parameters, OneOf, membership.")
def gh_branches(scale: float = 1.0, threshold: float = 0.5, force: bool = False):
    score = measure(scale)
    ready = is_ready(score)
    with If((score > threshold) | (force == True)):  # noqa: E712 - a symbolic comparison
        promoted = promote(score)
    with Elif((ready == True) & is_in(scale, [0.25, 0.5])):  # noqa: E712
        staged = stage(score)
    with Else():
        kept = keep(score)
    return announce(OneOf(promoted, staged, kept))


@pipeline(name="gh_exit", on_failure=alert, on_success=celebrate,
          description="an exit handler over a failing group, and both hooks.")
def gh_exit(scale: float = 1.0, limit: float = 0.5):
    with ExitHandler() as work:
        score = measure(scale)
        fail_on(score, limit)
    return report(work.status)


@step
def sizes(n: int) -> list:
    return [float(i + 1) for i in range(n)]


@step
def scale_by(x: float, k: float) -> float:
    return round(x * k, 6)


@pipeline(name="gh_map", description="maps over a parameter (bounded, chained) and a zip of an output and a constant.")
def gh_map(xs: list = [0.5, 1.0, 1.5], n: int = 2):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        scores = measure(square(x))
    first = total(scores)
    with ParallelFor(Zip(sizes(n), [1.0, 10.0])) as (size, k):
        scaled = scale_by(size, k)
    return first, total(scaled)


@pipeline(name="gh_flow", on_failure=alert,
          description="act runs it: a map, a condition with OneOf and an exit handler, as pipecast run does.")
def gh_flow(xs: list = [0.5, 1.0, 1.5], threshold: float = 2.0):  # noqa: B006 - never mutated
    with ExitHandler() as work:
        with ParallelFor(xs, parallelism=2) as x:
            scores = measure(square(x))
        best = total(scores)
        with If(best > threshold):
            promoted = promote(best)
        with Else():
            kept = keep(best)
        announce(OneOf(promoted, kept))
    return report(work.status)


@step
def word() -> str:
    return "Prod"


@pipeline(name="gh_text", description="refused: GitHub compares text ignoring case.")
def gh_text():
    w = word()
    with If(w == "prod"):
        announce(w)


@pipeline(name="gh_item_condition", description="a condition on the map item: each matrix job's runtime decides it.")
def gh_item_condition(xs: list = [0.5, 1.5]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with If(x > 1.0):
            square(x)


@step
def label(size: float, x: float, k: float) -> str:
    return f"{size}/{x}/{k}"


@step
def joined(labels: list) -> str:
    return ",".join(labels)


@pipeline(name="gh_product", description="a product of an output, a parameter and a constant: a job counts it.")
def gh_product(xs: list = [0.5, 1.5], n: int = 2):  # noqa: B006 - never mutated
    with ParallelFor(Product(sizes(n), xs, [1.0, 10.0])) as (size, x, k):
        labels = label(size, x, k)
    return joined(labels)


@pipeline(name="gh_chain", description="act runs it: chains a job decides, text compared as Python does (case).")
def gh_chain(scale: float = 1.0, env: str = "Prod"):
    w = word()
    score = measure(scale)
    with If(w == "prod"):  # False in Python ("Prod"); GitHub's == would ignore the case
        promoted = promote(score)
    with Elif(score > 0.5):
        staged = stage(score)
    with Else():
        kept = keep(score)
    announce(OneOf(promoted, staged, kept))
    with If(env == "Prod"):
        celebrate()


@step
def grade(x: float) -> float:
    return x * 2


@pipeline(name="gh_map_branches",
          description="act runs it: if/elif/else and OneOf inside a map, decided per item; fan-ins of what ran.")
def gh_map_branches(xs: list = [0.5, 1.5, 3.0], threshold: float = 4.0):  # noqa: B006 - never mutated
    with ParallelFor(xs, parallelism=2) as x:
        score = grade(x)
        with If(score > threshold):
            promoted = promote(score)
        with Elif(x > 1.0):
            staged = stage(score)
        with Else():
            kept = keep(score)
        decisions = announce(OneOf(promoted, staged, kept))
        with If(x < 1.0):
            small = square(x)
        scaled = measure(small)  # item i skipped where square[i] did not run
    return joined(decisions), total(scaled)


@step
def first_sizes(values: list) -> list:
    return [len(values)] if values else []


@pipeline(name="gh_map_branch_refused", description="refused: a map over a fan-in a condition in a map may skip.")
def gh_map_branch_refused(xs: list = [0.5, 1.5]):  # noqa: B006 - never mutated
    with ParallelFor(xs) as x:
        with If(x > 1.0):
            big = square(x)
    with ParallelFor(first_sizes(big)) as size:
        square(size)


@step
def summary(status: dict, value: float) -> str:
    return f"{status['status']}:{value}"


@pipeline(name="gh_map_branch_handler",
          description="refused: an exit handler reading a fan-in that a condition inside a map may skip.")
def gh_map_branch_handler(xs: list = [0.5, 1.5]):  # noqa: B006 - never mutated
    with ExitHandler() as work:
        with ParallelFor(xs) as x:
            with If(x > 1.0):
                big = square(x)
        kept = total(big)
    return summary(work.status, kept)
