"""Before an Argo run is submitted: ask the API server whether the caller and the run's pods may do what it needs.

Before any object is written, access reviews ask whether the caller may write and read the run's objects
(``SelfSubjectAccessReview``) and whether each service account the pods run as may do what Argo's executor
does (``LocalSubjectAccessReview``: create and patch ``workflowtaskresults``, without which every step fails
with "wait: Error (exit code 64)"). A missing right is one error naming the verb, the resource and the fix,
and nothing is submitted. A cluster that will not answer a review (an account may not review others) is not
checked on that point: the writes themselves then say what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipecast.errors import SubmitError
from pipecast.targets.kube.client import Cluster, KubeError, call_api, request_timeout

if TYPE_CHECKING:
    from pipecast.targets.kube.objects import Kube

GROUP = "argoproj.io"
# What submit and tracking do: apply the template (create, else read and replace it), create the run, read it.
CALLER_NEEDS = (("create", "workflowtemplates"), ("get", "workflowtemplates"), ("update", "workflowtemplates"),
                ("create", "workflows"), ("get", "workflows"))
EXECUTOR_NEEDS = (("create", "workflowtaskresults"), ("patch", "workflowtaskresults"))  # docs/workflow-rbac.md


def check_access(api: Kube, definitions: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Refuse the run before its first write when the caller or its pods lack a right (see the module doc)."""
    cluster, namespace = api.cluster, api.namespace
    needs = [need for need in CALLER_NEEDS if definitions or need[1] != "workflowtemplates"]
    problems = [f"your account may not {verb} {resource}.{GROUP} in namespace {namespace!r}"
                for verb, resource in needs if _allowed(cluster, namespace, verb, resource) is False]
    if problems:
        raise SubmitError("; ".join(problems) + " (asked with a SelfSubjectAccessReview); nothing was submitted. "
                          "Ask your cluster admin for a Role granting these verbs on these resources in the "
                          "namespace, bound to your account, or submit to a namespace where you have them "
                          "(-c namespace=NAME)")
    for account in service_accounts([*definitions, run]):
        missing = [verb for verb, resource in EXECUTOR_NEEDS
                   if _allowed(cluster, namespace, verb, resource, account=account) is False]
        if missing:
            raise SubmitError(
                f"service account {account!r} of namespace {namespace!r}, which the steps run as, may not "
                f"{' or '.join(missing)} workflowtaskresults.{GROUP} (asked with a LocalSubjectAccessReview): "
                "Argo's executor records each step's result with them, so every step would fail with 'wait: "
                "Error (exit code 64)'; nothing was submitted. Compile with --set service_account=NAME and "
                "`kubectl apply -n NAMESPACE -f <name>-rbac.yaml` (the Role Argo documents), or have an admin "
                "grant them")


def service_accounts(documents: list[dict[str, Any]]) -> list[str]:
    """The accounts the run's pods use: the workflow's (``default`` when it names none) and each template's."""
    found: list[str] = []
    for document in documents:
        spec = document.get("spec") or {}
        if "templates" in spec:
            found.append(spec.get("serviceAccountName") or "default")
            found += [t["serviceAccountName"] for t in spec["templates"] if t.get("serviceAccountName")]
    return list(dict.fromkeys(found))


def _allowed(cluster: Cluster, namespace: str, verb: str, resource: str, *, account: str | None = None) -> bool | None:
    """Whether the caller (or the ``account`` of ``namespace``) may ``verb`` the resource; None: no answer."""
    from kubernetes import client

    attributes = {"namespace": namespace, "verb": verb, "group": GROUP, "resource": resource}
    api = client.AuthorizationV1Api(cluster.api_client)
    options: dict[str, Any] = {"_preload_content": False, "_request_timeout": request_timeout()}
    if account is None:
        body: dict[str, Any] = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                "spec": {"resourceAttributes": attributes}}
        what = f"ask whether you may {verb} {resource}.{GROUP} in namespace {namespace!r}"

        def send() -> Any:
            return api.create_self_subject_access_review(body, **options).data
    else:
        # The identity a pod's token carries: its user name and the service-account groups RBAC may bind.
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
                "metadata": {"namespace": namespace},
                "spec": {"user": f"system:serviceaccount:{namespace}:{account}",
                         "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                    "system:authenticated"],
                         "resourceAttributes": attributes}}
        what = f"ask whether service account {account!r} may {verb} {resource}.{GROUP} in namespace {namespace!r}"

        def send() -> Any:
            return api.create_namespaced_local_subject_access_review(namespace, body, **options).data
    try:
        answer: Mapping[str, Any] = json.loads(call_api(cluster, what, send))
    except KubeError:  # may not review (403), or no such API (404): the writes will tell
        return None
    return bool((answer.get("status") or {}).get("allowed"))
