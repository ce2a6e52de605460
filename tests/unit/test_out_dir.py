"""``pipecast compile --out DIR``: DIR holds exactly what was compiled; pipecast touches only files it wrote."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.errors import OutputError
from pipecast.targets.out_dir import write_owned
from tests.helpers.cases import ROOT


def compile_cli(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipecast.cli", "compile", "quickstart.py", "--target", "airflow",
                           "--set", "executor=local", "--out", str(out), *extra], capture_output=True, text=True,
                          cwd=source)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``."""
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
            for path in sorted(folder.rglob("*"))}


def shipped(folder: Path) -> dict[str, bytes | None]:
    return {path: data for path, data in snapshot(folder).items() if not path.startswith(".pipecast")}


def test_a_recompile_removes_the_files_the_earlier_compile_wrote_and_this_one_does_not(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", source)
    (source / "helper.py").write_text("VALUE = 1\n")
    out, fresh = tmp_path / "dags", tmp_path / "fresh"
    (out / "other.dag.py").parent.mkdir()
    (out / "other.dag.py").write_text("# not pipecast's\n")
    assert compile_cli(source, out).returncode == 0
    assert (out / "quickstart.code" / "helper.py").exists()

    (source / "helper.py").unlink()  # the next compile ships one module fewer
    second = compile_cli(source, out)
    assert second.returncode == 0, second.stderr
    assert "removed ../dags/quickstart.code/helper.py (written by an earlier compile" in second.stderr
    assert compile_cli(source, fresh).returncode == 0
    assert shipped(out) == {**shipped(fresh), "other.dag.py": b"# not pipecast's\n"}  # exactly what was compiled

    third = compile_cli(source, out, "--set", "ship_code=false")  # no .code folder at all now
    assert third.returncode == 0, third.stderr
    assert sorted(shipped(out)) == ["other.dag.py", "quickstart.dag.py"]


def test_a_file_pipecast_did_not_write_is_refused_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    write_owned([("a.yaml", "a\n")], str(out), target="argo", pipeline="a")
    (out / "b.yaml").write_text("mine\n")
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"will not overwrite files under .*'b\.yaml' exists and pipecast did not "
                                          r"write it .*Fix: move those files away"):
        write_owned([("a.yaml", "A\n"), ("b.yaml", "b\n"), ("c/d.yaml", "d\n")], str(out), target="argo",
                    pipeline="a")
    assert snapshot(out) == before


def test_another_pipelines_files_are_neither_overwritten_nor_removed(tmp_path):
    out = tmp_path / "out"
    write_owned([("a.yaml", "a\n"), ("shared/a.py", "a\n")], str(out), target="argo", pipeline="a")
    write_owned([("b.yaml", "b\n"), ("shared/b.py", "b\n")], str(out), target="argo", pipeline="b")
    write_owned([("b.yaml", "b2\n")], str(out), target="argo", pipeline="b")
    assert shipped(out) == {"a.yaml": b"a\n", "b.yaml": b"b2\n", "shared": None, "shared/a.py": b"a\n"}
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"'a\.yaml' was written by the compile of pipeline 'a' for target 'argo'"):
        write_owned([("a.yaml", "x\n")], str(out), target="argo", pipeline="b")
    with pytest.raises(OutputError, match=r"'a\.yaml' was written by the compile of pipeline 'a' for target 'argo'"):
        write_owned([("a.yaml", "x\n")], str(out), target="tekton", pipeline="a")
    assert snapshot(out) == before


def test_a_stale_file_changed_since_pipecast_wrote_it_is_left(tmp_path):
    out = tmp_path / "out"
    write_owned([("a.yaml", "a\n"), ("x/edited.py", "1\n"), ("x/y/stale.py", "2\n")], str(out), target="t",
                pipeline="p")
    (out / "x" / "edited.py").write_text("changed by hand\n")
    done = write_owned([("a.yaml", "a\n")], str(out), target="t", pipeline="p")
    assert done.removed == [str(out / "x" / "y" / "stale.py")] and done.kept == [str(out / "x" / "edited.py")]
    assert shipped(out) == {"a.yaml": b"a\n", "x": None, "x/edited.py": b"changed by hand\n"}  # x/y/ pruned


def test_a_write_that_fails_midway_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    write_owned([("keep.yaml", "k\n")], str(out), target="t", pipeline="p")
    (out / "blocker").write_text("")  # a file where the compile needs a folder
    before = snapshot(out)
    with pytest.raises(OutputError, match="cannot write the files under"):
        write_owned([("keep.yaml", "k2\n"), ("new/a.yaml", "a\n"), ("blocker/b.yaml", "b\n")], str(out),
                    target="t", pipeline="p")
    assert snapshot(out) == before  # no staged file, no folder made, no record changed


def test_a_failing_compile_leaves_the_folder_as_it_was(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", source)
    out = tmp_path / "dags"
    assert compile_cli(source, out).returncode == 0
    before = snapshot(out)
    failed = compile_cli(source, out, "--set", "no_such_setting=1")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert snapshot(out) == before
