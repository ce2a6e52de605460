"""Submit and track on Cloud Composer (Google ADC bearer tokens) and Amazon MWAA (``InvokeRestApi``).

Airflow is ``fake_airflow.py`` (answering as Airflow 3's REST API v2); in front of it, local servers answer as
the access layers are documented to (``fake_cloud.py``): Google's OAuth 2.0 token endpoint, which the real
google-auth reaches through Application Default Credentials (an ``authorized_user`` file whose ``token_uri`` is
the local server), and MWAA's ``GetEnvironment``/``InvokeRestApi``, which the real boto3 signs and calls
(``endpoint_url``). No Google or AWS service is called.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.errors import SubmitError
from pipecast.flow import submit_pipeline
from pipecast.runs.status import RunStatus
from pipecast.runs.store import RunStore
from pipecast.runs.tracking import track
from pipecast.targets.airflow import rest
from tests.helpers.cases import case
from tests.targets.airflow.fake_airflow import fake_airflow
from tests.targets.airflow.fake_cloud import FakeGoogleToken, FakeMwaa

SETTINGS = {"artifact_root": "s3://bucket/artifacts"}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(rest, "RETRY_DELAYS", (0.01, 0.01, 0.01, 0.01))


@pytest.fixture
def dags(tmp_path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    return folder


def _submit(dags: Path, **config):
    config = {"dags_folder": str(dags), "request_timeout": 10, "parse_timeout": 60, **config}
    return submit_pipeline(case("quickstart").build(), "airflow", {"n": 4}, SETTINGS, config)


# -- Cloud Composer ---------------------------------------------------------------------------------------------


@pytest.fixture
def google(tmp_path, monkeypatch):
    """Application Default Credentials: a service account key whose ``token_uri`` is a local token endpoint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "pipecast-submit@example-project.iam.gserviceaccount.com"
    server = FakeGoogleToken(email, key.public_key())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "example-project",
                                "private_key_id": "0123abcd", "private_key": pem, "client_email": email,
                                "client_id": "1234567890", "token_uri": f"{server.url}/token"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("PIPECAST_AIRFLOW_TOKEN", "an-airflow-token")  # for auth=airflow only: never sent here
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


def test_composer_sends_an_adc_access_token_with_every_request_and_runs_wait_gets_one_too(google, dags):
    with fake_airflow(dags) as airflow:
        airflow.tokens = {"token-1"}  # the environment lets in the token ADC gets, and nothing else
        handle = _submit(dags, base_url=airflow.url, auth="composer")
        assert list(airflow.runs) == [("quickstart", handle.run_id)]
        assert set(airflow.authorizations) == {"Bearer token-1"}  # /version and the rest: every request
        assert handle.url == f"{airflow.url}/dags/quickstart/runs/{handle.run_id}"  # the environment's UI
        (grant,) = google.requests  # one token, reused while it is valid
        assert grant["form"]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        assert grant["claims"]["scope"] == "https://www.googleapis.com/auth/cloud-platform"  # verified signature
        record = RunStore.default().get(handle.run_id)
        assert record["metadata"]["airflow_auth"] == "composer"
        assert "token-1" not in json.dumps(record)  # no credential is recorded
        airflow.tokens = {"token-2"}  # a new token for `runs wait` (another process): asked for again
        assert track(handle.run_id, {}).status() is RunStatus.PENDING
        assert google.issued == ["token-1", "token-2"] and airflow.authorizations[-1] == "Bearer token-2"


def test_a_token_refused_with_401_is_refreshed_once(google, dags):
    with fake_airflow(dags) as airflow:
        airflow.tokens = {"token-2"}  # token-1 revoked: Airflow answers 401 until a new one comes
        handle = _submit(dags, base_url=airflow.url, auth="composer")
        assert google.issued == ["token-1", "token-2"] and list(airflow.runs) == [("quickstart", handle.run_id)]
        assert airflow.authorizations[:2] == ["Bearer token-1", "Bearer token-2"]


def test_a_token_refused_for_good_says_which_role_is_missing_and_writes_nothing(google, dags):
    with fake_airflow(dags) as airflow:
        airflow.tokens = set()
        with pytest.raises(SubmitError, match=r"answered HTTP 401 to GET /version: .*Not authenticated.*; the "
                                              r"Google identity of Application Default Credentials needs the "
                                              r"Composer User role"):
            _submit(dags, base_url=airflow.url, auth="composer")
        # One new token per refused request (the API version probe, then GET /version), then the error.
        assert list(dags.iterdir()) == [] and google.issued == ["token-1", "token-2", "token-3"]


def test_credentials_google_refuses_are_one_clear_error(google, dags, tmp_path, monkeypatch):
    google.revoked = True  # the service account was disabled, or its key deleted
    with pytest.raises(SubmitError, match=r"cannot get a Google access token for Cloud Composer: .*invalid_grant"):
        _submit(dags, base_url="http://127.0.0.1:1", auth="composer")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    result = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "airflow", "-c", f"dags_folder={dags}",
                                       "-c", "base_url=http://127.0.0.1:1", "-c", "auth=composer"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no Google credentials for Cloud Composer" in result.output and "missing.json" in result.output
    assert list(dags.iterdir()) == []


# -- Amazon MWAA ------------------------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Static test credentials and nothing else from this machine's AWS configuration."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mwaa(aws, dags):
    with fake_airflow(dags) as airflow:
        server = FakeMwaa("ml-env", "eu-west-1", airflow.url)
        server.airflow = airflow
        yield server
        server.stop()


def _mwaa_config(server: FakeMwaa, **more):
    return {"auth": "mwaa", "environment": server.name, "region": server.region, "endpoint_url": server.url, **more}


def test_mwaa_submits_tracks_and_cancels_through_invoke_rest_api(mwaa, dags):
    handle = _submit(dags, **_mwaa_config(mwaa))
    airflow = mwaa.airflow
    assert list(airflow.runs) == [("quickstart", handle.run_id)]
    assert airflow.runs[("quickstart", handle.run_id)]["conf"]["n"] == 4
    assert handle.url == f"https://{mwaa.webserver}/dags/quickstart/runs/{handle.run_id}"  # the MWAA Airflow UI
    calls = [(r["body"]["Method"], r["body"]["Path"]) for r in mwaa.requests if r["path"] == "/restapi/ml-env"]
    assert calls[0] == ("GET", "/version") and ("POST", "/dags/quickstart/dagRuns") in calls
    assert ("GET", "/dags/quickstart") in calls  # answered 404 (RestApiClientException) before the file existed
    assert all("/eu-west-1/airflow/aws4_request" in r["authorization"] for r in mwaa.requests)
    assert mwaa.requests[0]["path"] == "/environments/ml-env"  # GetEnvironment: the UI's host, Airflow 3
    record = RunStore.default().get(handle.run_id)
    assert {k: record["metadata"][k] for k in ("airflow_auth", "mwaa_environment", "mwaa_region")} == \
        {"airflow_auth": "mwaa", "mwaa_environment": "ml-env", "mwaa_region": "eu-west-1"}
    tracked = track(handle.run_id, {})  # `pipecast runs wait`: reconnects through MWAA from the record
    assert tracked.status() is RunStatus.PENDING
    tracked.cancel()
    assert airflow.runs[("quickstart", handle.run_id)]["state"] == "failed"
    assert tracked.status() is RunStatus.CANCELLED


def test_an_mwaa_trigger_whose_answer_is_lost_is_sent_again_and_finds_its_run(mwaa, dags):
    mwaa.lose.append(("POST", "/dags/quickstart/dagRuns"))
    handle = _submit(dags, **_mwaa_config(mwaa))
    airflow = mwaa.airflow
    assert airflow.triggers == ["answer", "409"]  # boto3 sent it again; Airflow's 409 came back through MWAA
    assert list(airflow.runs) == [("quickstart", handle.run_id)] and handle.status() is RunStatus.PENDING


def test_mwaa_errors_say_what_to_fix_and_nothing_is_written(mwaa, dags):
    with pytest.raises(SubmitError, match=r"MWAA refused GetEnvironment on environment 'other': "
                                          r"ResourceNotFoundException: .*\(check -c environment and -c region\)"):
        _submit(dags, **_mwaa_config(mwaa, environment="other"))
    with pytest.raises(SubmitError, match=r"-c auth=mwaa needs the environment's name"):
        _submit(dags, auth="mwaa", region="eu-west-1")
    with pytest.raises(SubmitError, match=r"-c auth=mwaa authenticates with your cloud identity; drop -c password, "
                                          r"username"):
        _submit(dags, **_mwaa_config(mwaa, username="admin", password="x"))
    mwaa.airflow.tokens = set()  # the identity's Airflow role refused: Airflow's 401 comes back through MWAA
    with pytest.raises(SubmitError, match=r"answered HTTP 401 to GET /version: .*Not authenticated.*; the IAM "
                                          r"identity needs airflow:InvokeRestApi"):
        _submit(dags, **_mwaa_config(mwaa))
    assert list(dags.iterdir()) == []


def test_mwaa_without_aws_credentials_is_one_clear_error(mwaa, dags, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    options = [part for key, value in _mwaa_config(mwaa).items() for part in ("-c", f"{key}={value}")]
    result = CliRunner().invoke(main, ["submit", "examples/quickstart.py", "-t", "airflow", "-c", f"dags_folder={dags}",
                                       *options])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no AWS credentials for MWAA" in result.output and mwaa.requests == []


def test_the_submit_module_loads_neither_cloud_sdk_until_asked():
    import subprocess
    import sys

    code = ("import sys, pipecast.targets.airflow.submit, pipecast.targets.airflow.rest; "
            "print(sorted(m for m in ('google.auth', 'boto3', 'botocore') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


def test_a_dag_written_for_airflow_2_is_refused_by_airflow_3_before_it_is_written(dags):
    with fake_airflow(dags) as airflow:
        with pytest.raises(SubmitError, match=r"'quickstart.dag.py' was written for Airflow 2, but Airflow at .* is "
                                              r"Airflow 3 \(REST API v2\): .*--set airflow_version=3"):
            submit_pipeline(case("quickstart").build(), "airflow", {}, {**SETTINGS, "airflow_version": 2},
                            {"dags_folder": str(dags), "base_url": airflow.url})
        assert list(dags.iterdir()) == [] and airflow.runs == {}
