"""The API server's object-size limit, checked one way for every Kubernetes-based target, at compile and submit.

pipecast keeps every object at most 1 MiB (``ETCD_OBJECT_LIMIT``). etcd itself takes requests up to its
``--max-request-bytes``, 1.5 MiB by default (the API server then answers ``etcdserver: request is too large``),
ConfigMaps and Secrets are validated to 1 MiB of data, and Argo's controller fails a Workflow over 1 MiB
(``MAX_WORKFLOW_SIZE``, argo-workflows ``workflow/packer/packer.go``): 1 MiB is the limit an Argo Workflow
really has and a safe margin below etcd's for the rest. pipecast measures an object as compact JSON, the form
clients send, and refuses it before anything is created. (A Kubeflow run's Workflow is made by the KFP backend
from the IR: see :mod:`pipecast.targets.kfpspec.workflow_size`.)
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
    """A message if ``document`` is over the 1 MiB object limit, else None."""
    size = object_size(document)
    if size <= ETCD_OBJECT_LIMIT:
        return None
    kind = document.get("kind", "object")
    meta = document.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName", "")
    return (f"{kind} {name!r} is {size} bytes; Kubernetes stores objects of at most {ETCD_OBJECT_LIMIT} bytes "
            f"(1 MiB)")


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
