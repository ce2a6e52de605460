"""``pipecast schedules list|delete`` on GitHub Actions, against the local stand-in for GitHub's REST API
(``fake_github.py``: "List repository workflows", the contents API, "Disable a workflow")."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipecast.cli import main
from tests.helpers.cases import compile_case
from tests.targets.github import test_submit as submit_tests
from tests.targets.github.support import workflow_file

github = submit_tests.github


def cli(*args):
    return CliRunner().invoke(main, ["schedules", *args])


def test_a_scheduled_workflow_is_listed_and_disabled(github):
    for name in ("ml_training", "quickstart"):  # quickstart has no schedule: not listed
        github.push(f".github/workflows/{name}.yml", workflow_file(compile_case("github", name, golden=True)))
    github.push(".github/workflows/lint.yml", "name: lint\non:\n  schedule:\n    - cron: '0 1 * * *'\njobs: {}\n")
    flags = ["-c", "repo=acme/ml", "-c", f"api_url={github.base}/api/v3"]
    listed = cli("list", "-t", "github", *flags, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [{
        "pipeline": "ml_training", "target": "github", "schedule": "0 4 * * 1 (UTC)", "id": "7001", "next_run": None,
        "state": "active", "url": f"{github.base}/acme/ml/actions/workflows/ml_training.yml"}]
    deleted = cli("delete", "ml_training", "-t", "github", *flags)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.startswith("disabled workflow .github/workflows/ml_training.yml of acme/ml: GitHub keeps")
    assert len(github.calls("PUT", "/actions/workflows/7001/disable")) == 1
    assert github.disabled == {".github/workflows/ml_training.yml"}
    assert json.loads(cli("list", "-t", "github", *flags, "--json").output)[0]["state"] == "disabled_manually"
    assert cli("delete", "quickstart", "-t", "github", *flags).exit_code == 2  # no schedule to delete
