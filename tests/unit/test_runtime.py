"""The runtime: one step per process, strings-only arguments, atomic outputs, a metadata record."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipecast.compiler import ir
from pipecast.runtime import materializers
from pipecast.runtime.command import EngineSyntax, parse_invocation, step_command
from pipecast.runtime.executor import load_outputs
from pipecast.runtime.params import decode_constant, decode_parameter, encode_constant
from tests.helpers.cases import ROOT
from tests.unit import pipelines

HOSTILE = "a'b\"c\n{{ 7*7 }} ${{ github.token }} $(whoami) `id` \\ {% raw %} %41"


def runtime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.runtime", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


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
    invocation = parse_invocation(step_command(built, step, EngineSyntax(
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
