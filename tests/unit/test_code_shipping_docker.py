"""Under a real Docker engine: a stale image is refused, and package mode runs changed code without a rebuild.

One image with pipecast and no code (the shared ``runtime_image``), one with the old code baked in; the task is
the emitted command, run with ``docker run`` as local_docker and every container engine run it. The artifact
root is a host folder mounted at the same path, so the test reads the outputs where the task wrote them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipecast.build.package import build_package, upload_package
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.executor import load_outputs
from tests.helpers.docker_images import image_with_code
from tests.unit.test_code_shipping import compiled, write_code

RUN_SECONDS = 600


def in_container(engine, image: str, artifacts: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return engine.docker("run", "--rm", "--volume", f"{artifacts}:{artifacts}", image, *command, check=False,
                         timeout=RUN_SECONDS)


def emitted(pipeline, artifacts: Path, run_id: str, **code: str) -> list[str]:
    syntax = EngineSyntax(run_id=run_id, parameter=lambda p: "docker", artifact_root=f"file://{artifacts}", **code)
    return step_command(pipeline, pipeline.steps[0], syntax)


def test_stale_image_refused_and_package_mode_ships_code_changes_without_a_build(docker_env, runtime_image,
                                                                                 tmp_path):
    module = "shipped_docker"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    try:
        stale_image = image_with_code(docker_env, runtime_image, "pipecast-test-stale:old",
                                      {"app": write_code(tmp_path / "old", module, "old")})
        pipeline = compiled(write_code(tmp_path / "src", module, "new"), module)

        # Image mode with an image built before the change: refused, nothing written, exit status 2.
        stale = in_container(docker_env, stale_image, artifacts, emitted(pipeline, artifacts, "stale"))
        assert stale.returncode == 2, stale.stdout + stale.stderr
        assert f"compiled from source hash {pipeline.steps[0].function.source_hash}" in stale.stderr
        assert "rebuild the image" in stale.stderr and "Traceback" not in stale.stderr
        assert not (artifacts / "shipped").exists()

        # Package mode: the image holds no code; each code change is a new package, the image stays as it was.
        image_id = docker_env.docker("image", "inspect", "--format", "{{.Id}}", runtime_image).stdout.strip()
        for number, greeting in enumerate(["new", "newer"]):
            source = write_code(tmp_path / "src", module, greeting)
            sys.modules.pop(module, None)
            pipeline = compiled(source, module)
            package = build_package(str(source))
            uri = upload_package(package, f"file://{artifacts}")
            run = in_container(docker_env, runtime_image, artifacts,
                               emitted(pipeline, artifacts, f"p{number}", code_package=uri,
                                       code_sha256=package.sha256))
            assert run.returncode == 0, run.stdout + run.stderr
            assert load_outputs(f"file://{artifacts}", "shipped", f"p{number}", "greet") == {
                "output": f"{greeting}, docker"}
        assert docker_env.docker("image", "inspect", "--format", "{{.Id}}", runtime_image).stdout.strip() == image_id

        # A package changed after submit is refused.
        Path(uri.removeprefix("file://")).write_bytes(build_package(str(tmp_path / "old")).data)
        tampered = in_container(docker_env, runtime_image, artifacts,
                                emitted(pipeline, artifacts, "t", code_package=uri, code_sha256=package.sha256))
        assert tampered.returncode == 2 and "changed after submit" in tampered.stderr, tampered.stderr
    finally:
        sys.modules.pop(module, None)
        docker_env.docker("image", "rm", "--force", "pipecast-test-stale:old", check=False)
