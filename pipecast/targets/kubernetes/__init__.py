"""The ``kubernetes`` target: plain Kubernetes Jobs, no workflow engine in the cluster.

A *driver* Job (``python -m pipecast.targets.kubernetes.driver``) runs the pipeline: it creates one Job per
step in dependency order from the plan the compiler wrote into a ConfigMap, watches them, stops on a failure
and records the run's state on its own Job. A schedule becomes a CronJob that starts the driver.

Files: ``pipeline.yaml`` (``kubectl apply -f``: ServiceAccount, Role, RoleBinding, the plan ConfigMap and
the CronJob) and ``run.yaml`` (``kubectl create -f``: one driver Job, i.e. one run).
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.kube.limits import check_sizes
from pipecast.targets.kubernetes.manifests import Lowering
from pipecast.targets.kubernetes.settings import KubernetesConnection, KubernetesSettings
from pipecast.targets.kubernetes.tool_image import client_requirements
from pipecast.targets.serialize import dump_yaml, dump_yaml_all

PLAN_SIZE_FIX = "make constants smaller (pass data as step outputs) or split the pipeline"


class KubernetesTarget(Target):
    """Kubernetes Jobs driven by a driver Job; schedules as a CronJob."""

    name = "kubernetes"
    description = "Plain Kubernetes: a driver Job creates one Job per step (no workflow engine needed)"
    extra = "kubernetes"
    sdk_modules = ("kubernetes",)
    # Tested against a fake API server that runs each Job's command here, never against a real cluster.
    status = "experimental"
    capabilities = {
        Feature.PARAMETERS: native("driver --param arguments; step pods get them as env vars that Kubernetes "
                                   "expands into the args as $(PIPECAST_PARAM_<name>)"),
        Feature.DATA_PASSING: native("artifact store: an object-store URI, or a ReadWriteMany PVC (artifact_pvc)"),
        Feature.AFTER: native("the driver starts a step's Job when every upstream Job is Complete"),
        Feature.RESOURCES: native("container requests = limits"),
        Feature.GPU: native("nvidia.com/gpu (or amd/intel) limits; gpu_type as a node selector on the label "
                            "gpu_node_label names"),
        Feature.RETRY: native("Job backoffLimit = attempts - 1"),
        Feature.RETRY_BACKOFF: emulated("the driver suspends the Job after a failed pod and resumes it when the "
                                        "step's delay (with backoff) has passed; Kubernetes' own pod backoff "
                                        "(10s doubling, at most 6 min) applies when it is longer"),
        Feature.TIMEOUT: native("pod activeDeadlineSeconds, per try"),
        Feature.CACHE: emulated("the runtime reuses outputs from the artifact store; the step's Job still runs"),
        Feature.SCHEDULE: native("a CronJob that starts the driver"),
        Feature.ENV: native("container env ($ escaped for Kubernetes expansion)"),
        Feature.SECRETS: native("env valueFrom secretKeyRef"),
        Feature.STEP_IMAGE: native(),
        Feature.SUBMIT: native("kubernetes client: RBAC, plan ConfigMap, driver Job"),
        Feature.STATUS: native("driver Job conditions and its recorded state; cancel deletes it (Foreground) "
                               "and the step Jobs"),
        Feature.MAP: native("the driver creates one Job per item (<run>-<step>-<i>, labelled pipecast.dev/step "
                            "and pipecast.dev/item) from the list it reads in the artifact store; a step over the "
                            "map gets the items' outputs as a list"),
        Feature.CONDITION: native("the driver evaluates If/Elif/Else on the outputs in the artifact store, in "
                                  "branch order, and records skipped branches in the run's state"),
        Feature.EXIT_HANDLER: native("the driver creates the handler's Job after the group ended, whatever "
                                     "happened, with the group's final status"),
        Feature.HOOKS: native("on_failure/on_success Jobs created by the driver after every other step"),
        Feature.PARALLELISM: native("the driver starts at most min(max_parallel, parallelism) Jobs at once, and "
                                    "at most a map's parallelism of its items"),
        Feature.UI_URL: emulated("Kubernetes has no UI of its own: a Kubernetes Dashboard link when "
                                 "dashboard_url is configured; namespace and Job name are recorded"),
    }
    settings_class = KubernetesSettings
    connection_class = KubernetesConnection
    schedules_module = "pipecast.schedules.kube"
    submit_module = "pipecast.targets.kubernetes.submit"

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """Lower the IR to ``pipeline.yaml`` (RBAC, the plan ConfigMap, the CronJob) and ``run.yaml`` (a driver Job)."""
        lowering = Lowering(pipeline, context)
        plan = lowering.plan()
        configmap = lowering.plan_configmap(plan)
        plan_name = configmap["metadata"]["name"]
        documents = [*lowering.rbac(), configmap]
        if pipeline.schedule:
            documents.append(lowering.cronjob(plan_name))
        driver = lowering.driver_job(plan_name)
        check_sizes([*documents, driver], context, fix=PLAN_SIZE_FIX)
        return Bundle(self.name, (("pipeline.yaml", dump_yaml_all(documents)), ("run.yaml", dump_yaml(driver))))

    def image_requirements(self, pipeline: ir.Pipeline, settings: Any) -> tuple[str, ...]:
        """The Kubernetes client, when the driver runs in the built image (no driver_image given)."""
        return client_requirements(settings.driver_image, pipeline, settings)
