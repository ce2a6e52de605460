"""A literal list or dict of step outputs, parameters and constants passed as one input (GATHER bindings)."""

from __future__ import annotations

import json

import pytest

from pipecast.compiler import ir
from pipecast.errors import ValidationError
from pipecast.runtime.command import EngineSyntax, parse_command, runtime_args, try_args
from pipecast.runtime.executor import Upstream
from tests.unit import gather_pipelines as gathers


def test_a_list_of_outputs_parameters_and_constants_reaches_the_step_in_order():
    assert gathers.sums.run({"n": 5}).outputs == {"output": 5 + 2 + 5 + 4}
    assert gathers.order_matters.run().outputs == {"output_0": 30, "output_1": 31}


def test_nested_dicts_lists_and_tuples_keep_their_shape_and_key_order():
    run = gathers.nested.run({"n": 7, "name": "w"})
    assert run.outputs == {"output": "[('inner', {'words': ['w', 'c']}), ('k', 5), ('n', 7)] [7, 1]"}


def test_each_element_is_read_as_the_annotation_of_one_element_says():
    assert gathers.of_paths.run().outputs == {"output": "PosixPath:a,PosixPath:b"}


def test_the_ir_holds_the_template_and_hidden_element_bindings_and_round_trips_exactly():
    pipeline = gathers.nested.build()
    step = pipeline.step("describe")
    kinds = [(b.input, b.kind.value) for b in step.bindings]
    assert kinds == [("values", "gather"), ("values__0", "parameter"), ("values__1", "output"),
                     ("values__2", "output"), ("pair", "gather"), ("pair__0", "parameter"), ("pair__1", "output")]
    assert json.loads(step.bindings[0].value_json or "") == {"dict": [
        ["n", {"input": "values__0"}], ["inner", {"dict": [["words", {"list": [
            {"input": "values__1"}, {"value": "c"}]}]]}], ["k", {"input": "values__2"}]]}
    text = pipeline.to_json()
    assert json.loads(text)["ir_version"] == "3"
    assert ir.Pipeline.from_json(text) == pipeline and ir.Pipeline.from_json(text).to_json() == text
    assert set(step.upstream()) == {"word", "number", "number_2"}


def test_a_pipeline_without_a_gather_keeps_its_ir_version():
    from tests.helpers.cases import case
    from tests.unit import flow_pipelines

    assert json.loads(case("diamond_after").build().to_json())["ir_version"] == "1"
    assert json.loads(flow_pipelines.squares.build().to_json())["ir_version"] == "2"


def test_the_runtime_command_carries_the_template_and_a_try_passes_it_on():
    pipeline = gathers.sums.build()
    step = pipeline.step("total")
    syntax = EngineSyntax(run_id="r1", parameter=lambda p: "5", artifact_root="file:///tmp/x")
    inv, options = parse_command(runtime_args(pipeline, step, syntax))
    assert inv.gathers == {"values": {"list": [{"input": "values__0"}, {"input": "values__1"},
                                               {"input": "values__2"}, {"value": 4}]}}
    assert inv.upstream == {"values__0": Upstream("number", "output"), "values__1": Upstream("number_2", "output")}
    assert inv.values == {"values__2": 5}
    again, _ = parse_command(try_args(inv, options))
    assert again.gathers == inv.gathers and again.values == inv.values and again.upstream == inv.upstream


def test_the_constant_parts_of_a_literal_are_in_the_cache_key():
    first = gathers.order_matters.run()
    second = gathers.order_matters.run()
    assert {name: s.status for name, s in second.steps.items()} == dict.fromkeys(first.steps, "cached")
    assert second.outputs == {"output_0": 30, "output_1": 31}  # total([a, b, 0]) and total([b, a, 1]) apart


@pytest.mark.parametrize(("definition", "marker", "message", "fix"), [
    (gathers.inside_a_map, "a gather inside a map",
     "input 'values' gets a list of outputs of step 'twice' inside map group 'map_1'; a literal list of several "
     "values is gathered only by a step outside every map, condition and exit group yet",
     "give the step one input per value"),
    (gathers.of_a_mapped_output, "a mapped output in a gather",
     "input 'values' gets a list holding a mapped output (made once per item of a map); a literal list or dict "
     "given as one input gathers only step outputs, pipeline parameters and constants yet",
     "pass that value as its own input"),
    (gathers.with_a_set, "a set of outputs", "a set has no order; pass a list", "pass a list"),
    (gathers.wrong_element, "a str in a list[int]",
     "value 1 of the literal given to input 'values' is int but output 'output' of step 'word' is str",
     "make the annotations agree"),
    (gathers.not_a_list, "a list for an int", "input 'value' is int but gets a list of step outputs or parameters",
     "annotate it list[...]"),
])
def test_what_cannot_be_gathered_is_one_problem_at_the_users_line(definition, marker, message, fix):
    with pytest.raises(ValidationError) as err:
        definition.build()
    (problem,) = err.value.problems
    assert problem.location == f"tests/unit/gather_pipelines.py:{gathers.line_of(marker)}"
    assert message in problem.message
    assert fix in (problem.fix or "")
