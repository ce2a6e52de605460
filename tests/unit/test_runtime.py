"""The runtime: one step per process, strings-only arguments, atomic outputs, a metadata record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.compiler import ir
from pipecast.runtime import materializers
from pipecast.runtime.command import EngineSyntax, parse_command, step_command
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.params import decode_constant, decode_parameter, encode_constant
from tests.helpers.cases import ROOT
from tests.helpers.processes import EVENT_SECONDS
from tests.unit import pipelines

HOSTILE = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) `id` \\ {% raw %} %41"


def runtime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.runtime", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=EVENT_SECONDS)


def test_constants_encode_without_engine_syntax_and_decode_exactly():
    value = {"text": HOSTILE, "n": [1, 2.5, None, True]}
    encoded = encode_constant(ir.canonical_json(value))
    for forbidden in ("{{", "${{", "$(", "'", '"', "\n", " ", "`", "{%", "\\"):
        assert forbidden not in encoded
    assert decode_constant(encoded) == value


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("str", HOSTILE, HOSTILE), ("int", "42", 42), ("float", "0.5", 0.5), ("bool", "True", True),
    ("bool", "false", False), ("dict", '{"a": 1}', {"a": 1}), ("list", "[1, 2]", [1, 2]),
])
def test_parameters_decode_as_engines_substitute_them(kind, text, value):
    assert decode_parameter(kind, text) == value


def test_a_step_runs_in_its_own_process_and_records_metadata(tmp_path):
    root = f"file://{tmp_path}"
    first = runtime("run", "--fn", "tests.unit.pipelines:add", "--pipeline", "p", "--step", "add",
                    "--run-id", "manual__2026-01-01T00:00:00+00:00", "--artifact-root", root,
                    "--param", "a=int:2", "--const", f"b={encode_constant('40')}", "--output", "output")
    assert first.returncode == 0, first.stderr
    second = runtime("run", "--fn", "tests.unit.pipelines:pair", "--pipeline", "p", "--step", "pair",
                     "--run-id", "manual__2026-01-01T00:00:00+00:00", "--artifact-root", root,
                     "--upstream", "x=add/output", "--output", "low", "--output", "high")
    assert second.returncode == 0, second.stderr
    assert load_outputs(root, "p", "manual__2026-01-01T00:00:00+00:00", "pair") == {"low": 41, "high": 43}
    meta_path = tmp_path / "p/runs/manual__2026-01-01T00_00_00+00_00/pair/meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["status"] == "succeeded" and meta["attempt"] == 1 and meta["cache_key"]
    assert set(meta) >= {"started_at", "ended_at", "outputs", "cached"}
    assert not list(tmp_path.rglob("*.tmp-*")), "temporary files must be renamed into place"


def test_a_failing_step_exits_1_and_records_the_error(tmp_path):
    result = runtime("run", "--fn", "tests.unit.pipelines:boom", "--pipeline", "p", "--step", "boom",
                     "--run-id", "r1", "--artifact-root", f"file://{tmp_path}", "--param", "message=str:nope",
                     "--output", "output")
    assert result.returncode == 1
    assert "ValueError: nope" in result.stderr and "Traceback" not in result.stderr
    meta = json.loads((tmp_path / "p/runs/r1/boom/meta.json").read_text())
    assert meta["status"] == "failed" and "ValueError: nope" in meta["error"]


def test_missing_upstream_is_a_clear_error(tmp_path):
    result = runtime("run", "--fn", "tests.unit.pipelines:pair", "--pipeline", "p", "--step", "pair",
                     "--run-id", "r1", "--artifact-root", f"file://{tmp_path}", "--upstream", "x=add/output")
    assert result.returncode == 2
    assert "needs output 'output' of step 'add'" in result.stderr


def test_runtime_retry_and_timeout_flags(tmp_path):
    counter = tmp_path / "count"
    result = runtime("run", "--fn", "tests.unit.pipelines:flaky", "--pipeline", "p", "--step", "flaky",
                     "--run-id", "r", "--artifact-root", f"file://{tmp_path}", "--param", f"counter_file=str:{counter}",
                     "--param", "failures=int:2", "--output", "output", "--attempts", "3", "--retry-delay", "0.01")
    assert result.returncode == 0, result.stderr
    assert load_outputs(f"file://{tmp_path}", "p", "r", "flaky") == {"output": 3}
    slow = runtime("run", "--fn", "tests.unit.pipelines:sleepy", "--pipeline", "p", "--step", "sleepy",
                   "--run-id", "r", "--artifact-root", f"file://{tmp_path}", "--param", "seconds=float:20",
                   "--output", "output", "--timeout", "0.2")
    assert slow.returncode == 1 and "timed out after 0.2s" in slow.stderr


def test_command_from_ir_parses_back_to_the_same_invocation():
    built = pipelines.arithmetic.build()
    step = built.step("add")
    syntax = EngineSyntax(run_id="{{ run_id }}", parameter=lambda p: f"{{{{ params.{p.name} }}}}",
                          artifact_root="s3://bucket/root")
    argv = step_command(built, step, syntax)
    assert argv[:4] == ["python", "-m", "pipecast.runtime", "run"]
    assert "--param" in argv and "a=int:{{ params.x }}" in argv
    invocation, _ = parse_command(step_command(built, step, EngineSyntax(
        run_id="r", parameter=lambda p: "5", artifact_root="s3://b"))[3:])
    assert invocation.values == {"a": 5, "b": 5} and invocation.outputs == ("output",)


def test_materializers_pick_json_bytes_pickle_and_user_types(tmp_path):
    assert materializers.choose({"a": [1]}).name == "json"
    assert materializers.choose((1, 2)).name == "pickle"  # JSON would turn the tuple into a list
    assert materializers.choose(b"x").name == "bytes"
    assert materializers.choose({1: "a"}).name == "pickle"

    class Celsius(float):
        pass

    class CelsiusMaterializer(materializers.Materializer):
        name = "celsius"
        extension = ".txt"

        def can_save(self, value):
            return True

        def dumps(self, value):
            return f"{float(value)}C".encode()

        def loads(self, data):
            return Celsius(data.decode().rstrip("C"))

    materializers.register_materializer(CelsiusMaterializer(), Celsius)
    try:
        chosen = materializers.choose(Celsius(21.5))
        assert chosen.name == "celsius" and chosen.loads(chosen.dumps(Celsius(21.5))) == 21.5
        assert materializers.choose(3.5).name == "json"
    finally:
        materializers._ORDER.pop(0)
        materializers._BY_NAME.pop("celsius")


def test_objects_and_bytes_travel_between_steps(tmp_path):
    run = pipelines.materializer_pipeline.run(artifact_root=f"file://{tmp_path}")
    assert run.step_outputs("describe") == {"output": "[1, 2, 3] b'\\x00\\x01raw'"}
    files = sorted(p.name for p in tmp_path.rglob("outputs/*"))
    assert files == ["output.bin", "output.json", "output.pkl"]


def step_args(function: str, step: str, root: object, *extra: str, run_id: str = "r1",
              pipeline: str = "p") -> list[str]:
    return ["run", "--fn", f"tests.unit.runtime_steps:{function}", "--pipeline", pipeline, "--step", step,
            "--run-id", run_id, "--artifact-root", f"file://{root}", *extra]


def meta_of(root: Path, step: str, run_id: str = "r1") -> dict:
    return json.loads((root / "p/runs" / run_id / step / "meta.json").read_text())


def test_a_cache_hit_must_carry_the_steps_cache_key(tmp_path):
    """The same run id three times (an engine that never substituted it): n=10, n=20, then n=10 again."""
    for n in (10, 20, 10):
        result = runtime(*step_args("numbers", "numbers", tmp_path, "--param", f"n=int:{n}", "--output", "output",
                                    run_id="same"))
        assert result.returncode == 0, result.stderr
        assert load_outputs(f"file://{tmp_path}", "p", "same", "numbers") == {"output": list(range(n))}


def test_a_cached_file_that_no_longer_matches_its_sha256_is_a_miss(tmp_path):
    args = ("--param", "n=int:3", "--output", "output")
    assert runtime(*step_args("numbers", "numbers", tmp_path, *args, run_id="first")).returncode == 0
    (tmp_path / "p/runs/first/numbers/outputs/output.json").write_text("[7, 7, 7]")
    again = runtime(*step_args("numbers", "numbers", tmp_path, *args, run_id="second"))
    assert again.returncode == 0 and "succeeded" in again.stderr, again.stderr  # ran again, not "cached"
    assert load_outputs(f"file://{tmp_path}", "p", "second", "numbers") == {"output": [0, 1, 2]}


def test_an_upstream_output_changed_after_it_was_written_is_an_error(tmp_path):
    assert runtime(*step_args("numbers", "numbers", tmp_path, "--param", "n=int:3", "--output", "output")
                   ).returncode == 0
    (tmp_path / "p/runs/r1/numbers/outputs/output.json").write_text("[1]")
    result = runtime(*step_args("count", "count", tmp_path, "--upstream", "values=numbers/output",
                                "--output", "output"))
    assert result.returncode == 2
    assert "no longer matches the sha256 recorded when it was written" in result.stderr
    assert not (tmp_path / "p/runs/r1/count").exists()


@pytest.mark.parametrize(("run_id", "placeholder"), [
    ("{{ run_id }}", "{{ run_id }}"),
    ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_uuid}}"),
    ("run-${{ github.run_id }}", "${{ github.run_id }}"),
    ("$(context.pipelineRun.name)", "$(context.pipelineRun.name)"),
    ("${PIPECAST_RUN_ID}", "${PIPECAST_RUN_ID}"),
    ("%7B%7B$.pipeline_job_uuid%7D%7D", "{{$.pipeline_job_uuid}}"),
    ("%24%7B%7B%20github.run_id%20%7D%7D", "${{ github.run_id }}"),
    ("%24%28context.pipelineRun.name%29", "$(context.pipelineRun.name)"),
    ("%257B%257Bworkflow.name%257D%257D", "{{workflow.name}}"),
])
def test_a_run_id_the_engine_did_not_substitute_is_refused(tmp_path, run_id, placeholder):
    result = runtime(*step_args("numbers", "numbers", tmp_path / "root", "--param", "n=int:3", "--output", "output",
                                run_id=run_id))
    assert result.returncode == 2, result.stderr
    assert f"still holds the engine placeholder {placeholder!r}" in result.stderr
    assert "the engine did not substitute it" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "root").exists(), "nothing may be written"


def test_engine_run_ids_with_ordinary_characters_are_accepted(tmp_path):
    for run_id in ("manual__2026-01-01T00:00:00+00:00", "quickstart-x7k2p", "123456789", "50%-sample"):
        result = runtime(*step_args("numbers", "numbers", tmp_path, "--param", "n=int:1", "--output", "output",
                                    run_id=run_id))
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("where", "value"), [
    ("step", "../../escaped"), ("step", "/tmp/absolute"), ("step", ".."), ("step", "a\\b"),
    ("pipeline", "../escaped"), ("pipeline", ".."), ("run_id", "../../escaped"), ("run_id", ".."),
    ("output", "../../escaped"), ("upstream", "../../x/output"),
])
def test_names_that_would_leave_the_artifact_root_are_refused_before_anything_is_written(tmp_path, where, value):
    root = tmp_path / "deep" / "root"
    names = {"step": "numbers", "pipeline": "p", "run_id": "r1", "output": "output"}
    if where in names:
        names[where] = value
    extra = ["--upstream", f"values={value}"] if where == "upstream" else []
    result = runtime("run", "--fn", "tests.unit.runtime_steps:numbers", "--pipeline", names["pipeline"],
                     "--step", names["step"], "--run-id", names["run_id"], "--artifact-root", f"file://{root}",
                     "--param", "n=int:1", "--output", names["output"], *extra)
    assert result.returncode == 2, result.stderr
    assert "would leave its folder under the artifact root" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.rglob("*")) == [], "nothing may be written, inside the root or outside it"


@pytest.mark.parametrize("root", ["s3://bucket/root", "gs://bucket/root", "az://container/root", "memory://root"])
def test_every_store_refuses_an_escaping_name_first(root):
    from pipecast.errors import ArtifactError
    from pipecast.runtime.executor import StepInvocation, execute_step

    invocation = StepInvocation(function="tests.unit.runtime_steps:numbers", pipeline="p", step="../../x",
                                run_id="r1", artifact_root=root, values={"n": 1}, outputs=("output",))
    with pytest.raises(ArtifactError, match=r"step name '\.\./\.\./x' contains a path separator"):
        execute_step(invocation)


def test_a_recorded_file_name_cannot_lead_out_of_the_step_folder():
    from pipecast.errors import ArtifactError
    from pipecast.runtime.artifacts import ArtifactStore

    store = ArtifactStore("memory://guarded")
    folder = store.step_dir("p", "r1", "s")
    assert store.file_in(folder, "outputs/output.json") == f"{folder}/outputs/output.json"
    for hostile in ("../../../elsewhere.json", "outputs/../../x", "outputs/../../../../x"):
        with pytest.raises(ArtifactError, match="leaves"):
            store.file_in(folder, hostile)


@pytest.mark.parametrize("code", [1, 0, "bye"])
def test_a_step_that_calls_sys_exit_fails_and_says_so(tmp_path, code):
    encoded = encode_constant(json.dumps(code))
    result = runtime(*step_args("quits", "quits", tmp_path, "--const", f"code={encoded}", "--output", "output"))
    assert result.returncode == 1, result.stderr
    assert f"the step called sys.exit({code!r})" in result.stderr
    meta = meta_of(tmp_path, "quits")
    assert meta["status"] == "failed" and "sys.exit" in meta["error"]


def test_a_step_that_raises_keyboard_interrupt_fails(tmp_path):
    result = runtime(*step_args("interrupts", "interrupts", tmp_path, "--output", "output", "--attempts", "2"))
    assert result.returncode == 1 and "KeyboardInterrupt" in result.stderr
    assert meta_of(tmp_path, "interrupts")["attempt"] == 2, "a failed try is retried like any other failure"
