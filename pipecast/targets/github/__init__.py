"""The ``github`` target: a pipeline becomes a GitHub Actions workflow, dispatched and tracked by REST.

See ``docs/targets/github.md``. :mod:`.settings` types its settings, :mod:`.workflow` emits the file,
:mod:`.api` talks to GitHub's REST API through pipecast's HTTP client (no SDK), :mod:`.submit` dispatches,
finds and tracks runs.
"""

from __future__ import annotations

from typing import Any

from pipecast.compiler import ir
from pipecast.targets.base import Bundle, EmitContext, Feature, Target, emulated, native
from pipecast.targets.github.settings import GitHubSettings
from pipecast.targets.github.syntax import workflow_path
from pipecast.targets.github.workflow import build_workflow
from pipecast.targets.map_limits import MapLimit


class GitHubTarget(Target):
    """GitHub Actions: one workflow file, one job per step, ``workflow_dispatch`` to run it."""

    name = "github"
    description = "GitHub Actions: a workflow under .github/workflows/, one job per step, dispatched by REST"
    extra = "github"
    sdk_modules = ()  # the REST client is pipecast.http (the standard library's urllib)
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
        Feature.MAP: native("a matrix job per mapped step (strategy.matrix from fromJSON of an input or a job "
                            "output); the fan-in reads the items from the artifact store (a remote artifact_root); "
                            "a nested map emulated: the outer map's matrix jobs run the inner items (step[i][j]) "
                            "as child processes"),
        Feature.PARALLELISM: native("strategy.max-parallel per map; a pipeline-wide bound is refused"),
        Feature.CONDITION: native("job if: on needs.CHAIN_branch.outputs.branch, which a chain job decides with "
                                  "Python's meaning (text too); a lone If/Else on numbers and booleans tests the "
                                  "published job outputs directly; inside a map (a job's if: cannot read the "
                                  "matrix) each matrix job's runtime decides its item and records it skipped, "
                                  "in a nested map each instance step[i][j]"),
        Feature.EXIT_HANDLER: native("a job with if: always() that needs the group's jobs; its status from "
                                     "needs.*.result (inside a map, or collecting a nested map: from the "
                                     "records of its item's instances)"),
        Feature.HOOKS: native("jobs with if: failure() / if: !failure() && !cancelled() that need every job"),
    }
    settings_class = GitHubSettings
    submit_module = "pipecast.targets.github.submit"
    schedules_module = "pipecast.schedules.github"

    def map_limit(self, settings: Any) -> MapLimit:
        """GitHub's jobs per matrix: a fixed 256."""
        from pipecast.targets.github.maps import MAX_MATRIX_JOBS

        return MapLimit(MAX_MATRIX_JOBS, f"GitHub Actions runs at most {MAX_MATRIX_JOBS} jobs per matrix ('A "
                        "matrix will generate a maximum of 256 jobs per workflow run', GitHub's workflow syntax docs)",
                        "GitHub does not let it be raised")

    def emit(self, pipeline: ir.Pipeline, context: EmitContext) -> Bundle:
        """The workflow file."""
        return Bundle(self.name, ((workflow_path(pipeline), build_workflow(pipeline, context)),))
