"""The image the real-Docker local_docker tests run their steps in."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers.cases import GOLDEN, ROOT
from tests.helpers.docker_images import image_with_code

HERE = ROOT / "tests" / "targets" / "local_docker"
# Every image name a golden case or example asks for itself (not replaced by `--set image`): tags of the test
# image, so Compose finds them here and pulls nothing.
OWN_IMAGES = ("ghcr.io/acme/gpu:2.1",)


@pytest.fixture(scope="session")
def case_image(docker_engine, runtime_image, tmp_path_factory) -> str:
    """The runtime image + the examples, the golden cases and this folder's pipelines, importable as
    ``pipecast run`` imports them (``quickstart``, ``full_options``, ``tests.targets.local_docker.pipelines``)."""
    root = tmp_path_factory.mktemp("case-code")
    package = root / "tests" / "targets" / "local_docker"
    package.mkdir(parents=True)
    for init in ("tests", "tests/targets", "tests/targets/local_docker"):
        (root / init / "__init__.py").write_text("")
    for name in ("pipelines.py", "without_gpu.py", "flow_pipelines.py"):
        shutil.copy(HERE / name, package / name)
    tag = image_with_code(docker_engine, runtime_image, "pipecast-test-cases:session",
                          {"cases": GOLDEN / "cases", "examples": ROOT / "examples", "root": root})
    for name in OWN_IMAGES:
        docker_engine.docker("tag", tag, name)
    return tag
