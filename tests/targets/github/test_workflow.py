"""The emitted workflow: GitHub's linters accept it, values stay data, settings and limits lower as documented."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipecast.compiler import ir
from pipecast.errors import UnsupportedFeatureError
from pipecast.runtime.command import EngineSyntax, step_command
from pipecast.runtime.params import render_parameter
from tests.helpers.cases import CASES, ROOT, case, compile_case
from tests.targets.github.gh_pipelines import EVIL, EVIL_OUTPUT, EVIL_STEP
from tests.targets.github.replay import load_workflow, render
from tests.targets.github.support import hostile_names_pipeline, lint, workflow_file

HOSTILE = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) $HOME ${HOME} `id` \\ {% raw %} {{workflow.name}} #x"


def _setting(key: str, value: object) -> ir.Setting:
    return ir.Setting(target="github", key=key, value_json=json.dumps(value))


def _with_step_settings(pipeline: ir.Pipeline, name: str, **settings: object) -> ir.Pipeline:
    steps = tuple(
        dataclasses.replace(s, settings=s.settings + tuple(_setting(k, v) for k, v in settings.items()))
        if s.name == name else s for s in pipeline.steps
    )
    return dataclasses.replace(pipeline, steps=steps)


def _variants() -> dict[str, str]:
    """Every golden case, plus workflows that use every setting and the hostile names."""
    workflows = {c.name: workflow_file(compile_case("github", c, golden=True)) for c in CASES}
    quickstart = case("quickstart").build()
    tuned = _with_step_settings(quickstart, "report", runs_on="ubuntu-latest-16-cores", python_version="3.12",
                                install="python -m pip install -e .")
    every_setting = {
        "concurrency": "train ${{ not-an-expression }}", "cancel_in_progress": True,
        "permissions": {"contents": "read", "id-token": "write"}, "runs_on": ["self-hosted", "linux", "x64"],
        "working_directory": "examples", "artifact_retention_days": 7, "image": "python:3.12-slim",
        "actions": {"actions/checkout": "v6"}}
    workflows["settings"] = workflow_file(compile_case("github", dataclasses.replace(tuned, name="settings"),
                                                       golden=True, settings=every_setting))
    scheduled = dataclasses.replace(case("hostile").build(), name="hostile_scheduled", schedule="@daily")
    workflows["hostile_scheduled"] = workflow_file(compile_case("github", scheduled, golden=True))
    hostile_root = {"artifact_root": "gs://bucket/${{ github.token }}/x"}
    workflows["hostile_names"] = workflow_file(compile_case("github", hostile_names_pipeline(), golden=True,
                                                            settings=hostile_root))
    return workflows


def test_every_workflow_passes_actionlint_and_the_workflow_schema(tmp_path):
    lint(_variants(), tmp_path)


def test_on_is_a_plain_key_that_yaml_1_2_reads_as_on():
    text = workflow_file(compile_case("github", "quickstart", golden=True))
    assert "\non:\n" in text and "'on'" not in text and '"on"' not in text
    assert "on" in load_workflow(text)  # YAML 1.2, as GitHub and actionlint read it
    assert True in yaml.safe_load(text)  # PyYAML (YAML 1.1) reads `on` as True: tests use load_workflow


def test_hostile_values_come_back_verbatim():
    """Defaults, env values, names and constants are data: evaluated as GitHub does, they are the originals.

    The workflow's env (the defaults) is base64: evaluated any number of times it stays the same text.
    """
    pipeline = dataclasses.replace(case("hostile").build(), schedule="0 3 * * *")
    workflow = load_workflow(workflow_file(compile_case("github", pipeline, golden=True)))
    contexts = {"github": {"run_id": "1"}, "runner": {"temp": "/t"}, "inputs": {}, "secrets": {}}
    defaults = {k: render(render(v, contexts), contexts) for k, v in workflow["env"].items()}
    assert {k: base64.b64decode(v).decode() for k, v in defaults.items()} == {"PIPECAST_DEFAULT_TEXT": HOSTILE,
                        "PIPECAST_DEFAULT_DATA": render_parameter(ir.TypeName.DICT, pipeline.parameter("data").default)}
    # A default holding `${{` never goes in an input's `default:` (see withheld_default); the others do.
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert "default" not in inputs["text"] and "default" not in inputs["data"]
    (run_step,) = [s for s in workflow["jobs"]["echo_text"]["steps"] if "pipecast.runtime" in s.get("run", "")]
    assert render(run_step["env"]["EVIL_ENV"], contexts) == HOSTILE
    text = workflow_file(compile_case("github", pipeline, golden=True))
    assert pipeline.description.splitlines()[0] in text  # the header comment
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), "an expression inside run: could inject script"


def _capture_argv(script: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """Run a job's script with a fake `python` that records its arguments instead of running the step."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    record = tmp_path / "argv.json"
    fake = fake_bin / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    full_env = {**env, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "GITHUB_EVENT_NAME": "workflow_dispatch"}
    subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=full_env, check=True,
                   timeout=30)
    return json.loads(record.read_text())


def test_hostile_names_reach_the_runtime_verbatim(tmp_path):
    """Step and output names full of quotes, newlines, `${{ }}` and `$( )` arrive as the runtime's exact argv."""
    pipeline = hostile_names_pipeline()
    root = "gs://bucket/${{ github.token }}/x"
    workflow = load_workflow(workflow_file(compile_case("github", pipeline, golden=True,
                                                        settings={"artifact_root": root})))
    given = {"text": EVIL, "flag": True, "numbers": '[1, "${{ 2 }}"]'}
    contexts = {"github": {"run_id": "77"}, "runner": {"temp": "/t"}, "inputs": given,
                "secrets": {"API_TOKEN": "s3cret"}}
    values = {"PIPECAST_RUN_ID": "77", "PIPECAST_ARTIFACT_ROOT": root, "PIPECAST_PARAM_TEXT": EVIL,
              "PIPECAST_PARAM_FLAG": "true", "PIPECAST_PARAM_NUMBERS": given["numbers"]}
    syntax = EngineSyntax(run_id="77", artifact_root=root,
                          parameter=lambda p: values[f"PIPECAST_PARAM_{p.name.upper()}"])
    jobs = list(workflow["jobs"].values())
    assert render(jobs[0]["name"], {}) == EVIL_STEP  # the job's display name, escaped
    seen: list[str] = []
    for job, step in zip(jobs, pipeline.steps):
        (run_step,) = [s for s in job["steps"] if "pipecast.runtime" in s.get("run", "")]
        env = {k: render(v, contexts) for k, v in run_step["env"].items()}
        argv = _capture_argv(run_step["run"], env, tmp_path)
        assert argv == step_command(pipeline, step, syntax, runtime_retry=True)[1:]
        seen += argv
    assert EVIL_STEP in seen and EVIL_OUTPUT in seen and f"value={EVIL_STEP}/{EVIL_OUTPUT}" in seen
    assert env["API_TOKEN"] == "s3cret" and run_step["env"]["API_TOKEN"] == "${{ secrets.API_TOKEN }}"


def test_lowering_of_options_and_settings():
    pipeline = case("full_options").build()
    workflow = load_workflow(workflow_file(compile_case("github", pipeline, golden=True)))
    jobs = workflow["jobs"]
    assert workflow["on"]["schedule"] == [{"cron": "0 3 * * *"}]
    assert workflow["permissions"] == {"contents": "read"} and "concurrency" not in workflow
    assert jobs["train"]["runs-on"] == ["self-hosted", "gpu"]
    assert jobs["train"]["container"] == {"image": "ghcr.io/acme/gpu:2.1", "options": "--gpus all"}
    assert jobs["load"]["container"] == {"image": "ghcr.io/acme/train:1.0"}
    assert jobs["notify"]["needs"] == ["publish"] and jobs["publish"]["needs"] == ["train"]
    load_run = jobs["load"]["steps"][-1]  # remote artifact root: no upload/download steps
    assert [s.get("uses", "run") for s in jobs["load"]["steps"]] == ["actions/checkout@v5", "run"]
    assert load_run["env"]["PIPECAST_ARTIFACT_ROOT"] == "s3://acme-pipelines/artifacts"
    assert load_run["env"]["DB_PASSWORD"] == "${{ secrets.DB_CREDENTIALS_PASSWORD }}"
    assert load_run["env"]["API_TOKEN"] == "${{ secrets.API_TOKEN }}"
    assert load_run["env"]["LOG_LEVEL"] == "debug" and load_run["env"]["PROJECT"] == "acme"
    # 3 tries of 1h with waits of 30s then 60s: 181.5 minutes, rounded up; the runtime bounds each try.
    assert load_run["timeout-minutes"] == 182 and "--timeout 3600" in load_run["run"]
    assert "--attempts 3 \\" in load_run["run"] and "--retry-backoff 2" in load_run["run"]
    train_run = jobs["train"]["steps"][-1]
    assert train_run["timeout-minutes"] == 90 and "--timeout" not in train_run["run"]  # native, whole minutes
    assert "--no-cache" in jobs["publish"]["steps"][-1]["run"]

    settings = load_workflow(_variants()["settings"])
    assert settings["concurrency"] == {"group": "train ${{ '${{' }} not-an-expression }}", "cancel-in-progress": True}
    assert settings["permissions"] == {"contents": "read", "id-token": "write"}
    report = settings["jobs"]["report"]
    assert report["runs-on"] == "ubuntu-latest-16-cores" and settings["jobs"]["split"]["runs-on"] == [
        "self-hosted", "linux", "x64"]
    assert report["container"] == {"image": "python:3.12-slim"}
    assert [s["name"] for s in report["steps"]][:2] == ["Check out the repository", "Install pipecast"]
    assert report["steps"][0]["uses"] == "actions/checkout@v6"
    assert report["steps"][-1]["with"]["retention-days"] == 7
    assert report["steps"][-2]["working-directory"] == "examples"


def test_tags_show_in_the_run_title_that_submit_finds_its_run_by():
    """GitHub runs have no tags: the run's title (run-name) carries them, escaped like every literal."""
    from pipecast.targets.github.syntax import run_title

    pipeline = dataclasses.replace(case("quickstart").build(), tags=("nightly", "team ${{ github.token }}"))
    workflow = load_workflow(workflow_file(compile_case("github", pipeline, golden=True)))
    title = render(workflow["run-name"], {"inputs": {"pipecast_run_id": "r-1"},
                                          "github": {"event_name": "workflow_dispatch"}})
    assert title == "quickstart [nightly, team ${{ github.token }}] (r-1)" == run_title(pipeline, "r-1")
    broken = dataclasses.replace(pipeline, tags=("two\nlines",))
    assert "tag 'two\\nlines' holds a line break" in _problems(broken)


def test_cron_aliases_become_five_fields():
    pipeline = dataclasses.replace(case("quickstart").build(), schedule="@weekly")
    assert load_workflow(workflow_file(compile_case("github", pipeline,
                                                    golden=True)))["on"]["schedule"] == [{"cron": "0 0 * * 0"}]


def _problems(pipeline: ir.Pipeline, **settings: object) -> str:
    with pytest.raises(UnsupportedFeatureError) as caught:
        compile_case("github", pipeline, settings=settings)
    return str(caught.value)


def test_limits_and_bad_settings_are_errors_that_name_the_fix():
    quickstart = case("quickstart").build()
    assert "at most every 5 minutes" in _problems(dataclasses.replace(quickstart, schedule="*/2 * * * *"))
    required = dataclasses.replace(quickstart.parameters[0], default_json=None)
    scheduled = dataclasses.replace(quickstart, schedule="0 * * * *", parameters=(required, *quickstart.parameters[1:]))
    assert "scheduled runs" in _problems(scheduled)
    many = tuple(ir.Parameter(name=f"p{i}", type=ir.TypeName.INT, default_json="1") for i in range(22))
    assert "at most 25 inputs" in _problems(dataclasses.replace(quickstart, parameters=quickstart.parameters + many))
    fitting = dataclasses.replace(quickstart, parameters=quickstart.parameters + many[:21])
    workflow_file(compile_case("github", fitting, golden=True))  # 24 + 1 fit
    clash = (*quickstart.parameters, ir.Parameter(name="N", type=ir.TypeName.INT, default_json="1"))
    assert "case-insensitive" in _problems(dataclasses.replace(quickstart, parameters=clash))
    huge = dataclasses.replace(quickstart.parameters[0], default_json=str(2**60))
    assert "not exact" in _problems(dataclasses.replace(quickstart, parameters=(huge, *quickstart.parameters[1:])))
    none_default = dataclasses.replace(quickstart.parameters[2], default_json="null")
    assert "defaults to None" in _problems(dataclasses.replace(quickstart, parameters=(*quickstart.parameters[:2],
                                                                                       none_default)))
    assert "permissions" in _problems(quickstart, permissions={"contents": "admin"})
    assert "runs_on" in _problems(quickstart, runs_on="${{ inputs.runner }}")
    assert "install" in _problems(quickstart, install="pip install ${{ inputs.pkg }}")
    assert "actions" in _problems(quickstart, actions={"actions/cache": "v4"})
    assert "artifact_retention_days" in _problems(quickstart, artifact_retention_days=400)
    assert "concurrency" in _problems(quickstart, concurrency={"group": "x"})
    assert "no 'concurrency' group is set" in _problems(quickstart, cancel_in_progress=True)  # never dropped silently
    assert "unknown setting" in _problems(quickstart, runs_in="x")
    assert "must be text" in _problems(quickstart, python_version=3.1)  # what `--set python_version=3.10` gives


def test_engine_limits_and_unsupported_features_are_reported():
    full = case("full_options").build()
    message = _problems(full)  # no GPU runner given
    assert "GPU" in message and "gpu_runs_on" in message
    long_retry = _with_step_settings(full, "train", runs_on="ubuntu-latest")
    train = dataclasses.replace(long_retry.step("train"), retry=ir.RetryPolicy(attempts=5), timeout_seconds=7200)
    slow = dataclasses.replace(long_retry, steps=tuple(train if s.name == "train" else s for s in long_retry.steps))
    assert "stops a job on a GitHub-hosted runner after 360 minutes" in _problems(slow)
    long_train = dataclasses.replace(full.step("train"), retry=ir.RetryPolicy(attempts=5), timeout_seconds=7200)
    self_hosted = dataclasses.replace(full, steps=tuple(long_train if s.name == "train" else s for s in full.steps))
    on_gpu = workflow_file(compile_case("github", self_hosted, golden=True, settings={"gpu_runs_on": "gpu"}))
    long_job = load_workflow(on_gpu)["jobs"]["train"]  # no 6-hour limit
    assert long_job["timeout-minutes"] == 630 and long_job["steps"][-1]["timeout-minutes"] == 600
    full_workflow = load_workflow(workflow_file(compile_case("github", full, golden=True)))
    assert "timeout-minutes" not in full_workflow["jobs"]["load"]  # 182 + 30 fit in 360
    env_clash = dataclasses.replace(full, env=(("GITHUB_TOKEN", "x"),))
    assert "reserved" in _problems(env_clash, gpu_runs_on="gpu")
    local_root = dataclasses.replace(hostile_names_pipeline(), schedule=None)
    assert "artifact folder" in _problems(local_root)  # such a step name needs a remote artifact root


def _with_train(pipeline: ir.Pipeline, **changes: object) -> ir.Pipeline:
    train = dataclasses.replace(pipeline.step("train"), **changes)
    return dataclasses.replace(pipeline, steps=tuple(train if s.name == "train" else s for s in pipeline.steps))


def test_a_timeout_beyond_what_github_allows_is_reported_and_capped():
    """72 h × 2 tries is 8,640 minutes: more than a self-hosted runner's 5-day job limit (7,200 minutes)."""
    full = case("full_options").build()
    long = _with_train(full, retry=ir.RetryPolicy(attempts=2), timeout_seconds=72 * 3600)
    message = _problems(long, gpu_runs_on="gpu")
    assert "step 'train' may run 8640 minutes" in message
    assert "GitHub stops a job on a self-hosted runner after 7200 minutes" in message
    assert "capped at 7200" in message
    bundle = compile_case("github", long, settings={"gpu_runs_on": "gpu"}, on_unsupported="warn").bundle
    job = load_workflow(bundle[bundle.main_file])["jobs"]["train"]
    assert job["timeout-minutes"] == 7200 and job["steps"][-1]["timeout-minutes"] == 7200
    assert "--timeout 259200" in job["steps"][-1]["run"]  # the runtime still bounds each try
    # On a GitHub-hosted runner the job limit is 6 hours: a step of 5h50 gets no job timeout above it.
    hosted = _with_train(full, retry=ir.RetryPolicy(), timeout_seconds=350 * 60)
    job = load_workflow(workflow_file(compile_case("github", hosted, golden=True,
                                                   settings={"gpu_runs_on": "ubuntu-latest"})))["jobs"]["train"]
    assert "timeout-minutes" not in job and job["steps"][-1]["timeout-minutes"] == 350


def test_a_chain_of_steps_longer_than_a_workflow_run_may_last_is_reported(tmp_path):
    """GitHub cancels a workflow run after 35 days: steps one after the other whose timeouts add up beyond."""
    from pipecast.compiler.loader import load_pipeline

    path = tmp_path / "github_long_chain.py"
    path.write_text("from pipecast import pipeline, step\n"
                    "@step(timeout='120h')\ndef inc(x: int) -> int:\n    return x + 1\n"
                    "@pipeline\ndef chain(x: int = 0):\n    for _ in range(8):\n        x = inc(x)\n")
    pipeline = load_pipeline(str(path)).build()
    message = _problems(pipeline, runs_on="self-hosted")  # 8 × 5 days
    assert "the steps up to 'inc_8' may run 57600 minutes one after the other" in message
    assert "GitHub cancels a workflow run after 50400 minutes (35 days)" in message
    seven = dataclasses.replace(pipeline, steps=pipeline.steps[:7])
    workflow_file(compile_case("github", seven, golden=True, settings={"runs_on": "self-hosted"}))  # 7 × 5 days fit


def test_secret_references_github_cannot_resolve_are_errors():
    """GitHub secret names: letters, digits and _, not starting with a digit or GITHUB_, case-insensitive."""
    full = case("full_options").build()

    def with_secrets(*secrets: ir.SecretRef) -> ir.Pipeline:
        return dataclasses.replace(full, secrets=secrets)

    digit = _problems(with_secrets(ir.SecretRef(name="1password", env="OP")), gpu_runs_on="gpu")
    assert "secret '1password' (env 'OP') cannot be read on GitHub: GitHub secret '1PASSWORD' would start with " \
           "a digit" in digit
    reserved = _problems(with_secrets(ir.SecretRef(name="github-app", key="key", env="APP_KEY")), gpu_runs_on="gpu")
    assert "GitHub secret 'GITHUB_APP_KEY' starts with GITHUB_" in reserved
    clash = _problems(with_secrets(ir.SecretRef(name="db-token", env="A"), ir.SecretRef(name="DB.token", env="B")),
                      gpu_runs_on="gpu")
    assert "secrets 'db-token' and 'DB.token' both map to GitHub secret 'DB_TOKEN'" in clash


def test_step_names_that_collide_as_job_ids_are_an_error():
    pipeline = case("diamond_after").build()
    renamed = tuple(dataclasses.replace(s, name="double.right") if s.name == "double_right" else s
                    for s in pipeline.steps)
    clash = tuple(dataclasses.replace(s, name="double_right") if s.name == "double" else s for s in renamed)
    fixed = tuple(
        dataclasses.replace(s, bindings=tuple(
            dataclasses.replace(b, step={"double": "double_right", "double_right": "double.right"}.get(b.step, b.step))
            for b in s.bindings)) for s in clash)
    assert "both become 'double_right'" in _problems(dataclasses.replace(pipeline, steps=fixed))


def test_emit_is_pure_and_the_module_imports_nothing_heavy():
    pipeline = case("ml_training").build()
    first = workflow_file(compile_case("github", pipeline, golden=True))
    assert first == workflow_file(compile_case("github", pipeline, golden=True))
    code = ("import sys\nimport pipecast.targets.github\n"
            "print(sorted(m for m in ('urllib.request', 'http.client', 'ssl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
