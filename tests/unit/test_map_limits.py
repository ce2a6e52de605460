"""Map sizes checked before submitting (pipecast/targets/map_limits.py): a list parameter's default at compile,
the values given to ``pipecast submit`` before anything reaches the engine, on GitHub, Tekton and Airflow."""

from __future__ import annotations

import http.server
import threading

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.runs.store import RunStore
from tests.helpers.cases import golden_settings

PIPELINES = "tests/unit/map_limit_pipelines.py"
# Each target: what it needs to compile a map (GitHub: a remote root; Tekton: an image and a root), its rule.
ROOT = ["--set", "artifact_root=s3://bucket/pipecast"]
TARGETS = {
    "github": (ROOT, "GitHub Actions runs at most 256 jobs per matrix"),
    "tekton": ([*ROOT, "--set", "image=ghcr.io/acme/ml:1"], "Tekton fans a task out into at most 256 TaskRuns"),
    "airflow": ([], "Airflow expands a task into at most 1024 mapped instances (its [core] max_map_length"),
}


def _compile(target, pipeline, out, *extra):
    args = ["compile", f"{PIPELINES}:{pipeline}", "-t", target, "--out", str(out), *TARGETS[target][0], *extra]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("target", ["github", "tekton"])
def test_an_over_long_default_fails_the_compile_and_writes_nothing(target, tmp_path):
    result = _compile(target, "long_default", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert (f"{PIPELINES}:20: target {target!r}: map 'map_1' would expand into 300 items from the default of "
            "parameter 'items' (300 items); " + TARGETS[target][1]) in result.output
    assert "fix: give it a shorter default, or batch several items per step" in result.output


@pytest.mark.parametrize(("target", "setting"), [("tekton", "max_matrix_combinations=2"),
                                                 ("airflow", "max_map_length=2")])
def test_the_limit_follows_the_setting(target, setting, tmp_path):
    result = _compile(target, "short_default", tmp_path / "out", "--set", setting)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()
    assert "would expand into 3 items from the default of parameter 'items' (3 items)" in result.output
    assert "at most 2 " in result.output and setting.split("=")[0] + " setting" in result.output
    assert _compile(target, "short_default", tmp_path / "ok", "--set", setting.replace("=2", "=3")).exit_code == 0


def test_a_product_counts_every_combination(tmp_path):
    result = _compile("airflow", "product_default", tmp_path / "out", "--set", "max_map_length=5")
    assert result.exit_code == 2, result.output
    assert ("would expand into 6 items from the default of parameters 'rows' (3 items), 'cols' (2 items)"
            in result.output)
    assert _compile("airflow", "product_default", tmp_path / "ok", "--set", "max_map_length=6").exit_code == 0


def test_a_default_within_the_limit_compiles(tmp_path):
    for target in TARGETS:
        assert _compile(target, "short_default", tmp_path / target).exit_code == 0


# -- submit: the values given, before any engine call ---------------------------------------------------------


def _submit(target, settings, config, *params, env=None):
    args = ["submit", f"{PIPELINES}:short_default", "-t", target, *params]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    for key, value in config.items():
        args += ["-c", f"{key}={value}"]
    return CliRunner().invoke(main, args, env=env)


def _refused(result, rule):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert ("map 'map_1' would expand into 300 items from the value of parameter 'items' (300 items); "
            + rule) in result.output
    assert "fix: pass a shorter list (-p items=[...]), or batch several items per step" in result.output
    assert RunStore.default().list() == []  # nothing recorded: the run never started


LONG = "items=[" + ",".join(map(str, range(300))) + "]"


def test_github_submit_refuses_an_over_long_value_before_calling_github(tmp_path):
    from tests.targets.github.fake_github import FakeGitHub

    github = FakeGitHub(token="t0ken").start()
    try:
        result = _submit("github", {**golden_settings("github"), "artifact_root": "s3://bucket/pipecast"},
                         {"repo": "acme/ml", "api_url": f"{github.base}/api/v3"}, "-p", LONG,
                         env={"GITHUB_TOKEN": "t0ken"})
        _refused(result, TARGETS["github"][1])
        assert github.requests == []
    finally:
        github.stop()


def test_tekton_submit_refuses_an_over_long_value_before_calling_the_cluster(tmp_path):
    from tests.helpers.fake_kube import FakeKube

    with FakeKube() as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml")
        result = _submit("tekton", {**golden_settings("tekton"), "image": "ghcr.io/acme/ml:1"},
                         {"kubeconfig": str(kubeconfig)}, "-p", LONG)
        _refused(result, TARGETS["tekton"][1])
        assert kube.requests == []


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An Airflow API server stand-in that records every request (none may arrive)."""

    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.path)
        self.send_error(500)

    do_POST = do_PATCH = do_GET  # noqa: N815


def test_airflow_submit_refuses_an_over_long_value_before_deploying_or_calling_airflow(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dags = tmp_path / "dags"
        dags.mkdir()
        result = _submit("airflow", {"max_map_length": 256},
                         {"dags_folder": str(dags), "base_url": f"http://127.0.0.1:{server.server_port}"},
                         "-p", LONG)
        _refused(result, "Airflow expands a task into at most 256 mapped instances (its [core] max_map_length, "
                         "pipecast's max_map_length setting)")
        assert _Recorder.seen == [] and list(dags.iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


# -- size limits on published values: Azure ML's run property, KFP's list argument ------------------------------


def test_azureml_counts_a_parameters_items_against_its_run_property(tmp_path):
    result = CliRunner().invoke(main, ["compile", f"{PIPELINES}:long_default", "-t", "azureml", "--out",
                                       str(tmp_path / "out"), "--set", "control_flow_preview=true", "--set",
                                       "artifact_root=az://pipecast/artifacts", "--set", "image=ghcr.io/acme/ml:1"])
    assert result.exit_code == 2 and not (tmp_path / "out").exists(), result.output
    assert ("would expand into 300 items from the default of parameter 'items' (300 items); Azure ML's "
            "parallel_for reads a parameter's items (42 at most) from a run property of at most 1000 characters"
            in result.output)


def test_azureml_limit_is_the_most_items_the_runtimes_property_holds():
    from pipecast.errors import PipecastError
    from pipecast.runtime.publish_azureml import control_text, items_of
    from pipecast.targets.map_limits import map_limit

    most = map_limit("azureml", None).most
    control_text({"pipecast_items": items_of("p", list(range(most)))})  # what the items node publishes: fits
    with pytest.raises(PipecastError, match="at most 1000 per run property"):
        control_text({"pipecast_items": items_of("p", list(range(most + 1)))})


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_kfp_bounds_a_parameters_list_as_the_runtime_bounds_a_published_one(target, tmp_path):
    result = CliRunner().invoke(main, ["compile", f"{PIPELINES}:wide_default", "-t", target, "--out",
                                       str(tmp_path / "out"), "--set", "artifact_root=gs://bucket/pipecast", "--set",
                                       "image=ghcr.io/acme/ml:1"])
    assert result.exit_code == 2 and not (tmp_path / "out").exists(), result.output
    assert ("map 'map_1' iterates the default of parameter 'texts', 70211 bytes as JSON; KFP and Vertex AI pass "
            "a map's whole list to every item's task as one argument, bounded by pipecast at 65536 bytes"
            in result.output)
