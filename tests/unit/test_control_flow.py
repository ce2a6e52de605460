"""Control flow: authoring, IR v2 round trip, validation rules, and the refusal by targets that do not lower it."""

from __future__ import annotations

import inspect
import json
import random

import pytest

from pipecast import Elif, Else, ExitHandler, If, OneOf, ParallelFor, Product, is_in, pipeline
from pipecast.compiler import ir
from pipecast.compiler.tracing import trace
from pipecast.errors import PipelineDefinitionError, UnsupportedFeatureError, ValidationError
from pipecast.flow import compile_pipeline
from pipecast.targets.base import CONTROL_FLOW, Feature, Support
from pipecast.targets.registry import BUILTIN, get_target
from tests.helpers.cases import case
from tests.unit import flow_pipelines as flows

FLOWS = [flows.squares, flows.expanded, flows.nested, flows.bounded, flows.zipped_pairs, flows.retried,
         flows.branches, flows.item_conditions, flows.guarded, flows.guarded_ok]


def line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def problems_of(definition) -> list:
    with pytest.raises(ValidationError) as err:
        definition.build()
    return list(err.value.problems)


@pytest.mark.parametrize("definition", FLOWS, ids=lambda d: d.name)
def test_control_flow_round_trips_exactly_as_ir_version_2(definition):
    built = definition.build()
    text = built.to_json()
    assert json.loads(text)["ir_version"] == "2"
    again = ir.Pipeline.from_json(text)
    assert again == built and again.to_json() == text


def test_a_pipeline_without_control_flow_is_still_written_as_version_1():
    text = case("quickstart").build().to_json()
    assert json.loads(text)["ir_version"] == "1"
    for field in ('"groups"', '"trigger"', '"group"', '"parallelism"', '"sources"', '"index"'):
        assert field not in text


def _random_condition(rng: random.Random, depth: int) -> ir.Condition:
    if depth == 0 or rng.random() < 0.3:
        op = rng.choice([c for c in ir.Comparison if c not in (ir.Comparison.AND, ir.Comparison.OR,
                                                                ir.Comparison.NOT)])
        operands = tuple(rng.choice([
            ir.Operand(kind=ir.BindingKind.PARAMETER, parameter="p"),
            ir.Operand(kind=ir.BindingKind.OUTPUT, step="s", output="output"),
            ir.Operand(kind=ir.BindingKind.CONSTANT, value_json=ir.canonical_json(rng.choice([1, "x", [1, 2], None]))),
            ir.Operand(kind=ir.BindingKind.ITEM, group="map_1", index=rng.choice([None, 0, 1])),
        ]) for _ in range(2))
        return ir.Condition(op=op, operands=operands)
    op = rng.choice([ir.Comparison.AND, ir.Comparison.OR, ir.Comparison.NOT])
    count = 1 if op is ir.Comparison.NOT else rng.randint(2, 3)
    return ir.Condition(op=op, terms=tuple(_random_condition(rng, depth - 1) for _ in range(count)))


@pytest.mark.parametrize("seed", range(40))
def test_random_groups_and_conditions_round_trip(seed):
    """A property check without a library: seeded random group trees and condition trees survive JSON exactly."""
    rng = random.Random(seed)
    where = ir.Location(file="p.py", line=rng.randint(1, 999))
    groups = []
    for index in range(rng.randint(1, 6)):
        kind = rng.choice(list(ir.GroupKind))
        parent = rng.choice([None, *(g.name for g in groups)])
        groups.append(ir.Group(
            name=f"g{index}", kind=kind, location=where, parent=parent,
            items=(ir.Operand(kind=ir.BindingKind.PARAMETER, parameter="p"),) if kind is ir.GroupKind.MAP else (),
            combine=rng.choice([None, *ir.Combine]), parallelism=rng.choice([None, 1, 7]),
            condition=_random_condition(rng, 3) if kind is ir.GroupKind.CONDITION else None,
            chain="g0" if kind is ir.GroupKind.CONDITION else None, branch=rng.randint(0, 2),
            label=rng.choice([None, "if", "elif", "else"])))
    bindings = (
        ir.Binding(input="a", kind=ir.BindingKind.ITEM, group="g0", index=rng.choice([None, 1])),
        ir.Binding(input="b", kind=ir.BindingKind.COLLECTED, step="s", output="o", group="g0"),
        ir.Binding(input="c", kind=ir.BindingKind.ONE_OF, sources=(ir.Source(step="s", output="o"),
                                                                      ir.Source(step="t", output="o"))),
        ir.Binding(input="d", kind=ir.BindingKind.STATUS, group=rng.choice([None, "g0"])),
    )
    step = ir.Step(name="s", function=ir.FunctionRef(module="m", qualname="f", source_hash="h"), location=where,
                   bindings=bindings, group=rng.choice([g.name for g in groups]), trigger=rng.choice(list(ir.Trigger)))
    built = ir.Pipeline(name="p", steps=(step,), groups=tuple(groups), parallelism=rng.choice([None, 3]))
    assert ir.Pipeline.from_json(built.to_json()) == built
    assert ir.Pipeline.from_json(built.to_json(indent=None)).to_json() == built.to_json()


def test_the_traced_groups_say_what_each_step_is_in():
    built = flows.branches.build()
    by_name = {g.name: g for g in built.groups}
    assert [(g.name, g.label, g.branch, g.chain) for g in built.groups] == [
        ("condition_1", "if", 0, "condition_1"), ("condition_2", "elif", 1, "condition_1"),
        ("condition_3", "else", 2, "condition_1")]
    assert str(by_name["condition_2"].condition) == '(mode in ["slow","careful"]) and (square.output > 4)'
    assert by_name["condition_3"].condition is None  # else: runs when no earlier branch of its chain ran
    chosen = built.step("echo_4")
    assert chosen.bindings[0].kind is ir.BindingKind.ONE_OF
    assert [s.step for s in chosen.bindings[0].sources] == ["echo", "echo_2", "echo_3"]
    assert built.step("echo_2").after == ("square",)  # the elif reads square's output: it runs after it


def test_a_python_and_on_conditions_says_to_use_ampersand():
    @pipeline
    def uses_and(n: int = 1):
        if n > 1 and n < 5:  # python and
            flows.square(n)

    (problem,) = trace(uses_and).problems
    assert problem.location.endswith(f":{line_of(uses_and.fn, 'python and')}")
    assert problem.message.startswith("`if` on the condition `n > 1`")
    assert "with pipecast.If(<condition>):" in problem.fix and "&, | and ~" in problem.fix


def test_python_in_on_a_parameter_says_to_use_is_in():
    @pipeline
    def uses_in(mode: str = "a"):
        if mode in ["a", "b"]:  # python in
            flows.echo(mode)

    (problem,) = trace(uses_in).problems
    assert problem.location.endswith(f":{line_of(uses_in.fn, 'python in')}")
    assert "pipecast.If" in problem.fix


@pipeline
def maps_over_an_int(n: int = 3):
    with ParallelFor(n) as x:  # map over int
        flows.square(x)


@pipeline
def elif_alone(n: int = 3):
    flows.square(n)
    with Elif(n > 1):  # elif alone
        flows.square(n)


@pipeline
def two_lists_no_combine(xs: list = [1], ys: list = [2]):  # noqa: B006
    flows.add.expand(a=xs, b=ys)  # no combine


@pipeline
def too_deep(rows: list = [[[1]]]):  # noqa: B006
    with ParallelFor(rows) as a, ParallelFor(a) as b, ParallelFor(b) as c:  # three maps
        flows.square(c)


@pipeline
def collected_into_an_int(xs: list = [1]):  # noqa: B006
    flows.square(flows.square.expand(x=xs))  # collected into int


@pipeline
def exit_without_handler(n: int = 1):
    with ExitHandler():  # no handler
        flows.square(n)


@pipeline
def returns_a_mapped_output(xs: list = [1]):  # noqa: B006
    return flows.square.expand(x=xs)


@pipeline
def one_of_outside_branches(n: int = 1):
    a, b = flows.square(n), flows.square(n)
    flows.echo(OneOf(a, b))  # not branches


@pipeline
def status_to_a_handler_inside(n: int = 1):
    with ExitHandler() as work:
        flows.report(work.status)  # handler inside


@pipeline
def condition_reads_its_own_step(n: int = 1):
    with ParallelFor(Product([1], [2])) as (x, _y):
        flows.square(x)
    with If(flows.square(n) > 1):  # reads inside? no: before
        flows.square(n)


@pytest.mark.parametrize(("definition", "marker", "message"), [
    (maps_over_an_int, "map over int", "iterates pipeline parameter 'n', which is int, not a list"),
    (elif_alone, "elif alone", "`pipecast.Elif` must come right after a `with pipecast.If(...)`"),
    (two_lists_no_combine, "no combine", "maps over 2 lists (a, b): say how to pair their items"),
    (too_deep, "three maps", "is nested in two other maps; maps nest one level deep"),
    (collected_into_an_int, "collected into int", "(a list, in item order), but it is int"),
    (exit_without_handler, "no handler", "exit handler group 'exit_1' has no handler step"),
    (one_of_outside_branches, "not branches", "OneOf takes outputs made inside the branches of an If"),
    (status_to_a_handler_inside, "handler inside", "is called inside that group"),
])
def test_each_control_flow_rule_is_one_problem_at_the_users_line(definition, marker, message):
    found = [p for p in problems_of(definition) if message in p.message]
    assert found, [p.message for p in problems_of(definition)]
    assert found[0].location.endswith(f":{line_of(definition.fn, marker)}")


def test_returning_a_mapped_output_says_to_collect_it_in_a_step():
    (problem,) = problems_of(returns_a_mapped_output)
    assert "made inside map group 'map_1'" in problem.message
    assert "arrives there as a list" in problem.fix


def test_a_product_block_records_both_lists_and_is_in_needs_a_run_time_value():
    built = condition_reads_its_own_step.build()
    assert built.groups[0].combine is ir.Combine.PRODUCT and len(built.groups[0].items) == 2
    with pytest.raises(PipelineDefinitionError, match="both sides are plain values here: use Python's `in`"):
        is_in(1, [1])


def test_every_target_but_local_refuses_each_construct_with_one_error_naming_step_and_alternative():
    built = case("hyperparameter_search").build()
    for name in BUILTIN:
        target = get_target(name)
        if name == "local":
            assert all(target.capabilities[f].support is Support.NATIVE for f in CONTROL_FLOW)
            assert compile_pipeline(built, name).files
            continue
        if name in ("kubeflow", "vertex"):  # all native (hooks too) but the whole-run bound, refused when emitting
            with pytest.raises(UnsupportedFeatureError) as err:
                compile_pipeline(built, name)
            assert [p.message for p in err.value.problems if "parallelism" in p.message or " cannot run " in p.message
                    ] == ["the KFP IR has no bound on the tasks of a whole run (pipeline parallelism=4)"]
            continue
        if all(target.capabilities[f].support is not Support.UNSUPPORTED for f in CONTROL_FLOW):
            continue  # lowered or emulated: proven by the target's own tests (kubernetes, skypilot: test_flow.py)
        used = {"a map (ParallelFor/expand)": Feature.MAP, "a parallelism bound": Feature.PARALLELISM,
                "a condition (If/Elif/Else)": Feature.CONDITION, "an exit handler (ExitHandler)": Feature.EXIT_HANDLER}
        refused = {text for text, f in used.items() if target.capabilities[f].support is Support.UNSUPPORTED}
        if name == "sagemaker":  # conditions are lowered, OneOf is not (a step after both branches never starts)
            refused.add("OneOf (the output of whichever branch ran)")
        with pytest.raises(UnsupportedFeatureError) as err:
            compile_pipeline(built, name)
        problems = err.value.problems
        if name in ("local_docker", "hyperai"):  # they emulate maps but refuse a pipeline-wide bound, besides
            (bound,) = [p for p in problems if " cannot run " not in p.message]
            assert "bounds its running steps to 4" in bound.message and bound.location
            problems = tuple(p for p in problems if p is not bound)
        assert len(problems) == len(refused), (name, [p.message for p in problems])  # one per construct refused
        for problem in problems:
            assert problem.step and problem.location and "local target" in (problem.fix or "")
        assert {p.message.split(" cannot run ")[1].split(":")[0] for p in problems} == refused


def _refusing_maps() -> str:
    """A built-in target that does not lower maps (which one changes as targets learn them)."""
    return next(name for name in BUILTIN if get_target(name).capabilities[Feature.MAP].support is Support.UNSUPPORTED)


def test_warn_cannot_drop_control_flow():
    with pytest.raises(UnsupportedFeatureError):
        compile_pipeline(flows.squares.build(), _refusing_maps(),
                         __import__("pipecast.flow", fromlist=["EmitOptions"]).EmitOptions(on_unsupported="warn"))


def test_the_cli_refuses_with_exit_2_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from pipecast.cli import main
    from tests.helpers.cases import ROOT

    out = tmp_path / "out"
    target = _refusing_maps()
    result = CliRunner().invoke(main, ["compile", str(ROOT / "examples" / "ml_pipeline.py"),
                                       "--target", target, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{target} cannot run a map (ParallelFor/expand)" in result.output and "local target" in result.output
    assert not out.exists()


def test_hooks_and_bounds_are_recorded():
    built = flows.guarded.build()
    hooks = [(s.name, s.trigger) for s in built.steps if s.trigger in (ir.Trigger.ON_FAILURE, ir.Trigger.ON_SUCCESS)]
    assert hooks == [("alert", ir.Trigger.ON_FAILURE), ("cheer", ir.Trigger.ON_SUCCESS)]
    assert built.step("alert").after == ("boom", "report")
    assert flows.bounded.build().parallelism == 2
    assert flows.bounded.build().groups[0].parallelism == 2
    assert Else and If  # the public names import from pipecast


@pipeline
def calls_bool(n: int = 1):
    flows.square(1 if bool(n) else 2)  # bool() on a parameter


@pipeline
def calls_iter(xs: list = [1]):  # noqa: B006
    flows.square(next(iter(xs)))  # iter() on a parameter


@pipeline
def loops_over_an_item(rows: list = [[1]]):  # noqa: B006
    with ParallelFor(rows) as row:
        for x in row:  # for over an item
            flows.square(x)


@pytest.mark.parametrize(("definition", "marker", "message", "fix"), [
    (calls_bool, "bool() on a parameter", "pipeline parameter 'n'", "with pipecast.If(<condition>):"),
    (calls_iter, "iter() on a parameter", "iterating or unpacking pipeline parameter 'xs'",
     "with pipecast.ParallelFor(xs) as item:"),
    (loops_over_an_item, "for over an item", "`for` loop over the item of map 'map_1'",
     "with pipecast.ParallelFor("),
])
def test_bool_iter_and_for_on_symbolic_values_say_what_to_use(definition, marker, message, fix):
    (problem,) = trace(definition).problems
    assert problem.location.endswith(f":{line_of(definition.fn, marker)}")
    assert message in problem.message
    assert fix in (problem.fix or "")


def test_the_graph_draws_groups_as_subgraphs_with_list_and_one_of_edges():
    from pipecast.compiler.drawing import mermaid

    text = mermaid(case("hyperparameter_search").build())
    assert 'subgraph g_map_1 ["for each item (map_1, 2 at once)"]' in text
    assert 'subgraph g_condition_1 ["if accuracy_of.output > threshold"]' in text
    assert '-->|"output (list)"|' in text and '-->|"output (one of)"|' in text


@pipeline
def badly_named_group(xs: list = [1]):  # noqa: B006
    with ParallelFor(xs, name='a "b"') as x:  # bad group name
        flows.square(x)


def test_a_group_name_follows_the_name_rule():
    (problem,) = problems_of(badly_named_group)
    assert problem.message.startswith("group name 'a \"b\"' is not allowed")
    assert problem.location.endswith(f":{line_of(badly_named_group.fn, 'bad group name')}")


@pipeline
def loops_over_an_output():
    for x in flows.numbers(3):  # for over a step's result
        flows.square(x)


def test_for_over_an_output_suggests_a_map_in_valid_words():
    (problem,) = trace(loops_over_an_output).problems
    assert problem.fix is not None
    assert "pipecast.ParallelFor(<the result of step 'numbers'>) as item:" in problem.fix


def test_a_rule_checked_by_tracing_and_the_ir_validator_is_reported_once():
    with pytest.raises(ValidationError) as caught:
        too_deep.build()
    nested = [p for p in caught.value.problems if "nested in two other maps" in p.message]
    assert len(nested) == 1 and nested[0].fix
