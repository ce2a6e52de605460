"""The command line: fast help with no engine SDK, target listing, compile, inspect, graph, runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.errors import MissingExtraError, SubmitError
from pipecast.flow import submit_pipeline
from pipecast.redaction import redact_credentials
from pipecast.runs.status import EngineRun
from pipecast.targets.base import Bundle, Feature, SubmitRequest, Target, native
from pipecast.targets.registry import get_target
from pipecast.targets.settings import Settings
from tests.helpers.cases import ROOT, case

# google-cloud's namespace-package .pth files create empty ``google`` modules at interpreter start, so the
# check names the SDKs' real modules.
# Not the bare namespaces "google.cloud" or "azure": an SDK's *-nspkg.pth creates them at interpreter start.
ENGINE_SDKS = ("airflow", "kfp", "google.cloud.aiplatform", "google.cloud.storage", "google.api_core", "azure.ai",
               "azure.core", "azure.identity", "sagemaker", "boto3", "botocore", "kubernetes", "sky", "docker",
               "paramiko", "rich", "jinja2", "fsspec", "mlflow")


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
        target.require_extra()


def test_compile_writes_files_and_inspect_prints_ir(tmp_path):
    result = cli("compile", "examples/quickstart.py", "--target", "local", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "quickstart.json").read_text())
    inspected = json.loads(cli("inspect", "examples/quickstart.py", "--json").stdout)
    assert written == inspected and written["name"] == "quickstart"
    assert "step report [quickstart:report]" in cli("inspect", "examples/quickstart.py").stdout
    assert "(IR v1)" in cli("inspect", "examples/quickstart.py").stdout  # the version it is written at, not the newest


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


# Every mistake in tests/unit/bad_pipelines.py, with the marker on the line its error must name.
BAD_PIPELINES = {
    "everything_wrong": "unknown input 'c'",
    "raises_an_error": "a bug: ZeroDivisionError",
    "iterates_a_dict": ".items() on a dict parameter",
    "timedelta_schedule": "a timedelta schedule",
    "branches_on_a_parameter": "if on a parameter",
    "branches_on_an_output": "if on a step output",
    "loops_over_a_parameter": "for over a parameter",
    "loops_while_a_parameter": "while on a parameter",
    "measures_a_parameter": "len() of a parameter",
    "formats_a_parameter": "f-string of a parameter",
    "fans_in": "a set of step outputs",
    "escapes_the_run_folder": "a step name with a path",
    "defaults_to_none": "a None default",
    "misspells_a_setting": "a misspelt airflow setting",
    "has_an_untyped_parameter": "a parameter with no type",
    "badly_named": "uses the bad output name",
}


def test_the_sweep_covers_every_bad_pipeline():
    from pipecast.dsl import PipelineDef
    from tests.unit import bad_pipelines

    assert {k for k, v in vars(bad_pipelines).items() if isinstance(v, PipelineDef)} == set(BAD_PIPELINES)


@pytest.mark.parametrize("command", ["compile", "submit"])
@pytest.mark.parametrize("name", sorted(BAD_PIPELINES))
def test_every_bad_pipeline_is_one_clean_error(name, command, tmp_path, pipecast_home):
    from tests.unit.bad_pipelines import line_of

    out, dags = tmp_path / "out", tmp_path / "dags"
    dags.mkdir()
    where = ["--out", str(out)] if command == "compile" else ["-c", f"dags_folder={dags}", "-c",
                                                               "base_url=http://127.0.0.1:9"]
    result = cli(command, f"tests/unit/bad_pipelines.py:{name}", "--target", "airflow", *where)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert f"tests/unit/bad_pipelines.py:{line_of(BAD_PIPELINES[name])}: " in result.stderr
    assert result.stdout == ""
    assert not out.exists() and not list(dags.iterdir()) and not pipecast_home.exists()  # nothing written


def test_an_error_while_importing_the_pipeline_file_names_its_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("from pipecast import pipeline\n\nSETTINGS = {}\nIMAGE = SETTINGS['image']\n")
    result = cli("compile", str(path), "--target", "local")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: broken.py:4: importing {str(path)!r} raised KeyError: 'image'\n"


def test_bad_step_options_are_reported_where_the_step_is_used(tmp_path):
    path = tmp_path / "options.py"
    path.write_text(
        "from pipecast import pipeline, step\n\n"
        "@step(secrets='db-password', outputs='ab', resources='big')\n"
        "def load() -> tuple[int, int]:\n    return 1, 2\n\n"
        "@pipeline(tags='nightly')\n"
        "def p():\n    load()\n"
    )
    result = cli("compile", str(path), "--target", "local")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "options.py:7: tags must be a list of strings, e.g. tags=['nightly'], got 'nightly'" in result.stderr
    for text in ("secrets must be a list of Secret(...) or secret names", "outputs must be a tuple of output names",
                 "resources must be Resources(cpu=..., memory=..., gpu=...), got 'big'"):
        assert f"options.py:9: step 'load': {text}" in result.stderr


class EchoTarget(Target):
    """A target whose engine is this test: it answers with the URL it was given, as engines' UIs do."""

    name = "echo"
    capabilities = {feature: native() for feature in Feature}
    settings_class = Settings
    submit_module = __name__  # submit() below

    def emit(self, pipeline, context):
        return Bundle(self.name, (("run.json", "{}"),))


def submit(request: SubmitRequest) -> EngineRun:
    """EchoTarget's submit: fails when asked to, else answers with the URL it was given."""
    if request.config.get("fail"):
        raise SubmitError(f"cannot reach the engine at {request.config['base_url']!r}")
    return EngineRun(run_id=request.run_id, target=request.target.name, engine_run_id="e-1",
                     url=f"{request.config['base_url']}/runs/e-1")


@pytest.fixture
def echo_target(monkeypatch):
    from pipecast.targets import registry

    paths = {**registry.target_paths(), "echo": f"{__name__}:EchoTarget"}
    monkeypatch.setattr(registry, "target_paths", lambda: paths)


def test_credentials_in_a_url_are_redacted_wherever_pipecast_prints_or_stores_them(echo_target, pipecast_home):
    from click.testing import CliRunner

    from pipecast.cli import main
    from pipecast.runs.store import RunStore

    url = "http://admin:s3cret@engine.example:8080"
    submitted = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "echo", "-c", f"base_url={url}"])
    assert submitted.exit_code == 0, submitted.output
    assert submitted.stdout.endswith(": http://admin:***@engine.example:8080/runs/e-1\n")
    failed = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "echo", "-c", f"base_url={url}",
                                       "-c", "fail=true"])
    assert failed.exit_code == 2
    assert failed.stderr == "error: cannot reach the engine at 'http://admin:***@engine.example:8080'\n"
    store = RunStore.default()
    store.note_run(store.list()[0]["id"], engine_run_id="e-2", url=url, metadata={"engine_url": url})
    shown = CliRunner().invoke(main, ["runs", "show", "quickstart"]).stdout + \
        CliRunner().invoke(main, ["runs", "list"]).stdout
    assert "admin:***@engine.example" in shown
    for text in (submitted.output, failed.output, shown, Path(store.path).read_bytes().decode("utf-8", "replace")):
        assert "s3cret" not in text


def test_submit_from_python_redacts_its_error_and_the_handle(echo_target):
    url = "https://user:pa@ss@engine.example"
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "echo", {}, {}, {"base_url": url, "fail": True})
    assert str(err.value) == "cannot reach the engine at 'https://user:***@engine.example'"
    handle = submit_pipeline(case("quickstart").build(), "echo", {}, {}, {"base_url": url})
    assert repr(handle).endswith(": https://user:***@engine.example/runs/e-1>")


@pytest.mark.parametrize(("text", "shown"), [
    ("http://user:pass@host:8080/x", "http://user:***@host:8080/x"),
    ("see postgresql://u:p%40ss@db/x and https://a:b@c", "see postgresql://u:***@db/x and https://a:***@c"),
    ('{"url": "http://u:p@h"}', '{"url": "http://u:***@h"}'),
    ("http://user@host/a@b", "http://user@host/a@b"),  # no password
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
])
def test_redact_credentials(text, shown):
    assert redact_credentials(text) == shown


def test_an_out_path_that_cannot_be_written_is_a_clean_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    compiled = cli("compile", "examples/quickstart.py", "--target", "airflow", "--out", str(blocker / "dags"))
    drawn = cli("graph", "examples/quickstart.py", "--out", str(blocker / "dag.mmd"))
    assert compiled.returncode == drawn.returncode == 2
    # The compile may warn first (Airflow's worker-local artifact root); the error is the last line.
    assert compiled.stderr.endswith(f"error: cannot write the files under {str(blocker / 'dags')!r}: Not a "
                                    f"directory ({blocker / 'dags'})\n")
    assert "Traceback" not in compiled.stderr
    assert drawn.stderr == f"error: cannot write {str(blocker / 'dag.mmd')!r}: Not a directory\n"


def test_submitting_to_a_target_that_does_not_submit_records_nothing(pipecast_home):
    result = cli("submit", "examples/quickstart.py", "--target", "local")
    assert result.returncode == 2
    assert result.stderr == "error: target 'local' does not submit runs: `pipecast run`\n"
    assert not pipecast_home.exists()  # no failed run left in the run store
