"""What a SkyPilot VM gets of the code: the import root as workdir, and a setup that installs exactly this pipecast.

The last test runs a compiled task for real the way a VM does: the workdir copied to ``~/sky_workdir``, the
wheel ``pipecast submit`` ships where its file mount puts it, ``setup`` in a fresh virtualenv (its ``python3``
first on PATH), then ``run`` with no PYTHONPATH: the step modules are imported from the workdir alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipecast
from pipecast import Resources, pipeline, step
from pipecast.build.plan import is_editable
from pipecast.targets.skypilot.code import pipecast_mount, remote_wheel, wheel_file
from tests.helpers.cases import ROOT, case, compile_case
from tests.helpers.replay import assert_same_outputs
from tests.targets.skypilot.support import task_documents

S3 = {"artifact_root": "s3://b/p"}
VERSION = pipecast.__version__


@step
def double(n: int) -> int:
    return 2 * n


@pipeline(name="needs", requirements=["numpy==2.1.3", "pandas>=2"])
def needs(n: int = 2):
    return double(n)


@step(packages=["rich>=13"], resources=Resources(cpu=4))
def heavy(n: int) -> int:
    return n


@pipeline(name="two_tasks", requirements=["numpy==2.1.3"])
def two_tasks(n: int = 2):
    return heavy(double(n))


@pipeline(name="own_pipecast", settings={"build": {"pipecast_from": "index"}})
def own_pipecast(n: int = 2):
    return double(n)


def test_workdir_is_the_import_root_relative_to_where_pipecast_compiles(monkeypatch, tmp_path):
    _, docs = task_documents(compile_case("vm_aws", "quickstart", settings=S3).main)
    assert docs[0]["workdir"] == "examples"  # examples/quickstart.py is imported as `quickstart`
    _, docs = task_documents(compile_case("vm_aws", needs, settings=S3).main)
    assert docs[0]["workdir"] == "."  # tests.targets.skypilot.test_code: the repository's root
    monkeypatch.chdir(tmp_path)  # outside the root: SkyPilot would read a relative path from here, so absolute
    _, docs = task_documents(compile_case("vm_aws", "quickstart", settings=S3).main)
    assert docs[0]["workdir"] == str(ROOT / "examples")


def test_setup_installs_exactly_this_pipecast_and_the_pipeline_requirements():
    _, docs = task_documents(compile_case("vm_aws", needs, settings={**S3, "pip_packages": ["rich"]}).main)
    wheel = f'"${{HOME}}"/.pipecast/pipecast-{VERSION}-py3-none-any.whl'
    assert docs[0]["setup"] == (
        "set -euo pipefail\n"
        "# Exactly the compiling pipecast: the wheel pipecast submit ships, else that version from the index.\n"
        f"if [ -f {wheel} ]; then\n"
        f"  python3 -m pip install {wheel} s3fs numpy==2.1.3 'pandas>=2' rich\n"
        "else\n"
        f"  python3 -m pip install pipecast=={VERSION} s3fs numpy==2.1.3 'pandas>=2' rich\n"
        "fi\n")


def test_a_task_also_installs_its_own_steps_packages():
    _, docs = task_documents(compile_case("vm_aws", two_tasks, settings=S3).main)
    installs = [[line.strip() for line in d["setup"].splitlines() if "pip install pipecast==" in line]
                for d in docs]
    assert installs == [[f"python3 -m pip install pipecast=={VERSION} s3fs numpy==2.1.3"],
                        [f"python3 -m pip install pipecast=={VERSION} s3fs numpy==2.1.3 'rich>=13'"]]


def test_submit_mounts_the_wheel_of_this_pipecast_when_the_setup_wants_it(tmp_path):
    _, docs = task_documents(compile_case("vm_aws", needs, settings=S3).main)
    assert is_editable(), "the tests run an editable pipecast: its code is no published version"
    mounts = pipecast_mount(needs.build(), [docs[0]["setup"]])
    assert list(mounts) == [remote_wheel()] == [f"~/.pipecast/{wheel_file()}"]
    assert Path(mounts[remote_wheel()]).name == wheel_file() and Path(mounts[remote_wheel()]).is_file()
    # The user's own pipecast requirement, or build settings that take pipecast from the index: nothing shipped.
    _, own = task_documents(compile_case("vm_aws", needs, settings={**S3, "pipecast_package": "pipecast"}).main)
    assert pipecast_mount(needs.build(), [own[0]["setup"]]) == {}
    _, docs = task_documents(compile_case("vm_aws", own_pipecast, settings=S3).main)
    assert pipecast_mount(own_pipecast.build(), [docs[0]["setup"]]) == {}


@pytest.mark.slow
def test_a_task_runs_from_its_workdir_with_the_shipped_wheel(tmp_path):
    """setup installs the shipped wheel into a fresh venv; run imports the steps from the workdir alone."""
    pipeline_ir = case("quickstart").build()
    _, (document,) = task_documents(compile_case("vm_aws", "quickstart", settings=S3).main)
    home = tmp_path / "home"
    workdir = home / "sky_workdir"
    shutil.copytree(ROOT / document["workdir"], workdir)  # what SkyPilot's workdir sync does
    for remote, local in pipecast_mount(pipeline_ir, [document["setup"]]).items():
        target = home / remote.removeprefix("~/")  # what SkyPilot's file mount does
        target.parent.mkdir(parents=True)
        shutil.copy(local, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    env = {"HOME": str(home), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "UV_"))}}
    setup = subprocess.run(["bash", "-c", document["setup"]], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=900)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import pipecast; print(pipecast.__file__)"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert installed.stdout.startswith(str(venv)), installed.stdout  # the wheel's copy, not this source tree
    artifacts = tmp_path / "artifacts"
    run_id = "sky-2026-01-01-00-00-00-000001_pipecast-cluster_1"
    envs = {k: v for k, v in document["envs"].items() if v is not None}
    envs.update({"PIPECAST_ARTIFACT_ROOT": f"file://{artifacts}", "SKYPILOT_TASK_ID": run_id})
    run = subprocess.run(["bash", "-c", document["run"]], cwd=workdir, env={**env, **envs}, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_same_outputs(pipeline_ir, {}, artifacts, run_id, tmp_path)
