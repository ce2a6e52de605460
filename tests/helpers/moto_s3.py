"""One moto S3 server for the tests that pass artifacts through S3, and the AWS environment that points at it.

``moto_s3_server`` (session): ``python -m moto.server`` on 127.0.0.1 (``tests/targets/sagemaker/servers.py``), its
URL; started once, so each test makes a bucket of its own name. ``moto_s3`` (per test): that server set as the test's
AWS environment (fake credentials, no config or credentials file, no instance metadata), with the variables for the
subprocesses the test starts and an s3fs filesystem on it. The cached filesystems of s3fs and of
``pipecast.runtime.artifacts`` are dropped before and after, so no client made for another endpoint is reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers.slow import slow_fixture


@dataclass(frozen=True)
class MotoS3:
    """The environment a test got: ``env`` (also set in ``os.environ``) and ``fs``, an s3fs filesystem on moto."""

    url: str
    env: dict[str, str]
    fs: Any


def aws_env(url: str, none: str) -> dict[str, str]:
    """AWS variables for moto at ``url``; ``none`` is a path that does not exist (no config or credentials file)."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url, "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none,
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
@slow_fixture
def moto_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.targets.sagemaker.servers import moto_server

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def moto_s3(moto_s3_server: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    import s3fs

    env = aws_env(moto_s3_server, str(tmp_path / "none"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _forget_clients()
    yield MotoS3(url=moto_s3_server, env=env, fs=s3fs.S3FileSystem())
    _forget_clients()


def _forget_clients() -> None:
    import s3fs

    from pipecast.runtime import artifacts

    s3fs.S3FileSystem.clear_instance_cache()
    artifacts._filesystem.cache_clear()
