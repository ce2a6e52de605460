"""A stack on a real engine: register ``local_docker`` once, verify it, then ``python examples/quickstart.py`` with
``PIPECAST_STACK`` runs the quickstart under Docker Compose (tests/helpers/docker_engine.py), and the client finds it.

One run, on the session's engine and image (tests/targets/local_docker/conftest.py): no image is built for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from click.testing import CliRunner

from pipecast import Client
from pipecast.cli import main
from pipecast.compiler.loader import load_pipeline
from tests.helpers.cases import ROOT
from tests.helpers.replay import assert_same_outputs

WAIT = 600.0  # bound on the run: a loaded 2-core machine is slow


def test_the_quickstart_script_runs_on_a_registered_local_docker_stack(docker_env, case_image, registry, tmp_path):
    root = tmp_path / "artifacts"
    root.mkdir()
    registered = CliRunner().invoke(main, ["stack", "register", "dock", "--target", "local_docker", "--set",
                                           f"image={case_image}", "--artifact-root", str(root),
                                           "--build", f"repository={registry.address}/pipecast-stack"])
    assert registered.exit_code == 0, registered.output
    verified = CliRunner().invoke(main, ["stack", "verify", "dock"])
    assert verified.exit_code == 0, verified.output
    assert "ok   api: the Docker engine and Docker Compose answer" in verified.output
    assert f"ok   registry: {registry.address}/pipecast-stack: the registry answers" in verified.output
    assert f"ok   artifact root: file://{root}: writable" in verified.output
    with socket.socket() as closed:  # a registry address nothing answers on
        closed.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{closed.getsockname()[1]}"
    assert CliRunner().invoke(main, ["stack", "update", "dock", "--build", f"repository={gone}/p"]).exit_code == 0
    stopped = CliRunner().invoke(main, ["stack", "verify", "dock"])
    assert stopped.exit_code == 1 and f"FIX  registry: cannot reach registry '{gone}'" in stopped.output

    script = ROOT / "examples" / "quickstart.py"
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PIPECAST_STACK": "dock"},
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    run = Client().get_pipeline_run(run_id)
    assert (run.target, run.status, run.stack) == ("local_docker", "succeeded", "dock")
    url = run.run_metadata["orchestrator_url"]
    assert url.value == url == f"file://{root}/quickstart/runs/{run_id}"
    assert f"run {run_id}: succeeded ({url.value})" in done.stderr  # the script says where the run is
    assert {s["step"]: s["status"] for s in run.steps} == {"make_numbers": "done", "split": "done", "total": "done",
                                                           "total_2": "done", "report": "done"}
    assert [r.id for r in Client().list_pipeline_runs(stack="dock", status="succeeded")] == [run_id]
    assert_same_outputs(load_pipeline(str(script)).build(), {"n": 20}, root, run_id, tmp_path)
