"""Python's ``in`` on a parameter or step output while a pipeline is traced names the ``in`` and says to use
``pipecast.is_in`` (``not in``: ``pipecast.not_in``), at the user's file:line.

``v in [1, 2]`` makes Python compare each element with ``v`` (``1 == v`` falls back to ``v.__eq__(1)``, which
builds a condition) and test that condition's truth: without pipecast.compiler.symbolic's ``_membership_test``
the error named a truth test of ``v == 1``, which the user never wrote.
"""

from __future__ import annotations

import inspect

from pipecast import If, is_in, pipeline
from pipecast.compiler.tracing import trace
from tests.unit import flow_pipelines as flows


def _line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def _only_problem(definition):
    (problem,) = trace(definition).problems
    return problem


def test_if_on_python_in_names_the_in_and_is_in():
    @pipeline
    def picks(v: int = 1):
        with If(v in [1, 2]):  # python in
            flows.square(v)

    problem = _only_problem(picks)
    assert problem.location.endswith(f":{_line_of(picks.fn, 'python in')}")
    assert problem.message.startswith("`in` on pipeline parameter 'v': ")
    assert "==" not in problem.message and "truth test" not in problem.message
    assert problem.fix.startswith("test membership with pipecast.is_in(v, [...]) inside `with pipecast.If(...)`")


def test_not_in_says_not_in():
    @pipeline
    def skips(v: int = 1):
        with If(v not in (1, 2)):  # python not in
            flows.square(v)

    problem = _only_problem(skips)
    assert problem.location.endswith(f":{_line_of(skips.fn, 'python not in')}")
    assert problem.message.startswith("`not in` on pipeline parameter 'v': ")
    assert problem.fix.startswith("test membership with pipecast.not_in(v, [...])")


def test_in_on_a_step_output_names_the_step():
    @pipeline
    def on_output(v: int = 1):
        out = flows.square(v)
        with If(out in [1, 4]):  # output in
            flows.square(v)

    problem = _only_problem(on_output)
    assert problem.location.endswith(f":{_line_of(on_output.fn, 'output in')}")
    assert problem.message.startswith("`in` on the result of step 'square': ")


def test_a_python_if_with_in_says_compared_with_in():
    @pipeline
    def branches(v: int = 1):
        if v in [1, 2]:  # python if in
            flows.square(v)

    problem = _only_problem(branches)
    assert problem.location.endswith(f":{_line_of(branches.fn, 'python if in')}")
    assert problem.message.startswith("`if` on pipeline parameter 'v' (compared with `in`): ")
    assert "pipecast.is_in(v, [...])" in problem.fix


def test_a_comparison_and_is_in_still_trace():
    @pipeline
    def fine(v: int = 1):
        with If(is_in(v, [1, 2]) & (v != 3)):
            flows.square(v)

    assert not trace(fine).problems
