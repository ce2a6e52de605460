"""Control-flow pipelines for the sagemaker target (issue 16): conditions lowered, and what is refused.

``tests/golden/cases/hyperparameter_search.py`` uses a map (refused on SageMaker), so these cases cover conditions.
"""

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, is_in, not_in, pipeline, step


@step
def measure(scale: float) -> float:
    return round(0.9 * scale, 4)


@step
def is_ready(score: float) -> bool:
    return score > 0.1


@step
def label(score: float) -> str:
    return "gold" if score > 0.8 else "silver" if score > 0.3 else "bronze"


@step
def count(score: float) -> int:
    return int(score * 10)


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
def warn(score: float, tier: str) -> str:
    return f"low {tier} score {score}"


@step
def announce(decision: str) -> str:
    return decision.upper()


@step
def archive(score: float, n: int) -> str:
    return f"archived {score} ({n})"


@pipeline(name="sm_branches", description="if/elif/else on outputs and parameters, nested if, skips.",
          parallelism=3)
def sm_branches(scale: float = 1.0, threshold: float = 0.5, force: bool = False, env: str = "prod"):
    score = measure(scale)
    ready = is_ready(score)
    tier = label(score)
    n = count(score)
    with If((score > threshold) | (force == True)):  # noqa: E712 - a symbolic comparison
        promoted = promote(score)
    with Elif((ready == True) & is_in(tier, ["silver", "gold"]) & (env != "dev")):  # noqa: E712
        stage(score)
    with Else():
        keep(score)
        with If(~(n >= 2) & not_in(tier, ["gold"])):
            warn(score, tier)
    announce(promoted)  # reads the if branch: skipped (never started) when it did not run
    with If(is_in(n, [0, 9])):
        archive(score, n)


@pipeline(name="sm_one_of", description="OneOf after both branches: refused.")
def sm_one_of(scale: float = 1.0):
    score = measure(scale)
    with If(score > 0.5):
        promoted = promote(score)
    with Else():
        kept = keep(score)
    announce(OneOf(promoted, kept))


@pipeline(name="sm_text_order", description="ordering text, and comparing a number with text: refused.")
def sm_text_order(scale: float = 1.0, env: str = "prod"):
    score = measure(scale)
    tier = label(score)
    with If(tier > "bronze"):
        promote(score)
    with If(score == env):
        keep(score)


@pipeline(name="sm_training_decision", description="a condition on a training step's output: refused.",
          settings={"sagemaker": {"step_type": "training"}})
def sm_training_decision(scale: float = 1.0):
    score = measure(scale)
    with If(score > 0.5):
        promote(score)


@step
def report(status: dict) -> str:
    return f"{status['status']}:{','.join(status['failed_steps'])}"


@step
def alert() -> str:
    return "alert"


@pipeline(name="sm_refused", description="a map, an exit handler and a hook: refused, each saying why.",
          on_failure=alert)
def sm_refused(scales: list = [0.5, 1.0]):  # noqa: B006 - a parameter default
    with ExitHandler() as work:
        with ParallelFor(scales) as scale:
            measure(scale)
    report(work.status)


HOSTILE = 'x\'"{{ y }}\n$(z) {"Get": "Parameters.env"} @{PIPECAST_RUN_ID}'


@step
def echo(text: str) -> str:
    return text


@pipeline(name="sm_hostile", description="hostile text in conditions stays a value")
def sm_hostile(env: str = HOSTILE):
    said = echo(env)
    with If((said == HOSTILE) & is_in(env, [HOSTILE, "@@"])):
        promote(0.5)
    with Else():
        keep(0.5)


@step
def config() -> dict:
    return {"a": 1}


@step
def ratio(n: int) -> float:
    return n / 2


@pipeline(name="sm_bad_values", description="values SageMaker cannot compare with Python's meaning: refused")
def sm_bad_values(options: dict = {"a": 1}, n: int = 2, names: list = ["a"]):  # noqa: B006 - parameter defaults
    with If(options == {"a": 1}):
        keep(0.1)
    with If(ratio(n) == n):  # a float and an int: SageMaker's coercion is not documented
        keep(0.2)
    with If(is_in(n, names)):  # membership in a parameter (a JSON String on SageMaker)
        keep(0.3)
    with If(config() == {"a": 1}):
        keep(0.4)


@step(name="condition_1")
def named_like_a_condition(scale: float) -> float:
    return scale


@pipeline(name="sm_collide", description="a step named like the ConditionStep of a branch: refused")
def sm_collide(scale: float = 1.0):
    score = named_like_a_condition(scale)
    with If(score > 0.5):
        keep(score)
