"""Airflow: the step's artifact URI as its task's XCom, so the Airflow UI shows where the outputs are.

pipecast's DAGs run each step with a ``BashOperator``, which pushes the last line its command printed on stdout
as the task's ``return_value`` XCom (``do_xcom_push`` is on by default; airflow.providers.standard
``BashOperator``: "the last line written to stdout will also be pushed to an XCom when the bash command
completes"). After a step succeeds under Airflow (``AIRFLOW_CTX_DAG_ID`` is set: Airflow exports the task's
context to its environment) the runtime prints the URI of the step's folder in the artifact store on a line of
its own, last (after its own messages: Airflow reads stderr merged into stdout). Outputs still travel through
the artifact store, never through XCom.

In a pod (``KubernetesPodOperator``) the operator pushes no output line: with ``do_xcom_push=True`` it adds a
sidecar that shares ``/airflow/xcom`` with the step's container and, once the container is done, reads
``/airflow/xcom/return.json`` as JSON (cncf-kubernetes 10.5, ``utils/xcom_sidecar.py``
``PodDefaults.XCOM_MOUNT_PATH`` and ``utils/pod_manager.py`` ``PodManager.extract_xcom_json``: ``if [ -s
/airflow/xcom/return.json ]; then cat ...``). The DAG file sets ``do_xcom_push`` and gives the pod
``PIPECAST_AIRFLOW_XCOM_FILE``: the runtime writes the URI there, as a JSON string.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pipecast.runtime.artifacts import ArtifactStore

CONTEXT_VAR = "AIRFLOW_CTX_DAG_ID"
XCOM_FILE_VAR = "PIPECAST_AIRFLOW_XCOM_FILE"
XCOM_FILE = "/airflow/xcom/return.json"  # where KubernetesPodOperator's sidecar reads the XCom (see above)


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


def write_step_uri(invocation: Any, path: str) -> None:
    """Write the step's URI as JSON to ``path`` (KubernetesPodOperator's XCom file); a warning if it cannot."""
    uri = step_uri(invocation)
    try:
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            json.dump(uri, handle)
        os.replace(f"{path}.tmp", path)  # the sidecar reads a non-empty file: never a half-written one
    except OSError as err:  # no XCom volume (do_xcom_push turned off): the step itself succeeded
        print(f"pipecast: warning: step {invocation.step!r}: no XCom of its artifact URI: cannot write {path}: "
              f"{err}", file=sys.stderr)
