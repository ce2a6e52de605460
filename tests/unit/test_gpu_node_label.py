"""The GPU node label: no cloud-specific label unless the user chose one, the same rule on every
Kubernetes-based target (issue: GPU type became GKE's label everywhere, so pods never scheduled off GKE)."""

from __future__ import annotations

import json

import pytest

from pipecast import Resources, pipeline, step
from pipecast.errors import UnsupportedFeatureError
from tests.helpers.cases import compile_case

KUBE_TARGETS = ["kubeflow", "argo", "tekton", "kubernetes", "airflow"]
BASE = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "s3://acme/artifacts"}
EXTRA = {"airflow": {"mode": "kubernetes"}}


@step(resources=Resources(gpu=1, gpu_type="nvidia-l4"))
def train() -> int:
    return 1


def settings_for(target: str) -> dict[str, object]:
    return {**BASE, **EXTRA.get(target, {})}


@pipeline(name="gpu_label")
def gpu_label():
    train()


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_gpu_type_without_a_chosen_label_is_reported_with_the_fix(target):
    with pytest.raises(UnsupportedFeatureError) as info:
        compile_case(target, gpu_label, settings=settings_for(target))
    text = str(info.value)
    assert "gpu_type 'nvidia-l4'" in text and "--set gpu_node_label=gke" in text
    assert "gke-accelerator" not in text


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_gpu_type_without_a_label_can_be_compiled_with_a_warning_and_then_names_no_label(target):
    bundle = compile_case(target, gpu_label, settings=settings_for(target), on_unsupported="warn").bundle
    assert bundle.warnings and "gpu_node_label" in bundle.warnings[0].message + (bundle.warnings[0].fix or "")
    text = "".join(content for _, content in bundle.files)
    assert "gke-accelerator" not in text and "nvidia-l4" not in text
    assert "nvidia.com/gpu" in text  # the GPU itself is still asked for


@pytest.mark.parametrize("target", KUBE_TARGETS)
@pytest.mark.parametrize(("scheme", "key"), [
    ("gke", "cloud.google.com/gke-accelerator"),
    ("eks", "k8s.amazonaws.com/accelerator"),
    ("aks", "kubernetes.azure.com/accelerator"),
    ("nvidia", "nvidia.com/gpu.product"),
    ("example.com/gpu-model", "example.com/gpu-model"),
])
def test_the_chosen_scheme_or_label_key_selects_the_gpu_model(target, scheme, key):
    compiled = compile_case(target, gpu_label, settings={**settings_for(target), "gpu_node_label": scheme})
    text = "".join(content for _, content in compiled.bundle.files)
    assert key in text and "nvidia-l4" in text
    for other in {"cloud.google.com/gke-accelerator", "k8s.amazonaws.com/accelerator"} - {key}:
        assert other not in text


@pytest.mark.parametrize("target", KUBE_TARGETS)
def test_a_label_key_kubernetes_would_refuse_is_an_error(target):
    with pytest.raises(UnsupportedFeatureError) as info:
        compile_case(target, gpu_label, settings={**settings_for(target), "gpu_node_label": "not a label!"})
    assert "a Kubernetes label key" in str(info.value)
    assert json.dumps(["aks", "eks", "gke", "nvidia"]).replace('"', "'") in str(info.value)
