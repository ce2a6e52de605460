"""Typed artifacts as Airflow Assets: the outlets of a step's task, so the Airflow UI lists what it produces.

A step that returns a :mod:`typed artifact <pipecast.typed_artifacts>` (``Dataset``, ``Model``, ``Metrics``,
``Artifact``) declares one outlet per typed output: ``airflow.sdk.Asset`` on Airflow 3, ``airflow.datasets.Dataset``
on Airflow 2. Airflow reads outlets when it parses the DAG file, so their URIs are fixed at compile time and name
the output across runs, not one run's copy::

    <artifact root>/<pipeline>/assets/<step>/<output>

pipecast never writes under ``assets/``: the URI is the output's identity. When the task succeeds, the DAG file's
``post_execute`` hook puts the run's id and the step folder's URI (the task's XCom) in the asset event's
``extra``; the output itself is under that folder's ``outputs/`` and its record (file, sha256, size, metadata) in
its ``meta.json``. A local root whose place is known only on the worker (``~``, ``$VAR`` or a relative path) gives
``x-pipecast://<pipeline>/<step>/<output>`` (Airflow keeps ``x-`` URIs as written).

Every name is percent-encoded, so a URI is plain ASCII (Airflow 2 refuses anything else) with no ``?`` or ``#``
that Airflow would drop, and travels as data in the task table.
"""

from __future__ import annotations

from urllib.parse import quote

from pipecast.compiler import ir
from pipecast.targets.base import EmitContext

MAX_URI = 1500  # characters: Airflow's limit on an asset's name and URI (asset.uri is a 1500-character column)
_ROOT_SAFE = ":/@!$&'()*+,;=~"  # a root's URI punctuation stays; '%', '?', '#', spaces and non-ASCII are encoded


def asset_uri(root: str, pipeline: str, step: str, output: str) -> str:
    """The static URI of ``output`` of ``step`` (see the module's docstring)."""
    names = "/".join(quote(name, safe="") for name in (pipeline, step, output))
    local = "://" not in root or root.startswith("file://")
    path = root.removeprefix("file://")
    if local and (not path.startswith("/") or "$" in path):  # expanded on the worker (artifacts.expand_root)
        return f"x-pipecast://{names}"
    base = quote(f"file://{path}" if local else root, safe=_ROOT_SAFE).rstrip("/")
    return f"{base}/{quote(pipeline, safe='')}/assets/{names.split('/', 1)[1]}"


def typed_outputs(step: ir.Step) -> list[ir.OutputSpec]:
    """The step's outputs that are typed artifacts, in their order."""
    return [output for output in step.outputs if output.artifact]


def outlets(pipeline: ir.Pipeline, step: ir.Step, root: str, context: EmitContext) -> dict[str, dict[str, str]]:
    """The ``outlets`` entry of a step's task: output name → its asset's URI and artifact type."""
    found: dict[str, dict[str, str]] = {}
    for output in typed_outputs(step):
        uri = asset_uri(root, pipeline.name, step.name, output.name)
        if len(uri) > MAX_URI:
            context.error(f"the Airflow asset URI of output {output.name!r} has {len(uri)} characters, more than "
                          f"Airflow's {MAX_URI}", step=step, fix="shorten the artifact root, pipeline, step or "
                          "output name")
            continue
        found[output.name] = {"uri": uri, "type": str(output.artifact)}
    return found
