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


def test_a_python_if_with_in_on_a_set_refuses_instead_of_taking_the_else():
    """A set finds ``v`` by hash, and a parameter's identity hash matches no constant: before the fix ``v in {1, 2}``
    was quietly False and the `if` body was never traced."""
    @pipeline
    def on_a_set(v: int = 1):
        if v in {1, 2}:  # python if in set
            flows.square(v)

    problem = _only_problem(on_a_set)
    assert problem.location.endswith(f":{_line_of(on_a_set.fn, 'python if in set')}")
    assert problem.message.startswith("`if` on pipeline parameter 'v' (compared with `in`): ")
    assert "pipecast.is_in(v, [...])" in problem.fix


def test_in_on_dicts_keys_views_and_built_sets_refuses_too():
    containers = {"dict": lambda v: v in {1: "one"}, "keys": lambda v: v in {1: "one"}.keys(),
                  "set()": lambda v: v in set([1, 2]), "frozenset": lambda v: v in frozenset((1,))}
    first = _line_of(test_in_on_dicts_keys_views_and_built_sets_refuses_too, "containers = ")
    lines = (first, first + 1)
    for name, test in containers.items():
        @pipeline
        def on_a_container(v: int = 1):
            out = flows.square(v)
            with If(test(out)):  # noqa: B023 - traced at once, inside this iteration
                flows.square(v)

        problem = _only_problem(on_a_container)
        assert problem.message.startswith("`in` on the result of step 'square': "), name
        assert int(problem.location.rsplit(":", 1)[1]) in lines, name


def test_not_in_on_a_set_says_not_in():
    @pipeline
    def skips(v: str = "a"):
        with If(v not in {"a", "b"}):  # python not in set
            flows.echo(v)

    problem = _only_problem(skips)
    assert problem.message.startswith("`not in` on pipeline parameter 'v': ")
    assert problem.fix.startswith("test membership with pipecast.not_in(v, [...])")


def test_outputs_still_go_in_sets_and_dict_keys_by_identity():
    @pipeline
    def keeps_outputs():
        first, second = flows.square(2), flows.square(3)
        by_output = {first: "first", second: "second"}
        kept = set([first, second, first])
        assert len(kept) == 2 and by_output[second] == "second" and by_output.get(first) == "first"
        flows.echo(by_output[first])

    assert not trace(keeps_outputs).problems
