"""``pipecast runs logs`` on Tekton and Argo: step pods found by the labels each engine puts on a run's pods.

The fake API server plays each engine's controller as its documentation says pods come out: Tekton labels a
TaskRun's pod ``tekton.dev/pipelineRun``/``tekton.dev/pipelineTask``, copies the referenced Task's
``metadata.labels`` onto it and names each step's container ``step-<step>`` (tekton docs/labels.md,
docs/tasks.md); Argo labels a Workflow's pods ``workflows.argoproj.io/workflow``, copies the template's
``metadata.labels`` and runs the step in container ``main`` beside its ``wait`` sidecar (argo
docs/workflow-concepts.md). The pods' labels come from the objects pipecast submitted, never from the test.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.flow import submit_pipeline
from tests.helpers.cases import case, golden_settings
from tests.targets.argo.support import global_scope, template_as_run

NS = "ml"


def tekton_pods(fake, run):
    pipeline = fake.get(f"/apis/tekton.dev/v1/namespaces/{NS}/pipelines", run["spec"]["pipelineRef"]["name"])
    for task in pipeline["spec"]["tasks"]:  # a referenced Task's labels propagate to the pod (docs/labels.md)
        shared = fake.get(f"/apis/tekton.dev/v1/namespaces/{NS}/tasks", task["taskRef"]["name"])
        labels = {**shared["metadata"]["labels"], "tekton.dev/pipelineRun": run["metadata"]["name"],
                  "tekton.dev/pipelineTask": task["name"], "tekton.dev/task": task["taskRef"]["name"]}
        yield task["name"], labels, [f"step-{s['name']}" for s in shared["spec"]["steps"]]


def argo_pods(fake, run):
    template = fake.get(f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflowtemplates",
                        run["spec"]["workflowTemplateRef"]["name"])
    spec = template["spec"]
    templates = {item["name"]: item for item in spec["templates"]}
    scope = global_scope(spec, run["metadata"]["name"], {p["name"]: p.get("value") for p in
                                                         spec.get("arguments", {}).get("parameters", [])})
    for task in templates[spec["entrypoint"]]["dag"]["tasks"]:  # a task's labels as Argo substitutes them
        ran = template_as_run(templates[task["template"]], task, scope, f"{run['metadata']['name']}-{task['name']}")
        labels = {**ran["metadata"]["labels"], "workflows.argoproj.io/workflow": run["metadata"]["name"]}
        yield task["name"], labels, ["wait", "main"]


ENGINES = {
    "tekton": (tekton_pods, "pipelineruns", f"/apis/tekton.dev/v1/namespaces/{NS}/pipelineruns",
               {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]}, "step-run"),
    "argo": (argo_pods, "workflows", f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows",
             {"phase": "Succeeded"}, "main"),
}


@pytest.mark.parametrize("target", sorted(ENGINES))
def test_each_step_pods_log_in_order_and_one_step_by_its_pipecast_name(kube, target):
    pods, plural, runs, succeeded, container = ENGINES[target]

    def controller(fake, run):
        for second, (task, labels, containers) in enumerate(pods(fake, run)):  # a task a second, in DAG order
            pod = fake.start_pod(NS, f"{run['metadata']['name']}-{task}-", labels, containers,
                                 created=f"2026-01-01T00:00:{second:02d}Z")
            for name in containers:
                fake.append_log(NS, pod, name, f"{name} of {task}: line 1\n{name} of {task}: line 2\n")
            fake.end_pod(NS, pod, 0)
        fake.set_status(runs, run["metadata"]["name"], succeeded)

    kube.on_create(plural, controller)
    handle = submit_pipeline(case("quickstart").build(), target, {}, golden_settings(target),
                             {"kubeconfig": kube.kubeconfig})
    handle.wait(timeout=60)
    config = ["-c", f"kubeconfig={kube.kubeconfig}"]
    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--follow", *config])
    assert result.exit_code == 0, result.output
    tasks = [task for task, _, _ in pods(kube, kube.get(runs, handle.engine_run_id.split("/")[1]))]
    assert tasks == ["make-numbers", "split", "total", "total-2", "report"]
    lines = result.output.splitlines()
    assert [line.split(" (pod ")[0] for line in lines[::3]] == [f"==> {task}" for task in tasks]
    assert lines[1:3] == [f"{container} of make-numbers: line 1", f"{container} of make-numbers: line 2"]
    result = CliRunner().invoke(main, ["runs", "logs", handle.run_id, "--step", "total_2", *config])
    assert (result.exit_code, result.output) == (0, f"{container} of total-2: line 1\n{container} of total-2: "
                                                    "line 2\n"), result.output
    asked = {(r["query"].get("container"), r["query"].get("follow")) for r in kube.requests if
             r["path"].endswith("/log")}
    assert asked == {(container, "True"), (container, "False")}
