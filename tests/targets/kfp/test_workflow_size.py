"""The lower bound on the Argo Workflow a Kubeflow backend makes of an IR (kfpspec/workflow_size.py), the Go JSON
it is measured in (kfpspec/go_json.py), and the compile problem and submit refusal built on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.generated import layered, source, work
from pipecast import ParallelFor, pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.kfpspec.go_json import go_json, go_number, go_string, measure
from pipecast.targets.kfpspec.workflow_size import WORKFLOW_LIMIT, estimate
from tests.helpers.cases import compile_case
from tests.targets.kfp.fake_servers import FakeKfp
from tests.targets.kfp.flow_cases import nested_maps

DATA = Path(__file__).parent / "data" / "kfp_backend"  # the KFP backend's own IR → Workflow goldens (SOURCE.md)
SETTINGS = {"image": "ghcr.io/acme/pipecast:1.0", "artifact_root": "gs://acme/artifacts"}
HASH = "0" * 64  # the backend's sha256 of a container, in hex: its length is what counts


def test_go_writes_numbers_and_strings_as_encoding_json_does():
    # encoding/json floatEncoder: shortest digits, 'f' format from 1e-6 up to 1e21, else 'e' without a leading 0.
    assert [go_number(x) for x in (9, 2.0, 0.5, -3, 1e-6, 1e-7, 1.25e-7, 1e16, 1.2345e17, 1e21, 1e100)] == [
        "9", "2", "0.5", "-3", "0.000001", "1e-7", "1.25e-7", "10000000000000000", "123450000000000000", "1e+21",
        "1e+100"]
    # HTMLEscape and the line separators; control characters as Go 1.22 writes them.
    assert go_string('a<b>&"\\\n\u2028\u2029\x01é') == '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\u2028\\u2029\\u0001é"'
    assert go_json({"b": [1, 2.5, True, None], "a": {}}) == '{"a":{},"b":[1,2.5,true,null]}'


@pytest.mark.parametrize("value", [
    {"a": "<x>&\u2028", "b": [1, 2.5, 'q"\\'], "c": {"z": 1e22, "y": "\n"}},
    {"k": [1, 2, 3], "s": "plain", "n": 10**22}, "x", 3, {"f": 0.5, "g": "v1.0"}, ["é", "\x01"],
])
def test_the_fast_measure_equals_gos_text(value):
    text = go_json(value)
    found = measure(value)
    assert (found.size, found.quotes, found.backslashes) == (len(text.encode()), text.count('"'), text.count("\\"))


TINY = {
    "components": {"comp-a": {"executorLabel": "exec-a"}},
    "deploymentSpec": {"executors": {"exec-a": {"container": {"image": "python:3.12", "command": ["echo"],
                                                              "args": ["x<y"]}}}},
    "pipelineInfo": {"name": "tiny"},
    "root": {"dag": {"tasks": {
        "a": {"cachingOptions": {}, "componentRef": {"name": "comp-a"}, "taskInfo": {"name": "a"}},
        "b": {"cachingOptions": {}, "componentRef": {"name": "comp-a"}, "dependentTasks": ["a"],
              "taskInfo": {"name": "b"}, "retryPolicy": {"maxRetryCount": 0}},
    }}},
}

# What the backend writes for TINY, by hand from its source (kubeflow/pipelines backend/src/v2/compiler/
# argocompiler): argo.go saveProtoToArguments (the root DAG's spec, the container and the component under the
# container's hash), dag.go task → container.go containerDriverTask and containerExecutorTask, dag.go depends.
# Go's json.Marshal writes '<' as \u003c and '&' as \u0026; protojson leaves out a zero retry count (so an empty
# retryPolicy, which this estimate leaves out too: it only counts what is certain).
TINY_ARGUMENTS = [
    r'{"name":"components-root","value":"{\"dag\":{\"tasks\":{\"a\":{\"cachingOptions\":{},\"componentRef\":'
    r'{\"name\":\"comp-a\"},\"taskInfo\":{\"name\":\"a\"}},\"b\":{\"cachingOptions\":{},\"componentRef\":'
    r'{\"name\":\"comp-a\"},\"dependentTasks\":[\"a\"],\"taskInfo\":{\"name\":\"b\"}}}}}"}',
    r'{"name":"implementations-HASH","value":"{\"args\":[\"x\\u003cy\"],\"command\":[\"echo\"],'
    r'\"image\":\"python:3.12\"}"}',
    r'{"name":"components-HASH","value":"{\"executorLabel\":\"exec-a\"}"}',
]
TINY_TASKS = [
    r'{"arguments":{"parameters":[{"name":"component","value":"{{workflow.parameters.components-HASH}}"},'
    r'{"name":"task","value":"{\"cachingOptions\":{},\"componentRef\":{\"name\":\"comp-a\"},\"taskInfo\":'
    r'{\"name\":\"a\"}}"},{"name":"container","value":"{{workflow.parameters.implementations-HASH}}"},'
    r'{"name":"parent-dag-id","value":"{{inputs.parameters.parent-dag-id}}"}]},"name":"a-driver",'
    r'"template":"system-container-driver"}',
    r'{"arguments":{"parameters":[{"name":"pod-spec-patch","value":"{{tasks.a-driver.outputs.parameters.'
    r'pod-spec-patch}}"},{"default":"false","name":"cached-decision","value":"{{tasks.a-driver.outputs.'
    r'parameters.cached-decision}}"}]},"depends":"a-driver.Succeeded","name":"a","template":'
    r'"system-container-executor"}',
    r'{"arguments":{"parameters":[{"name":"component","value":"{{workflow.parameters.components-HASH}}"},'
    r'{"name":"task","value":"{\"cachingOptions\":{},\"componentRef\":{\"name\":\"comp-a\"},\"dependentTasks\":'
    r'[\"a\"],\"taskInfo\":{\"name\":\"b\"}}"},{"name":"container","value":"{{workflow.parameters.'
    r'implementations-HASH}}"},{"name":"parent-dag-id","value":"{{inputs.parameters.parent-dag-id}}"}]},'
    r'"depends":"a.Succeeded","name":"b-driver","template":"system-container-driver"}',
    r'{"arguments":{"parameters":[{"name":"pod-spec-patch","value":"{{tasks.b-driver.outputs.parameters.'
    r'pod-spec-patch}}"},{"default":"false","name":"cached-decision","value":"{{tasks.b-driver.outputs.'
    r'parameters.cached-decision}}"}]},"depends":"b-driver.Succeeded","name":"b","template":'
    r'"system-container-executor"}',
]


def test_the_estimate_of_a_small_ir_is_what_the_backend_writes_by_hand():
    found = estimate(TINY)
    assert found.arguments == sum(len(text.replace("HASH", HASH)) for text in TINY_ARGUMENTS)
    assert found.tasks == sum(len(text.replace("HASH", HASH)) for text in TINY_TASKS)
    assert (found.total, found.task_count) == (found.arguments + found.tasks, 2)
    for text in TINY_ARGUMENTS + TINY_TASKS:  # each literal above is valid JSON
        json.loads(text.replace("HASH", HASH))


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("name", ["pipeline_with_condition", "parallel_for_after_dependency"])
def test_the_estimate_is_below_and_close_to_the_backends_own_workflow(name):
    """The KFP backend's golden Workflow for a kfp-compiled IR: a condition DAG, a loop with dependencies."""
    spec, *platform = _documents(DATA / f"{name}.ir.yaml")
    workflow = yaml.safe_load((DATA / f"{name}.workflow.yaml").read_text())
    found = estimate(spec, platform[0] if platform else None)
    arguments = sum(len(go_json(entry).encode()) for entry in workflow["spec"]["arguments"]["parameters"])
    # The DAG tasks the IR's tasks became: not the entrypoint's root driver nor the executor template's own task.
    tasks = sum(len(go_json(task).encode()) for template in workflow["spec"]["templates"]
                if "dag" in template and template["name"] != "entrypoint"
                for task in template["dag"]["tasks"] if task["name"] != "executor")
    assert 0.99 * arguments <= found.arguments <= arguments
    assert 0.95 * tasks <= found.tasks <= tasks
    assert found.total <= len(go_json(workflow).encode())


def test_a_ladder_of_one_function_is_refused_once_its_workflow_cannot_fit_and_vertex_is_not_checked():
    assert estimate(_documents_of(compile_case("kubeflow", layered(600).build(), settings=SETTINGS).main)).total \
        <= WORKFLOW_LIMIT
    with pytest.raises(UnsupportedFeatureError, match=(
            r"the Argo Workflow the Kubeflow Pipelines backend makes of pipeline 'layered_700' is at least "
            r"1,16\d,\d{3} bytes \(1.1\d MiB\) for its 700 tasks, over the 1,048,576 bytes \(1 MiB\) Argo's "
            r"controller keeps[\s\S]*fix: use fewer tasks \(about 6\d\d of these fit\): a map")):
        compile_case("kubeflow", layered(700).build(), settings=SETTINGS)
    assert compile_case("vertex", layered(700).build(), settings=SETTINGS).main  # no Argo Workflow on Vertex


def _documents_of(text: str) -> dict:
    return next(doc for doc in yaml.safe_load_all(text) if doc)


@pipeline(name="mapped_5000")
def mapped_5000(seed: int = 1):
    start = source(seed)
    with ParallelFor(list(range(5_000))) as k:
        work(start, k)


def test_a_map_of_five_thousand_items_is_one_argo_loop_and_fits():
    found = estimate(_documents_of(compile_case("kubeflow", mapped_5000, settings=SETTINGS).main))
    assert found.task_count == 3  # the step before, the loop, its body's one task
    assert found.total < WORKFLOW_LIMIT / 4


BIG = '''
from benchmarks.generated import layered

big = layered(700)
'''


@pytest.fixture
def server():
    fake = FakeKfp().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("mode", ["error", "warn"])
def test_submit_refuses_a_pipeline_whose_workflow_cannot_fit_before_any_request(server, tmp_path, monkeypatch, mode):
    from pipecast.cli import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    (tmp_path / "big_ladder.py").write_text(BIG)
    result = CliRunner().invoke(main, [
        "submit", f"{tmp_path / 'big_ladder.py'}:big", "--target", "kubeflow", "--on-unsupported", mode,
        "--set", "image=ghcr.io/acme/pipecast:1.0", "--set", "artifact_root=s3://acme/artifacts",
        "-c", f"host={server.url}"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "the Argo Workflow the Kubeflow Pipelines backend makes of pipeline 'layered_700' is at least" in \
        result.output
    assert "use fewer tasks" in result.output
    if mode == "warn":  # compiled with a warning, then refused by submit
        assert "nothing was submitted" in result.output
    assert server.requests == []


# The fast path (each DAG's tasks dumped at once, workflow_size.proto_total) against the one-task-at-a-time path.
def _task(ref: str, name: str, **fields) -> dict:
    return {"cachingOptions": {}, "componentRef": {"name": ref}, "taskInfo": {"name": name}, **fields}


def _constant(value) -> dict:
    return {"runtimeValue": {"constant": value}}


HOSTILE = {
    "components": {
        "comp-a": {"executorLabel": "exec-a", "inputDefinitions": {"parameters": {"p": {"parameterType": "STRING"}}}},
        "comp-b": {"executorLabel": "exec-b"},
        "comp-cond": {"dag": {"tasks": {
            "inner": _task("comp-a", "in<ner>", inputs={"parameters": {"p": _constant(0.5)}}),
            "inner-2": _task("comp-b", "inner 2", dependentTasks=["inner"])}}},
        "comp-loop": {"dag": {"tasks": {"body": _task("comp-a", "body", inputs={"parameters": {
            "p": {"componentInputParameter": "pipelinechannel--loop-item"}}})}}},
        "comp-exit": {"dag": {"tasks": {"tidy": _task("comp-b", "tidy"),  # a name not plain: one by one
                                        "Ünplain": _task("comp-b", "ü", dependentTasks=["tidy"])}}},
    },
    "deploymentSpec": {"executors": {
        "exec-a": {"container": {"image": "python:3.12", "args": ["a<b>&c\u2028", "1e-7"]}},
        "exec-b": {"container": {"image": "python:3.12", "command": ["x"], "env": [{"name": "E", "value": ""}]}}}},
    "pipelineInfo": {"name": "hostile"},
    "root": {"dag": {"tasks": {
        "a": _task("comp-a", "a<&>\u2028é", inputs={"parameters": {"p": _constant('x\u2029"\\\x01')}}),
        "b": _task("comp-a", "b", dependentTasks=["a"], retryPolicy={"maxRetryCount": 3, "backoffFactor": 2.0}),
        "c": _task("comp-b", "c", inputs={"parameters": {
            "z": _constant(1e22), "e": _constant(""), "f": _constant(False), "n": _constant(None),
            "zero": _constant(0), "digits": _constant("1234567890123456789012")}}),
        "cond": _task("comp-cond", "cond", dependentTasks=["a", "b"],
                      triggerPolicy={"condition": "inputs.parameter_values['x'] == 'a<b'"}),
        "loop": _task("comp-loop", "loop", parameterIterator={"itemInput": "pipelinechannel--loop-item",
                                                              "items": {"raw": "[1, 2.5, \"<\"]"}}),
        "exit": _task("comp-exit", "exit", dependentTasks=["cond"],
                      triggerPolicy={"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}),
    }}},
}
PLATFORM = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
    "exec-a": {"secretAsEnv": [{"secretName": "s<&>", "keyToEnv": [{"secretKey": "k", "envVar": "K"}]}]}}}}}}
# No empty value and no number in the tasks, but hostile text: the fast path measures these.
CLEAN = [_task("comp-a", f"t{index}<&>\u2028\u2029é\x01\"\\", dependentTasks=[f"t{index - 1}"],
               inputs={"parameters": {"p": _constant(f'["--step","s{index}"]')}}) for index in range(1, 40)]
# Integers Go writes as Python does: the fast path after the precise checks over the whole text.
WITH_INTS = [dict(task, retryPolicy={"maxRetryCount": index + 1}) for index, task in enumerate(CLEAN)]


def _irs():
    yield "tiny", TINY, None
    yield "hostile", HOSTILE, PLATFORM
    yield "hostile-no-platform", HOSTILE, None
    yield "clean", {**TINY, "root": {"dag": {"tasks": {task["taskInfo"]["name"][:3]: task for task in CLEAN}}}}, None
    yield "ints", {**TINY, "root": {"dag": {"tasks": {f"t{i}": task for i, task in enumerate(WITH_INTS)}}}}, PLATFORM
    for name in ("pipeline_with_condition", "parallel_for_after_dependency"):
        spec, *platform = _documents(DATA / f"{name}.ir.yaml")
        yield name, spec, platform[0] if platform else None
    yield "layered_120", _documents_of(compile_case("kubeflow", layered(120).build(), settings=SETTINGS).main), None
    for case in ("hostile", "ml_pipeline", "full_options", "hyperparameter_search"):
        text = compile_case("kubeflow", case, golden=True, on_unsupported="warn").main
        spec, *platform = [doc for doc in yaml.safe_load_all(text) if doc]
        yield f"golden-{case}", spec, platform[0] if platform else None
    yield "nested-maps", _documents_of(compile_case("kubeflow", nested_maps, settings=SETTINGS).main), None


def test_one_dump_per_dag_gives_exactly_the_estimate_of_one_task_at_a_time():
    from pipecast.targets.kfpspec.workflow_size import _Model

    for name, spec, platform in _irs():
        fast, slow = _Model(spec, platform).estimate(), _Model(spec, platform, bulk=False).estimate()
        assert fast == slow, name
        assert fast == estimate(spec, platform), name


def test_the_fast_path_is_taken_where_it_is_exact_and_sums_the_per_task_measures():
    from pipecast.targets.kfpspec.workflow_size import proto_measure, proto_total

    ladder = _documents_of(compile_case("kubeflow", layered(50).build(), settings=SETTINGS).main)
    for tasks in (CLEAN, WITH_INTS, list(ladder["root"]["dag"]["tasks"].values()), []):
        found = proto_total(tasks)
        assert found is not None
        parts = [proto_measure(task) for task in tasks]
        assert (found.size, found.quotes, found.backslashes) == (
            sum(p.size for p in parts), sum(p.quotes for p in parts), sum(p.backslashes for p in parts))
    for task in HOSTILE["root"]["dag"]["tasks"].values():  # floats, empty values: one by one
        if task["taskInfo"]["name"] in ("b", "c"):
            assert proto_total([task]) is None


_TEXT = st.text(alphabet=st.sampled_from(list('ab0-.eE"\\<>&\u2028\u2029é\x01:,[]{} ')), max_size=8)
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.integers(10**20, 10**23),
                  st.floats(allow_nan=False, allow_infinity=False), _TEXT)
_KEYS = st.one_of(_TEXT, st.just("cachingOptions"))
_VALUE = st.recursive(_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _VALUE, max_size=4), max_size=5))
def test_one_dump_of_many_messages_measures_their_sum_or_declines(messages):
    from pipecast.targets.kfpspec.workflow_size import proto_measure, proto_total

    found = proto_total(messages)
    if found is not None:
        parts = [proto_measure(message) for message in messages]
        assert (found.size, found.quotes, found.backslashes) == (
            sum(p.size for p in parts), sum(p.quotes for p in parts), sum(p.backslashes for p in parts))


def test_loops_nested_in_loops_are_measured_in_their_own_dags():
    """The backend compiles each loop's DAG component, nested ones too (``dag.go``, ``DAG`` per component): every
    loop task of every DAG is measured as a loop, wherever it sits."""
    spec = _documents_of(compile_case("kubeflow", nested_maps, settings=SETTINGS).main)
    found = estimate(spec)
    assert found.task_count == 10  # root 3; the outer loops' DAGs 3 and 1; the inner loops' 1, 1 and 1
    outer = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    flat = {**spec, "components": {**spec["components"], "comp-for-loop-1": {
        **spec["components"]["comp-for-loop-1"], "dag": {"tasks": {"row-sum": dict(outer["row-sum"],
                                                                                   dependentTasks=[])}}}}}
    without = estimate(flat)  # the two inner loops gone, and their DAGs (no task reaches them)
    assert without.task_count == 6 and without.tasks < found.tasks and without.arguments < found.arguments
