"""The pods that run pipecast beside the steps run in the image `pipecast submit` builds, and it has their client.

A scheduled Tekton pipeline's CronJob pod (``python -m pipecast.targets.tekton_cron``) and the kubernetes target's
driver Job (``python -m pipecast.targets.kubernetes.driver``) import the Kubernetes client. With no image given,
submit's path (:func:`pipecast.flow.compile_with_build`) builds the steps' image for real (private dockerd, the
locally-made parent, a wheelhouse: the build has no network) and names it in those pods too; the test then runs
each pod's own command, from the emitted YAML, in that image with its ConfigMap mounted as Kubernetes mounts it.
It gets as far as the cluster: the creator's Job GET goes unanswered (exit 3), the driver finds no cluster
configuration (exit 2) — never a missing module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecast.compiler.loader import load_pipeline
from pipecast.flow import EmitOptions, compile_with_build
from pipecast.targets.kubernetes import contract
from pipecast.targets.tekton_cron import JOB_NAME_ENV

FLOW = '''\
from pipecast import pipeline, step


@step
def double(n: int) -> int:
    return n * 2


@pipeline(schedule="0 4 * * *", settings={"build": {"wheelhouse": True}})
def nightly(n: int = 3):
    return double(n)
'''
# A shared volume, not an object store: no fsspec backend to resolve (s3fs's exact fsspec pins cost minutes).
SETTINGS = {"artifact_root": "file:///artifacts", "artifact_pvc": "shared-artifacts"}
NO_API_SERVER = {  # a cluster at a port nothing listens on (the container has no network anyway)
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("toolpods")
    (root / "toolpods_nightly.py").write_text(FLOW)
    return root


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "pipecast-cache"
    monkeypatch.setenv("PIPECAST_CACHE", str(folder))
    return folder


def _submitted_files(target: str, project: Path, registry: Any, parent_image: str) -> tuple[str, dict[str, str]]:
    """What submit would send: the compile after the build, and the repository the image went to."""
    repository = f"{registry.address}/pipecast/toolpods"
    pipeline = load_pipeline(str(project / "toolpods_nightly.py")).build()
    assert pipeline.image is None
    bundle = compile_with_build(pipeline, target, EmitOptions(settings=SETTINGS),
                                {"repository": repository, "parent_image": parent_image}, log=lambda line: None)
    return repository, dict(bundle.files)


def _documents(files: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return container


def _run(docker_env, image: str, container: dict[str, Any], mounts: dict[str, Path], env: dict[str, str]):
    """Run the pod's own command in ``image`` with its volumes as bind mounts (read-only) and no network."""
    flags = [f"--volume={folder}:{path}:ro" for path, folder in mounts.items()]
    flags += [f"--env={name}={value}" for name, value in env.items()]
    return docker_env.docker("run", "--rm", "--network", "none", *flags, "--entrypoint", container["command"][0],
                             image, *container["command"][1:], *container.get("args", []), check=False,
                             timeout=300)


def test_the_tekton_schedule_pod_runs_in_the_built_image_and_reaches_the_api(docker_env, parent_image, registry,
                                                                              project, cache, tmp_path):
    repository, files = _submitted_files("tekton", project, registry, parent_image)
    documents = _documents(files)
    (cronjob,) = [d for d in documents if d["kind"] == "CronJob"]
    pod = _container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    image = pod["image"]
    assert image.startswith(f"{repository}@sha256:")
    assert image in files["nightly-pipeline.yaml"]  # the step's image: the same build

    imported = docker_env.docker("run", "--rm", "--network", "none", image, "python", "-c",
                                 "import kubernetes; import pipecast.targets.tekton_cron", check=False)
    assert imported.returncode == 0, imported.stderr

    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipelinerun.yaml").write_text(config_map["data"]["pipelinerun.yaml"])
    account = tmp_path / "account"
    account.mkdir()
    (account / "namespace").write_text("ml")
    kube = tmp_path / "kube"
    kube.mkdir()
    (kube / "config").write_text(yaml.safe_dump(NO_API_SERVER))
    (mount,) = pod["volumeMounts"]
    done = _run(docker_env, image, pod, {mount["mountPath"]: run, "/var/run/secrets/kubernetes.io/serviceaccount":
                                         account, "/kube": kube},
                {JOB_NAME_ENV: "nightly-28935600", "KUBECONFIG": "/kube/config"})
    assert done.returncode == contract.EXIT_INFRASTRUCTURE, done.stderr
    assert "cannot read Job 'nightly-28935600'" in done.stderr
    assert "no answer from the Kubernetes API server" in done.stderr
    assert "No module named" not in done.stderr


def test_the_kubernetes_driver_runs_in_the_built_image_and_reaches_the_cluster_config(docker_env, parent_image,
                                                                                      registry, project, cache,
                                                                                      tmp_path):
    repository, files = _submitted_files("kubernetes", project, registry, parent_image)
    (driver_job,) = _documents({"run.yaml": files["run.yaml"]})
    pod_spec = driver_job["spec"]["template"]["spec"]
    driver = _container(pod_spec)
    image = driver["image"]
    assert image.startswith(f"{repository}@sha256:")
    (cronjob,) = [d for d in _documents(files) if d["kind"] == "CronJob"]
    assert _container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])["image"] == image
    assert files["pipeline.yaml"].count(image) >= 2  # the steps' image too (in the plan): one build

    imported = docker_env.docker("run", "--rm", "--network", "none", image, "python", "-c",
                                 "import kubernetes; import pipecast.targets.kubernetes.driver", check=False)
    assert imported.returncode == 0, imported.stderr

    (config_map,) = [d for d in _documents(files) if d["kind"] == "ConfigMap"]
    plan = tmp_path / "plan"
    plan.mkdir()
    for name, text in config_map["data"].items():
        (plan / name).write_text(text)
    (mount,) = driver["volumeMounts"]
    done = _run(docker_env, image, driver, {mount["mountPath"]: plan},
                {contract.RUN_ID_ENV: "nightly-x7k2p", contract.NAMESPACE_ENV: "ml"})
    # Past the plan, the parameters and the client check: no kubeconfig and no service account here.
    assert done.returncode == contract.EXIT_BAD_INPUT, done.stderr
    assert "cannot load the Kubernetes configuration" in done.stderr
    assert "no Kubernetes client" not in done.stderr and "No module named" not in done.stderr
