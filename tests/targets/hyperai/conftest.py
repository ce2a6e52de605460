"""The hyperai tests' servers: one OpenSSH server for the session (sshd.py), the crontab kept as it was."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers.slow import slow_fixture
from tests.targets.hyperai import sshd


@pytest.fixture(scope="session")
@slow_fixture
def server(tmp_path_factory):
    running = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield running
    running.stop()


@pytest.fixture
def root_crontab():
    """The remote user's crontab is root's here: keep what it held and put it back afterwards."""
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    yield
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True)
