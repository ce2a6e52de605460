"""Lowering a pipeline to plain Kubernetes manifests: a driver Job, its RBAC, the plan, a CronJob.

Pure functions of the IR and the settings (no I/O, no SDK). The step Jobs are not emitted as files: they
are templates inside the plan, which the driver turns into real Jobs at run time (name, run label,
parameter values). Every string that reaches a container's ``command``/``args``/``env`` is escaped for
Kubernetes' ``$(VAR)`` expansion, except the ``$(PIPECAST_…)`` references we put there on purpose.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.graph import topological_order
from pipecast.compiler.naming import engine_names
from pipecast.runtime.command import EngineSyntax
from pipecast.runtime.context import LOGICAL_TIME_VAR
from pipecast.runtime.params import encode_constant
from pipecast.targets import kube
from pipecast.targets.base import EmitContext
from pipecast.targets.kube.limits import argument_bytes_over
from pipecast.targets.kube.settings import placement
from pipecast.targets.kubernetes import contract
from pipecast.targets.kubernetes.flow_ir import driver_ir
from pipecast.targets.kubernetes.settings import KubernetesSettings
from pipecast.targets.kubernetes.tool_image import tool_image
from pipecast.targets.lowering import (
    MISSING_ARTIFACT_ROOT,
    artifact_root,
    is_node_local,
    retry_plan,
    runtime_command,
    step_image,
)

DRIVER_BACKOFF_LIMIT = 3
DRIVER_JOB_VERBS = ("get", "list", "create", "patch", "delete")  # what the driver calls (see driver.py)
DISRUPTION_IGNORED = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
DRIVER_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}

# Placeholders while the command is built: NUL cannot occur in a real argument, so these never collide
# with user text; they become $(VAR) references after everything else is escaped.
_RUN_MARK = "\x00run\x00"


def _param_mark(name: str) -> str:
    return f"\x00param:{name}\x00"


class Lowering:
    """One compile of one pipeline: reads the parsed settings, reports problems to the context."""

    def __init__(self, pipeline: ir.Pipeline, context: EmitContext) -> None:
        self.pipeline = pipeline
        self.context = context
        self.settings: KubernetesSettings = context.settings
        self.name = contract.dns_name(pipeline.name)
        self.namespace = self.settings.namespace
        self.driver_name = contract.dns_name(f"{pipeline.name}-pipecast-driver")
        self.labels = {contract.LABEL_MANAGED: "pipecast", contract.LABEL_PIPELINE: self.name}
        self.artifact_root, self.artifact_volume = self._artifacts()
        self.plan_file = contract.PLAN_FILE

    def _artifacts(self) -> tuple[str, dict[str, Any] | None]:
        """The artifact root, and the PVC that holds it when it is a local path (``artifact_pvc``).

        Step pods run on nodes of their own: a local path serves them only on a ReadWriteMany volume every
        step pod mounts at that path.
        """
        root = artifact_root(self.pipeline, self.context, remote=False)
        pvc = self.settings.artifact_pvc
        if root == MISSING_ARTIFACT_ROOT:
            return root, None
        if not is_node_local(root):
            if pvc:
                self.context.error(f"artifact_pvc {pvc!r} is set, but the artifact root {root!r} is not a local "
                                   "path, so no step would use the volume",
                                   fix="drop artifact_pvc, or use artifact_root=file:///PATH to keep artifacts on it")
            return root, None
        path = root[len("file://"):] if root.startswith("file://") else root
        if not pvc or not path.startswith("/"):
            self.context.error(
                f"artifact root {root!r} is a local path, which separate pods do not share",
                fix="use an object-store URI (s3://…, gs://…), or an absolute file:///path together with "
                    "--set artifact_pvc=<ReadWriteMany PersistentVolumeClaim> mounted at that path")
            return root, None
        return f"file://{path}", {"claim": pvc, "path": path}

    # -- step Jobs (templates in the plan) ------------------------------------------------------
    def step_template(self, step: ir.Step, job: str) -> dict[str, Any]:
        """The template of ``step``'s Job (named ``job``): its pod, container, env and placement."""
        settings: KubernetesSettings = self.context.settings_for(step)
        labels = {**self.labels, contract.LABEL_ROLE: "step", contract.LABEL_STEP: job}
        container: dict[str, Any] = {
            "name": contract.STEP_CONTAINER,
            "image": step_image(self.pipeline, step, self.context),
            **self._command(step),
            "env": self._env(step),
        }
        resources = settings.resources(step, self.context)
        if resources:
            container["resources"] = resources
        if self.artifact_volume:
            container["volumeMounts"] = [{"name": "artifacts", "mountPath": self.artifact_volume["path"]}]
        pod: dict[str, Any] = {"restartPolicy": "Never"}
        if settings.service_account:
            pod["serviceAccountName"] = settings.service_account
        if step.timeout_seconds:
            pod["activeDeadlineSeconds"] = max(1, math.ceil(step.timeout_seconds))  # one try, from pod start
        self._place(pod, settings, step)
        pod["containers"] = [settings.patch_container(container)]
        if self.artifact_volume:
            pod["volumes"] = [{"name": "artifacts",
                               "persistentVolumeClaim": {"claimName": self.artifact_volume["claim"]}}]
        pod = settings.patch_pod(pod)  # the escape hatch, merged last
        metadata = settings.pod_metadata()
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"namespace": self.namespace, "labels": labels,
                         "annotations": {contract.ANNOTATION_STEP: step.name}},
            "spec": {
                "backoffLimit": step.retry.retries,
                # A pod lost to a node drain, preemption or eviction is not a failed try: the Job starts another
                # without spending a retry (the pod gets the DisruptionTarget condition; Kubernetes >= 1.26).
                "podFailurePolicy": {"rules": [DISRUPTION_IGNORED]},
                "template": {"metadata": {**metadata, "labels": {**metadata.get("labels", {}), **labels}},
                             "spec": pod},
            },
        }

    def _place(self, pod: dict[str, Any], settings: KubernetesSettings, step: ir.Step | None) -> None:
        """The pod's nodeSelector, tolerations and imagePullSecrets (the step's own settings, else the pipeline's)."""
        where = placement(settings, self.pipeline, step, self.context)
        if where.node_selector:
            pod["nodeSelector"] = where.node_selector
        if where.tolerations:
            pod["tolerations"] = where.tolerations
        if settings.image_pull_secrets:
            pod["imagePullSecrets"] = settings.pull_secrets()

    def _command(self, step: ir.Step) -> dict[str, list[str]]:
        syntax = EngineSyntax(run_id=_RUN_MARK, parameter=lambda p: _param_mark(p.name),
                              artifact_root=self.artifact_root)
        # The Job retries (backoffLimit) and the driver waits the delays: the runtime runs one try.
        plan = retry_plan(step)
        argv = []
        for arg in runtime_command(self.pipeline, step, syntax, plan, runtime_timeout=False):
            text = contract.escape(arg).replace(_RUN_MARK, f"$({contract.RUN_ID_ENV})")
            for param in self.pipeline.parameters:
                text = text.replace(_param_mark(param.name), f"$({contract.param_env(param.name)})")
            if argument_bytes_over(text):
                self.context.error(f"an argument of step {step.name!r} is {len(text.encode())} bytes; Linux "
                                   f"refuses arguments of {contract.MAX_ARG_BYTES} with their NUL", step=step,
                                   fix="pass large values as parameters or step outputs, not constants")
            argv.append(text)
        return {"command": argv[:3], "args": argv[3:]}

    def _env(self, step: ir.Step) -> list[dict[str, Any]]:
        kube.check_secret_refs(self.pipeline, step, self.context)
        env = [_field_env(contract.RUN_ID_ENV, f"metadata.labels['{contract.LABEL_RUN}']")]
        seen: set[str] = set()
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.PARAMETER and binding.parameter not in seen:
                seen.add(binding.parameter or "")
                env.append({"name": contract.param_env(binding.parameter or ""), "value": ""})  # set by the driver
        for item in kube.env_list(self.pipeline, step):
            if item["name"] == contract.RUN_ID_ENV or item["name"].startswith(contract.PARAM_ENV_PREFIX):
                self.context.error(f"env var {item['name']!r} of step {step.name!r} uses a name pipecast "
                                   f"reserves for the run id and parameters", step=step,
                                   fix="rename the variable")
            if "value" in item:
                item = {**item, "value": contract.escape(item["value"])}
            env.append(item)
        if self.pipeline.schedule and not any(item["name"] == LOGICAL_TIME_VAR for item in env):
            # pipecast.context().logical_time: the driver sets it from the scheduled-timestamp annotation the
            # CronJob controller puts on the driver Job; a Job made any other way has none, so it stays "".
            env.append({"name": LOGICAL_TIME_VAR, "value": ""})
        return env

    # -- the plan and the driver ------------------------------------------------------------------
    def plan(self) -> dict[str, Any]:
        """The plan the driver runs: the steps in topological order with their Job templates, the parameters."""
        jobs = engine_names("kubernetes", [s.name for s in self.pipeline.steps],
                            locations={s.name: str(s.location) for s in self.pipeline.steps},
                            target=self.context.target)
        by_name = {s.name: s for s in self.pipeline.steps}
        steps = []
        for name in topological_order(self.pipeline):
            step = by_name[name]
            entry: dict[str, Any] = {"name": name, "job": jobs[name], "upstream": list(step.upstream())}
            if step.retry.attempts > 1:
                entry["retry"] = contract.retry_plan(step.retry)
            entry["template"] = self.step_template(step, jobs[name])
            steps.append(entry)
        plan = {
            "version": contract.PLAN_VERSION,
            "pipeline": self.pipeline.name,
            "max_parallel": self.settings.max_parallel,
            "poll_seconds": self.settings.poll_seconds,
            "parameters": [{"name": p.name, "type": p.type.value, "default_json": p.default_json}
                           for p in self.pipeline.parameters],
            "steps": steps,
        }
        if self.pipeline.uses_control_flow:  # the driver runs maps and conditions from the IR (flow_driver)
            plan["flow"] = {"artifact_root": self.artifact_root, "ir": driver_ir(self.pipeline)}
        return plan

    def plan_configmap(self, plan: dict[str, Any]) -> dict[str, Any]:
        """The ConfigMap holding the plan, named by a hash of it; sets :attr:`plan_file` for the driver."""
        field, self.plan_file, stored = contract.pack_plan(plan)
        digest = hashlib.sha256(stored.encode()).hexdigest()[:10]
        name = f"{contract.dns_name(f'{self.pipeline.name}-plan')[:52].rstrip('-')}-{digest}"
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": self.namespace, "labels": self.labels},
                field: {self.plan_file: stored}}

    def driver_job_spec(self, plan_name: str) -> dict[str, Any]:
        """The driver Job's spec, which reads the plan from the ConfigMap ``plan_name``."""
        labels = {**self.labels, contract.LABEL_ROLE: "driver"}
        container: dict[str, Any] = {
            "name": contract.DRIVER_CONTAINER,
            "image": self._driver_image(),
            "command": ["python", "-m", contract.DRIVER_MODULE],
            "args": ["--plan", f"{contract.PLAN_DIR}/{self.plan_file}"],
            "env": [
                _field_env(contract.RUN_ID_ENV, f"metadata.labels['{contract.JOB_NAME_LABEL}']"),
                _field_env(contract.NAMESPACE_ENV, "metadata.namespace"),
            ],
            "resources": DRIVER_RESOURCES,
            "volumeMounts": [{"name": "plan", "mountPath": contract.PLAN_DIR, "readOnly": True}],
        }
        pod: dict[str, Any] = {"restartPolicy": "Never", "serviceAccountName": self.driver_name}
        # The driver is a pod of the run: it goes where the pipeline's settings (not a step's) send pods.
        self._place(pod, self.settings, None)
        pod["containers"] = [container]
        pod["volumes"] = [{"name": "plan", "configMap": {"name": plan_name}}]
        if self.pipeline.uses_control_flow and self.artifact_volume:  # it reads the outputs maps and conditions use
            container["volumeMounts"].append({"name": "artifacts", "mountPath": self.artifact_volume["path"],
                                              "readOnly": True})
            pod["volumes"].append({"name": "artifacts",
                                   "persistentVolumeClaim": {"claimName": self.artifact_volume["claim"]}})
        spec: dict[str, Any] = {
            "backoffLimit": DRIVER_BACKOFF_LIMIT,
            # A lost driver pod is replaced and resumes the run; a failed pipeline or bad input is final.
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {
                    "containerName": contract.DRIVER_CONTAINER, "operator": "In",
                    "values": [contract.EXIT_PIPELINE_FAILED, contract.EXIT_BAD_INPUT]}},
                DISRUPTION_IGNORED,
            ]},
        }
        if self.settings.ttl_seconds_after_finished is not None:
            spec["ttlSecondsAfterFinished"] = self.settings.ttl_seconds_after_finished
        spec["template"] = {"metadata": {"labels": labels}, "spec": pod}
        return spec

    def _driver_image(self) -> str:
        return tool_image(self.settings.driver_image, self.pipeline, self.context, "the driver Job",
                          fix="--set driver_image=REPO:TAG (an image with pipecast[kubernetes] installed), or give "
                              "the pipeline image=...")

    def driver_job(self, plan_name: str) -> dict[str, Any]:
        """The driver Job of one run, its name generated by Kubernetes."""
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"generateName": f"{self.name[:57].rstrip('-')}-", "namespace": self.namespace,
                             "labels": {**self.labels, contract.LABEL_ROLE: "driver"},
                             "annotations": {contract.ANNOTATION_PLAN: plan_name}},
                "spec": self.driver_job_spec(plan_name)}

    def cronjob(self, plan_name: str) -> dict[str, Any]:
        """The CronJob that starts a driver Job on the schedule; a parameter without default is an error."""
        spec: dict[str, Any] = {"schedule": self.pipeline.schedule}
        if self.settings.timezone:
            spec["timeZone"] = self.settings.timezone
        for param in self.pipeline.parameters:
            if param.required:
                self.context.error(f"pipeline {self.pipeline.name!r} is scheduled but parameter {param.name!r} "
                                   f"has no default, so the CronJob cannot start a run",
                                   fix=f"give {param.name!r} a default value")
        spec["jobTemplate"] = {"metadata": {"labels": {**self.labels, contract.LABEL_ROLE: "driver"},
                                            "annotations": {contract.ANNOTATION_PLAN: plan_name}},
                               "spec": self.driver_job_spec(plan_name)}
        return {"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": contract.cronjob_name(self.pipeline.name), "namespace": self.namespace,
                             "labels": self.labels},
                "spec": spec}

    def rbac(self) -> list[dict[str, Any]]:
        """The driver's ServiceAccount, and a Role and RoleBinding with exactly the calls the driver makes on Jobs.

        RBAC cannot limit a Role to objects with some label, and every Job name of a run is generated (the run
        id), so ``resourceNames`` cannot name them either: the Role covers the namespace's Jobs, and the driver
        reads a Job's ``pipecast.dev/run`` label before it deletes it. No ``deletecollection``, no pods.
        """
        meta = {"name": self.driver_name, "namespace": self.namespace, "labels": self.labels}
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": [
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": list(DRIVER_JOB_VERBS)},
            ]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
             "subjects": [{"kind": "ServiceAccount", "name": self.driver_name, "namespace": self.namespace}],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.driver_name}},
        ]


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    """An env var read from the pod's own fields (the downward API)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def driver_args(parameters: dict[str, Any]) -> list[str]:
    """The driver's ``--param NAME=VALUE`` arguments: canonical JSON, percent-encoded (so no ``$`` or quote)."""
    args: list[str] = []
    for name, value in parameters.items():
        args += ["--param", f"{name}={encode_constant(ir.canonical_json(value))}"]
    return args
