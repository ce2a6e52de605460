"""`pipecast run --target local_docker` with no image: the local engine builds one (no push), as submit would.

One real run on the session's Docker engine (tests/helpers/docker_fixtures.py): the image is built through
:func:`pipecast.flow.compile_with_build`, the call submit makes, stays on the engine (no registry here), and the
steps run from it with the outputs ``pipecast run`` gives. Containers have no network: the build ships pipecast
as a wheel of this checkout and the requirements as a wheelhouse.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipecast.runtime.executor import load_outputs

FLOW = '''\
from pipecast import pipeline, step


@step
def double(n: int) -> int:
    return n * 2


@step
def add(a: int, b: int) -> int:
    return a + b


@pipeline(settings={"build": {"wheelhouse": True, "parent_image": "PARENT"}})
def runbuilt(n: int = 3):
    return add(double(n), n)
'''


def pipecast(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "pipecast.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, f"pipecast {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_run_on_local_docker_builds_the_missing_image_with_the_local_engine(docker_env, parent_image, tmp_path,
                                                                            tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PIPECAST_CACHE", str(tmp_path_factory.getbasetemp() / "pipecast-cache"))  # shared wheels
    project = tmp_path / "project"
    project.mkdir()
    (project / "runbuilt.py").write_text(FLOW.replace("PARENT", parent_image))
    root = f"file://{tmp_path / 'artifacts'}"
    here = pipecast("run", "runbuilt.py", "-q", "-p", "n=5", "--artifact-root", root, cwd=project)
    there = pipecast("run", "runbuilt.py", "--target", "local_docker", "-p", "n=5", "--artifact-root", root,
                     cwd=project)
    built = [line for line in docker_env.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
             if line.startswith("pipecast/runbuilt:")]
    assert len(built) == 1, f"{built}\n{there.stderr[-3000:]}"  # kept on the engine: no registry, no push
    assert built[0].split(":", 1)[1] in there.stderr  # the build said what it made
    outputs = [{step: load_outputs(root, "runbuilt", run.stdout.strip().splitlines()[-1], step)
                for step in ("double", "add")} for run in (here, there)]
    assert outputs[0] == outputs[1] == {"double": {"output": 10}, "add": {"output": 15}}
