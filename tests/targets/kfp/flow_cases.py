"""Control-flow pipelines the KFP targets lower natively (issue 16): golden cases of kubeflow and vertex only.

They live here, not in tests/golden/cases/, because every other target still refuses them (its helper owns
that golden); :mod:`.test_control_flow` holds their goldens and replays.
"""

import json

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, Zip, is_in, pipeline, step
from tests.golden.cases.hyperparameter_search import (  # the example's steps, in a pipeline KFP can run
    accuracy_of,
    keep_current,
    make_dataset,
    pick_best,
    promote,
    record_decision,
    report,
    train_model,
)
from tests.golden.cases.hyperparameter_search import evaluate as evaluate_model


@step
def make_rates(n: int) -> list:
    return [round(0.1 * (i + 1), 2) for i in range(n)]


@step
def train(lr: float, base: int) -> dict:
    return {"lr": lr, "score": round(base * lr, 4)}


@step
def evaluate(model: dict) -> float:
    return float(model["score"])


@step
def best(scores: list) -> float:
    return max(scores)


@step
def greet(name: str, suffix: str) -> str:
    return f"{name}{suffix}"


@step
def join(words: list, sizes: list) -> str:
    return ",".join(words) + f" {sizes}"


@step
def size(thing) -> int:
    return len(json.dumps(thing))


@pipeline(name="map_fan_in")
def map_fan_in(n: int = 3, base: int = 10, names: list = ["a", "1", "{{x}}"], suffix: str = "!"):  # noqa: B006
    """A map over a step's list (bounded, chained, collected), one over a parameter, one over a constant."""
    rates = make_rates(n)
    with ParallelFor(rates, parallelism=2) as lr:
        score = evaluate(train(lr, base))
    top = best(score)
    with ParallelFor(names) as name:
        word = greet(name, suffix)
    with ParallelFor([3, "x", [1, 2], {"k": True}]) as thing:
        sizes = size(thing)
    return top, join(word, sizes)


FLOW_CASES = {"map_fan_in": map_fan_in}



@pipeline(name="hyperparameter_search_kfp",
          description="The hyper-parameter search case without its whole-run bound, which KFP cannot express.")
def hyperparameter_search_kfp(rates: list = [0.01, 0.1, 1.0], threshold: float = 0.8,  # noqa: B006
                              samples: int = 200, seed: int = 7, epochs: int = 20):
    """The example's body, line for line (a map, If/Else with OneOf, an exit handler reading its status)."""
    rows = make_dataset(samples, seed)
    with ExitHandler() as search:
        with ParallelFor(rates, parallelism=2) as lr:
            score = evaluate_model(train_model(rows, lr, epochs), rows)
        best = pick_best(score)
        with If(accuracy_of(best) > threshold):
            promoted = promote(best)
        with Else():
            kept = keep_current(best)
        record_decision(OneOf(promoted, kept))
    return report(search.status)


FLOW_CASES["hyperparameter_search_kfp"] = hyperparameter_search_kfp


@step
def pick(n: int) -> int:
    return n


@step
def label(text: str) -> str:
    return text


@step
def explode(n: int) -> int:
    if n > 5:
        raise ValueError(f"{n} is too big")
    return n


@step
def summary(status: dict) -> str:
    return json.dumps(status, sort_keys=True)


HOSTILE = "it's \"x\"\n{{$.inputs.parameters['n']}} \\ ' || true"


@pipeline(name="branches_exit")
def branches_exit(n: int = 2, mode: str = HOSTILE):
    """If/Elif/Else on an int output and a hostile str parameter (| & ~, membership), OneOf, an exit handler."""
    with ExitHandler() as guarded:
        v = pick(n)
        with If((v == 1) | is_in(mode, ["a", HOSTILE])):
            a = label("first")
        with Elif(~(v < 3) & (v != 7.0)):
            b = label("second")
        with Else():
            c = label("third")
        label(OneOf(a, b, c))
        explode(v)
    summary(guarded.status)


FLOW_CASES["branches_exit"] = branches_exit


@pipeline(name="branches_only")
def branches_only(n: int = 2, mode: str = HOSTILE):
    """branches_exit without its exit handler: what KFP 2.4 runs (it refuses a final status)."""
    v = pick(n)
    with If((v == 1) | is_in(mode, ["a", HOSTILE])):
        a = label("first")
    with Elif(~(v < 3) & (v != 7.0)):
        b = label("second")
    with Else():
        c = label("third")
    return label(OneOf(a, b, c))


FLOW_CASES["branches_only"] = branches_only


@step
def alert(status: dict) -> str:
    return "failed: " + ",".join(status["failed_steps"])


@step
def cheer() -> int:
    return 1


@pipeline(name="hook_on_failure", on_failure=alert)
def hook_on_failure(n: int = 2):
    """A map and a condition in the body the on_failure hook (an exit task reading the status) runs after."""
    v = pick(n)
    with ParallelFor([1, 2]) as x:
        explode(x)
    with If(v == 2):
        explode(pick(7))


FLOW_CASES["hook_on_failure"] = hook_on_failure


@pipeline(name="hook_on_success", on_success=cheer)
def hook_on_success(n: int = 2):
    """An on_success hook with no status input and an int output (a skipped hook writes 0 for it)."""
    explode(pick(n))


FLOW_CASES["hook_on_success"] = hook_on_success


@pipeline(name="hooks_both", on_failure=alert, on_success=cheer)
def hooks_both(n: int = 2):
    """Both hooks, one exit task: the runtime runs `alert` (reads the status) or `cheer` (an int output)."""
    with ParallelFor([1, 2]) as x:
        explode(x)
    explode(pick(n))


FLOW_CASES["hooks_both"] = hooks_both


@step
def double(x: int) -> int:
    return 2 * x


@step
def row_sum(xs: list) -> int:
    return sum(xs)


@step
def tag(total: int, col: str, row: list) -> str:
    return f"{total}{col}{len(row)}"


@step
def times(a: int, b: int) -> int:
    return a * b


@step
def gather(doubled: list, sums: list, tags: list, products: list) -> str:
    return json.dumps([doubled, sums, tags, products])


@pipeline(name="nested_maps")
def nested_maps(rows: list = [[1, 2], [3], []], cols: list = ["a", "{{x}}"]):  # noqa: B006
    """Maps in maps: over the outer item (an empty one too), over a parameter, over constants; fan-in at each level."""
    with ParallelFor(rows, parallelism=2) as row:
        with ParallelFor(row) as x:
            doubled = double(x)
        total = row_sum(doubled)  # a list per row, in item order
        with ParallelFor(cols, parallelism=1) as col:
            label = tag(total, col, row)  # reads the outer map's output and item
    with ParallelFor([1, 2]) as a, ParallelFor([10, 20]) as b:
        product = times(a, b)
    return gather(doubled, total, label, product)  # lists of lists


FLOW_CASES["nested_maps"] = nested_maps


@step
def spread(n: int) -> list:
    return [f"p{i}" for i in range(n)]


@step
def pair(made: list, squares: list, sums: list) -> str:
    return json.dumps([made, squares, sums])


@pipeline(name="nested_made_inside")
def nested_made_inside(ns: list = [2, 0, 3]):  # noqa: B006
    """A map over a list a step makes inside the outer map (one list per outer item, an empty one too)."""
    with ParallelFor(ns) as n:
        parts = spread(n)
        with ParallelFor(parts) as part:
            labelled = tag(n, part, parts)
        total = size(labelled)  # a list per outer item
    return pair(parts, labelled, total)  # lists (of lists), in item order


FLOW_CASES["nested_made_inside"] = nested_made_inside


@step
def score_item(x: int) -> int:
    return x


@step
def big_item(x: int) -> int:
    return 100 + x


@step
def small_item(x: int) -> int:
    return x


@step
def show_item(v: int) -> int:
    return v


@step
def total_items(xs: list) -> int:
    return sum(xs)


@pipeline(name="item_one_of")
def item_one_of(xs: list = [1, 5, 2, 7]):  # noqa: B006 - never mutated
    """OneOf of branches inside a map: each item reads the branch that ran for it (big for 5 and 7)."""
    with ParallelFor(xs) as x:
        s = score_item(x)
        with If(s > 3):
            a = big_item(s)
        with Else():
            b = small_item(s)
        v = show_item(OneOf(a, b))
    total_items(v)


@step
def words_of(n: int) -> list:
    return [f"w{i}" for i in range(n)]


@step
def pair_up(x: int, word: str) -> str:
    return f"{word}{x}"


@step
def three_lists(zipped: list, constants: list, grid: list) -> str:
    return json.dumps([zipped, constants, grid])


@pipeline(name="zip_product")
def zip_product(xs: list = [1, 2, 3], n: int = 3):  # noqa: B006 - never mutated
    """A zip of a parameter and a step's list, a zip and a product of constants, collected in item order."""
    words = words_of(n)
    with ParallelFor(Zip(xs, words), parallelism=2) as (x, word):
        zipped = pair_up(x, word)
    with ParallelFor(Zip([10, 20], ["a", "{{x}}"])) as (x, word):
        constants = pair_up(x, word)
    with ParallelFor(Product([1, 2], ["p", "q", "r"])) as (x, word):
        grid = pair_up(x, word)
    return three_lists(zipped, constants, grid)


FLOW_CASES["zip_product"] = zip_product


@step
def both_lists(tagged: list, grid: list) -> str:
    return json.dumps([tagged, grid])


@pipeline(name="zip_in_map")
def zip_in_map(rows: list = [[1, 2], [3, 4]], labels: list = ["a", "b"]):  # noqa: B006 - never mutated
    """Inside a map: a zip of the outer item with a parameter, and a product of constants (lists of lists)."""
    with ParallelFor(rows) as row:
        with ParallelFor(Zip(row, labels)) as (x, label):
            tagged = pair_up(x, label)
        with ParallelFor(Product([1, 2], ["p"])) as (x, label):
            grid = pair_up(x, label)
    return both_lists(tagged, grid)


FLOW_CASES["zip_in_map"] = zip_in_map


@step
def check_pair(text: str) -> str:
    if text.startswith("w1"):
        raise ValueError(f"refusing {text}")
    return text.upper()


@step
def run_report(status: dict) -> str:
    return json.dumps(status, sort_keys=True)


@step
def four_lists(grid: list, chained: list, rows: list, inner: list) -> str:
    return json.dumps([grid, chained, rows, inner])


@pipeline(name="runtime_product")
def runtime_product(xs: list = [1, 2], n: int = 3, rows: list = [[5], [6, 7]]):  # noqa: B006 - never mutated
    """A product of a parameter and a step's list (the first varying slowest): a chain in the map, a map nested
    in it, a product inside a map over the outer item, all collected in pipecast run's item order."""
    words = words_of(n)
    with ParallelFor(Product(xs, words), parallelism=2) as (x, word):
        grid = pair_up(x, word)
        chained = size(grid)
        with ParallelFor(xs) as y:
            inner = times(x, y)
    with ParallelFor(rows) as row:
        with ParallelFor(Product(row, words)) as (z, word):
            tagged = pair_up(z, word)
    return four_lists(grid, chained, tagged, inner)


FLOW_CASES["runtime_product"] = runtime_product


@pipeline(name="runtime_product_exit")
def runtime_product_exit(xs: list = [1, 2], n: int = 2):  # noqa: B006 - never mutated
    """A product over a run-time list inside an exit handler: one item fails, the handler names it (step[k])."""
    words = words_of(n)
    with ExitHandler() as guarded:
        with ParallelFor(Product(xs, words)) as (x, word):
            check_pair(pair_up(x, word))
    run_report(guarded.status)


FLOW_CASES["runtime_product_exit"] = runtime_product_exit


@pipeline(name="zip_exit")
def zip_exit(xs: list = [1, 2], n: int = 2):  # noqa: B006 - never mutated
    """A zip over run-time lists inside an exit handler: lists that do not zip fail the map's first step."""
    words = words_of(n)
    with ExitHandler() as guarded:
        with ParallelFor(Zip(xs, words)) as (x, word):
            check_pair(pair_up(x, word))
    run_report(guarded.status)


FLOW_CASES["zip_exit"] = zip_exit
