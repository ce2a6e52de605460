"""Azure ML: a step's metrics and metadata on its job's MLflow run, which the studio shows (issue 17).

Azure ML gives every command job an MLflow run and shows what is logged to it on the job's Metrics tab (numbers)
and among its tags. In the job's container it sets ``MLFLOW_TRACKING_URI`` (``azureml://...``),
``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_RUN_ID``; with the ``mlflow`` client and Microsoft's ``azureml-mlflow`` plugin
(which registers the ``azureml`` scheme) installed, ``MlflowClient().log_batch(run_id, ...)`` lands on the job
("Log metrics, parameters, and files with MLflow", learn.microsoft.com/azure/machine-learning/how-to-log-view-metrics).

The azureml target's command passes ``--azureml-mlflow``; after the step (also from the cache, and after a failed
step: what it logged) the runtime sends:

- each metric of the step's ``Metrics`` outputs, and each number of ``log_metadata(...)`` (the step's and the
  run's), as a metric at step 0;
- every other ``log_metadata`` value (text, booleans, lists, dicts, None) as a tag: text as is, the rest as JSON.

A name logged by two of these sources gets its source as a prefix (``OUTPUT.name``, ``metadata.name``,
``run_metadata.name``); names are then written in MLflow's rules (ASCII letters, digits, ``_ - . /`` and space; no
empty or ``.``/``..`` path segment; at most 250 characters; a leading ``mlflow.``/``azureml.``, the system tags'
prefixes, gets a ``_`` before it). Every renamed key and every tag value cut to MLflow's
8,000 characters is listed in the step log. Nothing is sent, and mlflow is not imported, when there is nothing.

Not being able to send is a **warning** in the step log, once, never a failed step: the step's work is done and
committed, and its metrics stay in pipecast's run store (``pipecast runs show``, the node's Metrics output). Failing
the node would stop the pipeline for a view, and no retry installs a missing package.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FLAG = "--azureml-mlflow"
FIX = ("add `mlflow-skinny` (or `mlflow`) and `azureml-mlflow` to the step's image, e.g. `pip install "
       "'pipecast[azureml-metrics]'`")
MAX_KEY = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
MAX_TAG_VALUE = 8000  # MAX_TAG_VAL_LENGTH
BATCH = 100  # per kind in one log_batch: MAX_PARAMS_TAGS_PER_BATCH (metrics may be 1,000, all entities 1,000)
_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")
_RESERVED = re.compile(r"(mlflow|azureml)\.", re.IGNORECASE)  # system tags (mlflow.runName, ...): never ours


@dataclass
class Plan:
    """What goes to the MLflow run: metrics and tags by their MLflow names, and notes for the step log."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan(meta: Mapping[str, Any]) -> Plan:
    """What a step's record (its ``meta.json``) sends: metrics, metadata numbers as metrics, the rest as tags."""
    found: list[tuple[str, str, Any]] = []  # (source, key, value)
    for output, record in sorted((meta.get("outputs") or {}).items()):
        if record.get("artifact") == "Metrics":
            found += [(output, key, value) for key, value in sorted((record.get("metrics") or {}).items())]
    for source in ("metadata", "run_metadata"):
        found += [(source, key, value) for key, value in sorted((meta.get(source) or {}).items())]
    sources: dict[str, int] = {}
    for _source, key, _value in found:
        sources[key] = sources.get(key, 0) + 1
    result, taken = Plan(), set[str]()
    for source, key, value in found:
        wanted = f"{source}.{key}" if sources[key] > 1 else key
        name = unique_name(mlflow_name(wanted), taken)
        taken.add(name)
        if name != key:
            label = {"metadata": "metadata", "run_metadata": "run metadata"}.get(source, f"output {source!r} metric")
            result.notes.append(f"{label} {key!r:.100} sent as {name!r:.100}")
        number = _double(value)
        if number is not None:
            result.metrics[name] = number
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if len(text) > MAX_TAG_VALUE:
            result.notes.append(f"tag {name!r} cut to {MAX_TAG_VALUE} of its {len(text)} characters (MLflow's "
                                "limit; the whole value is in the step's meta.json)")
            text = text[:MAX_TAG_VALUE]
        result.tags[name] = text
    return result


def _double(value: Any) -> float | None:
    """``value`` as a finite double (an MLflow metric), or None: bools, text and ints past a double are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON int of 400 digits: kept whole as a tag
        return None
    return number if math.isfinite(number) else None


def mlflow_name(text: str) -> str:
    """``text`` as an MLflow name: ``_`` for other characters and for empty or dot-only segments, no system prefix."""
    name = _segments("_" + text if _RESERVED.match(text) else text)
    for limit in (MAX_KEY, MAX_KEY - 1):  # a cut may end on "/", whose empty last segment becomes "_" again
        if len(name) > MAX_KEY:
            name = _segments(name[:limit])
    return name


def _segments(text: str) -> str:
    parts = [_BAD.sub("_", part) for part in text.split("/")]
    name = "/".join("_" if part in ("", ".", "..") else part for part in parts)
    return "_" + name if name.startswith("..") else name  # MLflow refuses a name that starts like a parent path


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... (within MLflow's length) if another key already has it."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        suffix = f"_{number}"
        candidate = name[:MAX_KEY - len(suffix)] + suffix
    return candidate


def forward(step: str, meta: Mapping[str, Any], environ: Mapping[str, str] | None = None,
            say: Callable[[str], None] | None = None) -> bool:
    """Send the step's metrics and metadata to the job's MLflow run; False (after one warning) if it could not."""
    environ = os.environ if environ is None else environ
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    sending = plan(meta)
    if not (sending.metrics or sending.tags):
        return True
    what = f"{len(sending.metrics)} metric(s) and {len(sending.tags)} tag(s)"

    def warn(reason: str) -> bool:
        say(f"pipecast: warning: step {step!r}: {what} not sent to the Azure ML job's MLflow run: {reason}. They "
            "stay in pipecast's run store (`pipecast runs show`)")
        return False

    run_id = environ.get("MLFLOW_RUN_ID", "")
    if not run_id:
        return warn("MLFLOW_RUN_ID is not set (Azure ML sets it in every job; is this an Azure ML job?)")
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag
    except ImportError as err:
        return warn(f"the mlflow client cannot be imported ({err}); {FIX}")
    uri = environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("azureml:"):
        import importlib.util

        if importlib.util.find_spec("azureml") is None or importlib.util.find_spec("azureml.mlflow") is None:
            return warn(f"the tracking URI is azureml://, which only the azureml-mlflow plugin reads; {FIX}")
    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, 0) for key, value in sending.metrics.items()]
    tags = [RunTag(key, value) for key, value in sending.tags.items()]
    try:
        client = MlflowClient(tracking_uri=uri or None)
        for start in range(0, max(len(metrics), len(tags)), BATCH):
            client.log_batch(run_id, metrics=metrics[start:start + BATCH], tags=tags[start:start + BATCH])
    except Exception as err:  # whatever the client or the service raised is said in the warning
        return warn(f"MLflow refused them ({type(err).__name__}: {str(err)[:500]})")
    say(f"pipecast: step {step!r}: {what} sent to the Azure ML job's MLflow run {run_id}"
        + "".join(f"; {note}" for note in sending.notes))
    return True
