"""Everything Kubernetes-based targets share (kubeflow, tekton, argo, kubernetes, Airflow's pod mode).

* :mod:`~pipecast.targets.kube.pod`: what a pod needs: resources, env and Secret references, GPU node labels,
  tolerations, the kubelet's ``$(VAR)`` escaping, the rules that check them;
* :mod:`~pipecast.targets.kube.settings`: the typed pod settings (node selector, tolerations, GPU node label,
  service account, image pull secrets) and the checks of Kubernetes names;
* :mod:`~pipecast.targets.kube.limits`: the API server's object-size limit, checked at compile and submit;
* :mod:`~pipecast.targets.kube.crd`: building custom resources (Argo, Tekton): names, metadata, the values
  their engines would change, and the :class:`~pipecast.targets.kube.crd.Engine` that tells them apart;
* :mod:`~pipecast.targets.kube.client`: reaching the API: loading the kubeconfig (one in-cluster rule),
  calling it with bounded retries, translating its errors;
* :mod:`~pipecast.targets.kube.objects`: objects as plain dicts, applied idempotently, run objects adopted
  after a lost answer;
* :mod:`~pipecast.targets.kube.submit`: the submit module of the custom-resource targets.

The pod rules are re-exported here, so targets write ``kube.gpu_selector(...)``.
"""

from pipecast.targets.kube.limits import ETCD_OBJECT_LIMIT
from pipecast.targets.kube.pod import (
    GPU_NODE_LABEL_HELP,
    GPU_NODE_LABEL_SETTING,
    GPU_NODE_LABELS,
    TAINT_EFFECTS,
    TOLERATION_FIELDS,
    TOLERATION_OPERATORS,
    TOLERATIONS_HELP,
    check_secret_refs,
    container_resources,
    env_list,
    gpu_node_label_key,
    gpu_node_selector,
    gpu_resource_name,
    gpu_selector,
    gpu_type_problem,
    is_label_key,
    kubelet_escape,
    secret_ref_problem,
    toleration_problem,
    with_gpu_selector,
)

__all__ = [
    "check_secret_refs",
    "container_resources",
    "env_list",
    "ETCD_OBJECT_LIMIT",
    "GPU_NODE_LABEL_HELP",
    "gpu_node_label_key",
    "GPU_NODE_LABEL_SETTING",
    "GPU_NODE_LABELS",
    "gpu_node_selector",
    "gpu_resource_name",
    "gpu_selector",
    "gpu_type_problem",
    "is_label_key",
    "kubelet_escape",
    "secret_ref_problem",
    "TAINT_EFFECTS",
    "TOLERATION_FIELDS",
    "TOLERATION_OPERATORS",
    "toleration_problem",
    "TOLERATIONS_HELP",
    "with_gpu_selector",
]
