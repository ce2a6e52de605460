"""``pipecast runs logs`` for local runs: the step logs the local runner keeps, one step or all, and --follow."""

from __future__ import annotations

import signal

from click.testing import CliRunner

from pipecast.cli import main
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.processes import finish, start_cli, wait_until
from tests.unit import logs_steps


def logs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["runs", "logs", *args])
    return result.exit_code, result.output


def test_every_step_in_order_with_a_header_then_one_step():
    run = run_pipeline(logs_steps.talk.build(), {"name": "ada"})
    code, text = logs(run.id)
    assert code == 0, text
    assert text.splitlines() == [
        "==> greet <==", "hello ada", "a warning", "pipecast: step 'greet' done",
        "==> shout <==", "HELLO ADA", "pipecast: step 'shout' done",  # from the child process of a timed step
    ]
    code, text = logs(run.id, "--step", "shout")
    assert (code, text) == (0, "HELLO ADA\npipecast: step 'shout' done\n")


def test_a_failed_step_shows_its_error_and_a_skipped_one_says_it_has_no_log():
    run = run_pipeline(logs_steps.broken.build(), raise_on_failure=False)
    code, text = logs("broken")  # the newest run of the pipeline
    assert code == 0, text
    lines = text.splitlines()
    assert lines[:2] == ["==> explode <==", "about to fail"]
    assert lines[2].startswith("pipecast: step 'explode' failed: ") and "no world here" in lines[2]
    assert lines[3] == "==> never (skipped: no log) <=="
    assert run.status == "failed"


def test_an_unknown_or_malformed_step_is_one_clear_error():
    run = run_pipeline(logs_steps.talk.build())
    code, text = logs(run.id, "--step", "train")
    assert code == 2 and "has no step 'train'; its steps: 'greet', 'shout'" in text
    code, text = logs(run.id, "--step", "../etc/passwd")
    assert code == 2 and "is not allowed" in text and "Traceback" not in text
    code, text = logs(run.id, "-c", "host=x")
    assert code == 2 and "does not apply" in text


def test_follow_streams_until_the_run_ends_and_ctrl_c_ends_it_cleanly(tmp_path):
    runner = start_cli("run", "tests/unit/logs_steps.py:slow_talker", "-p", f"folder={tmp_path}", "-q")
    try:
        wait_until((tmp_path / "started").exists, "the step to start")
        follower = start_cli("runs", "logs", "slow_talker", "--follow")
        stopped = start_cli("runs", "logs", "slow_talker", "--follow", "--step", "waits")
        assert follower.stdout is not None and stopped.stdout is not None
        assert follower.stdout.readline() == "==> waits <==\n"
        assert follower.stdout.readline() == "first line\n"  # read while the step still runs
        assert stopped.stdout.readline() == "first line\n"
        stopped.send_signal(signal.SIGINT)
        out, err = finish(stopped)
        assert stopped.returncode == 130 and "Traceback" not in err, err
        (tmp_path / "gate").write_text("")
        out, err = finish(follower)
        assert follower.returncode == 0, err
        assert out.splitlines() == ["last line", "pipecast: step 'waits' done", "==> then <==", "then got done",
                                    "pipecast: step 'then' done"]
    finally:
        (tmp_path / "gate").write_text("")
        finish(runner)
    assert runner.returncode == 0


def test_follow_is_bounded_by_its_timeout(tmp_path):
    runner = start_cli("run", "tests/unit/logs_steps.py:slow_talker", "-p", f"folder={tmp_path}", "-q")
    try:
        wait_until((tmp_path / "started").exists, "the step to start")
        process = start_cli("runs", "logs", "slow_talker", "--follow", "--timeout", "0.5")
        out, err = finish(process)
        assert process.returncode == 0, err
        assert out.splitlines()[:2] == ["==> waits <==", "first line"]
        assert out.splitlines()[-1].startswith("pipecast: stopped following run 'slow_talker-")
        assert out.splitlines()[-1].endswith("after 0.5s (--timeout); it has not ended yet")
    finally:
        (tmp_path / "gate").write_text("")
        finish(runner)


def test_a_target_that_cannot_fetch_logs_says_which_and_why_before_asking_its_engine():
    from pipecast.runs.store import RunStore

    reasons = {"sagemaker": "CloudWatch Logs", "vertex": "Cloud Logging", "kubeflow": "serves no task logs",
               "vm_aws": "sky logs"}
    for target, why in reasons.items():
        RunStore.default().create_run(f"{target}-run", pipeline=f"p-{target}", target=target, parameters={},
                                      status="running", url="https://console.example/run")
        code, text = logs(f"{target}-run")
        assert code == 2 and f"error: target {target!r} cannot fetch logs: " in text and why in text, text
        assert "Traceback" not in text
