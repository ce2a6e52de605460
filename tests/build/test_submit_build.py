"""submit builds only when a container target needs an image for a step that names none; emit gets the digest."""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipecast.build.images import BuiltImage
from pipecast.build.plan import plan_images
from pipecast.build.settings import build_settings
from pipecast.build.wheel import extra_requirements
from pipecast.compiler.loader import load_pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.flow import EmitOptions, compile_pipeline, compile_with_build, target_image_requirements
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


# Pods that run pipecast beside the steps (Tekton's schedule pod, the kubernetes driver) use the built image: the
# target asks the build for the Kubernetes client (Target.image_requirements), pinned as pipecast's extra pins it.

@pytest.fixture(scope="module")
def scheduled():
    return load_pipeline(str(Path(__file__).parent / "scheduled_case.py")).build()


def _kubernetes_extra() -> tuple[str, ...]:
    """pipecast's own metadata: what `pip install 'pipecast[kubernetes]'` adds (the test copies no pin either)."""
    requires = importlib.metadata.requires("pipecast") or []
    return tuple(sorted(r.split(";")[0].strip() for r in requires if r.endswith("extra == 'kubernetes'")))


def test_the_client_is_pinned_as_pipecasts_kubernetes_extra_pins_it():
    assert extra_requirements("kubernetes") == _kubernetes_extra() != ()
    with pytest.raises(LookupError, match="no extra 'no-such'"):
        extra_requirements("no-such")


@pytest.mark.parametrize(("target", "schedule", "settings", "wanted"), [
    ("tekton", True, {}, True),
    ("tekton", False, {}, False),  # no schedule, no pod of its own: the image is unchanged
    ("tekton", True, {"cron_image": "ghcr.io/acme/cron:1"}, False),
    ("tekton", True, {"image": "ghcr.io/acme/all:1"}, False),  # nothing is built; the pod uses that image
    ("kubernetes", True, {}, True),
    ("kubernetes", False, {}, True),  # the driver runs every run
    ("kubernetes", False, {"driver_image": "ghcr.io/acme/driver:1"}, False),
    ("argo", True, {}, False),
    ("airflow", True, {}, False),
])
def test_only_targets_whose_pods_use_the_built_image_add_the_client(scheduled, target, schedule, settings, wanted):
    pipeline = scheduled if schedule else replace(scheduled, schedule=None)
    found = target_image_requirements(pipeline, target, settings)
    assert found == (_kubernetes_extra() if wanted else ())


def test_the_plan_adds_the_client_to_every_image_and_a_projects_own_pin_wins(scheduled):
    settings = build_settings(scheduled, {"parent_image": "p:1"})
    plain = plan_images(scheduled, settings, None, scheduled.artifact_root)
    specs = plan_images(scheduled, settings, None, scheduled.artifact_root, extra=("kubernetes>=29",))
    assert [s.steps for s in specs] == [s.steps for s in plain] == [("extract",), ("fit",)]
    for before, after in zip(plain, specs):
        assert set(after.requirements) - set(before.requirements) == {"kubernetes>=29"}
    own = replace(scheduled, requirements=("numpy==2.1.3", "kubernetes==31.0.0"))
    (first, _) = plan_images(own, settings, None, own.artifact_root, extra=("kubernetes>=29",))
    assert [r for r in first.requirements if r.startswith("kubernetes")] == ["kubernetes==31.0.0"]


def test_the_cron_pod_and_the_driver_get_the_built_image(scheduled):
    images = {"extract": DIGEST, "fit": DIGEST.replace("a" * 64, "b" * 64)}
    tekton = compile_pipeline(scheduled, "tekton", EmitOptions(images=images))
    (cronjob,) = [doc for _, text in tekton.files for doc in yaml.safe_load_all(text) if doc and
                  doc["kind"] == "CronJob"]
    (pod,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert pod["image"] == DIGEST  # the first step's: every built image has the client
    kubernetes = compile_pipeline(scheduled, "kubernetes", EmitOptions(images=images))
    assert yaml.safe_load(dict(kubernetes.files)["run.yaml"])["spec"]["template"]["spec"]["containers"][0][
        "image"] == DIGEST
    given = compile_pipeline(scheduled, "tekton", EmitOptions(settings={"cron_image": "ghcr.io/acme/cron:1"},
                                                              images=images))
    assert "image: ghcr.io/acme/cron:1" in dict(given.files)["scheduled-cron.yaml"]


def test_submit_builds_with_the_client_instead_of_refusing_the_pod_with_no_image(scheduled, monkeypatch):
    import pipecast.build.images as images_module

    asked: dict[str, tuple[str, ...]] = {}

    def fake_build(pipeline, build, *, push, artifact_root, log, extra):  # the builder is proven in *_docker.py
        asked["extra"] = tuple(extra)
        return [BuiltImage(("extract", "fit"), DIGEST, "t", True, 0.0)]

    monkeypatch.setattr(images_module, "build_images", fake_build)
    for target in ("tekton", "kubernetes"):
        asked.clear()
        bundle = compile_with_build(scheduled, target, EmitOptions(), {"repository": "127.0.0.1:5000/x"})
        assert asked["extra"] == _kubernetes_extra()
        assert "<missing image>" not in "".join(text for _, text in bundle.files)


def test_with_no_build_the_steps_errors_say_it_and_a_pod_error_stays_where_no_build_helps(scheduled):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_pipeline(scheduled, "tekton", EmitOptions())
    assert "has no container image" in str(err.value) and "CronJob" not in str(err.value)
    own = replace(scheduled, steps=tuple(replace(s, image="ghcr.io/acme/step:1") for s in scheduled.steps))
    with pytest.raises(UnsupportedFeatureError, match="the schedule's CronJob has no image"):
        compile_pipeline(own, "tekton", EmitOptions())
    with pytest.raises(UnsupportedFeatureError, match="the driver Job has no image"):
        compile_pipeline(own, "kubernetes", EmitOptions())
