"""SageMaker Pipelines: decision values in a property file; a training step's typed outputs where SageMaker uploads.

A ``ConditionStep`` reads a step's values through a *property file*: a JSON file the processing job writes
under one of its ``ProcessingOutputConfig`` outputs, declared in the step's ``PropertyFiles``
(``PropertyFileName``, ``OutputName``, ``FilePath``) and read with
``{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.STEP.PropertyFiles.NAME"}, "Path": "OUTPUT"}}`` (AWS, "Property
Files and JsonGet", docs.aws.amazon.com/sagemaker/latest/dg/build-and-manage-propertyfile.html; the sagemaker SDK's
``PropertyFile`` and ``JsonGet``). AWS documents no size limit for a property file; the values here are scalars.
SageMaker uploads the output folder when the job ends (``S3UploadMode: EndOfJob``) and reads the file then.

After the step succeeds (or came from the cache) the runtime writes ``{"OUTPUT": value, ...}`` to the path
given by ``--sagemaker-property-file``, one key per ``--sagemaker-publish OUTPUT``. Only scalars are written:
a condition compares numbers, booleans or text, and a value of another type fails the step here, saying so,
instead of reaching a condition SageMaker would evaluate differently from ``pipecast run``.

A training job uploads ``/opt/ml/model`` as ``model.tar.gz`` (``ModelArtifacts.S3ModelArtifacts``) and
``/opt/ml/output/data`` as ``output.tar.gz`` when it ends (CreateTrainingJob, ``OutputDataConfig``). After the step
succeeds or comes from the cache, ``--sagemaker-model NAME`` copies output NAME there (a folder's files at the top,
a file or a stored value as its file), and each ``--sagemaker-output-data NAME`` into ``/opt/ml/output/data/NAME/``:
streamed from the step's folder in the artifact store and checked against the recorded sha256. ``SM_MODEL_DIR``,
``SM_OUTPUT_DATA_DIR`` and ``SM_INPUT_CONFIG_DIR`` (the SageMaker training toolkit's names for these folders) are
honoured when set. Each ``--sagemaker-metric NAME`` (a declared metric of the training step, see
:mod:`pipecast.targets.sagemaker.metrics`) makes the runtime print ``pipecast-metric NAME=VALUE`` to stdout after
the step, which the job's ``MetricDefinitions`` turn into its metrics. With several instances only the first host
(``resourceconfig.json``'s ``hosts``) copies: every
instance runs the step, and SageMaker merges the instances' folders into one archive, whose names must not clash.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import posixpath
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipecast.errors import PipecastError
from pipecast.runtime import paths
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation, load_outputs

MODEL_DIR = "/opt/ml/model"  # a training job's model: uploaded as model.tar.gz, its ModelArtifacts
OUTPUT_DATA_DIR = "/opt/ml/output/data"  # a training job's other output: uploaded as output.tar.gz
METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,255}")  # a declared metric's name (targets.sagemaker.metrics)
METRIC_PREFIX = "pipecast-metric "  # the line each MetricDefinitions regex matches: PREFIX + NAME + "=" + VALUE
METRICS_FIX = 'settings={"sagemaker": {"metrics": [...]}} on the step'
INPUT_CONFIG_DIR = "/opt/ml/input/config"  # resourceconfig.json: {"current_host": "algo-1", "hosts": [...]}


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The runtime's ``--sagemaker-property-file`` / ``--sagemaker-publish`` options."""
    run.add_argument("--sagemaker-property-file", default=None)
    run.add_argument("--sagemaker-publish", action="append", default=[])
    run.add_argument("--sagemaker-model", default=None)
    run.add_argument("--sagemaker-output-data", action="append", default=[])
    run.add_argument("--sagemaker-metric", action="append", default=[])


def property_file(values: dict[str, Any]) -> str:
    """The property file's JSON text: each decision value under its output's name (scalars only)."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise PipecastError(f"output {name!r} is {value!r}; a SageMaker condition reads it from a JSON "
                                "property file, which holds no NaN or infinity")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise PipecastError(f"output {name!r} is {type(value).__name__} {value!r:.80}; a SageMaker condition "
                                "reads it, and compares only numbers, booleans and text")
        if value is None:
            raise PipecastError(f"output {name!r} is None; a SageMaker condition reads it, and has no null to "
                                "compare with")
    return json.dumps(values, sort_keys=True, ensure_ascii=False, allow_nan=False)


def publish(invocation: StepInvocation, path: str | None, names: Sequence[str]) -> None:
    """Write the step's outputs ``names`` to the property file at ``path`` (after the step succeeded)."""
    if not path or not names:
        return
    values = load_outputs(invocation.artifact_root, invocation.pipeline, invocation.run_id, invocation.step,
                          list(dict.fromkeys(names)))
    text = property_file(values)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


def place_training_outputs(invocation: StepInvocation, model: str | None, data: Sequence[str]) -> None:
    """Copy the step's output ``model`` into the job's model folder and each of ``data`` into its output data."""
    if not _first_host():
        return
    store = ArtifactStore(invocation.artifact_root)
    step_dir = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
    records = store.read_json(f"{step_dir}/meta.json").get("outputs", {})
    if model:
        _place(store, step_dir, records, model, Path(os.environ.get("SM_MODEL_DIR") or MODEL_DIR), invocation.step)
    for name in dict.fromkeys(data):
        folder = Path(os.environ.get("SM_OUTPUT_DATA_DIR") or OUTPUT_DATA_DIR) / name
        _place(store, step_dir, records, name, folder, invocation.step)


def _first_host() -> bool:
    """Whether this instance is the job's first host (True without a resource config: one instance, or no job)."""
    path = Path(os.environ.get("SM_INPUT_CONFIG_DIR") or INPUT_CONFIG_DIR) / "resourceconfig.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        hosts = sorted(config["hosts"])
        return bool(not hosts or config["current_host"] == hosts[0])
    except FileNotFoundError:
        return True
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PipecastError(f"cannot read SageMaker's {str(path)!r} to tell the job's first host: {err}") from None


def _place(store: ArtifactStore, step_dir: str, records: Mapping[str, Any], name: str, into: Path,
           step: str) -> None:
    record = records.get(name)
    if record is None:
        raise PipecastError(f"step {step!r} recorded no output {name!r} to copy into {str(into)!r}; the runtime "
                            "command names an output the step does not have: compile the pipeline again")
    what = f"output {name!r} of step {step!r}"
    if record.get("materializer") == paths.MATERIALIZER:
        paths.download(store, step_dir, record, into, what)
        return
    paths.download_file(store, store.file_in(step_dir, record["file"]), record["sha256"],
                        into / posixpath.basename(record["file"]), what)


def metric_lines(meta: Mapping[str, Any], declared: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``pipecast-metric NAME=VALUE`` lines of a step's record for the declared names, and the warnings.

    The numbers are each ``Metrics`` output's metrics and the step's (and run's) ``log_metadata`` numbers, in
    that order; a name logged by two of them prints twice (SageMaker records each line). The value is
    ``repr(float)``, which the definition's regex matches whole. A number whose name is not declared gets a
    warning naming it (with every character outside a declared name's escaped, so no warning line can match
    a definition's regex), and so does a declared value that is not a finite number.
    """
    found: list[tuple[str, Any]] = []
    for _output, record in sorted((meta.get("outputs") or {}).items()):
        if record.get("artifact") == "Metrics":
            found += sorted((record.get("metrics") or {}).items())
    for source in ("metadata", "run_metadata"):
        found += [(key, value) for key, value in sorted((meta.get(source) or {}).items())
                  if isinstance(value, (int, float)) and not isinstance(value, bool)]
    wanted, lines, warnings = set(declared), [], []
    for name, value in found:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if name not in wanted:
            warnings.append(f"pipecast: metric {_quoted(name)} is not a SageMaker metric of this training job; "
                            f"add it to {METRICS_FIX} to see it in the job's metrics")
        elif not math.isfinite(number):
            warnings.append(f"pipecast: metric {_quoted(name)} is {_quoted(repr(value))}, not a finite number; "
                            "SageMaker's metrics are numbers")
        else:
            lines.append(f"{METRIC_PREFIX}{name}={number!r}")
    return lines, warnings


def print_metrics(invocation: StepInvocation, declared: Sequence[str]) -> None:
    """Print the step's metrics for SageMaker's log scraping (stdout), and what it cannot show (stderr)."""
    store = ArtifactStore(invocation.artifact_root)
    step_dir = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
    lines, warnings = metric_lines(store.read_json(f"{step_dir}/meta.json"), declared)
    for line in lines:
        print(line, flush=True)
    for warning in warnings:
        print(warning, file=sys.stderr, flush=True)


def _quoted(text: str) -> str:
    r"""``text`` in quotes with each character a metric name cannot hold as ``\uXXXX``: no space, no ``=``."""
    return '"' + "".join(c if METRIC_NAME.fullmatch(c) else f"\\u{ord(c):04x}" for c in str(text)[:200]) + '"'
