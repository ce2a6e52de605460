"""Cancelling a vm_* job while a step runs: the run script's TERM/INT trap (issue 16).

``sky cancel`` SIGTERMs the run script and its children (SkyPilot 0.14.1: ``sky/skylet/job_lib.py``
``cancel_jobs`` SIGTERMs the job driver's process group; ``sky/skylet/subprocess_daemon.py``, started by
``sky/skylet/log_lib.py`` ``run_with_log`` for the script it runs in a session of its own, then SIGTERMs the script
and every child, and SIGKILLs them 30 s later). Here the emitted script runs under bash in a session of its own, as
there, and the test SIGTERMs (or SIGINTs) that whole process group once both items of the held map step run (their
marker files). Then the records must say what ``pipecast run`` records when it is cancelled at the same point: the
step that ran is cancelled (and its items), the steps after it are cancelled without running, the exit handler and
the on_failure hook ran and read ``cancelled``, the on_success hook was skipped, and the script exits 128 + the
signal. SkyPilot runs the script as ``/bin/bash -i FILE`` (``log_lib.run_bash_command_with_log``), a shell that
ignores SIGTERM unless trapped and starts each command in a process group of its own: that way is run too, signalled
as the daemon signals it (``kill_process_tree``: the script, then each of its descendants), with its output pipe's
reader gone (the daemon acts once the script's parent, which read that pipe, has ended).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipecast.runs.store import RunStore
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from tests.helpers.cases import ROOT, compile_case, env_with_cases
from tests.helpers.processes import EVENT_SECONDS, finish, kill_group, start_cli, wait_until
from tests.targets.skypilot import cancel_pipelines
from tests.targets.skypilot.support import SETTINGS, task_documents
from tests.targets.skypilot.test_replay import task_env, task_ids

HERE = Path(__file__).parent
# After a cancel the handlers and hooks still run, one Python process each: generous on a busy machine.
WIND_DOWN = 5 * EVENT_SECONDS
STEPS = ["prepare", "hold", "hold[0]", "hold[1]", "after", "summary", "report", "note_failure", "note_success"]
STATUS = {"status": "cancelled", "failed_steps": [], "error": None}


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc), as psutil's ``children(recursive=True)`` lists them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _terminate_tree(pid: int, signum: int) -> None:
    """What SkyPilot's subprocess_daemon.py ``kill_process_tree`` does: signal the script, then each descendant."""
    for target in [pid, *_descendants(pid)]:
        try:
            os.kill(target, signum)
        except ProcessLookupError:
            pass


def _wait_for_both_items(folder: Path) -> None:
    wait_until(lambda: (folder / "running-0").exists() and (folder / "running-1").exists(), "both items to run",
               timeout=WIND_DOWN)


def _cancel_run_script(tmp_path: Path, signum: int, shell: str, then: int | None = None,
                       ) -> tuple[int, dict[str, Any], str]:
    """Run the emitted script, signal its process group while the map's items run (and ``then`` once the held
    exit handler runs); its exit status, records and log."""
    text = compile_case("vm_aws", cancel_pipelines.sky_cancel, golden=True, settings=SETTINGS["vm_aws"]).files[
        "sky_cancel.sky.yaml"]
    header, (document,) = task_documents(text)
    assert "trap 'pipecast_cancelled 143' TERM" in document["run"]
    folder, root = tmp_path / "markers", tmp_path / "sky"
    folder.mkdir()
    ids = task_ids(header, [document])
    env = {**env_with_cases(), **task_env(document, ids, 0, {"PIPECAST_ARTIFACT_ROOT": f"file://{root}",
                                                                "folder": str(folder),
                                                                "hold_report": "true" if then else "false"}),
           "HOME": str(tmp_path)}
    as_sky = shell == "bash -i"
    if as_sky:  # as SkyPilot runs it: a script file given to an interactive bash, stdin closed, output merged
        script = tmp_path / "sky_app_run.sh"
        script.write_text(document["run"], encoding="utf-8")
        argv = ["bash", "-i", str(script)]
    else:  # as the other replays run it
        argv = ["bash", "-c", document["run"]]
    process = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT if as_sky else subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _wait_for_both_items(folder)
        if as_sky:
            # The script's parent, which read its output pipe, is gone when the daemon acts (the Ray worker of the
            # cancelled job): every later write to that pipe fails. bash -i puts each command in a process group of
            # its own, so the daemon signals each process.
            assert process.stdout is not None
            process.stdout.close()
            _terminate_tree(process.pid, signum)
            process.wait(timeout=WIND_DOWN)
            stderr = "(the output pipe was closed)"
        else:
            os.killpg(process.pid, signum)
            if then is not None:
                wait_until((folder / "handler-running").exists, "the exit handler to run after the first signal")
                os.killpg(process.pid, then)
            _, stderr = finish(process, timeout=WIND_DOWN)
    finally:
        if process.poll() is None:
            kill_group(process)
    store = ArtifactStore(f"file://{root}")
    records = {}
    for name in STEPS:
        path = f"{store.step_dir('sky_cancel', ids[0], name)}/meta.json"
        meta = store.read_json(path) if store.exists(path) else {"status": "without a record"}
        outputs = load_outputs(f"file://{root}", "sky_cancel", ids[0], name) \
            if meta["status"] == "succeeded" and "instances" not in meta else None
        records[name] = (meta["status"], outputs)
        records[f"{name} why"] = meta.get("reason") or meta.get("error")
    return process.returncode, records, stderr


def _cancel_pipecast_run(tmp_path: Path, home: Path) -> tuple[int, dict[str, Any]]:
    """``pipecast run`` of the same pipeline, SIGTERMed at the same point; its exit status and records."""
    folder = tmp_path / "local-markers"
    folder.mkdir()
    process = start_cli("run", "tests/targets/skypilot/cancel_pipelines.py:sky_cancel", "-p", f"folder={folder}",
                        "-q", "--no-cache")
    try:
        _wait_for_both_items(folder)
        process.send_signal(signal.SIGTERM)
        finish(process, timeout=WIND_DOWN)
    finally:
        if process.poll() is None:
            kill_group(process)
    store = RunStore(str(home / "runs.db"))
    run = store.get(store.list(pipeline="sky_cancel")[-1]["id"])
    root = run["metadata"]["artifact_root"]
    records: dict[str, Any] = {}
    for state in run["steps"]:
        name, status = state["step"], state["status"]
        ran = status in ("done", "cached")
        outputs = load_outputs(root, "sky_cancel", run["id"], name) if ran and name != "hold" else None
        records[name] = ("succeeded" if ran else status, outputs)
        records[f"{name} why"] = state.get("error")
    return process.returncode, records


@pytest.mark.parametrize(("signum", "shell"), [(signal.SIGTERM, "bash -c"), (signal.SIGTERM, "bash -i"),
                                               (signal.SIGINT, "bash -c")], ids=["term", "term-bash-i", "int"])
def test_a_cancelled_run_script_cancels_the_rest_then_runs_the_handler_and_the_failure_hook(signum, shell, tmp_path):
    code, records, stderr = _cancel_run_script(tmp_path, signum, shell)
    assert code == 128 + signum, stderr
    assert {name: records[name][0] for name in STEPS} == {
        "prepare": "succeeded", "hold": "cancelled", "hold[0]": "cancelled", "hold[1]": "cancelled",
        "after": "cancelled", "summary": "cancelled", "report": "succeeded", "note_failure": "succeeded",
        "note_success": "skipped"}
    assert records["after why"] == records["summary why"] == "the run was cancelled"  # never started
    assert records["report"][1] == {"output": STATUS}
    assert records["note_failure"][1] == {"output": "on_failure: cancelled"}
    assert records["note_success why"] == "on_success hook: step 'hold' cancelled"
    assert "Traceback" not in stderr


def test_the_cancelled_run_script_records_what_pipecast_run_records(tmp_path, pipecast_home):
    code, records, _ = _cancel_run_script(tmp_path, signal.SIGTERM, "bash -c")
    local_code, expected = _cancel_pipecast_run(tmp_path, pipecast_home)
    assert code == local_code == 143
    for name in STEPS:
        assert records[name] == expected[name], name
    # The steps that never started, and the skipped hook, say the same; the step that was running says how it
    # was stopped (its runtime got the SIGTERM: "received SIGTERM"; pipecast run's words for it differ).
    for name in ("after why", "summary why", "note_success why"):
        assert records[name] == expected[name], name


def test_a_second_signal_ends_the_script_as_it_aborts_pipecast_runs_handlers(tmp_path):
    """As a second Ctrl-C stops ``pipecast run``'s exit handlers: the running handler is cancelled, no hook starts."""
    code, records, stderr = _cancel_run_script(tmp_path, signal.SIGTERM, "bash -c", then=signal.SIGINT)
    assert code == 130, stderr
    assert {name: records[name][0] for name in ("hold", "after", "summary", "report", "note_failure",
                                                 "note_success")} == {
        "hold": "cancelled", "after": "cancelled", "summary": "cancelled", "report": "cancelled",
        "note_failure": "without a record", "note_success": "without a record"}


def _daemons_of(pid: int) -> list[int]:
    """The pids of SkyPilot's subprocess_daemon.py processes that watch process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if any(a.endswith(b"subprocess_daemon.py") for a in argv) and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


def _sleeps_of(pid: int) -> int:
    """How many times process ``pid`` gave up the CPU of its own accord (``voluntary_ctxt_switches``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in /proc/{pid}/status")


def test_skypilots_own_job_code_cancelled_runs_the_handler_with_status_cancelled(sky_interpreter, tmp_path):
    """SkyPilot's run_bash_command_with_log runs the script; its parent is killed, as Ray kills the worker of a
    cancelled job, and SkyPilot's subprocess_daemon then signals the script: the records are a cancel's."""
    text = compile_case("vm_aws", cancel_pipelines.sky_cancel, golden=True, settings=SETTINGS["vm_aws"]).files[
        "sky_cancel.sky.yaml"]
    header, (document,) = task_documents(text)
    folder, root = tmp_path / "markers", tmp_path / "sky"
    folder.mkdir()
    (tmp_path / "sky_workdir").mkdir()  # SkyPilot's workdir on the VM (~/sky_workdir); the steps import by PYTHONPATH
    ids = task_ids(header, [document])
    env = task_env(document, ids, 0, {"PIPECAST_ARTIFACT_ROOT": f"file://{root}", "folder": str(folder)})
    env["PYTHONPATH"] = env_with_cases()["PYTHONPATH"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"script": document["run"], "log": str(tmp_path / "run.log"), "env": env}))
    full_env = {k: v for k, v in env_with_cases().items() if not k.startswith("SKYPILOT_")}
    full_env.update({"HOME": str(tmp_path), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"})
    worker = subprocess.Popen([sky_interpreter, str(HERE / "in_sky_cancel.py"), str(config)], env=full_env,
                              cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    daemons: list[int] = []
    store = ArtifactStore(f"file://{root}")
    last = f"{store.step_dir('sky_cancel', ids[0], 'note_success')}/meta.json"
    try:
        _wait_for_both_items(folder)
        daemons = _daemons_of(worker.pid)
        assert daemons, "SkyPilot's subprocess_daemon.py watches the worker"
        # The daemon signals the processes it last listed, refreshing the list once per loop (a second's sleep, one
        # voluntary switch): wait for two more sleeps, so it has listed the running items (a busy machine may
        # otherwise delay its refresh past their start, and they would not be signalled; documented).
        seen = _sleeps_of(daemons[0])
        wait_until(lambda: _sleeps_of(daemons[0]) >= seen + 3, "SkyPilot's daemon to list the running items",
                   timeout=WIND_DOWN)
        worker.kill()  # the cancelled job's worker ends; SkyPilot's daemon notices within a second
        worker.wait(timeout=EVENT_SECONDS)
        held = f"{store.step_dir('sky_cancel', ids[0], 'hold[0]')}/meta.json"
        wait_until(lambda: store.exists(held) and store.read_json(held)["status"] == "cancelled",
                   "the daemon's SIGTERM to reach the running step")
        # The daemon SIGKILLs what is left 30 s after its SIGTERM; a busy machine may not finish the handlers in
        # that grace (documented in docs/targets/skypilot.md). This test proves the signal path and the records,
        # not the grace: the daemon has done its part, so stop it before its SIGKILL.
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: store.exists(last), "the last hook's record after the cancel", timeout=WIND_DOWN)
    finally:
        if worker.poll() is None:
            kill_group(worker)
        for pid in daemons:  # it would SIGKILL the (ended) script 30 s later: stop it now
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    statuses = {}
    for name in STEPS:
        path = f"{store.step_dir('sky_cancel', ids[0], name)}/meta.json"
        statuses[name] = store.read_json(path)["status"] if store.exists(path) else "without a record"
    assert statuses == {"prepare": "succeeded", "hold": "cancelled", "hold[0]": "cancelled", "hold[1]": "cancelled",
                        "after": "cancelled", "summary": "cancelled", "report": "succeeded",
                        "note_failure": "succeeded", "note_success": "skipped"}
    assert load_outputs(f"file://{root}", "sky_cancel", ids[0], "report") == {"output": STATUS}
    assert load_outputs(f"file://{root}", "sky_cancel", ids[0], "note_failure") == {"output": "on_failure: cancelled"}
