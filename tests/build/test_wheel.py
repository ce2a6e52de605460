"""The wheel of the running pipecast: the same bytes every time, and a pip-installable distribution."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile

import pytest

from pipecast.build.wheel import pipecast_dependencies, pipecast_version, pipecast_wheel, wheel_name


def test_wheel_is_reproducible_and_complete(tmp_path):
    first = pipecast_wheel(tmp_path / "a")
    second = pipecast_wheel(tmp_path / "b")
    assert first.name == wheel_name() == f"pipecast-{pipecast_version()}-py3-none-any.whl"
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        info = f"pipecast-{pipecast_version()}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "pipecast/templates/airflow_dag.py.j2" in names and "pipecast/build/wheel.py" in names
    assert not any(name.endswith(".pyc") or "__pycache__" in name for name in names)
    assert all(f"Requires-Dist: {r}" in metadata for r in pipecast_dependencies())
    assert "extra ==" not in metadata  # the image gets pipecast's own dependencies, no SDK extras
    assert "[pipecast.targets]" in entry_points and "[pipecast.builders]" in entry_points


@pytest.mark.slow  # pip installs into a side folder (tests/helpers/slow.py)
def test_wheel_installs_with_pip(tmp_path):
    wheel = pipecast_wheel(tmp_path / "dist")
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    check = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import pipecast.build.wheel as w; print(w.__file__)", str(target)],
                           capture_output=True, text=True, timeout=600)
    assert check.stdout.startswith(str(target)), check.stderr
