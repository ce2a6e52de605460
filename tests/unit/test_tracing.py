"""Tracing: symbolic calls become IR nodes with stable names and file:line; nothing runs at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipecast import pipeline, step
from pipecast.compiler import ir
from pipecast.compiler.tracing import trace
from pipecast.errors import ValidationError
from tests.unit import bad_pipelines, pipelines


def test_steps_called_outside_a_pipeline_just_run():
    assert pipelines.add(2, 3) == 5
    assert pipelines.pair(5) == (4, 6)


def test_trace_records_bindings_outputs_and_unique_names():
    result = trace(pipelines.arithmetic)
    built = result.pipeline
    assert result.problems == ()
    assert [s.name for s in built.steps] == ["add", "pair", "add_2"]
    first, second, third = built.steps
    assert first.bindings == (
        ir.Binding(input="a", kind=ir.BindingKind.PARAMETER, parameter="x"),
        ir.Binding(input="b", kind=ir.BindingKind.PARAMETER, parameter="y"),
    )
    assert [o.name for o in second.outputs] == ["low", "high"]
    assert third.upstream() == ("pair",)
    assert built.outputs == (ir.PipelineOutput(name="output", step="add_2", output="output"),)
    assert [(p.name, p.type, p.default) for p in built.parameters] == [("x", ir.TypeName.INT, 3),
                                                                      ("y", ir.TypeName.INT, 4)]


def test_each_node_remembers_the_callers_file_and_line():
    built = trace(pipelines.arithmetic).pipeline
    source = open(pipelines.__file__).read().splitlines()
    for node in built.steps:
        assert node.location.file == "tests/unit/pipelines.py"
        assert "(" in source[node.location.line - 1]
    assert built.steps[0].location.line == built.steps[1].location.line  # pair(add(x, y)) is one line


def test_node_names_are_stable_across_traces():
    assert trace(pipelines.arithmetic).pipeline == trace(pipelines.arithmetic).pipeline


def test_after_adds_an_ordering_edge_without_data():
    @step
    def a() -> int:
        return 1

    @step
    def b() -> None:
        pass

    @pipeline
    def ordered():
        first = a()
        b().after(first)

    built = trace(ordered).pipeline
    assert built.steps[1].after == ("a",)
    assert built.steps[1].bindings == ()


def test_with_options_renames_and_keeps_other_options():
    renamed = pipelines.flaky.with_options(name="flaky_again")
    assert renamed.base_name == "flaky_again"
    assert renamed.options.retry == pipelines.flaky.options.retry


def test_symbolic_values_refuse_python_operations_with_a_clear_message():
    @pipeline
    def bad(x: int = 1):
        if x:
            pass

    (problem,) = trace(bad).problems
    assert problem.message.startswith("`if` on pipeline parameter 'x'")


def test_equality_builds_a_condition_and_symbolic_values_stay_hashable():
    @pipeline
    def uses_sets(n: int = 1):
        first = pipelines.add(n, n)
        assert len({first, first, n}) == 2  # identity hashing: sets and dict keys still work
        pipelines.add(first, n).after(first, [first])  # .after() de-duplicates
        return first == 5

    result = trace(uses_sets)
    (problem,) = result.problems
    assert "the pipeline returns the condition `add.output == 5`" in problem.message
    assert "pipecast.If" in problem.fix
    assert result.pipeline.steps[1].after == ("add",)


def test_multiple_outputs_index_by_name_and_position():
    @pipeline
    def indexed():
        result = pipelines.pair(1)
        pipelines.add(result["low"], result[1])

    built = trace(indexed).pipeline
    assert [(b.step, b.output) for b in built.steps[1].bindings] == [("pair", "low"), ("pair", "high")]


def test_importing_a_pipeline_module_builds_no_ir():
    code = (
        "import sys\n"
        "import pipecast.compiler.tracing as t\n"
        "calls = []\n"
        "original = t.Tracer.__init__\n"
        "t.Tracer.__init__ = lambda self, p: calls.append(p) or original(self, p)\n"
        "import examples.quickstart\n"
        "print(len(calls))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(pipelines.__file__).rsplit("/tests/", 1)[0])
    assert out.stdout.strip() == "0"


CONTROL_FLOW = ("Python's control flow runs once, while pipecast records the pipeline's steps and before any value "
                "exists, so it cannot decide on a run-time value")


@pytest.mark.parametrize(("definition", "marker", "message", "fix"), [
    (bad_pipelines.raises_an_error, "a bug: ZeroDivisionError",
     "the pipeline function raised ZeroDivisionError while pipecast traced it: division by zero", None),
    (bad_pipelines.iterates_a_dict, ".items() on a dict parameter",
     f"`for` loop over pipeline parameter 'weights' (through `.items`): {CONTROL_FLOW}",
     "with pipecast.ParallelFor(weights) as item:"),
    (bad_pipelines.timedelta_schedule, "a timedelta schedule",
     "schedule must be a cron string, got timedelta", "timedelta(days=1) is '@daily'"),
    (bad_pipelines.branches_on_a_parameter, "if on a parameter",
     f"`if` on the condition `n > 2`: {CONTROL_FLOW}", "branch with `with pipecast.If(<condition>):`"),
    (bad_pipelines.branches_on_an_output, "if on a step output",
     f"`if` on the condition `takes_int.output == 5`: {CONTROL_FLOW}",
     "or pass the result of step 'takes_int' to a step and write the `if` there"),
    (bad_pipelines.loops_over_a_parameter, "for over a parameter",
     f"`for` loop over pipeline parameter 'items': {CONTROL_FLOW}",
     "map a step over it: `with pipecast.ParallelFor(items) as item:` or `some_step.expand(arg=items)`"),
    (bad_pipelines.loops_while_a_parameter, "while on a parameter",
     f"`while` on pipeline parameter 'n': {CONTROL_FLOW}", "no loop that repeats until a condition holds"),
    (bad_pipelines.measures_a_parameter, "len() of a parameter",
     "`len()` on pipeline parameter 'items': parameters and step outputs are placeholders",
     "pass 'items' to a step and use `len()` there"),
    (bad_pipelines.formats_a_parameter, "f-string of a parameter",
     "an f-string or format() on pipeline parameter 'n'", "use an f-string or format() there"),
    (bad_pipelines.escapes_the_run_folder, "a step name with a path",
     "step name '../../../../escaped_dir/x' is not allowed: names hold only letters, digits, '_', '.' and '-', "
     "starting with a letter or '_', with no '..'", None),
])
def test_a_mistake_in_the_pipeline_function_is_one_problem_at_the_users_line(definition, marker, message, fix):
    with pytest.raises(ValidationError) as err:
        definition.build()
    (problem,) = err.value.problems
    assert problem.location == f"tests/unit/bad_pipelines.py:{bad_pipelines.line_of(marker)}"
    assert message in problem.message
    assert fix is None or fix in (problem.fix or "")


def test_names_of_outputs_and_pipelines_follow_the_same_rule():
    with pytest.raises(ValidationError) as err:
        bad_pipelines.badly_named.build()
    found = {p.message.split(" is not allowed")[0]: p.location for p in err.value.problems}
    where = "tests/unit/bad_pipelines.py:"
    assert found == {
        "output name '../up'": f"{where}{bad_pipelines.line_of('uses the bad output name')}",
        "pipeline name 'bad..name'": f"{where}{bad_pipelines.line_of('a pipeline name with')}",
    }


def test_a_step_name_cannot_write_outside_the_run(tmp_path):
    root = tmp_path.joinpath(*"abcdefgh") / "root"
    with pytest.raises(ValidationError, match=r"step name '\.\./\.\./\.\./\.\./escaped_dir/x' is not allowed"):
        bad_pipelines.escapes_the_run_folder.run(artifact_root=root.as_uri())
    assert not list(tmp_path.rglob("escaped_dir"))


def test_definitions_are_immutable_and_every_build_reports_the_same_problems():
    definition = bad_pipelines.has_an_untyped_parameter
    state = dict(vars(definition))
    counts = []
    for _ in range(3):
        with pytest.raises(ValidationError) as err:
            definition.build()
        counts.append(len(err.value.problems))
    assert counts == [1, 1, 1]
    assert vars(definition) == state
    for frozen in (definition, bad_pipelines.tick):
        with pytest.raises(AttributeError, match="immutable"):
            frozen.name = "other"
