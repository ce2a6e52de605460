"""The ``github`` target: a pipeline becomes a GitHub Actions workflow, dispatched and tracked by REST.

See ``docs/targets/github.md``. :mod:`.workflow` emits the file, :mod:`.api` talks to GitHub's REST API
with the standard library (no SDK), :mod:`.runs` dispatches, finds and tracks runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, RunHandle, Target, emulated, native
from pipecast.targets.github.syntax import workflow_path
from pipecast.targets.github.workflow import build_workflow


class GitHubTarget(Target):
    """GitHub Actions: one workflow file, one job per step, ``workflow_dispatch`` to run it."""

    name = "github"
    description = "GitHub Actions: a workflow under .github/workflows/, one job per step, dispatched by REST"
    extra = "github"
    sdk_modules = ()  # the REST client is the standard library's urllib
    capabilities = {
        Feature.PARAMETERS: native("workflow_dispatch inputs (dict/list as JSON strings); schedules use defaults"),
        Feature.DATA_PASSING: native("the artifact root when remote; else actions/upload-artifact → "
                                     "download-artifact of each step's folder"),
        Feature.AFTER: native("needs:"),
        Feature.RESOURCES: emulated("not enforced: the job gets its runner's size; pick a larger runner with "
                                    "the step's runs_on setting"),
        Feature.GPU: native("the gpu_runs_on (or the step's runs_on) runner; containers get --gpus all"),
        Feature.RETRY: emulated("the runtime retries inside the job (GitHub has no per-job retry)"),
        Feature.RETRY_BACKOFF: emulated("the runtime's retry delays"),
        Feature.TIMEOUT: native("timeout-minutes of the step (rounded up; the runtime bounds each try when "
                                "retrying or when the timeout is not whole minutes)"),
        Feature.CACHE: emulated("the runtime's cache in the artifact root: across runs only when it is remote"),
        Feature.SCHEDULE: native("on.schedule (UTC, default branch, at least every 5 minutes)"),
        Feature.ENV: native("env: of the run step"),
        Feature.SECRETS: native("${{ secrets.NAME }} in env: (NAME from the secret's name and key)"),
        Feature.STEP_IMAGE: native("the job's container:"),
        Feature.SUBMIT: native("REST workflow_dispatch (push the workflow first)"),
        Feature.STATUS: native("REST workflow runs; cancel"),
        Feature.UI_URL: native("https://github.com/OWNER/REPO/actions/runs/ID"),
    }
    settings_help = {
        "runs_on": "runner label or list of labels for every job (default ubuntu-latest); per step too",
        "gpu_runs_on": "runner label(s) for steps that ask for GPUs (required when one does)",
        "image": "container image for steps that name none (the job runs in it as container:)",
        "python_version": "Python for actions/setup-python when a job has no image (default 3.11)",
        "install": "shell command that installs pipecast and the steps' dependencies (default: "
                   "'python -m pip install pipecast' without an image, nothing in an image; '' for none)",
        "working_directory": "directory the runtime runs in: the import root of the steps' modules",
        "artifact_root": "remote artifact root (s3://, gs://...) shared by the jobs; unset: GitHub artifacts",
        "artifact_retention_days": "days GitHub keeps the per-step artifacts (1-90) when the root is local",
        "permissions": "the workflow's GITHUB_TOKEN permissions (default {'contents': 'read'})",
        "concurrency": "concurrency group name: runs in the group run one at a time",
        "cancel_in_progress": "with concurrency: cancel the running run when a new one starts (default false)",
        "actions": "refs of the actions used, e.g. {'actions/checkout': 'v5'} (defaults: the Node 24 majors)",
    }

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        return Bundle(self.name, ((workflow_path(pipeline), build_workflow(pipeline, context)),))

    def submit(self, pipeline: ir.Pipeline, bundle: Bundle, parameters: Mapping[str, Any],
               config: Mapping[str, Any], run_id: str) -> RunHandle:
        """Dispatch the (already pushed) workflow and return its run; config: repo, ref, api_url, token."""
        from pipecast.targets.github.runs import submit_workflow

        return submit_workflow(pipeline, bundle, parameters, config, run_id)

    def handle(self, record: Mapping[str, Any], config: Mapping[str, Any]) -> RunHandle:
        from pipecast.targets.github.runs import reconnect

        return reconnect(record, config)
