"""The Airflow DAG file as data: it parses, values stay data, settings and refusals are right (no Airflow here)."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from pipecast.compiler import ir
from pipecast.errors import Severity, UnsupportedFeatureError
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from pipecast.targets import kube
from pipecast.targets.airflow.commands import bash_command
from pipecast.targets.airflow.render import environment, json_table_literal, python_literal
from pipecast.targets.airflow.secrets import jinja_string
from tests.helpers.cases import CASE_IDS, CASES, CompiledCase, case, compile_case, env_with_cases
from tests.targets.airflow import pipelines
from tests.targets.airflow.support import kubernetes_expand, pod_env, read_dag_file, render_env

GOLDEN_V2 = Path(__file__).parent / "data" / "golden_airflow2"
EVIL = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"
BASE = {"gpu_node_label": "gke"}  # the golden settings' choice; unset is tested on its own
POD_SETTINGS = {"mode": "kubernetes", "image": "ghcr.io/acme/hostile:1", "artifact_root": "s3://b/a"}


def dag_file(compiled: CompiledCase) -> str:
    """The text of the DAG file an Airflow compile writes; every other file is the code shipped beside it."""
    main = compiled.bundle.main_file
    assert main.endswith(".dag.py")
    assert all(path.startswith(main.removesuffix(".dag.py") + ".code/") for path, _ in compiled.bundle.files[1:])
    return compiled.main


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("version", [3, 2])
def test_every_case_parses_and_keeps_its_structure(case, version):
    pipeline = case.build()
    text = dag_file(compile_case("airflow", pipeline, golden=True, settings={"airflow_version": version}))
    compile(text, f"{pipeline.name}.py", "exec")
    dag = read_dag_file(text)
    assert [t["task_id"] for t in dag["tasks"]] == [s.name for s in pipeline.steps]
    for task, step in zip(dag["tasks"], pipeline.steps):
        assert task["upstream"] == list(step.upstream())
        assert task.get("retries", 0) == step.retry.retries
        timeout = task.get("execution_timeout")
        assert timeout == (step.timeout_seconds or None)
    assert dag["dag"]["schedule"] == pipeline.schedule
    assert dag["dag"]["catchup"] is False
    assert list(dag["params"]) == [p.name for p in pipeline.parameters]
    assert dag["dag"]["default_args"]["retries"] == 0


def test_hostile_values_come_back_verbatim_in_a_local_dag():
    pipeline = case("hostile").build()
    dag = read_dag_file(dag_file(compile_case("airflow", pipeline, settings=BASE)))
    assert dag["dag"]["description"] == EVIL
    assert dag["params"]["text"]["args"] == [EVIL]
    assert dag["params"]["data"]["args"] == [{"k'\"{{x}}": "${{ y }}\n$(z)"}]
    first = dag["tasks"][0]
    assert first["env"] == {"EVIL_ENV": EVIL}
    # The only templates in the file are pipecast's own, one per run id, logical date and parameter.
    assert dag["RUN_ID_ENV"] == {"PIPECAST_RUN_ID": "{{ run_id }}", "PIPECAST_LOGICAL_TIME":
                                 "{{ logical_date.isoformat() if logical_date is defined and logical_date else '' }}"}
    for task in dag["tasks"]:
        for name, template in task.get("templated_env", {}).items():
            assert template in ("{{ params.text }}", "{{ params.data | tojson }}"), (name, template)


def _words(command: str, env: dict[str, str]) -> list[str]:
    """The argv bash builds from ``command`` (``exec`` swapped for a printer of its arguments)."""
    assert command.startswith("exec ")
    printer = "printf '%s\\0' " + command[len("exec "):]
    result = subprocess.run(["bash", "-c", printer], env=env, capture_output=True, check=True)
    return result.stdout.decode().split("\0")[:-1]


def test_bash_command_gives_the_runtime_exactly_its_arguments_with_hostile_values():
    pipeline = case("hostile").build()
    dag = read_dag_file(dag_file(compile_case("airflow", pipeline, settings=BASE)))
    params = {"text": EVIL + " $PATH \"$(id)\"", "data": {"q'": "$HOME `id` {{ x }}", "n": [1, None]}}
    run_id = "manual__2026-01-01T00:00:00+00:00"
    for task, step in zip(dag["tasks"], pipeline.steps):
        env = render_env(dag, task, run_id, params)
        syntax = EngineSyntax(run_id=run_id, artifact_root="~/.pipecast/artifacts",
                              parameter=lambda p: render_parameter(p.type, params[p.name]))
        expected = step_command(pipeline, step, syntax)
        got = _words(task["command"], env)
        # Jinja's tojson escapes ' as \u0027: other text, the same JSON value.
        assert [_decoded(w) for w in got] == [_decoded(w) for w in expected]


def _decoded(word: str) -> object:
    return json.loads(word[len("data=dict:"):]) if word.startswith("data=dict:") else word


def test_bash_command_quotes_words_and_never_ends_like_a_script_path():
    assert bash_command(["python", "-m", "x", "a b", "", "it's"]) == "exec python -m x 'a b' '' 'it'\"'\"'s'"
    assert bash_command(["python", "--output", "run.sh"]).endswith("'run.sh'")


def test_hostile_values_survive_kubernetes_expansion_in_a_pod_dag():
    pipeline = case("hostile").build()
    dag = read_dag_file(dag_file(compile_case("airflow", pipeline, settings={**BASE, **POD_SETTINGS})))
    params = {"text": "$(HOME) $$ " + EVIL, "data": {"k": "$(PIPECAST_RUN_ID)"}}
    run_id = "manual__x"
    first = dag["tasks"][0]
    assert kubernetes_expand(first["env"]["EVIL_ENV"], {"whoami": "root"}) == EVIL
    for task, step in zip(dag["tasks"], pipeline.steps):
        env = pod_env(task, render_env(dag, task, run_id, params))
        env["HOME"] = "/root"  # variables the container defines must not leak into values either
        argv = [kubernetes_expand(a, env) for a in task["cmds"] + task["arguments"]]
        syntax = EngineSyntax(run_id=run_id, artifact_root="s3://b/a",
                              parameter=lambda p: render_parameter(p.type, params[p.name]))
        assert argv == step_command(pipeline, step, syntax)


def test_auto_mode_runs_steps_with_an_image_in_pods_and_the_rest_on_the_worker():
    local = read_dag_file(dag_file(compile_case("airflow", "quickstart", settings=BASE)))
    assert "airflow.providers.standard.operators.bash.BashOperator" in local["imports"]
    assert not any("kubernetes" in name for name in local["imports"])
    pods = read_dag_file(dag_file(compile_case("airflow", "ml_training",
                                               settings={**BASE, "artifact_root": "s3://b/a"})))
    assert "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator" in pods["imports"]
    assert "airflow.sdk.literal" in pods["imports"]
    train = next(t for t in pods["tasks"] if t["task_id"] == "train_model")
    assert train["image"] == "ghcr.io/acme/pipecast-ml:1.0"
    assert train["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert train["retry_delay"] == 10 and train["execution_timeout"] == 1800


def test_local_mode_reports_what_a_worker_cannot_honour():
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", "ml_training", settings={**BASE, "mode": "local"})
    text = str(err.value)
    assert "the image 'ghcr.io/acme/pipecast-ml:1.0' is not used" in text
    assert "cannot reserve cpu/memory" in text
    assert "--set mode=kubernetes" in text
    bundle = compile_case("airflow", "ml_training", settings={"mode": "local"}, on_unsupported="warn").bundle
    assert bundle.warnings and all(w.severity.value == "warning" for w in bundle.warnings)


def test_pods_need_an_object_store_and_an_image():
    with pytest.raises(UnsupportedFeatureError, match="pipeline 'ml_training' has no artifact root"):
        compile_case("airflow", "ml_training", settings=BASE)
    for root in ("file:///tmp/x", "/tmp/x"):  # refused (issue 11): pods share no disk, --on-unsupported=warn or not
        with pytest.raises(UnsupportedFeatureError, match=f"artifact root '{root}' is a path on one machine"):
            compile_case("airflow", "ml_training", settings={**BASE, "artifact_root": root},
                         on_unsupported="warn")
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", "quickstart",
                     settings={**BASE, "mode": "kubernetes", "artifact_root": "s3://b/a"})
    assert "image" in str(err.value)


def test_local_tasks_with_a_worker_local_artifact_root_compile_with_a_warning():
    """Steps pass data through the artifact root: on a worker's own disk that works only on one machine."""
    for settings, root in [({}, "~/.pipecast/artifacts"), ({"artifact_root": "file:///srv/x"}, "file:///srv/x"),
                           ({"artifact_root": "/srv/x"}, "/srv/x")]:
        bundle = compile_case("airflow", "quickstart", settings=settings).bundle
        (warning,) = bundle.warnings
        assert warning.severity is Severity.WARNING and warning.target == "airflow"
        assert f"local tasks keep their outputs under {root!r}, on the disk of the Airflow worker" in warning.message
        assert "--set artifact_root=s3://bucket/prefix" in (warning.fix or "")
    shared = compile_case("airflow", "quickstart", settings={"artifact_root": "s3://b/a"}).bundle
    assert shared.warnings == ()
    pods = compile_case("airflow", "ml_training", settings={"artifact_root": "gs://b"}).bundle
    assert pods.warnings == ()


@pytest.mark.parametrize(("settings", "message"), [
    ({"mode": "docker"}, "setting 'mode' (in --set): must be one of ['auto', 'local', 'kubernetes'], got 'docker'"),
    ({"airflow_version": 1}, "setting 'airflow_version' (in --set): must be 3 or 2"),
    ({"dag_id": "a b"}, "setting 'dag_id' (in --set): an Airflow DAG id holds only letters"),
    ({"start_date": "yesterday"}, "setting 'start_date' (in --set): must be a date written YYYY-MM-DD"),
    ({"catchup": "maybe"}, "setting 'catchup' (in --set): must be true or false, got 'maybe'"),
    ({"namespace": "Bad_NS", **POD_SETTINGS}, "setting 'namespace' (in --set): must be a Kubernetes namespace"),
    ({"image_pull_policy": "Sometimes", **POD_SETTINGS}, "must be one of ['Always', 'IfNotPresent', 'Never']"),
    ({"service_account": "Trainer!", **POD_SETTINGS}, "'service_account' (in --set): must be a DNS-1123 subdomain"),
    ({"image_pull_secrets": ["regcred", "Bad Secret"], **POD_SETTINGS}, "has name(s) ['Bad Secret'] that are not"),
    ({"kubernetes_conn_id": "{{ x }}", **POD_SETTINGS}, "must be an Airflow connection id"),
    ({"secret_store": "vault"}, "setting 'secret_store' (in --set): must be one of ['airflow', 'kubernetes']"),
    ({"colour": "blue"}, "unknown setting 'colour'"),
    ({"cwd": "/srv"}, "setting 'cwd' (in --set) is now called 'working_directory'"),
])
def test_bad_settings_are_errors_that_say_the_fix(settings, message):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", "full_options", settings={**BASE, **settings})
    assert message in str(err.value)


def test_settings_reach_the_dag():
    text = dag_file(compile_case("airflow", "full_options",
                                 settings={**BASE, "dag_id": "nightly.train", "start_date": "2025-02-03",
                                           "catchup": True, "tags": "team-ml,nightly", "namespace": "ml",
                                           "service_account": "trainer", "image_pull_policy": "Always",
                                           "kubernetes_conn_id": "k8s_prod"}))
    dag = read_dag_file(text)
    assert dag["dag"]["dag_id"] == "nightly.train" and dag["dag"]["catchup"] is True
    assert dag["dag"]["tags"] == ["golden", "options", "team-ml", "nightly", "pipecast"]
    assert dag["dag"]["default_args"] == {"retries": 0, "namespace": "ml", "service_account_name": "trainer",
                                          "image_pull_policy": "Always", "kubernetes_conn_id": "k8s_prod"}
    assert "datetime(2025, 2, 3, tzinfo=timezone.utc)" in text
    renamed = compile_case("airflow", "full_options", settings={"dag_id": "nightly.train", "gpu_node_label": "gke"})
    assert renamed.bundle.main_file == "nightly.train.dag.py"


def _start_date(text: str) -> str | None:
    (dag_call,) = [node.items[0].context_expr for node in ast.parse(text).body if isinstance(node, ast.With)]
    assert isinstance(dag_call, ast.Call)
    values = [ast.unparse(k.value) for k in dag_call.keywords if k.arg == "start_date"]
    return values[0] if values else None


def test_no_start_date_unless_airflow_needs_one_so_no_logical_date_is_before_it():
    """Airflow runs no task for a logical date before the start date and calls the run a success."""
    scheduled = pipelines.required_scheduled.build()
    for version in (3, 2):
        assert _start_date(dag_file(compile_case("airflow", "quickstart",
                                                 settings={**BASE, "airflow_version": version}))) is None
    assert _start_date(dag_file(compile_case("airflow", scheduled, settings=BASE,
                                             on_unsupported="warn"))) is None  # Airflow 3 needs none
    # Airflow 2.10 requires a start date on a scheduled DAG; with catchup=False only the latest interval runs.
    assert _start_date(dag_file(compile_case("airflow", scheduled, settings={**BASE, "airflow_version": 2},
                                             on_unsupported="warn"))) == \
        "datetime(1970, 1, 1, tzinfo=timezone.utc)"
    text = dag_file(compile_case("airflow", "quickstart", settings={**BASE, "start_date": "2025-02-03"}))
    assert _start_date(text) == "datetime(2025, 2, 3, tzinfo=timezone.utc)"
    assert "from datetime import timedelta\n" in dag_file(compile_case("airflow", "quickstart", settings=BASE))
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", scheduled, settings={**BASE, "catchup": True}, on_unsupported="warn")
    assert "setting 'catchup' is true but no start_date is set" in str(err.value)
    assert "fix: --set start_date=YYYY-MM-DD" in str(err.value)


def test_local_settings_python_pythonpath_working_directory():
    settings = {"python": "/opt/venv/bin/python3", "pythonpath": "/srv/code", "working_directory": "/srv/work dir"}
    dag = read_dag_file(dag_file(compile_case("airflow", "quickstart", settings={**BASE, **settings})))
    task = dag["tasks"][0]
    assert task["command"].startswith("exec /opt/venv/bin/python3 -m pipecast.runtime run ")
    assert task["env"] == {"PYTHONPATH": "/srv/code"} and task["cwd"] == "/srv/work dir"


def test_mixed_modes_step_settings_secrets_and_reserved_parameter_names():
    dag = read_dag_file(dag_file(compile_case("airflow", pipelines.mixed_modes, settings=BASE)))
    emit, pod, worker = dag["tasks"]
    assert "command" in emit and "image" not in emit
    assert pod["image"] == "ghcr.io/acme/pod:1" and pod["namespace"] == "gpu-jobs"
    assert "namespace" not in worker and "command" in worker
    assert pod["secrets"] == {"API_TOKEN": ["api-token", "API_TOKEN"], "DB_PASSWORD": ["db-credentials", "password"]}
    # On the worker the secret is an Airflow variable, rendered for each run; never a value in the file.
    assert worker["templated_env"]["API_TOKEN"] == "{{ var.value['api-token'] }}"
    assert emit["templated_env"]["PIPECAST_PARAM_items"] == "{{ params['items'] | tojson }}"
    assert emit["templated_env"]["PIPECAST_PARAM_keys"] == "{{ params['keys'] | tojson }}"
    assert emit["templated_env"]["PIPECAST_PARAM_flag"] == "{{ params.flag | tojson }}"
    assert worker["retry_exponential_backoff"] == 3.0 and worker["max_retry_delay"] == 60
    assert dag["dag"]["default_args"]["service_account_name"] == "pipecast-runner"


def test_airflow_secret_references():
    dag = read_dag_file(dag_file(compile_case("airflow", "full_options",
                                              settings={**BASE, "secret_store": "airflow"})))
    load = dag["tasks"][0]
    assert load["templated_env"]["DB_PASSWORD"] == "{{ conn['db-credentials'].password | replace('$', '$$') }}"
    assert load["templated_env"]["API_TOKEN"] == "{{ var.value['api-token'] | replace('$', '$$') }}"
    assert "secrets" not in load
    with pytest.raises(UnsupportedFeatureError, match="cannot read Kubernetes secrets"):
        compile_case("airflow", pipelines.mixed_modes, settings={**BASE, "secret_store": "kubernetes", "mode": "local"},
                     on_unsupported="warn")


def test_tolerations_in_pods_per_pipeline_and_per_step():
    dag = read_dag_file(dag_file(compile_case("airflow", pipelines.mixed_modes, settings=BASE)))
    assert dag["dag"]["default_args"]["tolerations"] == [pipelines.SPOT]  # every pod, unless it has its own
    emit, pod, worker = dag["tasks"]
    assert pod["tolerations"] == [pipelines.DEDICATED]
    assert "tolerations" not in emit and "tolerations" not in worker
    spot = [{"effect": "NoSchedule", "operator": "Exists", "key": "spot"}]
    dag = read_dag_file(dag_file(compile_case("airflow", "full_options", settings={**BASE, "tolerations": spot})))
    assert dag["dag"]["default_args"]["tolerations"] == [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert not any("tolerations" in task for task in dag["tasks"])
    # A step's own empty list clears the pipeline's; an unknown key is an error.
    cleared = _with_step_setting(pipelines.mixed_modes.build(), "in_pod", "tolerations", [])
    assert read_dag_file(dag_file(compile_case("airflow", cleared, settings=BASE)))["tasks"][1]["tolerations"] == []
    with pytest.raises(UnsupportedFeatureError, match="setting 'tolerations' \\(in --set\\): has no key 'colour'"):
        compile_case("airflow", "full_options",
                     settings={**BASE, "tolerations": [{"key": "spot", "colour": "red"}]})
    on_worker = _with_step_setting(pipelines.mixed_modes.build(), "on_worker", "tolerations", spot)
    with pytest.raises(UnsupportedFeatureError, match="a local task runs on the Airflow worker; its pod settings "
                                                      "\\('tolerations'\\) apply to pods only"):
        compile_case("airflow", on_worker, settings=BASE)


def test_gpu_node_label_selects_gpu_nodes_only_when_chosen():
    pipeline = case("full_options").build()

    def selector(on_unsupported: str = "error", **settings: object) -> object:
        compiled = compile_case("airflow", pipeline, settings={**BASE, **settings}, on_unsupported=on_unsupported)
        return read_dag_file(dag_file(compiled))["tasks"][1].get("node_selector")

    assert selector(gpu_node_label="gke") == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert selector(gpu_node_label="nvidia") == {"nvidia.com/gpu.product": "nvidia-tesla-t4"}
    assert selector(gpu_node_label="example.com/gpu") == {"example.com/gpu": "nvidia-tesla-t4"}
    with pytest.raises(UnsupportedFeatureError, match="gpu_type 'nvidia-tesla-t4' needs to know which node label"):
        compile_case("airflow", pipeline, settings={**BASE, "gpu_node_label": None})
    assert selector(gpu_node_label=None, on_unsupported="warn") is None  # any GPU node, and a warning
    with pytest.raises(UnsupportedFeatureError, match="setting 'gpu_node_label' \\(in --set\\): is neither a "
                                                      "known scheme"):
        compile_case("airflow", pipeline, settings={**BASE, "gpu_node_label": "Not A Label"})


def _with_step_setting(pipeline: ir.Pipeline, step_name: str, key: str, value: object) -> ir.Pipeline:
    setting = ir.Setting(target="airflow", key=key, value_json=json.dumps(value))
    steps = tuple(dataclasses.replace(s, settings=(*(t for t in s.settings if t.key != key), setting))
                  if s.name == step_name else s for s in pipeline.steps)
    return dataclasses.replace(pipeline, steps=steps)


def _with_secret(secret: ir.SecretRef) -> ir.Pipeline:
    """The quickstart with ``secret`` as the one secret of its first step."""
    pipeline = case("quickstart").build()
    first = dataclasses.replace(pipeline.steps[0], secrets=(secret,))
    return dataclasses.replace(pipeline, steps=(first, *pipeline.steps[1:]))


def test_kubernetes_secret_store_uses_the_rule_and_message_of_every_kubernetes_target():
    secret = ir.SecretRef(name="PERSONAL_ACCESS_TOKEN", key=None, env="GITHUB_TOKEN")
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", _with_secret(secret), settings={**BASE, **POD_SETTINGS})
    message, fix = kube.secret_ref_problem(secret)  # type: ignore[misc]
    assert message in str(err.value) and f"fix: {fix}" in str(err.value)
    assert "(key 'GITHUB_TOKEN')" not in str(err.value)  # no key was given: none is named as if it had been
    bad_key = ir.SecretRef(name="db", key="pass word", env="DB_PASSWORD")
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", _with_secret(bad_key), settings={**BASE, **POD_SETTINGS})
    message, fix = kube.secret_ref_problem(bad_key)  # type: ignore[misc]
    assert message in str(err.value) and f"fix: {fix}" in str(err.value)


def test_airflow_secret_store_follows_airflows_own_name_rules():
    """Variable keys are any text up to 250 characters and connection ids what Airflow's sanitize_conn_id keeps;
    names reach the template escaped. Names of the accessors' own attributes are refused."""
    cases = {
        ir.SecretRef(name="PERSONAL_ACCESS_TOKEN", key=None, env="GITHUB_TOKEN"):
            "{{ var.value['PERSONAL_ACCESS_TOKEN'] }}",
        ir.SecretRef(name="team/ci token", key=None, env="T"): "{{ var.value['team\\x2fci\\x20token'] }}",
        ir.SecretRef(name="db:main", key="region (eu)", env="R"):
            "{{ conn['db\\x3amain'].extra_dejson['region\\x20\\x28eu\\x29'] }}",
        ir.SecretRef(name="db", key="password", env="P"): "{{ conn['db'].password }}",
    }
    for secret, expected in cases.items():
        task = read_dag_file(dag_file(compile_case("airflow", _with_secret(secret), settings=BASE)))["tasks"][0]
        assert task["templated_env"][secret.env] == expected
    refused = {
        ir.SecretRef(name="a b", key="password", env="P"):
            "secret 'a b' (key 'password') cannot name an Airflow connection",
        ir.SecretRef(name="x" * 251, key=None, env="V"):
            "cannot name an Airflow variable: a variable key holds 1 to 250",
        ir.SecretRef(name="get", key=None, env="V"): "var.value['get'] gives the accessor's own attribute 'get'",
        ir.SecretRef(name="get", key="password", env="P"): "conn['get'] gives the accessor's own attribute 'get'",
        ir.SecretRef(name="_hidden", key=None, env="V"): "secret '_hidden' cannot be read in an Airflow template",
    }
    for secret, message in refused.items():
        with pytest.raises(UnsupportedFeatureError) as err:
            compile_case("airflow", _with_secret(secret), settings=BASE)
        assert message in str(err.value) and "fix: rename the" in str(err.value)
    # Airflow 2's accessors also have an attribute 'var'; Airflow 3's do not.
    var = ir.SecretRef(name="var", key=None, env="V")
    task = read_dag_file(dag_file(compile_case("airflow", _with_secret(var), settings=BASE)))["tasks"][0]
    assert task["templated_env"]["V"] == "{{ var.value['var'] }}"
    with pytest.raises(UnsupportedFeatureError, match=r"var.value\['var'\] gives the accessor's own attribute"):
        compile_case("airflow", _with_secret(var), settings={**BASE, "airflow_version": 2})


def test_jinja_string_literals_read_back_exactly_through_jinjas_lexer():
    for text in [*AWKWARD, "team/ci token", "{{ x }}", "}}", "'", "\\x41", "\U0001f642 🙂"]:
        rendered = jinja2.Environment().from_string("{{ " + jinja_string(text) + " }}").render()
        assert rendered == text
        assert "'" not in jinja_string(text)[1:-1] and "{" not in jinja_string(text)


def test_airflow_2_uses_its_import_paths_and_the_runtime_retries_what_it_cannot_express():
    text = dag_file(compile_case("airflow", "full_options", settings={**BASE, "airflow_version": 2}))
    dag = read_dag_file(text)
    assert {"airflow.models.dag.DAG", "airflow.models.param.Param", "airflow.utils.template.literal",
            "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator"} <= set(dag["imports"])
    assert not any(name.startswith("airflow.sdk") for name in dag["imports"])
    assert dag["tasks"][0]["retry_exponential_backoff"] is True
    local = read_dag_file(dag_file(compile_case("airflow", "quickstart",
                                                settings={**BASE, "airflow_version": "2"})))
    assert "airflow.operators.bash.BashOperator" in local["imports"]
    # Airflow 2 cannot multiply the delay by 3: the runtime retries within one task, Airflow does not retry it.
    on_worker = read_dag_file(dag_file(compile_case("airflow", pipelines.mixed_modes,
                                                    settings={**BASE, "airflow_version": 2})))["tasks"][2]
    assert not {"retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay"} & set(on_worker)
    assert on_worker["command"].endswith(" --attempts 4 --retry-delay 5 --retry-backoff 3 --retry-max-delay 60")
    assert "--attempts" not in read_dag_file(dag_file(compile_case("airflow", pipelines.mixed_modes,
                                                                   settings=BASE)))["tasks"][2]["command"]


def test_runtime_retries_get_an_airflow_timeout_that_covers_every_try_and_wait():
    pipeline = pipelines.mixed_modes.build()
    timed = dataclasses.replace(pipeline, steps=tuple(
        dataclasses.replace(s, timeout_seconds=10.0) if s.name == "on_worker" else s for s in pipeline.steps))
    on_airflow_2 = read_dag_file(dag_file(compile_case("airflow", timed,
                                                       settings={**BASE, "airflow_version": 2})))["tasks"][2]
    # 4 tries of at most 10 s, and the waits between them: 5, 15 and 45 s (3x each time, at most 60 s)
    assert on_airflow_2["execution_timeout"] == 4 * 10 + 5 + 15 + 45
    assert " --timeout 10" in on_airflow_2["command"]  # each try's own limit, which the runtime enforces
    on_airflow_3 = read_dag_file(dag_file(compile_case("airflow", timed, settings=BASE)))["tasks"][2]
    assert (on_airflow_3["execution_timeout"], on_airflow_3["retries"]) == (10, 3)
    assert "--timeout" not in on_airflow_3["command"]


def test_node_selector_and_image_pull_secrets_reach_pods_per_pipeline_and_per_step():
    text = dag_file(compile_case("airflow", "full_options",
                                 settings={**BASE, "node_selector": {"pool": "ml"}, "image_pull_secrets": ["regcred"]}))
    tasks = read_dag_file(text)["tasks"]
    assert [t["node_selector"] for t in tasks[:2]] == [
        {"pool": "ml"}, {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4", "pool": "ml"}]  # with the GPU's
    assert all(task["image_pull_secrets"] == ["regcred"] for task in tasks)
    assert 'image_pull_secrets=[k8s.V1LocalObjectReference(name=name) for name in spec.get("image_pull_secrets"' \
           in text
    assert "image_pull_secrets" not in dag_file(compile_case("airflow", "full_options",
                                                             settings=BASE))  # the file is as before without
    with pytest.raises(UnsupportedFeatureError, match=r"asks for node label cloud\.google\.com/gke-accelerator='a100'"):
        compile_case("airflow", "full_options",
                     settings={**BASE, "node_selector": {"cloud.google.com/gke-accelerator": "a100"}})
    own = _with_step_setting(pipelines.mixed_modes.build(), "in_pod", "node_selector", {"disk": "ssd"})
    emit, in_pod, _ = read_dag_file(dag_file(compile_case("airflow", own, settings=BASE)))["tasks"]
    assert in_pod["node_selector"] == {"disk": "ssd"} and "node_selector" not in emit
    on_worker = _with_step_setting(pipelines.mixed_modes.build(), "on_worker", "node_selector", {"disk": "ssd"})
    with pytest.raises(UnsupportedFeatureError, match="its pod settings \\('node_selector'\\) apply to pods only"):
        compile_case("airflow", on_worker, settings=BASE)


@pytest.mark.parametrize(("key", "value"), [("dag_id", "x"), ("artifact_root", "s3://b/x"), ("airflow_version", 2),
                                            ("catchup", True)])
def test_settings_of_the_whole_dag_cannot_be_set_for_one_step(key, value):
    """A step's own value used to be ignored without a word (issue 12); steps share one artifact root."""
    pipeline = _with_step_setting(case("quickstart").build(), "split", key, value)
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", pipeline, settings=BASE)
    (problem,) = err.value.problems
    assert problem.step == "split" and problem.location == str(pipeline.step("split").location)
    assert problem.message == f"setting {key!r} applies to the whole pipeline and cannot be set for one step"


def test_a_scheduled_dag_cannot_have_a_required_parameter():
    with pytest.raises(UnsupportedFeatureError, match="required parameter: 'n' has no default"):
        compile_case("airflow", pipelines.required_scheduled, settings=BASE)
    dag = read_dag_file(dag_file(compile_case("airflow", pipelines.required_scheduled, settings=BASE,
                                              on_unsupported="warn")))
    assert dag["params"]["n"] == {"args": [], "type": "integer"}


def test_only_literal_writing_filters_and_they_write_only_literals():
    assert list(environment().filters) == ["pyrepr", "pyjson"]
    assert environment().undefined is jinja2.StrictUndefined
    for value in (EVIL, {"k'\"": [1, 2.5, None, True]}, "plain", "with 'single'", 'with "double"', "\x00\u2028"):
        assert eval(python_literal(value)) == value
    assert python_literal("plain") == '"plain"'
    for bad in (float("nan"), {1: 2}, object()):
        with pytest.raises(TypeError):
            python_literal(bad)


# Strings that could end or bend a raw triple-quoted string or the JSON inside it.
AWKWARD = [EVIL, '"""', "'''", 'x"""y', "\\", "ends with \\", '\\"""', '"', '""', "\u2028\u2029\x00\x7f\r",
           "é 漢 🙂", 'r"""', "\\N{DIGIT ONE}", "\\u0041"]


def test_the_task_table_is_one_raw_string_literal_read_back_exactly():
    table = {name: {"upstream": [other for other in AWKWARD if other != name], "command": name, "env": {name: name},
                    "n": 1.5, "flag": None} for name in AWKWARD}
    literal = json_table_literal(table)
    (statement,) = ast.parse(f"TASKS = json.loads({literal})").body
    assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call)
    (argument,) = statement.value.args
    assert isinstance(argument, ast.Constant) and json.loads(argument.value) == table
    assert literal.startswith('r"""\n{\n') and literal.endswith('\n}\n"""') and literal.isascii()
    for bad in ({"t": {"n": float("inf")}}, {"t": {"o": object()}}):
        with pytest.raises(TypeError):
            json_table_literal(bad)


def test_importing_the_target_does_not_import_airflow():
    code = "import sys, pipecast.targets.airflow; print('airflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=env_with_cases())
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["quickstart", "full_options"])
def test_airflow_2_golden(name, request):
    """Airflow 2.10 cannot be installed beside Airflow 3, so its DAGs are checked as text: a reviewed golden."""
    text = dag_file(compile_case("airflow", name, golden=True, settings={"airflow_version": 2}))
    golden = GOLDEN_V2 / f"{name}.py.golden"  # not .py: a reviewed text, not a module of the tests
    if request.config.getoption("--update-goldens"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8", newline="\n")
    assert golden.exists(), f"no Airflow 2 golden for {name}: run pytest --update-goldens and review it"
    assert text == golden.read_text(encoding="utf-8")


def test_tasks_are_listed_upstream_first_even_if_the_ir_is_not():
    """The DAG file wires each task as it creates it, so TASKS must list upstream tasks first."""
    pipeline = case("diamond_after").build()
    shuffled = dataclasses.replace(pipeline, steps=tuple(reversed(pipeline.steps)))
    order = [t["task_id"] for t in read_dag_file(dag_file(compile_case("airflow", shuffled, settings=BASE)))["tasks"]]
    for task in read_dag_file(dag_file(compile_case("airflow", shuffled, settings=BASE)))["tasks"]:
        assert all(order.index(up) < order.index(task["task_id"]) for up in task["upstream"])


@pytest.mark.parametrize("version", [2, 3])
def test_environment_names_pipecast_uses_are_refused_not_overwritten(version):
    with pytest.raises(UnsupportedFeatureError) as err:
        compile_case("airflow", pipelines.reserved_env, settings={"airflow_version": version})
    text = str(err.value)
    for name in ("PIPECAST_COMMAND", "PIPECAST_RUN_ID"):
        assert f"environment variable {name!r} is reserved: PIPECAST_* variables are pipecast's" in text
    assert "claims_reserved_names" in text and "fix: rename the variable" in text
