"""Compose-project logs (local_docker, hyperai): the exact docker commands, their order, and streaming.

The commands run against a real Docker engine in the local_docker and hyperai tests; here a recording host
stands in for docker (what it does not prove: how Compose answers), and ``_lines`` streams a real process.
"""

from __future__ import annotations

import json
import sys

import pytest

from pipecast.errors import SubmitError
from pipecast.runs.logs import Deadline
from pipecast.runs.store import RunStore
from pipecast.targets.compose_logs import ComposeHost, _lines, logs_argv, parse_ps, ps_argv

PS = "\n".join(json.dumps(c) for c in [  # Compose >= 2.21: one object a line
    {"Name": "p-report-1", "Service": "report", "CreatedAt": "2026-01-01 10:00:09 +0000 UTC", "State": "exited"},
    {"Name": "p-make-numbers-1", "Service": "make_numbers", "CreatedAt": "2026-01-01 10:00:01 +0000 UTC",
     "State": "exited"},
])


# Compose creates every container at once: the order is the start time's (make_numbers started first).
INSPECT = "/p-report-1 2026-01-01T10:00:30.5Z\n/p-make-numbers-1 2026-01-01T10:00:20.1Z\n"


class Recording(ComposeHost):
    def __init__(self, logs: dict[str, list[str]], ps: str = PS) -> None:
        self.calls: list[list[str]] = []

        def output(argv: list[str]) -> str:
            self.calls.append(argv)
            return INSPECT if "inspect" in argv else ps

        def lines(argv: list[str], deadline: Deadline | None):
            self.calls.append(argv)
            return iter(logs[argv[-1]])

        super().__init__(("sudo", "docker"), output, lines)


def test_the_commands_name_the_project_and_service_and_never_the_compose_file():
    assert ps_argv(["docker"], "quickstart-1") == ["docker", "compose", "--project-name", "quickstart-1", "ps",
                                                   "--all", "--format", "json"]
    assert logs_argv(["sudo", "docker"], "p", "make_numbers", True) == [
        "sudo", "docker", "compose", "--project-name", "p", "logs", "--no-color", "--no-log-prefix", "--follow",
        "make_numbers"]
    assert parse_ps('[{"Service": "a"}]') == [{"Service": "a"}] and parse_ps("") == []  # older Compose: an array


def test_a_local_docker_run_reads_each_service_in_creation_order_then_one_by_its_step_name():
    store = RunStore.default()
    store.create_run("quickstart-20260101-100000-abcdef", pipeline="quickstart", target="local_docker",
                     parameters={}, status="succeeded")
    host = Recording({"make_numbers": ["made 10"], "report": ["total 45"]})
    from pipecast.targets.compose_logs import local_docker_logs

    record = store.get("quickstart")
    assert list(local_docker_logs(record, None, False, None, store.get, host)) == [
        "==> make_numbers <==", "made 10", "==> report <==", "total 45"]
    project = "quickstart-20260101-100000-abcdef"
    inspect = ["sudo", "docker", "inspect", "--format", "{{.Name}} {{.State.StartedAt}}", "p-report-1",
               "p-make-numbers-1"]
    assert host.calls == [ps_argv(["sudo", "docker"], project), inspect, ps_argv(["sudo", "docker"], project),
                          inspect, logs_argv(["sudo", "docker"], project, "make_numbers", False),
                          logs_argv(["sudo", "docker"], project, "report", False)]
    host.calls.clear()
    assert list(local_docker_logs(record, "report", False, None, store.get, host)) == ["total 45"]
    assert host.calls[-1] == logs_argv(["sudo", "docker"], project, "report", False)


def test_a_run_whose_containers_are_gone_says_why():
    store = RunStore.default()
    store.create_run("gone-20260101-100000-abcdef", pipeline="gone", target="local_docker", parameters={},
                     status="succeeded")
    from pipecast.targets.compose_logs import local_docker_logs

    with pytest.raises(SubmitError, match="removes a run's containers when the run ends"):
        list(local_docker_logs(store.get("gone"), None, False, None, store.get, Recording({}, ps="")))


def test_lines_streams_a_real_process_and_stops_it_at_the_deadline():
    assert list(_lines([sys.executable, "-c", "print('a'); print('b')"], None)) == ["a", "b"]
    script = "import time; print('first', flush=True); time.sleep(120)"
    assert list(_lines([sys.executable, "-c", script], Deadline(1.0))) == ["first"]  # then stopped, not 120 s


def test_hyperai_runs_the_same_commands_over_ssh_quoted_for_the_remote_shell():
    from pipecast.targets.compose_ssh_logs import remote_command, ssh_host
    from pipecast.targets.hyperai.remote import HostConfig

    cfg = HostConfig.from_config({"host": "gpu.example", "docker": "sudo docker"}, "quickstart")
    assert tuple(ssh_host(cfg).docker) == ("sudo", "docker")
    argv = logs_argv(("sudo", "docker"), "quickstart-x", "step; rm -rf /", False)  # a service is data
    assert remote_command(argv) == ("cd / && sudo docker compose --project-name quickstart-x logs --no-color "
                                    "--no-log-prefix 'step; rm -rf /'")


def test_an_ended_local_docker_run_is_read_from_the_step_logs_it_saved(tmp_path):
    from pipecast.targets.compose_logs import local_docker_logs

    store = RunStore.default()
    (tmp_path / "report.log").write_text("total 45\n")
    store.create_run("ended-20260101-100000-abcdef", pipeline="ended", target="local_docker", parameters={},
                     status="running", metadata={"logs": str(tmp_path)})
    store.record_steps("ended-20260101-100000-abcdef", [{"step": "report", "status": "done"},
                                                       {"step": "train", "status": "skipped"}])
    store.update_status("ended-20260101-100000-abcdef", "failed")
    host = Recording({})
    assert list(local_docker_logs(store.get("ended"), None, False, None, store.get, host)) == [
        "==> report <==", "total 45", "==> train (skipped: no log) <=="]
    assert host.calls == []  # no docker command: the containers are gone
