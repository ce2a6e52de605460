"""A target from another package (tests/plugin/pipecast_batchd), installed as a wheel of its own and found only
through its entry point, is listed, checked, compiled and submitted through the same code paths as the built-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers.cases import ROOT

PLUGIN = ROOT / "tests" / "plugin" / "pipecast_batchd"


def _wheel(folder: Path) -> Path:
    """A wheel of the plugin, built by hand (a wheel is a zip with a dist-info) so no build backend is needed."""
    name, version = "pipecast_batchd", "0.1.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {f"{name}/{p.name}": p.read_bytes() for p in sorted(PLUGIN.glob("*.py"))}
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: pipecast-tests\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n")
    files[f"{dist_info}/entry_points.txt"] = b"[pipecast.targets]\nbatchd = pipecast_batchd:BatchdTarget\n"
    files[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"]).encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the plugin is pip-installed into (nothing else: pipecast comes from the test's environment)."""
    folder = tmp_path_factory.mktemp("plugin")
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(_wheel(folder))], check=True, timeout=300)
    assert not (target / "pipecast").exists()
    return target


class Batchd:
    """batchd's API as the plugin uses it: POST /jobs, GET /jobs/<id> (queued, then done), POST .../cancel."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}


@pytest.fixture
def batchd() -> Iterator[tuple[str, Batchd]]:
    state = Batchd()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)) or b"{}")
            if self.path == "/jobs":
                state.jobs[body["run_id"]] = body
                self._send(201, {"id": body["run_id"]})
            else:
                self._send(200, {})

        def do_GET(self) -> None:
            run = self.path.removeprefix("/jobs/")
            state.polls[run] = state.polls.get(run, 0) + 1
            self._send(200, {"state": "queued" if state.polls[run] == 1 else "done", "message": "2 jobs"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def pipecast(site: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "PIPECAST_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=300)


def test_the_plugin_is_listed_with_its_capabilities_and_settings(site, tmp_path):
    listed = pipecast(site, tmp_path, "targets", "--json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "batchd")
    assert row["status"] == "beta" and row["capabilities"]["gpu"]["support"] == "unsupported"
    settings = pipecast(site, tmp_path, "targets", "--settings", "batchd")
    assert '| `priority` | "low" &#124; "normal" &#124; "high" | `normal` | no |' in settings.stdout
    assert "- url: the batchd API" in settings.stdout


def test_the_plugin_compiles_with_the_frameworks_checks(site, tmp_path):
    out = tmp_path / "out"
    good = pipecast(site, tmp_path, "compile", "examples/quickstart.py", "--target", "batchd", "--out", str(out),
                    "--set", "image=ghcr.io/acme/q:1", "--set", "artifact_root=s3://b/p", "--set", "queue=gpu")
    assert good.returncode == 0, good.stderr
    job = json.loads((out / "quickstart.batchd.json").read_text())
    assert {j["queue"] for j in job["jobs"]} == {"gpu"} and job["priority"] == "normal"
    assert job["jobs"][0]["command"][:3] == ["python", "-m", "pipecast.runtime"]
    bad = pipecast(site, tmp_path, "compile", "examples/quickstart.py", "--target", "batchd", "--out",
                   str(tmp_path / "bad"), "--set", "image=x", "--set", "artifact_root=file:///tmp/a",
                   "--set", "queu=gpu", "--set", "priority=urgent")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
    assert "unknown setting 'queu' for target 'batchd' in --set; did you mean 'queue'?" in bad.stderr
    assert "setting 'priority' (in --set): must be one of ['low', 'normal', 'high'], got 'urgent'" in bad.stderr
    assert "is a path on one machine" in bad.stderr


def test_the_plugin_submits_and_is_tracked_by_the_framework(site, tmp_path, batchd):
    url, state = batchd
    submitted = pipecast(site, tmp_path, "submit", "examples/quickstart.py", "--target", "batchd", "-p", "n=4",
                         "--set", "image=ghcr.io/acme/q:1", "--set", "artifact_root=s3://b/p",
                         "-c", f"url={url}", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    (run_id, job), = state.jobs.items()
    assert job["parameters"]["n"] == 4 and f"{url}/jobs/{run_id}" in submitted.stdout
    assert submitted.stdout.strip().endswith("succeeded: 2 jobs")
    shown = pipecast(site, tmp_path, "runs", "show", run_id)
    record = json.loads(shown.stdout)
    assert record["status"] == "succeeded" and record["url"] == f"{url}/jobs/{run_id}"
    assert record["engine_run_id"] == run_id and record["target"] == "batchd"


def test_a_stack_on_the_plugin_runs_a_script_and_fills_in_submit(site, tmp_path, batchd):
    """A stack on a target from another package: the script submits, waits and prints the URL; submit --stack
    takes the stack's settings and a flag overrides one (docs/stacks.md)."""
    url, state = batchd
    registered = pipecast(site, tmp_path, "stack", "register", "queue", "--target", "batchd", "-c", f"url={url}",
                          "--set", "image=ghcr.io/acme/q:1", "--set", "queue=cpu", "--artifact-root", "s3://b/p")
    assert registered.returncode == 0, registered.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "PIPECAST_HOME": str(tmp_path),
           "PIPECAST_STACK": "queue"}
    ran = subprocess.run([sys.executable, "examples/quickstart.py"], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), timeout=300)
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.strip()
    assert state.jobs[run_id]["parameters"]["n"] == 20
    assert f"run {run_id} on stack 'queue': {url}/jobs/{run_id}\nsucceeded: 2 jobs" in ran.stderr
    submitted = pipecast(site, tmp_path, "submit", "examples/quickstart.py", "--stack", "queue", "-p", "n=4",
                         "--set", "queue=gpu", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    second = next(run for run in state.jobs if run != run_id)
    assert {j["queue"] for j in state.jobs[second]["jobs"]} == {"gpu"}
    assert {j["queue"] for j in state.jobs[run_id]["jobs"]} == {"cpu"}
    ran = pipecast(site, tmp_path, "run", "examples/quickstart.py", "--stack", "queue", "-p", "n=2")
    assert ran.returncode == 0, ran.stderr
    third = ran.stdout.strip()
    assert state.jobs[third]["parameters"]["n"] == 2 and f"{url}/jobs/{third}" in ran.stderr
    listed = pipecast(site, tmp_path, "runs", "list", "--stack", "queue", "--status", "succeeded")
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted([run_id, second, third])
