"""The runtime runs only the code that was compiled: source hash and pipecast version checks, code packages.

A "task" here is the real ``python -m pipecast.runtime`` command a target emits (built by ``step_command``), run
in a fresh process whose working directory is the "image": a folder holding the code (or none, in package mode).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipecast
from pipecast.build.context import FIXED_MTIME
from pipecast.build.package import CodePackageError, build_package, package_files, package_uri, upload_package
from pipecast.compiler import ir
from pipecast.errors import BuildError
from pipecast.runtime.command import EngineSyntax, parse_command, step_command
from pipecast.runtime.executor import load_outputs
from tests.helpers.cases import ROOT
from tests.helpers.processes import EVENT_SECONDS

CODE = '''
from pipecast import pipeline, step


{decorator}
def greet(name: str) -> str:
    return "{greeting}, " + name


@pipeline
def shipped(name: str = "world"):
    greet(name)
'''


def write_code(folder: Path, module: str, greeting: str, decorator: str = "@step") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(CODE.format(greeting=greeting, decorator=decorator))
    return folder


def compiled(folder: Path, module: str) -> ir.Pipeline:
    """The IR of the code in ``folder``, as ``pipecast compile`` would trace it (imported under ``module``)."""
    spec = importlib.util.spec_from_file_location(module, folder / f"{module}.py")
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    spec.loader.exec_module(loaded)
    return loaded.shipped.build()


def task(pipeline: ir.Pipeline, root: str, *, image: Path, env: dict[str, str] | None = None, run_id: str = "r1",
         **code: str) -> subprocess.CompletedProcess[str]:
    """Run the pipeline's one step as an engine would: the emitted command, in the "image" folder."""
    syntax = EngineSyntax(run_id=run_id, parameter=lambda p: "world", artifact_root=root, python=sys.executable,
                          **code)
    command = step_command(pipeline, pipeline.steps[0], syntax)
    environment = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PIPECAST_HOME": str(image / ".home"),
                   **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, cwd=image, env=environment,
                          timeout=EVENT_SECONDS)


@pytest.fixture
def module(request) -> Iterator[str]:
    name = f"shipped_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]}"
    yield name
    sys.modules.pop(name, None)


def test_the_task_command_carries_the_source_hash_and_pipecast_version(tmp_path, module):
    pipeline = compiled(write_code(tmp_path / "src", module, "hello"), module)
    step = pipeline.steps[0]
    command = step_command(pipeline, step, EngineSyntax(run_id="r", parameter=lambda p: "x", artifact_root="s3://b"))
    assert command[command.index("--source-hash") + 1] == step.function.source_hash
    assert command[command.index("--pipecast-version") + 1] == pipecast.__version__
    invocation, _ = parse_command(command[3:])
    assert (invocation.source_hash, invocation.pipecast_version) == (step.function.source_hash, pipecast.__version__)
    assert "--code-sha256" not in command and "--code-package" not in command


def test_a_stale_image_fails_with_the_mismatch_error_and_runs_nothing(tmp_path, module):
    image = write_code(tmp_path / "image", module, "old")  # built before the change, never rebuilt
    pipeline = compiled(write_code(tmp_path / "src", module, "new"), module)
    artifacts = tmp_path / "artifacts"
    stale = task(pipeline, f"file://{artifacts}", image=image)
    assert stale.returncode == 2, stale.stderr
    here = hashlib.sha256(textwrap.dedent('''\
        @step
        def greet(name: str) -> str:
            return "old, " + name
        ''').encode()).hexdigest()[:16]
    expected = pipeline.steps[0].function.source_hash
    assert here != expected
    assert f"has source hash {here}" in stale.stderr and f"compiled from source hash {expected}" in stale.stderr
    assert "rebuild the image" in stale.stderr and "submit again" in stale.stderr
    assert "Traceback" not in stale.stderr
    assert not artifacts.exists(), "nothing is written when the code is not the compiled code"
    fresh = task(pipeline, f"file://{artifacts}", image=write_code(tmp_path / "rebuilt", module, "new"))
    assert fresh.returncode == 0, fresh.stderr
    assert load_outputs(f"file://{artifacts}", "shipped", "r1", "greet") == {"output": "new, world"}


def test_another_pipecast_version_is_refused_naming_both(tmp_path, module):
    image = write_code(tmp_path / "image", module, "hello")
    pipeline = compiled(image, module)
    step = pipeline.steps[0]
    syntax = EngineSyntax(run_id="r1", parameter=lambda p: "world", artifact_root=f"file://{tmp_path / 'a'}",
                          python=sys.executable)
    command = step_command(pipeline, step, syntax)
    command[command.index("--pipecast-version") + 1] = "0.0.1"
    result = subprocess.run(command, capture_output=True, text=True, cwd=image, timeout=EVENT_SECONDS,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert f"runs pipecast {pipecast.__version__} but the pipeline was compiled with pipecast 0.0.1" in result.stderr
    assert "install pipecast==0.0.1" in result.stderr and not (tmp_path / "a").exists()


def test_the_local_runner_checks_too_and_a_supervised_try_passes_the_checks_on(tmp_path, module):
    from pipecast.runtime.command import TryOptions, invocation_for, try_args

    pipeline = compiled(write_code(tmp_path / "src", module, "hello"), module)
    invocation = invocation_for(pipeline, pipeline.steps[0], "r1", f"file://{tmp_path}", {"name": "x"})
    assert invocation.source_hash == pipeline.steps[0].function.source_hash
    assert invocation.pipecast_version == pipecast.__version__
    child, _ = parse_command(try_args(invocation, TryOptions(1, "t")))
    assert (child.source_hash, child.pipecast_version) == (invocation.source_hash, invocation.pipecast_version)


# --- package mode -----------------------------------------------------------------------------------------------


def test_the_archive_is_reproducible_and_respects_ignore_files(tmp_path):
    project = tmp_path / "project"
    (project / "pkg" / "data").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "model.py").write_text("X = 1\n")
    (project / "pkg" / "data" / "big.csv").write_text("1,2\n")
    (project / "pkg" / "__pycache__").mkdir()
    (project / "pkg" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "notes.log").write_text("log\n")
    (project / "secret.env").write_text("TOKEN=1\n")
    (project / ".gitignore").write_text("*.log\n")
    (project / ".pipecastignore").write_text("secret.env\n")
    (project / "pkg" / ".pipecastignore").write_text("data/\n")  # a nested file's rules apply under its folder
    first = build_package(str(project))
    assert first.files == (".gitignore", ".pipecastignore", "pkg/.pipecastignore", "pkg/__init__.py",
                           "pkg/model.py")
    assert package_files(str(project)) == list(first.files)
    for path in project.rglob("*"):  # other mtimes, other modes of access: the same bytes
        os.utime(path, (1, 1))
    again = build_package(str(project))
    assert again.data == first.data and again.sha256 == first.sha256 == hashlib.sha256(first.data).hexdigest()
    with tarfile.open(fileobj=__import__("io").BytesIO(first.data), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == list(first.files)
    assert {(i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos} == {(0, 0, "", "", FIXED_MTIME)}
    (project / "pkg" / "model.py").write_text("X = 2\n")
    assert build_package(str(project)).sha256 != first.sha256


def test_an_import_root_past_the_limit_is_one_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 3_000_000)
    (tmp_path / "a.py").write_text("")
    with pytest.raises(BuildError) as caught:
        build_package(str(tmp_path), limit=1_000_000)
    message = str(caught.value)
    assert "2.9 MiB" in message and "weights.bin" in message and ".pipecastignore" in message
    with pytest.raises(BuildError, match="is not a folder"):
        build_package(str(tmp_path / "missing"))


def shipped_run(tmp_path: Path, module: str, greeting: str, root: str, *, run_id: str,
                env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    """Change the code, compile, upload its package (what submit does), run the task in an image without code."""
    source = write_code(tmp_path / "src", module, greeting)
    sys.modules.pop(module, None)
    pipeline = compiled(source, module)
    package = build_package(str(source))
    uri = upload_package(package, root)
    assert uri == package_uri(package, root)
    image = tmp_path / "image-without-code"
    image.mkdir(exist_ok=True)
    environment = {"PIPECAST_CODE_CACHE": str(tmp_path / "code-cache"), **(env or {})}
    result = task(pipeline, root, image=image, env=environment, run_id=run_id, code_sha256=package.sha256)
    return result, uri


def test_a_code_only_change_runs_from_the_package_without_a_rebuild_and_a_tampered_one_is_refused(tmp_path, module):
    root = f"file://{tmp_path / 'artifacts'}"
    first, uri = shipped_run(tmp_path, module, "v1", root, run_id="r1")
    assert first.returncode == 0, first.stderr
    assert load_outputs(root, "shipped", "r1", "greet") == {"output": "v1, world"}
    second, uri2 = shipped_run(tmp_path, module, "v2", root, run_id="r2")
    assert second.returncode == 0, second.stderr
    assert uri2 != uri and load_outputs(root, "shipped", "r2", "greet") == {"output": "v2, world"}
    cache = tmp_path / "code-cache"
    assert sorted(p.name for p in cache.iterdir()) == sorted([uri.rsplit("/", 1)[1][:64], uri2.rsplit("/", 1)[1][:64]])
    # Cached per host: the package is not read again once extracted (it is gone, and the task still runs).
    Path(uri2.removeprefix("file://")).unlink()
    third, _ = shipped_run(tmp_path, module, "v2", root, run_id="r3")
    assert third.returncode == 0, third.stderr
    # Tampered: other bytes under the name of the compiled sha256 are refused before anything is extracted.
    source = write_code(tmp_path / "src", module, "v3")
    sys.modules.pop(module, None)
    pipeline = compiled(source, module)
    package = build_package(str(source))
    path = Path(upload_package(package, root).removeprefix("file://"))
    path.write_bytes(build_package(str(write_code(tmp_path / "evil", module, "evil"))).data)
    image = tmp_path / "image-without-code"
    tampered = task(pipeline, root, image=image, env={"PIPECAST_CODE_CACHE": str(cache)}, run_id="r4",
                    code_sha256=package.sha256)
    assert tampered.returncode == 2
    assert f"was compiled for sha256 {package.sha256}" in tampered.stderr and "changed after submit" in tampered.stderr
    assert not (cache / package.sha256).exists() and not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_a_damaged_sha256_or_a_missing_package_is_a_clear_error(tmp_path, module):
    pipeline = compiled(write_code(tmp_path / "src", module, "v1"), module)
    image = tmp_path / "image"
    image.mkdir()
    bad = task(pipeline, f"file://{tmp_path}/a", image=image, code_package=f"file://{tmp_path}/x.tar.gz",
               code_sha256="../../etc")
    assert bad.returncode == 2 and "is not a sha256" in bad.stderr
    missing = task(pipeline, f"file://{tmp_path}/a", image=image, code_package=f"file://{tmp_path}/x.tar.gz",
                   code_sha256="0" * 64)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "submit again" in missing.stderr


def test_package_mode_through_moto_s3(tmp_path, module, moto_s3):
    moto_s3.fs.mkdir("shipping")
    root = "s3://shipping/artifacts"
    first, uri = shipped_run(tmp_path, module, "v1", root, run_id="r1", env=moto_s3.env)
    assert first.returncode == 0, first.stderr
    assert uri.startswith("s3://shipping/artifacts/.pipecast/code/")
    second, _ = shipped_run(tmp_path, module, "v2", root, run_id="r2", env=moto_s3.env)
    assert second.returncode == 0, second.stderr
    assert load_outputs(root, "shipped", "r2", "greet") == {"output": "v2, world"}


def test_submit_in_package_mode_names_the_package_in_every_task_and_uploads_it(tmp_path, module):
    from pipecast.build.shipping import prepare_package
    from pipecast.flow import EmitOptions, compile_pipeline

    pipeline = compiled(write_code(tmp_path / "src", module, "v1"), module)
    root = f"file://{tmp_path / 'artifacts'}"
    prepared = prepare_package(pipeline, root)
    assert prepared.import_root == str(tmp_path / "src") and prepared.package.files == (f"{module}.py",)
    bundle = compile_pipeline(pipeline, "argo", EmitOptions(settings={"image": "ghcr.io/acme/any:1",
                                                                      "artifact_root": "s3://b/a"},
                                                            code_sha256=prepared.package.sha256))
    text = bundle[bundle.main_file]
    assert f"- --code-sha256\n      - {prepared.package.sha256}\n" in text
    plain = compile_pipeline(pipeline, "argo", EmitOptions(settings={"image": "ghcr.io/acme/any:1",
                                                                     "artifact_root": "s3://b/a"}))
    assert "--code-sha256" not in plain[plain.main_file], "the package applies to its own compile only"
    with pytest.raises(CodePackageError, match="no artifact root"):
        prepare_package(pipeline, None)


def test_code_on_the_command_line_applies_where_it_means_something():
    from click.testing import CliRunner

    from pipecast.cli import main

    result = CliRunner().invoke(main, ["run", "examples/quickstart.py", "--code", "package"])
    assert result.exit_code == 2 and "--code applies to --target local_docker only" in result.output
    assert "--code [image|package|none]" in CliRunner().invoke(main, ["submit", "--help"]).output


def test_a_supervised_try_imports_from_the_package_too(tmp_path, module):
    """With a timeout the runtime runs the step in a child process: the child gets the package and the checks."""
    source = write_code(tmp_path / "src", module, "timed", decorator="@step(timeout=600)")
    pipeline = compiled(source, module)
    root = f"file://{tmp_path / 'artifacts'}"
    package = build_package(str(source))
    upload_package(package, root)
    image = tmp_path / "image"
    image.mkdir()
    syntax = EngineSyntax(run_id="r1", parameter=lambda p: "world", artifact_root=root, python=sys.executable,
                          code_sha256=package.sha256)
    command = step_command(pipeline, pipeline.steps[0], syntax, runtime_timeout=True)
    assert "--timeout" in command
    result = subprocess.run(command, capture_output=True, text=True, cwd=image, timeout=EVENT_SECONDS,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PIPECAST_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert load_outputs(root, "shipped", "r1", "greet") == {"output": "timed, world"}


def test_submit_in_package_mode_builds_images_without_the_code(tmp_path, module, monkeypatch):
    """An image submit builds for a package-mode run holds no code (build code=none): the package brings it."""
    import pipecast.flow as flow

    pipeline = compiled(write_code(tmp_path / "src", module, "v1"), module)
    seen = {}

    def stop_at_compile(pipeline, target, options, build, log=None):
        seen.update(build=build, sha=options.code_sha256)
        raise RuntimeError("stop before the engine")

    monkeypatch.setattr(flow, "compile_with_build", stop_at_compile)
    with pytest.raises(RuntimeError, match="stop before the engine"):
        flow.submit_pipeline(pipeline, "argo", {}, {"artifact_root": f"file://{tmp_path}/a"}, {},
                             build={"repository": "r/x"}, code="package")
    assert seen["build"] == {"repository": "r/x", "code": "none"} and len(seen["sha"]) == 64
