"""Issue 17: typed outputs as Airflow Assets (Airflow 2: Datasets), and the step's URI as a pod task's XCom.

Goldens of the typed pipeline on the worker and in pods, for Airflow 3 and 2; the URIs (static, ASCII, one per
output); hostile roots that stay data; and the runtime writing the XCom file KubernetesPodOperator reads. That
Airflow loads these DAGs is in test_dagbag.py / test_airflow2.py, that it records the events in test_dags_test.py
/ test_airflow2.py, and that a replayed pod writes the file its sidecar reads in test_replay.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.errors import ValidationError
from pipecast.runtime.airflow_xcom import XCOM_FILE, XCOM_FILE_VAR
from pipecast.targets.airflow.assets import MAX_URI, asset_uri
from tests.helpers.cases import compile_case, env_with_cases
from tests.targets.airflow.support import read_dag_file
from tests.targets.airflow.typed_pipelines import HOSTILE_ROOT, typed_assets, typed_hostile, typed_in_map

GOLDEN = Path(__file__).parent / "data" / "golden_assets"
VARIANTS = {"typed_assets": {"artifact_root": "s3://pipecast-golden/artifacts", "ship_code": False},
            "typed_pods": {"artifact_root": "s3://pipecast-golden/artifacts", "mode": "kubernetes",
                           "image": "ghcr.io/acme/typed:1", "dag_id": "typed_pods"}}


def dag_text(variant: str, version: int, pipeline=typed_assets) -> str:
    settings = {**VARIANTS.get(variant, {}), "airflow_version": version}
    return compile_case("airflow", pipeline.build(), settings=settings).bundle.files[0][1]


@pytest.mark.parametrize("version", [3, 2])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_typed_asset_goldens(variant, version, request):
    text = dag_text(variant, version)
    golden = GOLDEN / f"{variant}.airflow{version}.py.golden"
    if request.config.getoption("--update-goldens"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert text == golden.read_text(encoding="utf-8")


def test_each_typed_output_is_an_outlet_of_its_task_and_plain_steps_have_none():
    tasks = {task["task_id"]: task for task in read_dag_file(dag_text("typed_assets", 3))["tasks"]}
    root = "s3://pipecast-golden/artifacts/typed_assets/assets"
    assert tasks["prepare"]["outlets"] == {"table": {"uri": f"{root}/prepare/table", "type": "Dataset"}}
    assert tasks["train"]["outlets"] == {"model": {"uri": f"{root}/train/model", "type": "Model"},
                                         "output": {"uri": f"{root}/train/output", "type": "Metrics"}}
    assert "outlets" not in tasks["report"]


@pytest.mark.parametrize("root, expected", [
    ("s3://b/p/", "s3://b/p/pipe/assets/step/out"),
    ("file:///srv/art", "file:///srv/art/pipe/assets/step/out"),
    ("/srv/art", "file:///srv/art/pipe/assets/step/out"),
    ("gs://b/a b/é", "gs://b/a%20b/%C3%A9/pipe/assets/step/out"),
    # Expanded on the worker (artifacts.expand_root): no static place, so a name of pipecast's own.
    ("~/.pipecast/artifacts", "x-pipecast://pipe/step/out"),
    ("file://$HOME/art", "x-pipecast://pipe/step/out"),
    ("relative/art", "x-pipecast://pipe/step/out"),
])
def test_asset_uris_are_static_ascii_and_under_the_root(root, expected):
    assert asset_uri(root, "pipe", "step", "out") == expected


def test_a_hostile_root_stays_one_ascii_uri_in_the_task_table():
    text = compile_case("airflow", typed_hostile.build(),
                        settings={"artifact_root": HOSTILE_ROOT, "ship_code": False}).bundle.files[0][1]
    (task,) = read_dag_file(text)["tasks"]
    outlets = task["outlets"]
    assert sorted(outlets) == ["model.v1-final", "scores"]
    for name, outlet in outlets.items():
        uri = outlet["uri"]
        assert uri.isascii() and not any(c in uri for c in " \"{}#?\n") and uri.startswith("s3://bucket/a'b%22c")
        assert uri.endswith(f"/typed.hostile-1/assets/fit/{name}")
    # The file's structure is the typed DAG's: the same statements, whatever the root (only TASKS differs).
    plain = compile_case("airflow", typed_hostile.build(),
                         settings={"artifact_root": "s3://b/a", "ship_code": False}).bundle.files[0][1]
    assert [type(node).__name__ for node in ast.parse(text).body] == [
        type(node).__name__ for node in ast.parse(plain).body]


def test_an_asset_uri_longer_than_airflow_allows_is_refused_at_compile():
    root = "s3://bucket/" + "x" * MAX_URI
    with pytest.raises(ValidationError) as error:
        compile_case("airflow", typed_assets.build(), settings={"artifact_root": root, "ship_code": False})
    assert f"more than Airflow's {MAX_URI}" in str(error.value) and "step 'prepare'" in str(error.value)


def test_typed_outputs_inside_a_map_are_outlets_of_the_mapped_taskflow_task_with_no_warning():
    """A step in a map runs as a TaskFlow task: ``run_step.override(outlets=..., post_execute=...)`` gives it the
    same assets and hook as an operator (Airflow passes both to every mapped instance: partial kwargs), and the
    task returns the step URI the hook records."""
    bundle = compile_case("airflow", typed_in_map.build(),
                          settings={"artifact_root": "s3://b/a", "ship_code": False}).bundle
    text = bundle.files[0][1]
    (task,) = [t for t in read_dag_file(text)["tasks"] if t["task_id"] == "score"]
    assert task["outlets"] == {"output": {"uri": "s3://b/a/typed_in_map/assets/score/output", "type": "Metrics"}}
    assert '"post_execute": record_outlets' in text and 'return flow("run", context' in text
    assert not [n for n in bundle.warnings if "Asset" in n.message]


def test_pods_push_their_xcom_through_the_file_the_sidecar_reads():
    """cncf-kubernetes: the sidecar shares PodDefaults.XCOM_MOUNT_PATH and reads return.json from it
    (utils/pod_manager.py extract_xcom_json); the DAG gives pods that path and sets do_xcom_push."""
    from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults

    assert XCOM_FILE == f"{PodDefaults.XCOM_MOUNT_PATH}/return.json"
    text = dag_text("typed_pods", 3)
    assert "do_xcom_push=True," in text and f'"{XCOM_FILE_VAR}": "{XCOM_FILE}"' in text


def test_the_runtime_writes_the_step_uri_as_json_to_the_xcom_file(tmp_path):
    """A pod's runtime (no Airflow context in its environment) writes its step folder's URI, as JSON, to the file
    it is given, and prints no extra line; without the XCom volume it warns and the step still succeeds."""
    root, xcom = tmp_path / "store", tmp_path / "airflow" / "xcom"
    xcom.mkdir(parents=True)
    argv = [sys.executable, "-m", "pipecast.runtime", "run", "--fn", "tests.targets.airflow.typed_pipelines:prepare",
            "--pipeline", "typed_assets", "--step", "prepare", "--run-id", "manual__1", "--artifact-root",
            f"file://{root}", "--param", "rows=int:3", "--output", "table", "--output", "count"]
    env = {**env_with_cases(), XCOM_FILE_VAR: str(xcom / "return.json")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((xcom / "return.json").read_text()) == f"file://{root}/typed_assets/runs/manual__1/prepare"
    assert done.stdout == ""
    missing = subprocess.run(argv, env={**env, XCOM_FILE_VAR: str(tmp_path / "none" / "return.json")},
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 0 and "no XCom of its artifact URI" in missing.stderr
