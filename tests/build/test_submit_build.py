"""submit builds only when a container target needs an image for a step that names none; emit gets the digest."""

from __future__ import annotations

import pytest
import yaml

from pipecast.errors import UnsupportedFeatureError
from pipecast.flow import EmitOptions, compile_pipeline, compile_with_build
from tests.helpers.cases import case

DIGEST = "127.0.0.1:5000/pipecast/quickstart@sha256:" + "a" * 64
ROOT = {"artifact_root": "s3://bucket/runs"}


@pytest.fixture(scope="module")
def quickstart():
    return case("quickstart").build()


def test_the_built_image_reaches_every_task_by_digest(quickstart):
    images = {step.name: DIGEST for step in quickstart.steps}
    bundle = compile_pipeline(quickstart, "argo", EmitOptions(settings=ROOT, images=images))
    (spec,) = [doc["spec"] for _, content in bundle.files for doc in yaml.safe_load_all(content)
               if doc and doc["kind"] == "WorkflowTemplate"]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = templates[spec["entrypoint"]]["dag"]["tasks"]  # tasks of one shape share a template (argo_share.py)
    assert len(tasks) == len(quickstart.steps)
    assert all(templates[task["template"]]["container"]["image"] == DIGEST for task in tasks)
    # emit is pure: the same images give the same bytes
    assert compile_pipeline(quickstart, "argo", EmitOptions(settings=ROOT, images=images)).files == bundle.files


def test_an_image_given_wins_and_nothing_is_built(quickstart):
    # an unknown builder would fail any build: none is attempted when --image / --set image= is given
    bundle = compile_with_build(quickstart, "argo", EmitOptions(settings={**ROOT, "image": "mine:1"}),
                                build={"builder": "no-such-builder"})
    assert "image: mine:1" in bundle.files[0][1]


def test_targets_that_run_without_an_image_build_nothing(quickstart):
    bundle = compile_with_build(quickstart, "airflow", EmitOptions(), build={"builder": "no-such-builder"})
    assert "BashOperator" in bundle.files[0][1]  # Airflow's local mode: no image needed, none built


def test_auto_off_keeps_the_missing_image_error(quickstart):
    with pytest.raises(UnsupportedFeatureError, match="has no container image") as err:
        compile_with_build(quickstart, "argo", EmitOptions(settings=ROOT), build={"auto": False})
    assert "let `pipecast submit` build one" in str(err.value)


def test_nothing_is_built_for_a_pipeline_that_fails_anyway(quickstart):
    # no artifact root for a remote target: the compile fails with every problem before any build (an unknown
    # builder would fail the build first otherwise)
    with pytest.raises(UnsupportedFeatureError, match="has no artifact root"):
        compile_with_build(quickstart, "argo", EmitOptions(), build={"builder": "no-such-builder"})
