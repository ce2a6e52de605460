"""One rule for values the engine substitutes: a placeholder it left in place is refused, saying so.

The run id, a step's name and its upstream steps (a map item's index), a map item's index, the KFP task's own
options and the logical time all come from engine substitution; none of them can hold template text of its own.
"""

from __future__ import annotations

import pytest

from pipecast.errors import ContextError, PipecastError
from pipecast.runtime import publish_github, publish_kfp
from pipecast.runtime.checks import check_substituted
from pipecast.runtime.command import parse_command
from pipecast.runtime.context import LOGICAL_TIME_VAR, logical_time_from_env, set_engine_logical_time
from pipecast.runtime.params import encode_constant
from tests.unit.test_runtime import runtime, step_args

RULE = "still holds the engine placeholder"


def test_the_rule_names_the_value_the_placeholder_what_it_means_and_the_fix():
    with pytest.raises(PipecastError) as err:
        check_substituted("step name", "square[%24%28params.index%29]", "items would share a folder")
    assert str(err.value).startswith("step name 'square[%24%28params.index%29]' still holds the engine placeholder "
                                     "'$(params.index)' (percent-encoded): the engine did not substitute it, so "
                                     "items would share a folder. The task's command must carry a placeholder")
    check_substituted("step name", "square[3]", "-")  # substituted: nothing to say
    with pytest.raises(ContextError):
        check_substituted("x", "{{ ts }}", "-", ContextError)


@pytest.mark.parametrize(("extra", "shown"), [
    (["--step", "numbers[$(params.index)]"],
     "step 'numbers[$(params.index)]': its map item index '[$(params.index)]' still holds the engine placeholder "
     "'$(params.index)'"),
    (["--step", "numbers[2][{{inputs.parameters.index}}]"], "placeholder '{{inputs.parameters.index}}'"),
    (["--step", "numbers", "--upstream", "n=source[${{ matrix.index }}]/output"],
     "the map item index of upstream step 'source[${{ matrix.index }}]' '[${{ matrix.index }}]' still holds the "
     "engine placeholder '${{ matrix.index }}'"),
])
def test_a_step_or_upstream_name_the_engine_did_not_substitute_is_refused(tmp_path, extra, shown):
    """A map item's index ends its step name: left in place, every item would write one folder. The step's own
    name before it may hold any text (``test_a_step_name_of_its_own_may_hold_template_text``)."""
    args = step_args("numbers", "numbers", tmp_path / "root", "--param", "n=int:3", "--output", "output")
    at = args.index("--step")
    args[at:at + 2] = []
    result = runtime(*args, *extra)
    assert result.returncode == 2, result.stderr
    assert shown in result.stderr and "the engine did not substitute it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "root").exists(), "nothing may be written"


@pytest.mark.parametrize("text", ["{{ data_interval_start }}", "$(context.pipelineRun.time)",
                                  "${{ github.event.schedule }}", "%7B%7B%20ts%20%7D%7D"])
def test_a_logical_time_left_as_a_placeholder_is_refused_by_the_rule(monkeypatch, text):
    monkeypatch.setenv(LOGICAL_TIME_VAR, text)
    with pytest.raises(ContextError, match=rf"the logical time \${LOGICAL_TIME_VAR} .* {RULE} .*so the step cannot "
                                           r"know its run's logical time"):
        logical_time_from_env()


def test_only_kfps_own_schedule_placeholder_means_no_time(monkeypatch):
    monkeypatch.setenv(LOGICAL_TIME_VAR, "")
    set_engine_logical_time("{{$.pipeline_job_schedule_time_utc}}")  # KFP <= 2.15 leaves it: no time
    assert logical_time_from_env() is None
    set_engine_logical_time("{{$.pipeline_job_create_time_utc}}")  # any other placeholder is an engine leftover
    with pytest.raises(ContextError, match=RULE):
        logical_time_from_env()


def test_a_tekton_matrix_index_left_as_a_placeholder_is_refused():
    argv = step_args("count", "count[$(params.index)]", "/nowhere", "--const",
                     f"values#0={encode_constant('[[1], [2]]')}", "--tekton-item", "values=zip:-",
                     "--tekton-index", "$(params.index)")
    with pytest.raises(PipecastError, match=r"input 'values': the matrix's item index '\$\(params.index\)' "
                                            rf"{RULE} '\$\(params.index\)'.*the task cannot know its item"):
        parse_command(argv)


def test_a_github_job_index_left_as_a_placeholder_is_refused(monkeypatch):
    invocation, _ = parse_command(step_args("count", "count", "/nowhere", "--const",
                                            f"values#0={encode_constant('[[1], [2]]')}"))
    monkeypatch.setenv("PIPECAST_GITHUB_INDEX", "${{ strategy.job-index }}")
    with pytest.raises(PipecastError, match=rf"matrix job's item index \(\$PIPECAST_GITHUB_INDEX\) .* {RULE}"):
        publish_github.with_map_values(invocation, ["values=zip:-"], [])
    monkeypatch.setenv("PIPECAST_GITHUB_INDEX", "one")
    with pytest.raises(PipecastError, match=r"\(\$PIPECAST_GITHUB_INDEX\) is 'one', not a number"):
        publish_github.with_map_values(invocation, ["values=zip:-"], [])


def test_kfp_task_options_and_items_left_as_placeholders_are_refused():
    with pytest.raises(PipecastError, match=rf"--kfp-task \(the task's own options\) .* {RULE} "
                                            r"\"\{\{\$.inputs.parameters\['pipecast_task'\]\}\}\""):
        publish_kfp.expand_task(["run", "--kfp-task", "{{$.inputs.parameters['pipecast_task']}}"])
    with pytest.raises(PipecastError, match=rf"step 'count': the map item .* {RULE}"):
        publish_kfp.item_index("count", "{{$.inputs.parameters['pipecast-item']}}", [1, 2])
    assert publish_kfp.item_index("count", "2", [1, 2]) == (1, 2)


def test_a_step_name_of_its_own_may_hold_template_text(tmp_path):
    """Step names are the user's: only the item index the engine appends is checked."""
    result = runtime(*step_args("numbers", "say ${{ x }} $(id) {{ y }}", tmp_path / "root", "--param", "n=int:3",
                                "--output", "output"))
    assert result.returncode == 0, result.stderr
