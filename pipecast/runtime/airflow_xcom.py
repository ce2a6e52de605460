"""Airflow: the step's artifact URI as its task's XCom, so the Airflow UI shows where the outputs are.

pipecast's DAGs run each step with a ``BashOperator``, which pushes the last line its command printed on stdout
as the task's ``return_value`` XCom (``do_xcom_push`` is on by default; airflow.providers.standard
``BashOperator``: "the last line written to stdout will also be pushed to an XCom when the bash command
completes"). After a step succeeds under Airflow (``AIRFLOW_CTX_DAG_ID`` is set: Airflow exports the task's
context to its environment) the runtime prints the URI of the step's folder in the artifact store on a line of
its own, last (after its own messages: Airflow reads stderr merged into stdout). Outputs still travel through
the artifact store, never through XCom.
"""

from __future__ import annotations

import sys
from typing import Any

from pipecast.runtime.artifacts import ArtifactStore

CONTEXT_VAR = "AIRFLOW_CTX_DAG_ID"


def step_uri(invocation: Any) -> str:
    """The URI of the step's folder in the artifact store (its outputs and ``meta.json``)."""
    store = ArtifactStore(invocation.artifact_root)
    return store.url(store.step_dir(invocation.pipeline, invocation.run_id, invocation.step))


def print_step_uri(invocation: Any) -> None:
    """Print the step's URI as the last stdout line (after a newline, in case the step's output did not end one)."""
    uri = step_uri(invocation)
    if any(char in uri for char in "\r\n"):  # cannot be one line: say so rather than push half of it
        print(f"pipecast: warning: step {invocation.step!r}: no XCom of its artifact URI, which holds a line "
              f"break: {uri!r}", file=sys.stderr)
        return
    sys.stderr.flush()
    sys.stdout.flush()
    sys.stdout.write(f"\n{uri}\n")
    sys.stdout.flush()
