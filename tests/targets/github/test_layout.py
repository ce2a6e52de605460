"""Where a job finds its code and pipecast: working-directory from the import root, the pinned install,
pip's cache key, requirements.txt; and the wheel of the running pipecast that a repository ships."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest

import pipecast
from pipecast.build.wheel import pipecast_wheel, wheel_name
from pipecast.compiler.loader import load_pipeline
from pipecast.errors import UnsupportedFeatureError
from pipecast.targets.github.layout import wheel_path
from tests.helpers.cases import compile_case
from tests.targets.github.replay import load_workflow
from tests.targets.github.support import lint

PIPELINE = textwrap.dedent("""
    from pipecast import pipeline, step


    @step
    def twice(x: int) -> int:
        return 2 * x


    @pipeline
    def {name}(x: int = 1):
        twice(x)
""")


def _module(folder: Path, name: str, *, git: bool, requirements: bool) -> Path:
    source = folder / "pipelines" / f"{name}.py"
    source.parent.mkdir(parents=True)
    source.write_text(PIPELINE.format(name=name))
    if requirements:
        (source.parent / "requirements.txt").write_text("numpy\n")
    if git:
        subprocess.run(["git", "init", "--quiet", str(folder)], check=True, timeout=60)
    return source


def _job(text: str) -> dict:
    (job,) = load_workflow(text)["jobs"].values()
    return job


def test_working_directory_install_and_cache_key_follow_the_import_root(tmp_path):
    source = _module(tmp_path, "layout_in_repo", git=True, requirements=True)
    text = compile_case("github", load_pipeline(str(source))).main
    steps = {s["name"]: s for s in _job(text)["steps"]}
    assert steps["Run step twice"]["working-directory"] == "pipelines"
    assert steps["Set up Python"]["with"] == {
        "python-version": "3.11", "cache": "pip",
        "cache-dependency-path": ".github/workflows/layout_in_repo.yml\npipelines/requirements.txt"}
    install = steps["Install pipecast"]["run"]
    assert f"if [ -f {wheel_path()} ]; then\n  python -m pip install {wheel_path()}\n" in install
    assert f"python -m pip install pipecast=={pipecast.__version__}\n" in install
    assert install.endswith("python -m pip install -r pipelines/requirements.txt\n")
    assert "install pipecast\n" not in install  # never unpinned
    lint({"layout_in_repo": text}, tmp_path / "lint")


def test_outside_a_repository_nothing_is_inferred_and_settings_win(tmp_path):
    source = _module(tmp_path, "layout_no_repo", git=False, requirements=True)
    pipeline = load_pipeline(str(source))
    steps = {s["name"]: s for s in _job(compile_case("github", pipeline).main)["steps"]}
    assert "working-directory" not in steps["Run step twice"]
    assert "requirements" not in steps["Install pipecast"]["run"]
    chosen = compile_case("github", pipeline, settings={"working_directory": "src", "install": "make deps"}).main
    steps = {s["name"]: s for s in _job(chosen)["steps"]}
    assert steps["Run step twice"]["working-directory"] == "src"
    assert steps["Install pipecast"]["run"] == "make deps"


def test_the_wheel_is_the_running_pipecast_and_reproducible(tmp_path):
    first = pipecast_wheel(tmp_path / "a")
    second = pipecast_wheel(tmp_path / "b")
    assert first.name == wheel_name() == Path(wheel_path()).name
    assert first.read_bytes() == second.read_bytes()  # same code, same bytes
    package = Path(pipecast.__file__).parent
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert archive.read("pipecast/__init__.py") == (package / "__init__.py").read_bytes()
        assert "pipecast/templates/airflow_dag.py.j2" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        dist_info = f"pipecast-{pipecast.__version__}.dist-info"
        assert f"\nVersion: {pipecast.__version__}\n" in archive.read(f"{dist_info}/METADATA").decode()
        assert "pipecast = pipecast.cli:main" in archive.read(f"{dist_info}/entry_points.txt").decode()
        for line in archive.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if name != f"{dist_info}/RECORD":
                data = archive.read(name)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, size) == (f"sha256={expected}", str(len(data))), name


DECLARED = textwrap.dedent("""
    from pipecast import pipeline, step


    @step(packages=["rich>=13", "numpy==2.1.3"])
    def twice(x: int) -> int:
        return 2 * x


    @step
    def plain(x: int) -> int:
        return x


    @pipeline(requirements=["numpy==2.1.3", "pandas>=2,<3"])
    def declared(x: int = 1):
        plain(twice(x))
""")


def test_the_job_installs_the_declared_requirements_and_the_step_packages(tmp_path):
    source = _module(tmp_path, "declared", git=True, requirements=True)
    source.write_text(DECLARED)
    text = compile_case("github", load_pipeline(str(source))).main
    jobs = load_workflow(text)["jobs"]
    installs = {name: next(s for s in job["steps"] if s["name"] == "Install pipecast")["run"]
                for name, job in jobs.items()}
    pinned = f"python -m pip install pipecast=={pipecast.__version__}\nfi\n"
    # requirements= replaces the import root's requirements.txt (as in pipecast build); a step adds its packages.
    assert installs["twice"].endswith(pinned + "python -m pip install numpy==2.1.3 'pandas>=2,<3' 'rich>=13'\n")
    assert installs["plain"].endswith(pinned + "python -m pip install numpy==2.1.3 'pandas>=2,<3'\n")
    assert all("requirements.txt" not in install for install in installs.values())
    lint({"declared": text}, tmp_path / "lint")


def test_a_requirement_github_would_evaluate_is_an_error(tmp_path):
    source = _module(tmp_path, "evaluated", git=True, requirements=False)
    source.write_text(DECLARED.replace('"pandas>=2,<3"', '"pkg @ https://example.test/${{github.token}}.whl"'))
    with pytest.raises(UnsupportedFeatureError, match=r"would evaluate as an expression"):
        compile_case("github", load_pipeline(str(source)))
