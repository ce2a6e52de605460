"""`pipecast build` for real: Docker engine, docker-registry and buildah on this machine (tests/helpers/docker_*).

One pipeline, built a few times, proves: build → push → pulled by digest → the steps run from the image and give
`pipecast run`'s outputs; an unchanged pipeline builds nothing (same digest); an added requirement changes the
tag; a code change gives a new digest; the same through buildah. Containers have no network: the requirements
ship as a wheelhouse resolved on the host, pipecast as a wheel of this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.compiler.loader import load_pipeline
from pipecast.flow import EmitOptions, compile_with_build
from pipecast.runtime.executor import load_outputs

FLOW = '''\
from pipecast import pipeline, step


@step
def double(n: int) -> int:
    import six  # a requirement: it is in the image only if the build installed it
    return n * 2 + len(six.__name__) - 3


@step
def add(a: int, b: int) -> int:
    return a + b


@pipeline(requirements=["six==1.17.0"], settings={"build": {"wheelhouse": True}})
def shipme(n: int = 3):
    return add(double(n), n)
'''


def pipecast(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "pipecast.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if check:
        assert done.returncode == 0, f"pipecast {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "shipme.py").write_text(FLOW)
    (root / ".gitignore").write_text("outputs/\n")
    (root / "outputs").mkdir()
    (root / "outputs" / "big.bin").write_bytes(b"\0" * 1024)  # ignored: never in the image
    return root


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "pipecast-cache"
    monkeypatch.setenv("PIPECAST_CACHE", str(folder))
    return folder


def test_build_push_pull_by_digest_rebuild_nothing_and_tags_follow_inputs(docker_env, parent_image, registry,
                                                                          project, cache):
    repository = f"{registry.address}/pipecast/shipme"
    flags = ["--push", "--repository", repository, "--parent-image", parent_image]
    cold = pipecast("build", "shipme.py", *flags, cwd=project)
    reference = cold.stdout.strip()
    assert reference.startswith(f"{repository}@sha256:"), cold.stdout
    assert "built in" in cold.stderr

    warm = pipecast("build", "shipme.py", *flags, cwd=project)
    assert warm.stdout.strip() == reference
    assert "already in the registry, nothing to build" in warm.stderr
    assert "Step " not in warm.stderr  # docker build never ran: zero layers built

    # submit's path: the compile finds the image (builds nothing) and the emitted file names it by digest.
    pipeline = load_pipeline(str(project / "shipme.py")).build()
    logs: list[str] = []
    bundle = compile_with_build(pipeline, "local_docker", EmitOptions(), {"repository": repository,
                                                                         "parent_image": parent_image}, logs.append)
    assert bundle.files[0][1].count(reference) == 2, bundle.files[0][1]
    assert any("already in the registry, nothing to build" in line for line in logs)

    # Pulled by digest: nothing of it is left on the engine, the run must ask the registry.
    docker_env.docker("image", "rm", "--force", f"{repository}:{reference.split('@')[0].rsplit(':', 1)[-1]}",
                      check=False)
    for line in docker_env.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if line.startswith(repository):
            docker_env.docker("image", "rm", "--force", line)
    docker_env.docker("pull", reference)
    listing = docker_env.docker("run", "--rm", "--network", "none", reference, "python", "-c",
                                "import os, pipecast, shipme, six; print(pipecast.__version__ if hasattr(pipecast, "
                                "'__version__') else 'pipecast', os.path.exists('/app/outputs'))").stdout
    assert listing.split()[-1] == "False"  # .gitignore'd outputs/ did not ship

    # The steps run from the image, pulled by digest by `pipecast run --target local_docker`, and give what
    # `pipecast run` gives.
    root = f"file://{project.parent / 'artifacts'}"
    here = pipecast("run", "shipme.py", "-q", "-p", "n=5", "--artifact-root", root, cwd=project).stdout.strip()
    there = pipecast("run", "shipme.py", "--target", "local_docker", "--set", f"image={reference}", "-p", "n=5",
                     "--artifact-root", root, cwd=project).stdout.strip()
    assert _outputs(root, here) == _outputs(root, there) == {"double": {"output": 10}, "add": {"output": 15}}

    # An added requirement changes the tag; nothing needs building to know it.
    before = _tags(project, flags)
    (project / "shipme.py").write_text(FLOW.replace('["six==1.17.0"]', '["six==1.17.0", "idna==3.10"]'))
    try:
        assert _tags(project, flags) != before
    finally:
        (project / "shipme.py").write_text(FLOW)
    assert _tags(project, flags) == before

    # Image mode: a code change gives a new digest (only the code layer is built again).
    (project / "shipme.py").write_text(FLOW + "\n# a code-only change\n")
    try:
        changed = pipecast("build", "shipme.py", *flags, cwd=project)
        assert changed.stdout.strip().startswith(f"{repository}@sha256:")
        assert changed.stdout.strip() != reference
        assert "Using cache" in changed.stderr  # the requirement layers were reused
    finally:
        (project / "shipme.py").write_text(FLOW)


def _outputs(root: str, run_id: str) -> dict[str, object]:
    return {step: load_outputs(root, "shipme", run_id.splitlines()[-1], step) for step in ("double", "add")}


def _tags(project: Path, flags: list[str]) -> list[str]:
    script = ("import sys, json; from pipecast.compiler.loader import load_pipeline; "
              "from pipecast.build.images import image_tags; "
              "print(json.dumps([t for _, t in image_tags(load_pipeline('shipme.py').build(), "
              "{'parent_image': sys.argv[1]})]))")
    done = subprocess.run([sys.executable, "-c", script, flags[-1]], cwd=project, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_same_through_buildah(docker_env, parent_image, registry, buildah, project, cache, tmp_path,
                                  monkeypatch):
    # buildah reads its storage and registries from the containers config files, as a CI runner would set them.
    # overlay where this machine can mount it (vfs copies the whole tree at every layer: minutes here).
    driver = _overlay_or_vfs(buildah, tmp_path)
    (tmp_path / "storage.conf").write_text(f'[storage]\ndriver = "{driver}"\n'
                                           f'runroot = "{buildah.folder / f"run-{driver}"}"\n'
                                           f'graphroot = "{buildah.folder / f"root-{driver}"}"\n')
    (tmp_path / "registries.conf").write_text(f'unqualified-search-registries = []\n[[registry]]\n'
                                              f'location = "{registry.address}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(tmp_path / "storage.conf"))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    parent = f"{registry.address}/pipecast/parent:{parent_image.rsplit(':', 1)[-1]}"
    docker_env.docker("tag", parent_image, parent)
    docker_env.docker("push", parent)  # buildah has no Docker engine to take the parent from: the registry has it
    repository = f"{registry.address}/pipecast/shipme-buildah"
    flags = ["--push", "--builder", "buildah", "--repository", repository, "--parent-image", parent]
    cold = pipecast("build", "shipme.py", *flags, cwd=project)
    reference = cold.stdout.strip()
    assert reference.startswith(f"{repository}@sha256:"), cold.stderr
    warm = pipecast("build", "shipme.py", *flags, cwd=project)
    assert warm.stdout.strip() == reference, f"{cold.stderr[-3000:]}\n-----\n{warm.stderr[-3000:]}"
    assert "already in the registry, nothing to build" in warm.stderr

    docker_env.docker("pull", reference)  # built without Docker, run by Docker by digest
    ran = docker_env.docker("run", "--rm", "--network", "none", reference, "python", "-m", "pipecast.runtime",
                            "--help").returncode
    assert ran == 0
    ran = docker_env.docker("run", "--rm", "--network", "none", reference, "python", "-c",
                            "from shipme import double, add; print(add.fn(double.fn(5), 5))").stdout
    assert ran.strip() == "15"
    docker_env.docker("image", "rm", reference, parent)


def _overlay_or_vfs(buildah, tmp_path: Path) -> str:
    """overlay when buildah can build with it here (it needs a file system overlayfs can sit on), else vfs."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /probe\n")
    options = ["--root", str(buildah.folder / "root-overlay"), "--runroot", str(buildah.folder / "run-overlay"),
               "--storage-driver", "overlay"]
    done = subprocess.run(["buildah", *options, "bud", "--tag", "probe:1", str(probe)], capture_output=True,
                          timeout=600)
    subprocess.run(["buildah", *options, "rmi", "--force", "probe:1"], capture_output=True, timeout=600)
    return "overlay" if done.returncode == 0 else "vfs"
