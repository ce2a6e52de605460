"""The command line: fast help with no engine SDK, target listing, compile, inspect, graph, runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipecast.errors import MissingExtraError
from pipecast.targets.registry import get_target, require_extra
from tests.helpers.cases import ROOT

# google-cloud's namespace-package .pth files create empty ``google`` modules at interpreter start, so the
# check names the SDKs' real modules.
ENGINE_SDKS = ("airflow", "kfp", "google.cloud.aiplatform", "azure.ai", "boto3", "botocore", "kubernetes", "sky",
               "paramiko", "rich", "jinja2", "fsspec")


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          **kwargs)


def test_help_and_import_load_no_engine_sdk():
    code = (
        "import sys\nfrom click.testing import CliRunner\nimport pipecast\nfrom pipecast.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\nassert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in sys.modules if any(m == s or m.startswith(s + '.') for s in {ENGINE_SDKS!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_targets_lists_every_flavor_with_capabilities():
    result = cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["local"]["capabilities"]["retry"]["support"] == "native"
    assert all(row["status"] != "broken" and row["capabilities"] for row in rows.values()), rows


def test_unknown_target_suggests_the_closest():
    result = cli("compile", "examples/quickstart.py", "--target", "loacl")
    assert result.returncode == 2
    assert "unknown target 'loacl'. Did you mean 'local'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_extra_names_the_pip_command(monkeypatch):
    target = get_target("local")
    monkeypatch.setattr(type(target), "sdk_modules", ("surely_not_installed_sdk",))
    monkeypatch.setattr(type(target), "extra", "local")
    with pytest.raises(MissingExtraError, match=r"python -m pip install 'pipecast\[local\]'"):
        require_extra(target)


def test_compile_writes_files_and_inspect_prints_ir(tmp_path):
    result = cli("compile", "examples/quickstart.py", "--target", "local", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "quickstart.json").read_text())
    inspected = json.loads(cli("inspect", "examples/quickstart.py", "--json").stdout)
    assert written == inspected and written["name"] == "quickstart"
    assert "step report [quickstart:report]" in cli("inspect", "examples/quickstart.py").stdout


def test_unknown_setting_is_rejected():
    result = cli("compile", "examples/quickstart.py", "--target", "local", "--set", "colour=blue")
    assert result.returncode == 2 and "unknown setting 'colour'" in result.stderr


def test_graph_prints_mermaid_with_data_and_after_edges():
    result = cli("graph", "tests/golden/cases/diamond_after.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart TD\n")
    assert '-->|"output"|' in result.stdout and "-.->" in result.stdout


def test_run_and_runs_commands(tmp_path):
    run = cli("run", "examples/quickstart.py", "-p", "n=20", "-q")
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.strip()
    listed = cli("runs", "list")
    assert run_id in listed.stdout and "succeeded" in listed.stdout
    shown = json.loads(cli("runs", "show", run_id).stdout)
    assert shown["parameters"]["n"] == 20 and shown["url"].startswith("file://")
    assert cli("runs", "wait", run_id).returncode == 2


def test_bad_parameter_exits_2():
    result = cli("run", "examples/quickstart.py", "-p", "n=lots")
    assert result.returncode == 2 and "parameter 'n'" in result.stderr and "Traceback" not in result.stderr


def test_graph_to_svg_needs_graphviz_or_says_so(tmp_path):
    import shutil

    result = cli("graph", "examples/quickstart.py", "--out", str(tmp_path / "dag.svg"))
    if shutil.which("dot"):
        assert result.returncode == 0 and (tmp_path / "dag.svg").read_text().lstrip().startswith("<")
    else:
        assert result.returncode == 2 and "Graphviz" in result.stderr


def test_dot_text_has_every_edge():
    from pipecast.compiler.drawing import dot
    from tests.helpers.cases import case

    text = dot(case("diamond_after").build())
    assert '"start" -> "double";' in text and '"add" -> "cleanup-tmp" [style=dashed];' in text
