"""The code a local-mode DAG ships beside itself (issue 13): what goes in ``<dag_id>.code/``, in what order, what
is left out, and how the DAG puts it on a task's PYTHONPATH; the executor setting and a worker-local root."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipecast.compiler.loader import load_pipeline
from pipecast.errors import Severity, ValidationError
from pipecast.targets.airflow.code import AIRFLOWIGNORE
from tests.helpers.cases import ROOT, compile_case

PIPELINE = textwrap.dedent('''
    from pipecast import pipeline, step
    from {package}.helpers import double


    @step
    def twice(x: int) -> int:
        return double(x)


    @pipeline(name="{name}")
    def shipped(x: int = 2):
        return twice(x)
''')


def import_root(tmp_path: Path, package: str) -> Path:
    """A user's project: a package with the pipeline, a helper module, and much that is not importable code."""
    root = tmp_path / "project"
    files = {
        f"{package}/__init__.py": "",
        f"{package}/helpers.py": "def double(x):\n    return 2 * x\n",
        f"{package}/flow.py": PIPELINE.format(package=package, name=package),
        f"{package}/sub/__init__.py": "",
        f"{package}/sub/model.py": "WEIGHTS = 'a\\r\\nb'\r\n",  # text kept byte for byte, CRLF too
        f"{package}/notes.txt": "not Python",
        f"{package}/generated_stub.py": "ignored by name in .gitignore\n",
        f"{package}/scratch/__init__.py": "ignored as a folder in .pipecastignore\n",
        f"{package}/__pycache__/helpers.py": "a cache, never code\n",
        "setup_helpers.py": "X = 1\n",
        "build/old.py": "ignored by the root's .gitignore\n",
        ".venv/lib/site.py": "a hidden folder: never importable\n",
        "my-data/x.py": "a folder name Python cannot import\n",
        "shipped.code/copy.py": "a code folder a compile wrote here earlier\n",
        "shipped.dag.py": "a DAG file a compile wrote here earlier\n",
        "pipecast/__init__.py": "pipecast itself: the worker's installed one runs the step\n",
        ".gitignore": "build/\n*_stub.py\n",
        f"{package}/.pipecastignore": "# a comment\nscratch/\n",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return root


def test_the_import_root_is_shipped_sorted_and_exact_and_only_importable_code(tmp_path):
    package = "shipcase_exact"
    root = import_root(tmp_path, package)
    definition = load_pipeline(str(root / package / "flow.py"))
    bundle = compile_case("airflow", definition, settings={"artifact_root": "s3://b/a"}).bundle
    files = bundle.as_dict()
    code = f"{package}.code/"
    assert list(files) == [f"{package}.dag.py", f"{code}.airflowignore",
                           *(f"{code}{p}" for p in ["setup_helpers.py", f"{package}/__init__.py", f"{package}/flow.py",
                                                    f"{package}/helpers.py", f"{package}/sub/__init__.py",
                                                    f"{package}/sub/model.py"])]
    for path, text in files.items():
        if path.startswith(code) and path != f"{code}.airflowignore":
            assert text.encode() == (root / path.removeprefix(code)).read_bytes(), path
    assert files[f"{code}.airflowignore"] == AIRFLOWIGNORE
    again = compile_case("airflow", definition, settings={"artifact_root": "s3://b/a"}).bundle
    assert again.files == bundle.files
    # The DAG file's name is no module name: it can never shadow the user's module.
    assert not Path(bundle.main_file).stem.isidentifier() and not f"{package}.code".isidentifier()


def test_the_dag_puts_the_code_first_on_each_local_tasks_pythonpath_and_only_then(tmp_path):
    text = compile_case("airflow", "quickstart", settings={"artifact_root": "s3://b/a"}).main
    assert 'CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.code")' in text
    assert "bash_command=literal(ON_PYTHONPATH + spec[\"command\"])" in text
    assert '"PIPECAST_DAG_CODE": literal(CODE)' in text
    # What bash makes of the prefix: the code first, then the worker's own PYTHONPATH, if it has one.
    (prefix,) = [ast.literal_eval(line.split(" = ", 1)[1]) for line in text.splitlines()
                 if line.startswith("ON_PYTHONPATH = ")]
    for worker, expected in [("", "/dags/q.code"), ("/srv/lib", "/dags/q.code:/srv/lib")]:
        env = {"PATH": "/usr/bin:/bin", "PIPECAST_DAG_CODE": "/dags/q.code"}
        if worker:
            env["PYTHONPATH"] = worker
        shown = subprocess.run(["bash", "-c", prefix + 'printf %s "$PYTHONPATH"'], env=env, capture_output=True,
                               text=True, check=True)
        assert shown.stdout == expected
    alone = compile_case("airflow", "quickstart", settings={"artifact_root": "s3://b/a", "ship_code": False})
    assert [path for path, _ in alone.bundle.files] == ["quickstart.dag.py"]
    assert "CODE" not in alone.main and "import os" not in alone.main
    pods = compile_case("airflow", "ml_training", settings={"artifact_root": "s3://b/a", "gpu_node_label": "gke"})
    assert [path for path, _ in pods.bundle.files] == ["ml_training.dag.py"]  # pods run their image's code


def test_ignore_files_are_read_as_git_reads_them_negations_too(tmp_path):
    package = "shipcase_negated"
    root = import_root(tmp_path, package)
    (root / ".gitignore").write_text("build/\n*_stub.py\n!keep_stub.py\n")
    (root / package / "keep_stub.py").write_text("KEPT = True\n")
    definition = load_pipeline(str(root / package / "flow.py"))
    files = compile_case("airflow", definition, settings={"artifact_root": "s3://b/a"}).bundle.as_dict()
    assert f"{package}.code/{package}/keep_stub.py" in files
    assert f"{package}.code/{package}/generated_stub.py" not in files


def test_airflow_skips_the_code_folder_under_either_ignore_syntax(tmp_path):
    """Airflow's own file discovery, with the glob syntax (Airflow 3's default) and the regexp one (Airflow 2's)."""
    compile_case("airflow", "quickstart", settings={"artifact_root": "s3://b/a"}).bundle.write(str(tmp_path))
    script = ("import json, sys\n"
              "from airflow._shared.module_loading.file_discovery import find_path_from_directory\n"
              "print(json.dumps({s: sorted(find_path_from_directory(sys.argv[1], '.airflowignore', s))\n"
              "                  for s in ('glob', 'regexp')}))\n")
    found = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    *logged, last = found.stdout.splitlines()  # Airflow logs to stdout
    assert json.loads(last) == {s: [str(tmp_path / "quickstart.dag.py")] for s in ("glob", "regexp")}
    assert "Ignoring invalid" not in "\n".join(logged) + found.stderr  # every line is valid in both syntaxes


@pytest.mark.parametrize("executor", ["celery", "kubernetes", "edge"])
@pytest.mark.parametrize("root", [None, "file:///srv/artifacts", "/srv/artifacts"])
def test_several_workers_with_a_worker_local_root_are_refused_with_the_fix(executor, root):
    settings = {"executor": executor, **({"artifact_root": root} if root else {})}
    with pytest.raises(ValidationError) as err:
        compile_case("airflow", "quickstart", settings=settings)
    text = str(err.value)
    shown = root or "~/.pipecast/artifacts"
    assert f"artifact root {shown!r} is on the disk of the worker that runs each task, but the {executor} " \
           "executor runs tasks on several workers" in text
    assert "--set artifact_root=s3://BUCKET/PREFIX (or gs://..., az://...)" in text
    assert "quickstart.py:" in text  # where the pipeline is
    shared = compile_case("airflow", "quickstart", settings={"executor": executor, "artifact_root": "s3://b/a"})
    assert shared.warnings == ()


def test_one_machine_needs_no_warning_and_an_unknown_executor_warns():
    assert compile_case("airflow", "quickstart", settings={"executor": "local"}).bundle.warnings == ()
    assert compile_case("airflow", "quickstart", settings={"executor": "sequential"}).bundle.warnings == ()
    (warning,) = compile_case("airflow", "quickstart").bundle.warnings
    assert warning.severity is Severity.WARNING and "--set executor=local" in (warning.fix or "")
    with pytest.raises(ValidationError, match="setting 'executor'"):
        compile_case("airflow", "quickstart", settings={"executor": "dask"})


def test_the_demo_compile_writes_the_dag_and_its_code(tmp_path):
    cli = Path(sys.executable).parent / "pipecast"
    result = subprocess.run([str(cli), "compile", str(ROOT / "examples" / "quickstart.py"), "--target", "airflow",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        ".pipecast/written/airflow/quickstart.json", "quickstart.code/.airflowignore",
        "quickstart.code/ml_pipeline.py", "quickstart.code/quickstart.py",
        "quickstart.dag.py"]
