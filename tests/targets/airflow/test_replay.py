"""Replay (DESIGN §4): Airflow 3 renders each task as its worker would, then the task's command runs here as its
operator would run it, and the outputs equal those of ``pipecast run``.

Nothing is substituted by the test: ``in_airflow_render.py`` loads the DAG files with Airflow's ``DagBag``, builds
the template context Airflow gives a task (run id, params merged with the run's conf and validated by Airflow,
``var``/``conn`` read from a secrets backend) and renders the templated fields with Airflow's own
``render_templates``. Then a BashOperator task runs as ``bash -c <bash_command>`` in the worker's environment
plus its ``env`` (``append_env=True``), in a temporary directory as BashOperator does when ``cwd`` is None; a
pod's container runs ``command + args`` after the kubelet's ``$(VAR)`` expansion, with ``secretKeyRef``
values from the cluster's secrets (given here) and the object store pods share played by a folder
(``tests/helpers/replay/store.py``: pipecast refuses a node-local artifact root for pods).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import pytest

from pipecast.runtime.artifacts import safe_segment
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.local_runner import run_pipeline
from tests.helpers.cases import case, compile_case, env_with_cases
from tests.helpers.replay import assert_same_outputs, run_task
from tests.helpers.replay.store import pod_env as store_env
from tests.helpers.slow import slow_fixture
from tests.targets.airflow import pipelines
from tests.targets.airflow.support import HERE, VENV_BIN, airflow_env, kubernetes_expand, secrets_backend
from tests.targets.airflow.typed_pipelines import typed_assets

RUN_ID = "manual__2026-01-02T03:04:05+00:00"
HOSTILE = "$(HOME) $$ {{ x }} {{ run_id }} '\""
POD = {"mode": "kubernetes", "image": "ghcr.io/acme/replay:1"}
# dag id -> (pipeline, settings, conf of the run)
REPLAYS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "quickstart": (case("quickstart"), {}, {"n": 31, "seed": 3}),
    "diamond_after": (case("diamond_after"), {}, {}),
    "gather_pods": (case("gather"), POD, {"n": 5, "lr": 0.25}),  # literal lists and dicts as one input
    "ml_training_pods": (case("ml_training"), {"mode": "kubernetes"}, {"samples": 60, "epochs": 5, "lr_large": 0.5}),
    "ml_training_local": (case("ml_training"), {"mode": "local"}, {"samples": 40}),
    "hostile_pods": (case("hostile"), POD, {"text": HOSTILE}),
    "hostile_local": (case("hostile"), {}, {"text": HOSTILE, "data": {"{{ ds }}": "$(id) {{ run_id }}"}}),
    "airflow_secrets_local": (pipelines.airflow_secrets, {}, {}),
    "airflow_secrets_pods": (pipelines.airflow_secrets, {**POD, "secret_store": "airflow"}, {}),
    "kubernetes_secrets_pods": (pipelines.kubernetes_secrets, POD, {}),
    "typed_pods": (typed_assets, POD, {"rows": 4}),
}
# Secret values with every kind of character a template, bash or the kubelet could misread.
TOKEN, PASSWORD, REGION = "tok $(HOME) $$ {{ run_id }} 'q\"", "p$w {{ x }} `id` ${HOME}", "eu $(id) \"x\" \\"
SECRETS = {"CI_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD, "DB_REGION": REGION}
# Airflow's secrets backend (LocalFilesystemBackend files)
VARIABLES = {"team/ci token": TOKEN, "get": "variable get", "var": "variable var"}
CONNECTIONS = {"db:main": {"conn_type": "postgres", "host": "db", "password": PASSWORD,
                           "extra": json.dumps({"region (eu)": REGION})}}
CLUSTER_SECRETS = {("ci-token", "CI_TOKEN"): TOKEN, ("db-main", "password"): PASSWORD, ("db-main", "region"): REGION}


# "No value" for a typed parameter: Airflow's own Param validation refuses it at trigger time, as pipecast refuses
# None defaults at compile; the Params the target writes (one JSON-schema type each) never admit null.
NULL_PARAMS = {"source": "string", "limit": "integer", "lr": "number", "options": "object", "dry_run": "boolean"}

# Why pipecast refuses an Airflow secret named 'get' (secrets.py): the template reads a variable by subscript,
# and the accessor has no __getitem__, so Jinja takes its attribute of that name.
ACCESSOR_NAMES_DAG = """
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(dag_id="accessor_names", schedule=None):
    BashOperator(task_id="read", bash_command="true",
                 env={"GET": "{{ var.value['get'] }}", "VAR": "{{ var.value['var'] }}"})
"""


@pytest.fixture(scope="module")
@slow_fixture
def rendered(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """Compile every replay into one DAGs folder (artifacts under ``<base>/<dag id>``); Airflow renders them all."""
    base = tmp_path_factory.mktemp("replay")
    dags = base / "dags"
    dags.mkdir()
    for dag_id, (definition, settings, _) in REPLAYS.items():
        # Pods share an object store (played by tests/helpers/replay/store.py, kept under <base>); workers one disk.
        root = f"replay://{dag_id}" if settings.get("mode") == "kubernetes" else f"file://{base / dag_id}"
        bundle = compile_case("airflow", definition, settings={**settings, "artifact_root": root, "dag_id": dag_id},
                              on_unsupported="warn").bundle  # ml_training_local: images and resources a worker ignores
        (dags / bundle.main_file).write_text(bundle.files[0][1], encoding="utf-8")
    (dags / "accessor_names.py").write_text(ACCESSOR_NAMES_DAG)
    wanted = {dag_id: {"run_id": RUN_ID, "conf": conf} for dag_id, (_, _, conf) in REPLAYS.items()}
    wanted["accessor_names"] = {"run_id": RUN_ID, "conf": {}}
    for name in NULL_PARAMS:  # full_options with one parameter of each type set to null
        null = compile_case("airflow", "full_options",
                            settings={"dag_id": f"null_{name}", "gpu_node_label": "gke"}).bundle
        (dags / null.main_file).write_text(null.files[0][1], encoding="utf-8")
        wanted[f"null_{name}"] = {"run_id": RUN_ID, "conf": {name: None}}
    runs = base / "runs.json"
    runs.write_text(json.dumps(wanted))
    env = airflow_env(base / "airflow-home", dags, **secrets_backend(base, VARIABLES, CONNECTIONS))
    out = base / "rendered.json"
    result = subprocess.run([sys.executable, str(HERE / "in_airflow_render.py"), str(dags), str(runs), str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(out.read_text())
    assert answer["import_errors"] == {}
    return base, answer["dags"]


def replay(tasks: dict[str, Any], workdir: Path, cluster_secrets: dict[tuple[str, str], str],
           store: Path) -> dict[str, Any]:
    """Run the rendered tasks in the order of their upstream lists, as their operators would; pods reach the
    object store kept under ``store``. Return the XCom each pod task pushes (None: none)."""
    xcoms: dict[str, Any] = {}
    for task_id in TopologicalSorter({t: spec["upstream"] for t, spec in tasks.items()}).static_order():
        spec = tasks[task_id]
        assert "error" not in spec, spec.get("traceback")
        if spec["type"] == "bash":
            assert spec["append_env"] is True and spec["cwd"] is None
            env = {**spec["env"], "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
            run_task(["bash", "-c", spec["bash_command"]], env=env, cwd=workdir)
        else:
            container = spec["pod"]["spec"]["containers"][0]
            env = pod_environment(container["env"], cluster_secrets)
            # The container's emptyDir mounts (the XCom volume) are folders here: a path under a mount is moved
            # to its folder, the one value the replay changes (a process here cannot write /airflow/xcom).
            mounts = {m["mountPath"]: workdir / "volumes" / task_id / m["name"] for m in container.get("volumeMounts",
                                                                                                     [])}
            for path, folder in mounts.items():
                folder.mkdir(parents=True)
                env = {k: str(folder) + v[len(path):] if v.startswith(path + "/") else v for k, v in env.items()}
            argv = [kubernetes_expand(a, env) for a in container["command"] + container["args"]]
            run_task(argv, env={**env, **store_env(store, env_with_cases()["PYTHONPATH"])})
            xcoms[task_id] = sidecar_xcom(spec["pod"]["spec"], mounts)
    return xcoms


def records(root: Path, pipeline: str, run_folder: str) -> dict[str, dict[str, Any]]:
    """Each step's outputs as stored: artifact type and sha256 of each, from the steps' ``meta.json``."""
    found = {}
    for meta in sorted((root / pipeline / "runs" / run_folder).glob("*/meta.json")):
        outputs = json.loads(meta.read_text())["outputs"]
        found[meta.parent.name] = {name: (record.get("artifact"), record["sha256"]) for name, record in outputs.items()}
    assert found, f"no step of {pipeline} stored anything under {root}"
    return found


def sidecar_xcom(pod: dict[str, Any], mounts: dict[str, Path]) -> Any:
    """What KubernetesPodOperator pushes as the task's XCom: with its sidecar in the pod, the JSON in
    ``return.json`` of the volume they share, if that file is not empty (cncf-kubernetes 10.5,
    utils/pod_manager.py extract_xcom_json: ``if [ -s /airflow/xcom/return.json ]; then cat ...``)."""
    if "airflow-xcom-sidecar" not in [c["name"] for c in pod["containers"]]:
        return None
    (mount,) = [m["mountPath"] for m in pod["containers"][-1]["volumeMounts"]]
    file = mounts[mount] / "return.json"
    return json.loads(file.read_text()) if file.exists() and file.stat().st_size else None


def pod_environment(items: list[dict[str, Any]], cluster_secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's environment as the kubelet builds it: values expanded against the variables before them,
    ``secretKeyRef`` values taken from the Secret as they are (Kubernetes "Define dependent environment
    variables"; ``valueFrom`` is never expanded)."""
    env: dict[str, str] = {}
    for item in items:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = cluster_secrets[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = kubernetes_expand(item.get("value", ""), env)
    return env


@pytest.mark.parametrize("dag_id", [d for d in REPLAYS if "secrets" not in d])
def test_replayed_dag_gives_the_outputs_of_pipecast_run(dag_id, rendered, tmp_path):
    base, dags = rendered
    definition, _, conf = REPLAYS[dag_id]
    pipeline = definition.build()
    xcoms = replay(dags[dag_id], tmp_path, {}, base)
    values = {**{p.name: p.default for p in pipeline.parameters}, **conf}
    if dag_id == "typed_pods":  # typed artifacts carry their own URI: compare their records (type, content hash)
        local = run_pipeline(pipeline, values, artifact_root=f"file://{tmp_path / 'local'}", cache=False)
        assert records(base / dag_id, pipeline.name, safe_segment(RUN_ID)) == records(
            tmp_path / "local", pipeline.name, local.id)
    else:
        assert_same_outputs(pipeline, values, base / dag_id, RUN_ID, tmp_path)
    # Each pod's XCom (issue 17) is the URI of its step's folder in the store, as the sidecar reads it.
    assert xcoms == ({step.name: f"replay://{dag_id}/{pipeline.name}/runs/{safe_segment(RUN_ID)}/{step.name}"
                      for step in pipeline.steps} if "pods" in dag_id else {})


@pytest.mark.parametrize("dag_id", [d for d in REPLAYS if "secrets" in d])
def test_secrets_reach_the_step_verbatim_from_either_store(dag_id, rendered, tmp_path):
    """Airflow variables and connections (names escaped in the template, values '$'-escaped for a pod), and
    Kubernetes secret references, each give the step exactly the stored value."""
    base, dags = rendered
    pipeline = REPLAYS[dag_id][0].build()
    replay(dags[dag_id], tmp_path, CLUSTER_SECRETS, base)
    (step,) = pipeline.steps
    assert load_outputs(f"file://{base / dag_id}", pipeline.name, RUN_ID, step.name) == {"output": SECRETS}


def test_airflow_renders_only_pipecasts_templates(rendered):
    """A value that looks like a template reaches the step as written: Airflow renders the run id and the
    parameters' templates, never a template inside a value (Jinja does not render its own output)."""
    _, dags = rendered
    echo = dags["hostile_local"]["echo_text"]
    assert echo["env"]["PIPECAST_PARAM_text"] == HOSTILE and echo["env"]["PIPECAST_RUN_ID"] == RUN_ID
    assert "{{" in echo["env"]["EVIL_ENV"]  # a literal() env value is left alone
    assert echo["env"]["PIPECAST_LOGICAL_TIME"] == ""  # Airflow 3's manual run has no logical date
    pod = dags["hostile_pods"]["echo_text"]["pod"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in pod["env"]}
    assert env["PIPECAST_PARAM_text"] == HOSTILE.replace("$", "$$") and env["PIPECAST_RUN_ID"] == RUN_ID
    assert env["PIPECAST_LOGICAL_TIME"] == ""


def test_a_variable_named_like_an_accessor_attribute_is_not_what_airflow_renders(rendered):
    env = rendered[1]["accessor_names"]["read"]["env"]
    assert env["GET"] != "variable get" and "bound method" in env["GET"]
    assert env["VAR"] == "variable var"  # Airflow 3's accessors have no 'var' attribute (Airflow 2's do)


def test_airflow_refuses_null_for_every_typed_parameter(rendered):
    for name, kind in NULL_PARAMS.items():
        for task_id, spec in rendered[1][f"null_{name}"].items():
            assert f"Invalid input for param {name}: None is not of type {kind!r}" in spec.get("error", ""), task_id
