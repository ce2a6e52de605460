"""A Tekton schedule: a Kubernetes CronJob whose pod creates the PipelineRun with the tick it was made for.

Tekton has no cron and no time variable (its context variables are names, uids and retry counts). The tick
exists only on the Job the CronJob controller makes, as the annotation
``batch.kubernetes.io/cronjob-scheduled-timestamp`` (RFC 3339, Kubernetes >= 1.28; ``pkg/controller/cronjob/
utils.go getJobFromTemplate2``), which the downward API cannot show the Job's pod. So the CronJob's pod runs

    python -m pipecast.targets.tekton_cron --run /etc/pipecast/pipelinerun.yaml

in the pipeline's image (it needs ``pipecast[kubernetes]``): it reads its own Job (the name from the pod label
``batch.kubernetes.io/job-name`` through the downward API, the namespace from its service account), takes the
annotation as the kubernetes target's driver does (:func:`pipecast.targets.kubernetes.driver.scheduled_time`)
and creates the PipelineRun kept in the ConfigMap, named after the Job (a retried pod finds it made), with the
param ``pipecast_logical_time`` set to it. Every task hands that param to its step as ``$PIPECAST_LOGICAL_TIME``;
a run made any other way (``pipecast submit``, by hand) keeps the Pipeline's default ``""``: no logical time.

Exit status: 0 the run exists, 2 bad input (a malformed annotation, no Job name: no PipelineRun is created, and
the Job's pod failure policy stops there), 3 the API server failed (Kubernetes retries the pod).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pipecast.compiler import ir, naming
from pipecast.errors import ContextError, PipecastError, SubmitError
from pipecast.targets.kube import crd as kube_crd
from pipecast.targets.kubernetes import contract
from pipecast.targets.serialize import dump_yaml

LOGICAL_TIME_PARAM = "pipecast_logical_time"  # the Pipeline's param the creator sets; "" when not scheduled
JOB_NAME_ENV = "PIPECAST_CRON_JOB"
MOUNT = "/etc/pipecast"
CONTAINER = "create-pipelinerun"
ROLE_RULES = [{"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["create"]},
              {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def param_spec() -> dict[str, Any]:
    """The Pipeline's declaration of the logical-time param."""
    return {"name": LOGICAL_TIME_PARAM, "type": "string", "default": "",
            "description": "the schedule's tick (RFC 3339), set by the CronJob's creator pod; '' in any other run"}


def cron_documents(pipeline: ir.Pipeline, image: str, timezone: str | None, cronjob_name: str,
                   namespace: str | None, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The CronJob, the ConfigMap holding the PipelineRun, and the RBAC the creator needs (nothing more)."""
    account = naming.pipeline_resource_name(pipeline.name, "-cron")
    config_map = naming.pipeline_resource_name(pipeline.name, "-pipelinerun")
    schedule: dict[str, Any] = {"schedule": pipeline.schedule}
    if timezone:
        schedule["timeZone"] = timezone
    schedule["concurrencyPolicy"] = "Allow"
    schedule["jobTemplate"] = {"spec": {
        "backoffLimit": 2,
        # Bad input (exit 2) fails at once: a new pod would read the same annotation.
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": CONTAINER, "operator": "In", "values": [contract.EXIT_BAD_INPUT]}}]},
        "template": {
            "metadata": {"labels": kube_crd.labels(pipeline)},
            "spec": {
                "serviceAccountName": account,
                "restartPolicy": "Never",
                "containers": [{
                    "name": CONTAINER,
                    "image": image,
                    "command": ["python", "-m", "pipecast.targets.tekton_cron"],
                    "args": ["--run", f"{MOUNT}/pipelinerun.yaml"],
                    "env": [{"name": JOB_NAME_ENV, "valueFrom": {"fieldRef": {
                        "fieldPath": f"metadata.labels['{contract.JOB_NAME_LABEL}']"}}}],
                    "volumeMounts": [{"name": "pipelinerun", "mountPath": MOUNT, "readOnly": True}],
                }],
                "volumes": [{"name": "pipelinerun", "configMap": {"name": config_map}}],
            },
        }}}

    def meta(name: str) -> dict[str, Any]:
        return kube_crd.metadata(name, pipeline, namespace)

    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(account)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(account),
         "rules": ROLE_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(account),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(config_map),
         "data": {"pipelinerun.yaml": dump_yaml(run)}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(cronjob_name), "spec": schedule},
    ]


def scheduled_run(run: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The PipelineRun to create for ``job``: named after it, its logical-time param set to the Job's tick."""
    from pipecast.targets.kubernetes.driver import scheduled_time  # the kubernetes driver's reading and refusal

    try:
        tick = scheduled_time(job)
    except ContextError:
        text = job["metadata"]["annotations"][contract.SCHEDULED_ANNOTATION]
        raise ContextError(
            f"Job {job['metadata'].get('name')!r}: annotation {contract.SCHEDULED_ANNOTATION}={text!r} is not an "
            "RFC 3339 time (the CronJob controller writes one such as 2025-01-06T05:00:00+01:00), so the run's "
            "logical time is unknown and no PipelineRun was created; create the Job without that annotation "
            "(kubectl create job --from=cronjob/NAME) or with an RFC 3339 time") from None
    metadata = dict(run.get("metadata") or {})
    metadata.pop("generateName", None)
    metadata["name"] = job["metadata"]["name"]
    spec = dict(run.get("spec") or {})
    params = [p for p in spec.get("params") or [] if p.get("name") != LOGICAL_TIME_PARAM]
    spec["params"] = [*params, {"name": LOGICAL_TIME_PARAM, "value": tick}]
    return {**run, "metadata": metadata, "spec": spec}


def _namespace() -> str:
    with open(_SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
        return handle.read().strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Create the scheduled PipelineRun; see the module docstring."""
    import yaml

    parser = argparse.ArgumentParser(prog="python -m pipecast.targets.tekton_cron",
                                     description="Create a scheduled Tekton PipelineRun with its logical time.")
    parser.add_argument("--run", required=True, help="the PipelineRun YAML (mounted from the ConfigMap)")
    parser.add_argument("--job", default=os.environ.get(JOB_NAME_ENV), help=f"this pod's Job; default ${JOB_NAME_ENV}")
    parser.add_argument("--namespace", help="default: the service account's namespace")
    ns = parser.parse_args(argv)
    say = "pipecast tekton cron:"
    try:
        if not ns.job:
            raise PipecastError(f"this pod's Job is unknown: set ${JOB_NAME_ENV} (the emitted CronJob does, from "
                                f"the label {contract.JOB_NAME_LABEL} through the downward API)")
        with open(ns.run, encoding="utf-8") as handle:
            run = yaml.safe_load(handle)
        if not isinstance(run, dict) or run.get("kind") != "PipelineRun":
            raise PipecastError(f"{ns.run} holds no PipelineRun")
        from pipecast.targets.kube.client import connect
        from pipecast.targets.kube.objects import Kube
        from pipecast.targets.tekton import TEKTON

        api = Kube(connect({}), ns.namespace or _namespace(), TEKTON.custom_kinds())
    except (PipecastError, OSError, ValueError, ImportError) as err:
        print(f"{say} {err}", file=sys.stderr, flush=True)
        return contract.EXIT_BAD_INPUT
    from pipecast.targets.kube.client import KubeError

    try:
        job = api.get("Job", ns.job)
    except SubmitError as err:  # refused (KubeError) or never answered: a new pod may get through
        print(f"{say} cannot read Job {ns.job!r}: {err}", file=sys.stderr, flush=True)
        return contract.EXIT_INFRASTRUCTURE
    try:
        body = scheduled_run(run, job)
    except PipecastError as err:  # ContextError: a malformed annotation; no run is created
        print(f"{say} {err}", file=sys.stderr, flush=True)
        return contract.EXIT_BAD_INPUT
    try:
        api.create(body)
    except KubeError as err:
        if err.status != 409:  # 409: an earlier pod of this Job created it
            print(f"{say} cannot create PipelineRun {ns.job!r}: {err}", file=sys.stderr, flush=True)
            return contract.EXIT_INFRASTRUCTURE
    except PipecastError as err:
        print(f"{say} {err}", file=sys.stderr, flush=True)
        return contract.EXIT_INFRASTRUCTURE
    tick = body["spec"]["params"][-1]["value"]
    print(f"{say} PipelineRun {ns.job!r} created, logical time {tick or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
