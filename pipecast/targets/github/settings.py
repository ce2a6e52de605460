"""The github target's settings, typed once: runners, Python and install, artifacts, permissions, actions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipecast.targets.settings import ContainerSettings, Text, setting

DEFAULT_RUNS_ON = "ubuntu-latest"
DEFAULT_PYTHON = "3.11"
DEFAULT_PERMISSIONS = {"contents": "read"}

# The first major version of each action that runs on Node 24 (Node 20 leaves the runners in 2026). The
# `actions` setting overrides them, e.g. for a GitHub Enterprise Server that mirrors older versions.
ACTIONS = {
    "actions/checkout": "v5",
    "actions/setup-python": "v6",
    "actions/upload-artifact": "v6",
    "actions/download-artifact": "v7",
}

_REF = re.compile(r"[A-Za-z0-9._/-]+")


def _runner_problem(labels: str | tuple[str, ...]) -> str | None:
    listed = [labels] if isinstance(labels, str) else list(labels)
    if not listed:
        return "must name at least one runner label"
    if any("${{" in label for label in listed):
        return "must be runner labels, not ${{ }} expressions"
    return None


def _install_problem(command: str) -> str | None:
    return "must be a shell command without ${{ }} expressions (put values in env, use \"$VAR\")" \
        if "${{" in command else None


def _retention_problem(days: int) -> str | None:
    return None if 1 <= days <= 90 else "must be a whole number of days from 1 to 90"


def _actions_problem(chosen: Mapping[str, str]) -> str | None:
    unknown = sorted(set(chosen) - set(ACTIONS))
    if unknown:
        return f"names {unknown!r}; it sets the refs of {sorted(ACTIONS)!r}"
    bad = sorted(ref for ref in chosen.values() if not _REF.fullmatch(ref))
    return f"has refs {bad!r} that are not tags, branches or SHAs" if bad else None


@dataclass(frozen=True, kw_only=True)
class GitHubSettings(ContainerSettings):
    """Settings of the github target (``--set KEY=VALUE`` or ``settings={"github": {...}}``)."""

    artifact_root: str | None = setting(
        None, "remote artifact root (s3://, gs://...) shared by the jobs; unset or local: GitHub artifacts carry "
              "the data", step=False, example="artifact_root=s3://bucket/prefix")
    runs_on: str | tuple[str, ...] = setting(
        DEFAULT_RUNS_ON, "runner label or list of labels of every job; a step's own runs_on wins",
        check=_runner_problem, example="'runs_on=[\"self-hosted\", \"linux\"]'")
    gpu_runs_on: str | tuple[str, ...] | None = setting(
        None, "runner label(s) of steps that ask for GPUs (required when one does)", check=_runner_problem,
        example="'gpu_runs_on=[\"self-hosted\", \"gpu\"]'")
    python_version: Text = setting(
        DEFAULT_PYTHON, "Python for actions/setup-python when a job has no image; text, so quote it",
        example="'python_version=\"3.12\"'")
    install: Literal[""] | str | None = setting(
        None, "shell command that installs pipecast and the steps' dependencies (default without an image: this "
              "pipecast version, from the wheel shipped under .github/pipecast/ or else the package index, then "
              "the pipeline's requirements= or else the import root's requirements.txt, then the step's "
              "packages=; nothing in an image; '' for none)", check=_install_problem,
        example="'install=python -m pip install -e .'")
    working_directory: str | None = setting(
        None, "directory the runtime runs in, relative to the repository (default: the import root of the step's "
              "module, found from its git repository)")
    artifact_retention_days: int | None = setting(
        None, "days GitHub keeps the per-step artifacts (1-90) when the artifact root is not remote",
        check=_retention_problem, example="artifact_retention_days=7")
    permissions: Mapping[str, Literal["read", "write", "none"]] = setting(
        DEFAULT_PERMISSIONS, "the workflow's GITHUB_TOKEN permissions", step=False,
        example="'permissions={\"contents\": \"read\", \"id-token\": \"write\"}'")
    concurrency: str | None = setting(
        None, "concurrency group: runs in the group run one at a time", step=False,
        example="concurrency=train-models")
    cancel_in_progress: bool = setting(
        False, "with concurrency: a new run cancels the running one", step=False)
    actions: Mapping[str, str] = setting(
        {}, "refs of the actions used, e.g. {\"actions/checkout\": \"v5\"} (default: their Node 24 majors)",
        step=False, check=_actions_problem, example="'actions={\"actions/checkout\": \"v5\"}'")
