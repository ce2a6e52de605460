"""Tracing: symbolic calls become IR nodes with stable names and file:line; nothing runs at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipecast import pipeline, step
from pipecast.compiler import ir
from pipecast.compiler.tracing import trace
from pipecast.errors import PipelineDefinitionError
from tests.unit import pipelines


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

    with pytest.raises(PipelineDefinitionError, match="symbolic while the pipeline is traced"):
        trace(bad)


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
