"""Under a real Docker engine, through the local_docker target (Compose): a stale image is refused, and package
mode runs changed code in the same image, with no build.

The images: the shared ``runtime_image`` (pipecast, no code) and one with the old code baked in. The artifact
root is a host folder that local_docker mounts at ``/pipecast/artifacts`` in each container, so the runtime
finds the package under its own artifact root, not at the host's path.
"""

from __future__ import annotations

import sys

from pipecast.build.package import build_package
from pipecast.flow import run_with_docker
from pipecast.runtime.executor import load_outputs
from tests.helpers.docker_images import image_with_code
from tests.unit.test_code_shipping import compiled, write_code


def test_stale_image_refused_and_package_mode_ships_code_changes_without_a_build(docker_env, runtime_image,
                                                                                 tmp_path, capfd):
    module = "shipped_docker"
    artifacts = tmp_path / "artifacts"
    root = f"file://{artifacts}"
    try:
        stale_image = image_with_code(docker_env, runtime_image, "pipecast-test-stale:old",
                                      {"app": write_code(tmp_path / "old", module, "old")})
        pipeline = compiled(write_code(tmp_path / "src", module, "new"), module)
        capfd.readouterr()

        # Image mode with an image built before the change: the task refuses it and the run fails.
        stale = run_with_docker(pipeline, {"name": "docker"}, settings={"image": stale_image}, artifact_root=root)
        output = capfd.readouterr()
        assert stale.status == "failed"
        assert f"compiled from source hash {pipeline.steps[0].function.source_hash}" in output.out + output.err
        assert "rebuild the image" in output.out + output.err
        assert not list(artifacts.glob(f"shipped/runs/{stale.id}/greet/outputs/*"))

        # Package mode: the image holds no code; each code change is a new package, the image stays as it was.
        image_id = docker_env.docker("image", "inspect", "--format", "{{.Id}}", runtime_image).stdout.strip()
        for greeting in ("new", "newer"):
            source = write_code(tmp_path / "src", module, greeting)
            sys.modules.pop(module, None)
            pipeline = compiled(source, module)
            run = run_with_docker(pipeline, {"name": "docker"}, settings={"image": runtime_image},
                                  artifact_root=root, code="package")
            assert run.status == "succeeded", capfd.readouterr()
            assert load_outputs(root, "shipped", run.id, "greet") == {"output": f"{greeting}, docker"}
        assert docker_env.docker("image", "inspect", "--format", "{{.Id}}", runtime_image).stdout.strip() == image_id
        packages = sorted((artifacts / ".pipecast" / "code").iterdir())
        assert len(packages) == 2

        # A package changed after it was uploaded is refused (submit uploads only a missing one).
        current = artifacts / ".pipecast" / "code" / f"{build_package(str(source)).sha256}.tar.gz"
        current.write_bytes(build_package(str(tmp_path / "old")).data)
        capfd.readouterr()
        tampered = run_with_docker(pipeline, {"name": "docker"}, settings={"image": runtime_image},
                                   artifact_root=root, code="package")
        output = capfd.readouterr()
        assert tampered.status == "failed" and "changed after submit" in output.out + output.err
    finally:
        sys.modules.pop(module, None)
        docker_env.docker("image", "rm", "--force", "pipecast-test-stale:old", check=False)


