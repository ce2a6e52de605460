"""Submit errors that need no Airflow: unreachable server, missing config, and writing to an fsspec DAGs folder."""

from __future__ import annotations

import socket

import fsspec
import pytest

from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.targets.airflow import rest
from pipecast.targets.airflow.rest import AirflowApi
from pipecast.targets.airflow.submit import deploy
from tests.helpers.cases import case, compile_case, read_tree


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_unreachable_airflow_is_a_clear_error_and_nothing_is_deployed(tmp_path, monkeypatch):
    monkeypatch.setattr(rest, "RETRY_DELAYS", (0.01, 0.01, 0.01, 0.01))  # tried 5 times, quickly here
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "airflow", {}, {}, {"dags_folder": str(tmp_path), "base_url": url})
    message = str(err.value)
    assert f"cannot reach Airflow at {url} (" in message
    assert "5 tries); check that its API server is running" in message
    assert [p.name for p in tmp_path.iterdir()] == ["pipecast-home"]  # the run store only: no DAG file
    from pipecast.runs.client import Client

    run = Client().get_pipeline_run("quickstart")
    assert run.status == "failed" and "cannot reach Airflow" in (run.detail or "")


@pytest.mark.parametrize(("config", "message"), [
    ({"base_url": "http://127.0.0.1:1"}, "no DAGs folder: pass -c dags_folder="),
    ({"dags_folder": "/tmp"}, "no Airflow URL: pass -c base_url="),
    ({"dags_folder": "/tmp", "base_url": "http://x", "colour": "red"}, "unknown Airflow config key(s) ['colour']"),
])
def test_missing_or_unknown_config_says_what_to_pass(config, message, monkeypatch):
    monkeypatch.delenv("PIPECAST_AIRFLOW_URL", raising=False)
    monkeypatch.delenv("PIPECAST_AIRFLOW_DAGS_FOLDER", raising=False)
    with pytest.raises(SubmitError) as err:
        submit_pipeline(case("quickstart").build(), "airflow", {}, {}, config)
    assert message in str(err.value)


def test_dag_files_go_to_fsspec_folders_and_local_folders_atomically(tmp_path):
    bundle = compile_case("airflow", "quickstart").bundle
    name, text = bundle.files[0]
    memory = fsspec.filesystem("memory")
    memory.pipe_file("/composer-bucket/dags/quickstart.code/stale.py", b"from an older compile")
    assert deploy("memory://composer-bucket/dags", bundle.files) == f"memory://composer-bucket/dags/{name}"
    assert memory.cat_file(f"/composer-bucket/dags/{name}").decode() == text
    shipped = {path: memory.cat_file(f"/composer-bucket/dags/{path}").decode() for path, _ in bundle.files}
    assert shipped == bundle.as_dict()
    assert not memory.exists("/composer-bucket/dags/quickstart.code/stale.py")
    (tmp_path / "quickstart.code").mkdir()
    (tmp_path / "quickstart.code" / "stale.py").write_text("from an older compile")
    assert deploy(str(tmp_path), bundle.files) == str(tmp_path / name)
    assert read_tree(tmp_path) == bundle.as_dict()  # no staging file or stale module left behind
    with pytest.raises(SubmitError, match="does not exist"):
        deploy(str(tmp_path / "missing"), bundle.files)


def test_credentials_come_from_config_or_environment_and_are_not_in_repr(monkeypatch):
    monkeypatch.setenv("PIPECAST_AIRFLOW_TOKEN", "secret-token")
    api = AirflowApi.from_config({"base_url": "https://airflow.example.com/", "api_url": "https://api.example.com",
                                  "api_version": "2"})
    assert api.token == "secret-token" and api.root == "https://api.example.com"
    assert "secret-token" not in repr(api)
    assert api.run_url("my.dag", "manual__2026-01-01T00:00:00+00:00") == \
        "https://airflow.example.com/dags/my.dag/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    airflow_2 = AirflowApi.from_config({"base_url": "https://airflow.example.com", "api_version": 1})
    assert airflow_2.run_url("my.dag", "r+1") == "https://airflow.example.com/dags/my.dag/grid?dag_run_id=r%2B1"
    with pytest.raises(SubmitError, match=r"api_version must be 1 \(Airflow 2\) or 2 \(Airflow 3\), not '3'"):
        AirflowApi.from_config({"base_url": "https://airflow.example.com", "api_version": "3"})
