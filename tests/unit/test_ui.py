"""``pipecast ui``'s endpoints over a run store of real local runs: JSON, HTML, escaping, background refresh."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote

import pytest

from pipecast.runs.store import RunStore
from pipecast.runtime.local_runner import run_pipeline
from pipecast.ui.refresh import Refresher
from pipecast.ui.server import UiApp, serve_in_thread
from pipecast.ui.svg import draw
from tests.helpers.processes import env_with_root, finish, kill_group, wait_until
from tests.unit import logs_steps
from tests.unit import test_plugin_target as plugin

site, batchd = plugin.site, plugin.batchd  # the plugin target and its toy engine (tests/unit/test_plugin_target.py)

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<img src=x onerror="alert(1)">'


def quickstart():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import quickstart as module
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return module.quickstart.build()


def hostile_record(store: RunStore) -> str:
    """A run whose every recorded value is markup (as a damaged or hostile store could hold)."""
    run_id = f"run-{HOSTILE}"
    store.create_run(run_id, pipeline=f"pipe{HOSTILE}", target="local", parameters={HOSTILE: HOSTILE},
                     status="failed", url="javascript:alert(1)", metadata={"stack": f"stack{HOSTILE}"})
    store.record_graph(run_id, {"steps": [{"name": f"step{HOSTILE}", "upstream": [], "after": []}]})
    store.record_steps(run_id, [{"step": f"step{HOSTILE}", "status": f"failed{HOSTILE}", "error": HOSTILE}])
    return run_id


@pytest.fixture
def ui():
    store = RunStore.default()
    app = UiApp(store)
    server, base = serve_in_thread(app)
    yield store, app, base
    server.shutdown()
    server.server_close()
    app.close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_runs_list_and_run_page_show_real_runs(ui):
    base = ui[2]
    good = run_pipeline(quickstart(), {"n": 6, "label": HOSTILE})
    bad = run_pipeline(logs_steps.broken.build(), raise_on_failure=False)

    status, kind, text = get(f"{base}/api/runs")
    assert (status, kind) == (200, "application/json; charset=utf-8")
    rows = {row["id"]: row for row in json.loads(text)}
    assert rows[good.id]["status"] == "succeeded" and rows[bad.id]["status"] == "failed"
    assert rows[good.id]["parameters"] == {"n": 6, "seed": 7, "label": HOSTILE}
    assert rows[good.id]["duration"] >= 0 and rows[good.id]["url"].startswith("file://")

    status, _, page = get(f"{base}/")
    assert status == 200
    assert f'data-run="{good.id}" data-status="succeeded"' in page
    assert f'data-run="{bad.id}" data-status="failed"' in page

    detail = json.loads(get(f"{base}/api/runs/{good.id}")[2])
    assert [s["name"] for s in detail["graph"]["steps"]] == ["make_numbers", "split", "total", "total_2", "report"]
    assert detail["graph"]["steps"][4]["upstream"] == ["total", "total_2"]
    assert detail["step_statuses"] == dict.fromkeys(["make_numbers", "split", "total", "total_2", "report"], "done")
    assert {(a["step"], a["name"]) for a in detail["artifacts"]} >= {("split", "evens"), ("split", "odds")}
    assert all(a["uri"].startswith("file://") for a in detail["artifacts"])

    status, _, page = get(f"{base}/runs/{quote(good.id)}")
    assert status == 200
    assert page.count('<g class="node status-done"') == 5
    assert "<img" not in page and '&quot;&lt;img src=x onerror=\\&quot;alert(1)\\&quot;&gt;&quot;' in page
    status, _, page = get(f"{base}/runs/{bad.id}")
    assert page.index('data-step="explode"') < page.index('data-step="never"')  # steps in the pipeline's order
    assert 'data-step="explode" data-status="failed"' in page and 'data-step="never" data-status="skipped"' in page
    assert "no world here" in page  # the failed step's error, and its log inline
    status, kind, text = get(f"{base}/runs/{bad.id}/logs?step=explode")
    assert kind.startswith("text/plain") and text.startswith("about to fail\n")


def test_filters_by_pipeline_stack_and_status(ui):
    store, _, base = ui
    good = run_pipeline(quickstart(), {"n": 3})
    bad = run_pipeline(logs_steps.broken.build(), raise_on_failure=False)
    assert [r["id"] for r in json.loads(get(f"{base}/api/runs?status=failed")[2])] == [bad.id]
    assert [r["id"] for r in json.loads(get(f"{base}/api/runs?pipeline=quickstart")[2])] == [good.id]
    store.create_run("on-team", pipeline="quickstart", target="local", parameters={}, status="succeeded",
                     metadata={"stack": "team"})
    assert [r["id"] for r in json.loads(get(f"{base}/api/runs?stack=team")[2])] == ["on-team"]
    assert '<option value="team">team</option>' in get(f"{base}/")[2]
    page = get(f"{base}/?pipeline=quickstart&status=failed")[2]
    assert 'id="no-runs"' in page and '<option value="quickstart" selected>' in page


def test_hostile_values_stay_text(ui):
    store, _, base = ui
    run_id = hostile_record(store)
    for path in ("/", f"/runs/{quote(run_id, safe='')}"):
        status, _, page = get(base + path)
        assert status == 200
        assert "<img" not in page and "onerror=\"" not in page, path
        assert 'href="javascript:' not in page  # a URL that is not http(s)/file is shown, never linked
    svg = draw(store.graph(run_id) or {}, {f"step{HOSTILE}": HOSTILE})
    assert "<img" not in svg and "&lt;img" in svg


def test_unknown_run_and_page_are_404(ui):
    _, _, base = ui
    assert get(f"{base}/runs/nope")[0] == 404
    assert get(f"{base}/nowhere")[0] == 404


def test_only_requests_addressed_to_this_machine_are_answered(ui):
    """A site whose name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read the runs."""
    _, _, base = ui
    port = base.rsplit(":", 1)[1]
    for host, expected in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), ("[::1]", 200),
                           (f"evil.example:{port}", 403), ("127.0.0.1.evil.example", 403), ("", 403)):
        request = urllib.request.Request(f"{base}/api/runs", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status = response.status
        except HTTPError as err:
            status = err.code
        assert status == expected, host


def test_a_slow_engine_never_blocks_the_page(ui):
    """The refresh runs in the background; the page answers from the store while the engine has not."""
    store = ui[0]
    store.create_run("sub-1", pipeline="remote", target="airflow", parameters={}, status="running",
                     url="http://engine.invalid/run/1")
    asked, release = threading.Event(), threading.Event()

    def slow_engine(record, config, store_):
        asked.set()
        assert release.wait(300)
        store_.update_status(record["id"], "succeeded")
        return "succeeded"

    app = UiApp(store, refresher=Refresher(store, ask=slow_engine))
    server, other = serve_in_thread(app)
    try:
        assert 'data-status="running"' in get(f"{other}/")[2]
        assert asked.wait(300)
        assert 'data-status="running"' in get(f"{other}/")[2]  # answered while the engine still has not
        release.set()
        assert app.refresher.wait_idle(300)
        assert 'data-run="sub-1" data-status="succeeded"' in get(f"{other}/")[2]
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        app.close()


def test_a_refresh_that_fails_is_shown_on_the_run_page(ui):
    """The real refresh path (the run handle's status) on a run whose engine cannot be reached."""
    store, app, base = ui
    store.create_run("sub-2", pipeline="remote", target="airflow", parameters={}, status="running",
                     url="http://127.0.0.1:9/api/v1/dags/remote")
    get(f"{base}/runs/sub-2")
    assert app.refresher.wait_idle(300)
    page = get(f"{base}/runs/sub-2")[2]
    assert 'id="refresh-error"' in page
    assert store.get("sub-2")["status"] == "running"  # nothing invented


def test_a_submitted_runs_status_is_refreshed_from_its_engine(site, batchd, tmp_path):
    """A run submitted on a stack, not waited for: `pipecast ui` asks the engine with the stack's settings."""
    url, state = batchd
    env = {**env_with_root(), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "PIPECAST_HOME": str(tmp_path)}

    def pipecast(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=300)

    registered = pipecast("stack", "register", "queue", "--target", "batchd", "-c", f"url={url}",
                          "--set", "image=ghcr.io/acme/q:1", "--artifact-root", "s3://b/p")
    assert registered.returncode == 0, registered.stderr
    submitted = pipecast("submit", "examples/quickstart.py", "--stack", "queue", "-p", "n=4")
    assert submitted.returncode == 0, submitted.stderr
    (run_id, _), = state.jobs.items()
    server = subprocess.Popen([sys.executable, "-m", "pipecast.cli", "ui", "--no-browser", "--refresh-every", "0"],
                              cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), finish(server, 5)
        first = json.loads(get(f"{base}/api/runs")[2])
        assert [(r["id"], r["stack"], r["url"]) for r in first] == [(run_id, "queue", f"{url}/jobs/{run_id}")]

        def refreshed() -> bool:
            return bool(json.loads(get(f"{base}/api/runs")[2])[0]["status"] == "succeeded")

        wait_until(refreshed, "the engine's 'done' in the runs list", timeout=300)
        assert state.polls[run_id] >= 2  # queued, then done: asked by the server, not by a --wait
        detail = json.loads(get(f"{base}/api/runs/{run_id}")[2])
        assert [s["name"] for s in detail["graph"]["steps"]] == ["make_numbers", "split", "total", "total_2", "report"]
        assert detail["step_statuses"] == {} and detail["detail"] == "2 jobs"
        page = get(f"{base}/runs/{run_id}")[2]
        assert page.count('data-status="unknown"') == 5 and f'href="{url}/jobs/{run_id}"' in page
    finally:
        kill_group(server)
        finish(server)


def test_a_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "pipecast.cli", "ui", "--no-browser", "--port", str(port)],
                                capture_output=True, text=True, cwd=ROOT, env=env_with_root(), timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_help_does_not_import_the_server():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom pipecast.cli import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "assert CliRunner().invoke(main, ['ui', '--help']).exit_code == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith('pipecast.ui.') or m.startswith('http.server')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "['pipecast.ui.cli']"
