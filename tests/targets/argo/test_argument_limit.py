"""Every container argument of an Argo Workflow within Linux's MAX_ARG_STRLEN (pipecast/targets/argo_args.py): a
text, list or dict parameter is substituted whole into one argument, not only in maps. A default or a constant
past it fails the compile (exit 2, nothing written); a run's value past it fails ``pipecast submit`` before any
request, on both submit paths (the Kubernetes API, here its fake; Argo Server's is the same call)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.targets.kube.limits import MAX_ARG_STRLEN
from tests.unit import map_limit_pipelines

PIPELINES = "tests/unit/map_limit_pipelines.py"
SETTINGS = {"artifact_root": "s3://bucket/pipecast", "image": "ghcr.io/acme/ml:1"}


def _compile(pipeline, out):
    args = ["compile", f"{PIPELINES}:{pipeline}", "-t", "argo", "--out", str(out)]
    for key, value in SETTINGS.items():
        args += ["--set", f"{key}={value}"]
    return CliRunner().invoke(main, args)


def test_a_text_default_past_one_argument_fails_the_compile(tmp_path):
    result = _compile("long_text_default", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert f"{PIPELINES}:65: target 'argo': an argument" in result.output  # the parameter's line
    assert ("an argument of Argo task 'size' is 140009 bytes with the default of parameter 'note'; Argo passes "
            f"it to the step's container as one argument, and Linux takes at most {MAX_ARG_STRLEN} bytes per "
            "argument (MAX_ARG_STRLEN, with its NUL)") in result.output
    assert "pass large data as a step's output (or a file the step reads), not a parameter" in result.output


def test_a_constant_past_one_argument_fails_the_compile(tmp_path):
    result = _compile("long_constant", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "an argument of Argo task 'size' is" in result.output and "(a constant)" in result.output
    assert f"{PIPELINES}:71: step 'size': target 'argo': an argument" in result.output  # the step's call
    assert "not a constant" in result.output and not (tmp_path / "out").exists()


def _submit(kube, definition, parameters):
    return submit_pipeline(definition.build(), "argo", parameters, SETTINGS,
                           {"kubeconfig": kube.kubeconfig, "namespace": "ml"})


@pytest.mark.parametrize("embed", [False, True])
def test_submit_checks_every_parameter_argument_to_the_byte(kube, embed):
    settings = {**SETTINGS, "embed": "true"} if embed else SETTINGS
    room = MAX_ARG_STRLEN - 1 - len("text=str:")
    definition = map_limit_pipelines.short_text
    with pytest.raises(SubmitError, match=r"an argument of Argo task 'size' is 131072 bytes with the value of "
                                          r"parameter 'note'.*nothing was submitted \(pass large data"):
        submit_pipeline(definition.build(), "argo", {"note": "a" * (room + 1)}, settings,
                        {"kubeconfig": kube.kubeconfig, "namespace": "ml"})
    big = {f"k{i}": "v" * 1000 for i in range(140)}
    with pytest.raises(SubmitError, match=r"task 'count-keys' is \d+ bytes with the value of parameter 'rows'"):
        submit_pipeline(definition.build(), "argo", {"rows": big}, settings,
                        {"kubeconfig": kube.kubeconfig, "namespace": "ml"})
    assert kube.requests == []
    kube.on_create("workflows", lambda fake, obj: None)
    handle = submit_pipeline(definition.build(), "argo", {"note": "a" * room}, settings,  # exactly MAX_ARG_STRLEN
                             {"kubeconfig": kube.kubeconfig, "namespace": "ml"})
    assert handle.engine_run_id.startswith("ml/")
