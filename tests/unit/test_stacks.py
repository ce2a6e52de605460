"""Stacks: the CLI, the files and their precedence, credentials refused, references resolved, running on a stack.

Every test has its own XDG_CONFIG_HOME and no PIPECAST_STACK (tests/conftest.py), and works in its own folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import StackError, ValidationError
from pipecast.stacks import files
from pipecast.stacks.model import Stack
from pipecast.stacks.secrets import resolve, secret_key
from pipecast.stacks.validate import check_stack
from tests.helpers.cases import ROOT


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Each test works in its own folder: no pipecast.toml above it unless the test writes one."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def stack(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["stack", *args], env=env)


def user_text() -> str:
    return files.user_file().read_text(encoding="utf-8")


def test_register_list_describe_use_update_delete():
    result = stack("register", "af", "--target", "airflow", "-c", "base_url=http://127.0.0.1:8080",
                   "-c", "dags_folder=/opt/dags", "-c", "password=env:AIRFLOW_PASSWORD", "-c", "unpause=true",
                   "--set", "executor=local", "--artifact-root", "/tmp/runs", "--code", "package",
                   "--description", "dev Airflow")
    assert result.exit_code == 0, result.output
    assert files.user_file() == Path(os.environ["XDG_CONFIG_HOME"]) / "pipecast" / "stacks.toml"
    stored = files.read_file(files.user_file())["stacks"]["af"]
    assert stored == {"target": "airflow", "description": "dev Airflow",
                      "config": {"base_url": "http://127.0.0.1:8080", "dags_folder": "/opt/dags",
                                 "password": "env:AIRFLOW_PASSWORD", "unpause": True},
                      "settings": {"executor": "local"}, "artifact_root": "/tmp/runs", "code": "package"}
    listed = stack("list")
    assert listed.output.splitlines() == [f"  af                   airflow        {files.user_file()}",
                                          "* local                local          built-in"]
    assert json.loads(stack("describe", "af", "--json").output)["config"]["unpause"] is True

    assert stack("use", "af").exit_code == 0
    assert files.active_name() == "af" and stack("list").output.startswith("* af")
    result = stack("update", "af", "-c", "parse_timeout=60s", "--unset", "unpause", "--unset", "code")
    assert result.exit_code == 0, result.output
    updated = files.get_stack("af")
    assert dict(updated.config) == {"base_url": "http://127.0.0.1:8080", "dags_folder": "/opt/dags",
                                    "password": "env:AIRFLOW_PASSWORD", "parse_timeout": "60s"}
    assert updated.code is None and updated.artifact_root == "/tmp/runs"
    assert stack("register", "af", "--target", "airflow").exit_code == 2  # exists: update it instead
    assert stack("delete", "af").exit_code == 0
    assert files.active_name() == "local"  # deleting the active stack makes local active again
    assert "af" not in files.all_stacks()


def test_a_credential_is_refused_with_the_fix_and_nothing_is_written():
    for args, said in [
        (["-c", "password=hunter2"], "config key 'password' holds a credential"),
        (["-c", "token=abc"], "config key 'token' holds a credential"),
        (["-c", "base_url=http://admin:s3cret@airflow:8080"], "looks like a URL with a password in it"),
        (["-c", "username=ghp_abcdefghijklmnopqrstuvwxyz0123456789"], "looks like a GitHub token"),
        (["--set", "namespace=AKIAABCDEFGHIJKLMNOP"], "looks like an AWS access key id"),
        (["--build", "repository=user:pw@ghcr.io/x", "--build", "parent_image=https://u:pw@h/x"],
         "build parent_image looks like a URL with a password in it"),
        (["--artifact-root", "s3://AKIAABCDEFGHIJKLMNOP:pw@bucket/runs"],
         "artifact_root looks like a URL with a password in it"),
    ]:
        result = stack("register", "af", "--target", "airflow", "-c", "dags_folder=/d", *args)
        assert result.exit_code == 2, result.output
        assert said in result.output and "stacks never store credentials" in result.output
        assert "fix:" in result.output and "Traceback" not in result.output
        assert "s3cret" not in result.output
        assert not files.user_file().exists()


def test_secret_looking_keys_and_the_keys_that_only_name_where_a_secret_is():
    assert all(secret_key(k) for k in ("password", "token", "client_secret", "api_key", "secret_access_key",
                                       "sas_token", "db_passwd"))
    assert not any(secret_key(k) for k in ("token_env", "secret_store", "image_pull_secrets", "key_file",
                                           "username", "kubernetes_conn_id", "encryption_spec_key_name"))
    # kubeflow's token_env names the variable: a stack may hold it
    check_stack(Stack("kfp", "kubeflow", config={"host": "http://kfp:8888", "token_env": "KFP_TOKEN"}))


def test_settings_are_checked_against_the_target_with_did_you_mean():
    result = stack("register", "af", "--target", "airflow", "-c", "dags_folder=/d", "-c", "tokn=env:X",
                   "--set", "executr=local", "--set", "dags_folder=/x", "--build", "repositry=x")
    assert result.exit_code == 2, result.output
    out = result.output
    assert "stack 'af' is invalid (4 problems)" in out
    assert "unknown connection setting 'tokn' for target 'airflow' in the stack's -c; did you mean 'token'?" in out
    assert "unknown setting 'executr' for target 'airflow' in the stack's --set; did you mean 'executor'?" in out
    assert "'dags_folder' is a connection setting of 'airflow', given with --set" in out
    assert "unknown setting 'repositry' for target 'build' in the stack's build settings; did you mean " \
           "'repository'?" in out
    assert not files.user_file().exists()
    assert "Did you mean 'airflow'?" in stack("register", "x", "--target", "airflw").output
    assert stack("register", "local", "--target", "local_docker").exit_code == 2  # the built-in's name
    assert stack("register", "bad name", "--target", "local").exit_code == 2
    result = stack("register", "d", "--target", "local_docker", "-c", "host=x")
    assert result.exit_code == 2 and "runs on this machine and takes no -c connection settings" in result.output


def test_a_wrong_type_is_reported_but_a_reference_waits_for_its_value():
    result = stack("register", "af", "--target", "airflow", "-c", "dags_folder=/d", "-c", "unpause=maybe")
    assert result.exit_code == 2 and "unpause" in result.output
    assert stack("register", "af", "--target", "airflow", "-c", "dags_folder=/d", "-c", "unpause=env:UNPAUSE",
                 ).exit_code == 0


def test_the_project_file_overrides_the_users_and_the_active_stack_precedence(in_tmp, monkeypatch):
    assert stack("register", "shared", "--target", "local_docker", "--artifact-root", "/user/runs").exit_code == 0
    assert stack("register", "mine", "--target", "local_docker").exit_code == 0
    (in_tmp / "pipecast.toml").write_text('[stacks.shared]\ntarget = "local_docker"\nartifact_root = "/team/runs"\n'
                                          '[stacks.team]\ntarget = "local_docker"\n')
    sub = in_tmp / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # the nearest pipecast.toml from here up
    assert files.get_stack("shared").artifact_root == "/team/runs"
    with open(in_tmp / "pipecast.toml", "a") as handle:
        handle.write('[stacks.rel]\ntarget = "local"\nartifact_root = "build/runs"\n')
    assert files.get_stack("rel").artifact_root == str(in_tmp / "build" / "runs")  # the project's folder
    assert stack("update", "rel", "--description", "kept relative").exit_code == 0
    assert files.read_file(in_tmp / "pipecast.toml")["stacks"]["rel"]["artifact_root"] == "build/runs"
    assert files.get_stack("shared").source == str(in_tmp / "pipecast.toml")
    assert set(files.all_stacks()) == {"local", "shared", "mine", "team", "rel"}
    assert files.active_name() == "local"
    assert stack("use", "mine").exit_code == 0
    assert files.active_name() == "mine"
    monkeypatch.setenv("PIPECAST_STACK", "team")
    assert files.active_name() == "team"
    assert files.active_name("shared") == "shared"
    result = stack("register", "extra", "--target", "local_docker", "--project")
    assert result.exit_code == 0 and "extra" in files.read_file(in_tmp / "pipecast.toml")["stacks"]
    assert stack("update", "shared", "--artifact-root", "/team/runs2").exit_code == 0  # in the file it came from
    assert files.read_file(in_tmp / "pipecast.toml")["stacks"]["shared"]["artifact_root"] == "/team/runs2"
    assert files.read_file(files.user_file())["stacks"]["shared"]["artifact_root"] == "/user/runs"
    (in_tmp / "pipecast.toml").write_text('[stacks.local]\ntarget = "airflow"\n')
    with pytest.raises(StackError, match="redefines the built-in stack"):
        files.all_stacks()
    (in_tmp / "pipecast.toml").write_text('[stacks.x]\ntarget = "airflow"\nconfg = {}\n')
    with pytest.raises(StackError, match=r"unknown key\(s\) \['confg'\]"):
        files.all_stacks()
    (in_tmp / "pipecast.toml").write_text('[stacks.x\n')
    result = stack("list")
    assert result.exit_code == 2 and "pipecast.toml: not valid TOML" in result.output


def test_an_unknown_stack_suggests_the_closest(monkeypatch):
    assert stack("register", "staging", "--target", "local_docker").exit_code == 0
    with pytest.raises(StackError, match=re.escape("no stack named 'stagin'. Did you mean 'staging'?")):
        files.get_stack("stagin")
    monkeypatch.setenv("PIPECAST_STACK", "stagin")
    result = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "quickstart.py")])
    assert result.exit_code == 2 and "Did you mean 'staging'?" in result.output


def test_hostile_values_round_trip_through_the_file():
    hostile = {"namespace": 'a"b\\c\nd\te\x7f\x00 ü 🚀 ]] [stacks.x] = "', "node_selector": {"k=\"": "v\n"},
               "tolerations": [{"key": "x", "value": "\u2028"}]}
    original = Stack("h", "kubernetes", settings=hostile, description='"""\'\'\'')
    files.write_file(files.user_file(), {"stacks": {"h": original.to_table()}})
    assert files.get_stack("h").settings == hostile
    # The rest of a project file survives a rewrite: other tables, arrays of tables, TOML dates
    project = Path("pipecast.toml")
    project.write_text('title = "x"\n[tool.other]\nwhen = 1979-05-27T07:32:00Z\nday = 1979-05-27\n'
                       'items = [{a = 1}, {b = [1.5, true]}]\n')
    assert stack("register", "p", "--target", "local_docker", "--project").exit_code == 0
    data = files.read_file(project)
    assert data["title"] == "x" and data["tool"]["other"]["items"] == [{"a": 1}, {"b": [1.5, True]}]
    assert str(data["tool"]["other"]["when"]) == "1979-05-27 07:32:00+00:00" and str(data["tool"]["other"]["day"]) \
        == "1979-05-27"
    assert data["stacks"] == {"p": {"target": "local_docker"}}
    assert files.get_stack("h").description == '"""\'\'\''
    assert set(files.all_stacks()) == {"local", "h", "p"}


def test_references_resolve_from_the_environment_and_the_keyring(monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        """keyring's backend interface, in memory (the real one on this machine may be none at all)."""

        priority = 1  # type: ignore[assignment]
        store: dict[tuple[str, str], str] = {("airflow-dev", "admin"): "from-keyring"}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            del self.store[(service, username)]

    previous = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        config = {"password": "keyring:airflow-dev/admin", "username": "env:AF_USER", "dags_folder": "/d"}
        assert resolve("af", config, {"AF_USER": "admin"}) == {"password": "from-keyring", "username": "admin",
                                                               "dags_folder": "/d"}
        with pytest.raises(StackError, match=r"\$AF_USER is not set; set it"):
            resolve("af", config, {})
        with pytest.raises(StackError, match="the keyring has no password for service 'airflow-dev', user 'bob'"):
            resolve("af", {"password": "keyring:airflow-dev/bob"}, {})
    finally:
        keyring.set_keyring(previous)


def test_verify_lists_what_to_fix(in_tmp):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    blocked = in_tmp / "blocked"
    blocked.write_text("a file, so nothing can be written under it")
    assert stack("register", "af", "--target", "airflow", "-c", f"base_url=http://127.0.0.1:{port}",
                 "-c", "dags_folder=/d", "-c", "password=env:AF_PASSWORD_FOR_VERIFY",
                 "--artifact-root", str(blocked / "runs"), "--credentials", "docker").exit_code == 0
    result = stack("verify", "af", env={"AF_PASSWORD_FOR_VERIFY": "x"})
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "ok   settings: valid for target 'airflow'" in lines
    assert "ok   credentials: password=env:AF_PASSWORD_FOR_VERIFY: found" in lines
    assert any(line.startswith(f"FIX  api: http://127.0.0.1:{port} is not reachable") for line in lines)
    assert any(line.startswith("FIX  artifact root:") for line in lines)
    assert any(line.startswith("FIX  credentials docker: the stack names no build repository") for line in lines)
    assert lines[-1] == "stack 'af': 3 ok, 3 to fix"  # settings, sdk, credentials
    result = stack("verify", "af", env={"AF_PASSWORD_FOR_VERIFY": None})
    assert "FIX  credentials: stack 'af': -c password=env:AF_PASSWORD_FOR_VERIFY, but $AF_PASSWORD_FOR_VERIFY is " \
           "not set" in result.output
    result = stack("verify")  # the active stack: local
    assert result.exit_code == 0, result.output
    assert "ok   artifact root: file://" in result.output and result.output.endswith("3 ok, 0 to fix\n")


def test_verify_reports_a_missing_sdk_with_the_pip_command(monkeypatch):
    from pipecast.targets.registry import get_target

    assert stack("register", "k", "--target", "kubernetes").exit_code == 0
    monkeypatch.setattr(type(get_target("kubernetes")), "sdk_modules", ("no_such_sdk_module",))
    result = stack("verify", "k")
    assert "FIX  sdk: kubernetes needs no_such_sdk_module, which is not installed" in result.output
    assert "fix: python -m pip install 'pipecast[kubernetes]'" in result.output


def test_a_script_runs_on_the_active_stack_and_the_client_finds_it(in_tmp, monkeypatch):
    """``python examples/quickstart.py`` with PIPECAST_STACK: a local stack with its own artifact root."""
    root = in_tmp / "stack-runs"
    assert stack("register", "here", "--target", "local", "--artifact-root", str(root)).exit_code == 0
    env = {**os.environ, "PIPECAST_STACK": "here"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert (root / "quickstart" / "runs" / run_id).is_dir()

    from pipecast import Client

    run = Client().get_pipeline_run("quickstart")
    assert run.id == run_id and run.stack == "here"
    url = run.run_metadata["orchestrator_url"]
    assert url.value == url == run.url and isinstance(url, str) and url.startswith("file://")
    assert json.dumps({"u": url}) == json.dumps({"u": run.url})  # still a plain str for JSON
    assert run.run_metadata["artifact_root"].value == run.metadata["artifact_root"]
    assert run.run_metadata["pid"].value == run.metadata["pid"]

    from examples.quickstart import quickstart

    local = quickstart.run({"n": 3}, stack="local")
    assert local.outputs["output"]["all"] >= 0
    client = Client()
    assert [r.id for r in client.list_pipeline_runs(stack="here")] == [run_id]
    assert [r.id for r in client.list_pipeline_runs("quickstart", stack="local", status="succeeded")] == [local.id]
    assert client.list_pipeline_runs(status="failed") == []
    listed = CliRunner().invoke(main, ["runs", "list", "--stack", "here"])
    assert listed.exit_code == 0 and run_id in listed.output and local.id not in listed.output


def test_pipecast_run_takes_the_active_stack_and_refuses_flags_that_do_not_apply(in_tmp, monkeypatch):
    root = in_tmp / "runs"
    assert stack("register", "here", "--target", "local", "--artifact-root", str(root)).exit_code == 0
    quickstart = str(ROOT / "examples" / "quickstart.py")
    result = CliRunner().invoke(main, ["run", quickstart, "-q", "--stack", "here", "-p", "n=4"])
    assert result.exit_code == 0, result.output
    assert (root / "quickstart" / "runs" / result.output.strip().splitlines()[-1]).is_dir()
    result = CliRunner().invoke(main, ["run", quickstart, "--stack", "here", "--target", "local"])
    assert result.exit_code == 2 and "give --target or --stack, not both" in result.output
    assert stack("register", "dock", "--target", "local_docker").exit_code == 0
    result = CliRunner().invoke(main, ["run", quickstart, "--stack", "dock", "--workers", "2"])
    assert result.exit_code == 2 and "--workers applies to the local stack only" in result.output


def test_submit_takes_the_stacks_settings_and_flags_override_them(monkeypatch):
    from pipecast.stacks.running import stack_submission

    monkeypatch.setenv("AF_PW", "pw")
    assert stack("register", "af", "--target", "airflow", "-c", "dags_folder=/d", "-c", "password=env:AF_PW",
                 "-c", "unpause=true", "--set", "executor=local", "--artifact-root", "s3://b/runs",
                 "--build", "repository=127.0.0.1:5000/p", "--code", "package").exit_code == 0
    name, target, settings, config, build, code = stack_submission(
        "af", None, {"executor": "kubernetes"}, {"unpause": False}, {"repository": None, "builder": "buildah"}, None)
    assert (name, target, code) == ("af", "airflow", "package")
    assert settings == {"executor": "kubernetes", "artifact_root": "s3://b/runs"}
    assert config == {"dags_folder": "/d", "password": "pw", "unpause": False}
    assert build == {"repository": "127.0.0.1:5000/p", "builder": "buildah"}
    with pytest.raises(StackError, match="--target argo differs from stack 'af'"):
        stack_submission("af", "argo", {}, {}, {}, None)
    result = CliRunner().invoke(main, ["submit", str(ROOT / "examples" / "quickstart.py")])
    assert result.exit_code == 2 and "stack 'local' runs on this machine" in result.output


def test_a_stack_file_written_by_hand_is_checked_when_used(in_tmp):
    (in_tmp / "pipecast.toml").write_text('[stacks.bad]\ntarget = "airflow"\n[stacks.bad.config]\n'
                                          'password = "hunter2"\n')
    result = CliRunner().invoke(main, ["run", str(ROOT / "examples" / "quickstart.py"), "--stack", "bad"])
    assert result.exit_code == 2 and "config key 'password' holds a credential" in result.output
    assert "hunter2" not in result.output
    with pytest.raises(ValidationError):
        check_stack(files.get_stack("bad"))


def test_stack_help_loads_no_engine_sdk():
    from tests.unit.test_cli import ENGINE_SDKS

    code = ("import sys\nfrom click.testing import CliRunner\nfrom pipecast.cli import main\n"
            "for args in (['stack', '--help'], ['stack', 'list']):\n"
            "    result = CliRunner().invoke(main, args)\n    assert result.exit_code == 0, result.output\n"
            f"print(sorted(m for m in sys.modules if any(m == s or m.startswith(s + '.') for s in {ENGINE_SDKS!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_verify_asks_the_kubernetes_api_its_version_and_whether_the_account_may_create_a_run(in_tmp):
    """Against the fake API server (tests/helpers/fake_kube.py): /version with the kubeconfig's token, then
    SelfSubjectAccessReviews, as `kubectl version` and `kubectl auth can-i create jobs.batch` ask."""
    from tests.helpers.fake_kube import FakeKube

    with FakeKube() as fake:
        kubeconfig = fake.write_kubeconfig(in_tmp / "kubeconfig", namespace="ml")
        assert stack("register", "k8s", "--target", "kubernetes", "-c", f"kubeconfig={kubeconfig}").exit_code == 0
        result = stack("verify", "k8s")
        assert result.exit_code == 0, result.output
        assert f"ok   api: Kubernetes {fake.git_version} at {fake.url}" in result.output
        assert "ok   permissions: may create what a run creates in namespace 'ml'" in result.output
        assert fake.authorizations[0] == "Bearer fake-token"
        reviews = [r["body"]["spec"]["resourceAttributes"] for r in fake.requests
                   if r["path"].endswith("selfsubjectaccessreviews")]
        assert reviews == [{"namespace": "ml", "verb": "create", "group": "batch", "resource": "jobs"},
                           {"namespace": "ml", "verb": "create", "group": "", "resource": "configmaps"}]
        fake.denied.add((None, "create", "batch", "jobs"))
        result = stack("verify", "k8s")
        assert result.exit_code == 1
        assert "FIX  permissions: your account may not create jobs.batch in namespace 'ml'" in result.output
        fake.refuse("GET", r"^/version", 401, "Unauthorized")
        result = stack("verify", "k8s")
        assert "FIX  api: the Kubernetes API did not answer /version" in result.output
        assert "fix: renew the kubeconfig's credentials" in result.output


def test_a_pipeline_called_inside_a_step_is_not_sent_to_a_stack_again(monkeypatch):
    """A module-level `quickstart()` in a module a step imports would submit from inside its own task."""
    import types

    from examples.quickstart import quickstart

    assert stack("register", "dock", "--target", "local_docker").exit_code == 0
    runtime = types.ModuleType("__main__")
    runtime.__spec__ = types.SimpleNamespace(name="pipecast.runtime.__main__")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", runtime)
    with pytest.raises(Exception, match=r"was called while a step runs .*`if __name__ == \"__main__\""):
        quickstart.run({"n": 1}, stack="dock")
