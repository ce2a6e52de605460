"""The object-size bound of every Kubernetes-based target, checked one way at compile and submit.

pipecast keeps every object it sends at most 1 MiB (``ETCD_OBJECT_LIMIT``), measured as compact JSON (the form
clients send), and refuses a larger one before anything is created. What really limits each engine:

* Argo: the workflow controller fails a Workflow whose JSON, after compressing its node status, is over
  ``MAX_WORKFLOW_SIZE`` (an environment variable of the controller, 1 MiB by default: argo-workflows
  ``workflow/packer/packer.go`` ``getMaxWorkflowSize``; ``workflow/controller/operator.go`` ``persistUpdates``
  marks the Workflow Error when ``Dehydrate`` fails; with node-status offload to a database, etcd's bound applies). A
  WorkflowTemplate's spec is copied into each Workflow that runs it (``status.storedWorkflowTemplateSpec``,
  ``pkg/apis/workflow/v1alpha1/workflow_types.go``), a CronWorkflow's into each Workflow it starts.
* etcd refuses a request over its ``--max-request-bytes``, 1.5 MiB by default (etcd ``server/embed/config.go``
  ``DefaultMaxRequestBytes``; the API server answers ``etcdserver: request is too large``). That is the bound of
  Tekton's objects and of plain Kubernetes ones (Job, CronJob); pipecast keeps them to 1 MiB, leaving room for
  what is added once stored: Tekton's reconciler copies the Pipeline's spec into each PipelineRun's status
  (``status.pipelineSpec``, tektoncd/pipeline ``pkg/reconciler/pipelinerun/pipelinerun.go``), and every object
  gains status and ``metadata.managedFields``.
* The API server refuses a ConfigMap or Secret holding more than 1 MiB of data (``MaxSecretSize``, Kubernetes
  ``pkg/apis/core/validation/validation.go``).

(A Kubeflow run's Workflow is made by the KFP backend from the IR: see :mod:`pipecast.targets.kfpspec.workflow_size`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pipecast.errors import SubmitError
from pipecast.targets.base import EmitContext

ETCD_OBJECT_LIMIT = 1024 * 1024  # bytes: the largest object pipecast sends (see the module docstring)
SIZE_FIX = "pass large values as artifacts or parameters instead of constants, or split the pipeline"


def object_size(document: Mapping[str, Any]) -> int:
    """Bytes of ``document`` as a client sends it to the API server (compact JSON)."""
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def size_problem(document: Mapping[str, Any]) -> str | None:
    """A message if ``document`` is over the 1 MiB object limit (saying what limits its kind), else None."""
    size = object_size(document)
    if size <= ETCD_OBJECT_LIMIT:
        return None
    kind = document.get("kind", "object")
    meta = document.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName", "")
    return f"{kind} {name!r} is {size} bytes; {_bound(document)}"


def _bound(document: Mapping[str, Any]) -> str:
    """What limits an object of this kind, said as the engine's own rule (sources in the module docstring)."""
    kind, group = str(document.get("kind", "object")), str(document.get("apiVersion", "")).partition("/")[0]
    limit = f"{ETCD_OBJECT_LIMIT} bytes (1 MiB)"
    argo = f"Argo's workflow controller fails a Workflow over {limit}, its MAX_WORKFLOW_SIZE by default"
    if group == "argoproj.io":
        return argo if kind == "Workflow" else f"each Workflow run from a {kind} holds a copy of its spec, and {argo}"
    if kind in ("ConfigMap", "Secret") and group == "v1":
        return f"pipecast keeps a {kind} to {limit} in all: the Kubernetes API server refuses one holding more data"
    etcd = "etcd refuses a request over 1.5 MiB by default (--max-request-bytes)"
    if group.endswith("tekton.dev"):
        return (f"pipecast keeps Tekton objects to {limit}: {etcd}, and Tekton copies a Pipeline's spec into each "
                f"PipelineRun's status")
    return f"pipecast keeps Kubernetes objects to {limit}: {etcd}, and a stored object gains its status"


def check_sizes(documents: Iterable[Mapping[str, Any]], context: EmitContext, fix: str = SIZE_FIX) -> None:
    """Report every document over the object limit (at compile)."""
    for document in documents:
        problem = size_problem(document)
        if problem:
            context.error(problem, fix=fix)


def refuse_oversized(documents: Iterable[Mapping[str, Any]]) -> None:
    """Raise SubmitError for the first document over the object limit (at submit, before any request)."""
    for document in documents:
        problem = size_problem(document)
        if problem:
            raise SubmitError(f"{problem}; nothing was submitted ({SIZE_FIX})")


# Linux's execve refuses one argument or environment string whose length with its terminating NUL is over
# MAX_ARG_STRLEN, 32 pages: 131,072 bytes (include/uapi/linux/binfmts.h; fs/exec.c copy_strings answers E2BIG).
MAX_ARG_STRLEN = 128 * 1024


def argument_bytes_over(text: str) -> int | None:
    """``text``'s bytes when Linux would refuse it as one container argument or env value, else None."""
    size = len(text.encode())
    return size if size + 1 > MAX_ARG_STRLEN else None

