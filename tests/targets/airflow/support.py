"""Helpers of the Airflow target's tests: read an emitted DAG file back, substitute as Airflow and Kubernetes
do, and run Airflow itself in child processes with a throw-away AIRFLOW_HOME."""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2

from tests.helpers.cases import env_with_cases

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:1"}
  name: offline
contexts:
- context: {cluster: offline, user: offline}
  name: offline
current-context: offline
users:
- name: offline
  user: {token: not-a-real-token}
"""


def _task_table(node: ast.AST) -> dict[str, Any]:
    """``TASKS``: ``json.loads`` of one string literal (durations in seconds)."""
    assert isinstance(node, ast.Call) and ast.unparse(node.func) == "json.loads" and len(node.args) == 1
    text = node.args[0]
    assert isinstance(text, ast.Constant) and isinstance(text.value, str)
    return json.loads(text.value)


def read_dag_file(text: str) -> dict[str, Any]:
    """The DAG file's data: ``TASKS``, the ``DAG(...)`` keyword arguments (params as literals), its imports."""
    tree = ast.parse(text)
    result: dict[str, Any] = {"imports": [], "dag": {}, "params": {}}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            result["imports"] += [f"{node.module}.{alias.name}" for alias in node.names]
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "TASKS":
            # TASKS maps task ids to entries; the tests read them as a list with "task_id" first.
            result["tasks"] = [{"task_id": task_id, **spec} for task_id, spec in _task_table(node.value).items()]
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in ("RUN_ID_ENV", "POD_RUN_ID_ENV"):
            result[node.targets[0].id] = ast.literal_eval(node.value)
        if isinstance(node, ast.With):
            call = node.items[0].context_expr
            assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "DAG"
            for keyword in call.keywords:
                if keyword.arg == "params":
                    assert isinstance(keyword.value, ast.Dict)
                    for key, param in zip(keyword.value.keys, keyword.value.values):
                        assert isinstance(param, ast.Call)
                        result["params"][ast.literal_eval(key)] = {  # type: ignore[arg-type]
                            "args": [ast.literal_eval(a) for a in param.args],
                            **{k.arg: ast.literal_eval(k.value) for k in param.keywords},
                        }
                elif keyword.arg != "start_date":
                    result["dag"][keyword.arg] = ast.literal_eval(keyword.value)
    return result


def render_env(dag: dict[str, Any], task: dict[str, Any], run_id: str, params: dict[str, Any],
               secrets: dict[str, Any] | None = None) -> dict[str, str]:
    """A task's environment as Airflow renders it: plain values as they are, templates with Jinja.

    The run id's template is the file's ``RUN_ID_ENV`` (workers) or ``POD_RUN_ID_ENV`` (pods).
    """
    env = dict(task.get("env", {}))
    templates = {**task.get("templated_env", {}), **dag["RUN_ID_ENV" if "command" in task else "POD_RUN_ID_ENV"]}
    template_env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = {"run_id": run_id, "params": params, **(secrets or {})}
    for name, template in templates.items():
        env[name] = template_env.from_string(template).render(context)
    return env


def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of a container's env values, command and args.

    ``$$`` is a ``$``; ``$(NAME)`` is replaced when NAME is defined, and left as it is otherwise.
    """
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env.get(name, text[i:end + 1]))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def pod_env(task: dict[str, Any], rendered: dict[str, str]) -> dict[str, str]:
    """The environment a pod's process sees: each value expanded in order, as the kubelet does."""
    env: dict[str, str] = {}
    for name, value in rendered.items():
        env[name] = kubernetes_expand(value, env)
    return env


def airflow_env(home: Path, dags: Path | None = None, bin_dir: Path = VENV_BIN, **extra: str) -> dict[str, str]:
    """Environment of an Airflow child process: its own AIRFLOW_HOME (SQLite), no examples, low parallelism."""
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = env_with_cases()
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        # Airflow gives up importing a DAG file after 30 s (50 s for its DAG processor): on a loaded 2-core
        # machine importing Airflow's Kubernetes provider alone took longer. The tests measure correctness, not
        # parse time (benchmarks/airflow_dag_parse.py does that), so the bounds are generous.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "900",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags or home / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra)
    return env


def migrate_template(folder: Path, bin_dir: Path = VENV_BIN) -> Path:
    """``folder/airflow.db``: an Airflow metadata database migrated (``airflow db migrate``) by the Airflow of
    the venv ``bin_dir``, for :func:`fresh_home` to copy.

    Migrating takes one ``airflow`` start-up and a few seconds of CPU, and a migrated SQLite database depends on
    nothing but the Airflow that migrated it (its path comes from AIRFLOW_HOME), so a test session migrates one
    per Airflow and each test starts from a copy of it (tests/targets/airflow/conftest.py).
    """
    airflow(["db", "migrate"], airflow_env(folder, bin_dir=bin_dir), timeout=600, bin_dir=bin_dir)
    return folder / "airflow.db"


def fresh_home(home: Path, database: Path) -> Path:
    """An AIRFLOW_HOME at ``home`` for one test: an empty DAGs folder and a copy of the migrated ``database``
    (see :func:`migrate_template`), as ``airflow db migrate`` would leave it. Each ``airflow dags test`` parses
    every file of the DAGs folder (twice, in Airflow 3), so a test's own folder holds only the DAGs it writes."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database, home / "airflow.db")
    return home


def server_settings(home: Path, port: int, password: str) -> dict[str, str]:
    """Configuration of an Airflow 3 server on 127.0.0.1:``port`` (LocalExecutor, SQLite, low parallelism) whose
    simple auth manager knows one user, ``admin``, with ``password``; quick to notice new DAG files."""
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": "pipecast-tests-jwt-secret-of-enough-length-0123456789",
        "AIRFLOW__API__SECRET_KEY": "pipecast-tests-secret-key",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
    }


def server_components(port: int) -> list[list[str]]:
    """The ``airflow`` commands of one Airflow 3 deployment: api-server, scheduler (its executor) and dag-processor."""
    return [["api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"], ["scheduler"],
            ["dag-processor"]]


# What the probe's Airflow variables and connections hold (Airflow's LocalFilesystemBackend reads them).
PROBE_VARIABLES = {"api-token": "<var:api-token>"}
PROBE_CONNECTIONS = {"db-credentials": {"conn_type": "postgres", "password": "<conn:db-credentials.password>"}}


def secrets_backend(folder: Path, variables: dict[str, Any], connections: dict[str, Any]) -> dict[str, str]:
    """Environment that makes Airflow read variables and connections from files (its LocalFilesystemBackend)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "variables.json").write_text(json.dumps(variables))
    (folder / "connections.json").write_text(json.dumps(connections))
    files = {"variables_file_path": str(folder / "variables.json"),
             "connections_file_path": str(folder / "connections.json")}
    return {"AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(files)}


def probe(dags: Path, home: Path, timeout: float = 240, python: Path = Path(sys.executable)) -> dict[str, Any]:
    """What Airflow's DagBag (that of ``python``'s Airflow) makes of every DAG file in ``dags``."""
    out = home / "probe.json"
    env = airflow_env(home, dags, python.parent, **secrets_backend(home, PROBE_VARIABLES, PROBE_CONNECTIONS))
    result = subprocess.run([str(python), str(HERE / "in_airflow_dagbag.py"), str(dags), str(out)],
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


def airflow(args: list[str], env: dict[str, str], timeout: float = 240,
            bin_dir: Path = VENV_BIN) -> subprocess.CompletedProcess[str]:
    """Run the ``airflow`` command line (of the venv ``bin_dir``); fail the test with its output if it fails."""
    result = subprocess.run([str(bin_dir / "airflow"), *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def assert_tasks_match(pipeline: Any, dag: dict[str, Any], backoff: Callable[[float], object],
                       airflow_retries: Callable[[Any], bool] = lambda step: True) -> None:
    """What Airflow loaded (a DAG of :func:`probe`) has the pipeline's tasks, dependencies, retries, timeouts,
    schedule and params; ``backoff`` maps a step's backoff factor to Airflow's ``retry_exponential_backoff``.

    A step for which ``airflow_retries`` is false is retried by pipecast's runtime inside one task: Airflow
    does not retry it, and its timeout covers every try and every wait between them.
    """
    assert dag["task_ids"] == [s.name for s in pipeline.steps]
    assert dag["schedule"] == pipeline.schedule
    assert dag["catchup"] is False
    assert {name: p["value"] for name, p in dag["params"].items()} == {p.name: p.default for p in pipeline.parameters}
    for step in pipeline.steps:
        task = dag["tasks"][step.name]
        assert task["upstream"] == sorted(step.upstream())
        assert task["doc_md"] == (step.description or None)
        if not airflow_retries(step):
            assert task["retries"] == 0
            waits = sum(step.retry.delay_before(attempt) for attempt in range(2, step.retry.attempts + 1))
            whole = math.ceil(step.timeout_seconds * step.retry.attempts + waits) if step.timeout_seconds else None
            assert task["execution_timeout"] == whole
            continue
        assert task["retries"] == step.retry.retries
        assert task["execution_timeout"] == step.timeout_seconds
        if step.retry.retries:
            assert task["retry_delay"] == step.retry.delay_seconds
            assert task["max_retry_delay"] == step.retry.max_delay_seconds
            assert task["retry_exponential_backoff"] == backoff(step.retry.backoff)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop one server component and everything it started (its own process group), by PID."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def tail_logs(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(logs.glob("*.log")))


@contextmanager
def running_components(airflow_bin: Path, components: list[list[str]], env: dict[str, str], logs: Path,
                       health_url: str, limit: float) -> Iterator[None]:
    """Start Airflow components (``airflow <args>``, each in its own process group, logging to ``logs``), wait
    until ``health_url`` answers 200 (bounded by ``limit`` seconds), and stop them all on the way out."""
    logs.mkdir(exist_ok=True)
    processes: list[subprocess.Popen] = []
    outputs = []
    try:
        for component in components:
            outputs.append(open(logs / f"{component[0]}.log", "w"))  # closed when the process is stopped
            processes.append(subprocess.Popen([str(airflow_bin), *component], env=env, stdout=outputs[-1],
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + limit
        while True:
            try:
                with urllib.request.urlopen(health_url, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            dead = [p.args for p in processes if p.poll() is not None]
            assert not dead and time.monotonic() < deadline, (dead, tail_logs(logs))
            time.sleep(2)
        yield
    finally:
        for process in processes:
            stop_process_group(process)
        for output in outputs:
            output.close()


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port) that passes everything through, except the
    answer to the first request whose request line matches ``request``: that request reaches the server, and the
    client's connection is closed as the server's answer starts, so the client never learns what happened.

    urllib opens one connection per request, so a connection carries one request line.
    """

    def __init__(self, upstream: tuple[str, int], request: str) -> None:
        self.upstream = upstream
        self.request = re.compile(request.encode())
        self.dropped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> DroppingProxy:
        self._start(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=30)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed by __exit__
                return
            self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream, timeout=60) as server:
            first = client.recv(65536)
            drop = bool(first) and not self.dropped.is_set() and bool(self.request.match(first))
            server.sendall(first)
            self._start(self._pump, client, server)  # the rest of the request
            while answer := _recv(server):
                if drop:
                    self.dropped.set()  # the server has done the work and is answering: lose the answer
                    break
                client.sendall(answer)
            with contextlib.suppress(OSError):  # the client may have gone already
                client.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _pump(source: socket.socket, destination: socket.socket) -> None:
        while data := _recv(source):
            try:
                destination.sendall(data)
            except OSError:
                return


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:  # closed by the other direction
        return b""
