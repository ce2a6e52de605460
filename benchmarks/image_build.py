"""`pipecast build` on a real Docker engine: cold build, warm build (nothing changed), a code-only change, and the
image's size against a hand-written Dockerfile on the same parent (issue 13: warm under 2 s with no layer built;
no larger than `python:slim` + `pip install`).

Starts its own dockerd and registry (tests/helpers/docker_engine.py) and stops them by PID; the parent image is
the tests' Debian bookworm minbase with python3 (Docker Hub is unreachable here). Skipped when Docker cannot run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOW = '''\
from pipecast import pipeline, step


@step
def double(n: int) -> int:
    import six
    return n * 2


@pipeline(requirements=["six==1.17.0"], settings={"build": {"wheelhouse": True}})
def shipme(n: int = 3):
    return double(n)
'''

HAND_WRITTEN = """\
FROM {parent}
COPY wheels /tmp/wheels
RUN python3 -m pip install --break-system-packages --no-cache-dir --no-index --find-links /tmp/wheels \\
    -r /tmp/wheels/requirements.txt /tmp/wheels/{wheel} && rm -rf /tmp/wheels
COPY shipme.py /app/
ENV PYTHONPATH=/app
WORKDIR /app
"""


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done


def main() -> None:
    from tests.helpers.docker_engine import EngineUnavailable, start_engine, start_registry
    from tests.helpers.docker_images import import_parent

    try:
        engine = start_engine()
    except (EngineUnavailable, OSError) as err:
        print(f"skipped: the Docker engine cannot run here: {err}")
        return
    registry = None
    work = Path(tempfile.mkdtemp(prefix="pipecast-bench-build-"))
    try:
        registry = start_registry()
        parent = import_parent(engine)
        os.environ.update(engine.env())
        os.environ["PIPECAST_CACHE"] = str(work / "cache")
        project = work / "project"
        project.mkdir()
        (project / "shipme.py").write_text(FLOW)
        repository = f"{registry.address}/bench/shipme"
        build = [sys.executable, "-m", "pipecast.cli", "build", "shipme.py", "--push", "--repository", repository,
                 "--parent-image", parent]
        cold, first = timed(build, project)
        warm, second = timed(build, project)
        assert second.stdout == first.stdout and "nothing to build" in second.stderr
        (project / "shipme.py").write_text(FLOW + "\n# changed\n")
        code_only, third = timed(build, project)
        reference = first.stdout.strip()
        ours = int(engine.docker("image", "inspect", "--format", "{{.Size}}", reference).stdout)
        base = int(engine.docker("image", "inspect", "--format", "{{.Size}}", parent).stdout)

        hand = work / "hand"
        shutil.copytree(next((work / "cache" / "wheelhouse").iterdir()) / "wheels", hand / "wheels")
        from pipecast.build.wheel import pipecast_dependencies, pipecast_wheel

        wheel = pipecast_wheel(hand / "wheels")
        (hand / "wheels" / "requirements.txt").write_text("\n".join(["six==1.17.0", *pipecast_dependencies()]) + "\n")
        shutil.copy(project / "shipme.py", hand / "shipme.py")
        (hand / "Dockerfile").write_text(HAND_WRITTEN.format(parent=parent, wheel=wheel.name))
        engine.docker("build", "--network", "none", "--quiet", "--tag", "bench/hand:1", str(hand), timeout=3600)
        theirs = int(engine.docker("image", "inspect", "--format", "{{.Size}}", "bench/hand:1").stdout)

        print(f"cold build (wheelhouse resolved, every layer built, pushed): {cold:.1f} s")
        print(f"warm build, nothing changed: {warm:.2f} s, layers built: 0 (the registry already had the tag)")
        print(f"code-only change (image mode: new digest, requirement layers from cache): {code_only:.1f} s; "
              f"digest changed: {third.stdout != first.stdout}")
        print(f"image size: pipecast build {ours / 2**20:.1f} MiB, hand-written pip install Dockerfile "
              f"{theirs / 2**20:.1f} MiB, parent {base / 2**20:.1f} MiB "
              f"(added: {(ours - base) / 2**20:.1f} vs {(theirs - base) / 2**20:.1f} MiB)")
    finally:
        if registry is not None:
            registry.stop()
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
