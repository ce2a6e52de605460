"""After a step on Kubeflow Pipelines or Vertex AI: write its outputs where the engine collects them.

The task's command passes ``--kfp-executor-input {{$}}``; the engine substitutes its ExecutorInput as JSON
(protojson field names), which names, under ``outputs``:

- ``parameters[name].outputFile``: where the engine reads each output parameter. The KFP launcher reads
  every declared one after the container exits and fails the task when a file is missing, parsing its
  text by the declared type (``backend/src/v2/component/launcher_v2.go``, ``collectOutputParameters``;
  ``metadata.TextToPbValue``: ``strconv.ParseInt``/``ParseFloat``/``ParseBool``, strings as they are);
- ``artifacts[name].artifacts[0]``: the output artifact, with the URI the engine chose under its pipeline root;
- ``outputFile``: ``executor_output.json``. An artifact given there is merged into the engine's
  (``mergeRuntimeArtifacts``: a non-empty ``uri`` replaces the engine's, ``metadata`` fields are added).

kfp's own executor writes the same files (``kfp/dsl/executor.py``, ``write_executor_output``). The step's
folder in pipecast's store becomes the artifact's URI where the KFP launcher accepts it, see
:func:`launcher_accepts`; elsewhere the engine's URI stays and the folder is in the artifact's metadata.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pipecast.errors import PipecastError
from pipecast.runtime.artifacts import ArtifactStore
from pipecast.runtime.executor import StepInvocation, load_outputs

# LocalPathForURI (launcher_v2.go): the schemes whose artifacts the KFP launcher uploads to its pipeline root.
UPLOADED_SCHEMES = frozenset({"gs", "minio", "s3"})
STEP_OUTPUT = "pipecast_ran"
OUTPUT_ARTIFACT = "pipecast_outputs"  # pipecast.targets.kfpspec.outputs.OUTPUT_ARTIFACT (no target import here)
INT64 = range(-(2 ** 63), 2 ** 63)  # strconv.ParseInt(text, 10, 0) on a 64-bit launcher


def launcher_accepts(uri: str, engine_uri: str) -> bool:
    """Whether the KFP launcher takes ``uri`` in place of the output artifact URI it chose (``engine_uri``).

    ``uploadOutputArtifacts`` skips a URI whose scheme it cannot map to a local path, and otherwise needs its
    key in the pipeline root's bucket (``objectstore.Config.KeyFromURI``: an error fails the task); a folder
    that is not on the launcher's disk is then only a warning ("We allow components to not produce output
    files"). The same bucket is required here for every engine, Vertex AI included, whose launcher is not public.
    """
    ours, theirs = urlsplit(uri), urlsplit(engine_uri)
    if ours.scheme == "oci" or ours.scheme not in UPLOADED_SCHEMES:
        return True
    return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)


_OUTPUTS_KEY = re.compile(r'"outputs"\s*:\s*')


def outputs_of(step: str, executor_input: str) -> dict[str, Any]:
    """The ``outputs`` of the ExecutorInput JSON text.

    The KFP launcher substitutes ``{{$}}`` first and then every input placeholder in the result
    (``compileCmdAndArgs``), so a parameter value holding ``{{$.inputs.parameters['x']}}`` text can break the
    JSON of ``inputs``. ``outputs`` comes last (protojson writes fields in number order) and holds no user text:
    it is then read from its key on.
    """
    try:
        parsed = json.loads(executor_input)
    except ValueError as err:
        found = list(_OUTPUTS_KEY.finditer(executor_input))
        try:
            parsed = {"outputs": json.JSONDecoder().raw_decode(executor_input, found[-1].end())[0]} if found else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise PipecastError(f"step {step!r}: --kfp-executor-input is not the engine's ExecutorInput as JSON "
                                f"({err}); the task's command must pass it as '{{{{$}}}}'") from None
    outputs = parsed.get("outputs") if isinstance(parsed, dict) else None
    if outputs is not None and not isinstance(outputs, dict):
        raise PipecastError(f"step {step!r}: the ExecutorInput's outputs are not an object: {outputs!r:.80}")
    return outputs or {}


def artifact_uri(uri: str) -> str:
    """The folder's URI as the UI should show it: ``file:///gcs/<bucket>/…`` is ``gs://<bucket>/…``.

    ``/gcs`` is Vertex AI's Cloud Storage FUSE mount, an artifact root the vertex target allows.
    """
    return "gs://" + uri[len("file:///gcs/"):] if uri.startswith("file:///gcs/") else uri


def parameter_text(step: str, name: str, value: Any) -> str:
    """An output's text as the KFP launcher parses an output parameter file; PipecastError if it has none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value in INT64:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # a list a map iterates (a LIST output parameter)
        from pipecast.runtime.publish_kfp import list_text

        return list_text(step, name, value)
    raise PipecastError(
        f"step {step!r} returned {type(value).__name__} {value!r:.80} for output {name!r}, which the engine "
        "collects as an output parameter (str, bool, a 64-bit int or a finite float); return such a value, or "
        "annotate the output with another type so that it stays in pipecast's artifact store only")


def write_kfp_outputs(executor_input: str, inv: StepInvocation, meta: Mapping[str, Any],
                      placeholders: Mapping[str, str] | None = None) -> None:
    """Write the output parameter files and ``executor_output.json`` the engine's ExecutorInput asks for.

    ``placeholders``: a skipped hook's, the text of each output parameter (pipecast.runtime.publish_kfp).
    """
    outputs = outputs_of(inv.step, executor_input)
    wanted = dict(outputs.get("parameters") or {})
    ran = wanted.pop(STEP_OUTPUT, None)  # a OneOf branch step: its instance name (pipecast.targets.kfpspec.groups)
    if ran is not None:
        _write(ran["outputFile"], inv.step)
    if placeholders is not None:
        for name, spec in sorted(wanted.items()):
            _write(spec["outputFile"], placeholders.get(name, ""))
        wanted = {}
    missing = sorted(set(wanted) - set(meta.get("outputs") or {}))
    if missing:
        raise PipecastError(f"step {inv.step!r} has no output {missing[0]!r}, which the engine expects as an output "
                            "parameter; compile the pipeline again and resubmit it")
    values = load_outputs(inv.artifact_root, inv.pipeline, inv.run_id, inv.step, names=set(wanted)) if wanted else {}
    for name, spec in sorted(wanted.items()):
        _write(spec["outputFile"], parameter_text(inv.step, name, values[name]))
    artifacts = outputs.get("artifacts") or {}
    if not artifacts:
        return
    store = ArtifactStore(inv.artifact_root)
    folder = store.step_dir(inv.pipeline, inv.run_id, inv.step)
    uri = store.url(folder)
    files = {name: store.url(store.file_in(folder, record["file"]))
             for name, record in sorted((meta.get("outputs") or {}).items())}
    produced = {}
    for name, listed in sorted(artifacts.items()):
        engine = (listed.get("artifacts") or [{}])[0]
        if name == OUTPUT_ARTIFACT:
            chosen = _chosen(uri, engine)
            produced[name] = {"artifacts": [{"name": engine.get("name", ""), "uri": chosen,
                                             "metadata": {"pipecast_uri": uri, "outputs": files}}]}
            continue
        record = (meta.get("outputs") or {}).get(name)
        if record is None or not record.get("artifact"):
            raise PipecastError(f"step {inv.step!r} has no typed output {name!r}, which the engine expects as an "
                                "output artifact; compile the pipeline again and resubmit it")
        produced[name] = {"artifacts": [typed_artifact(inv.step, name, engine, files[name], record)]}
    if not outputs.get("outputFile"):
        raise PipecastError(f"step {inv.step!r}: the engine's ExecutorInput names no outputs.outputFile for the "
                            "output artifact; this engine does not collect outputs as KFP does")
    _write(outputs["outputFile"], json.dumps({"artifacts": produced}, sort_keys=True))


def typed_artifact(step: str, name: str, engine: Mapping[str, Any], uri: str,
                   record: Mapping[str, Any]) -> dict[str, Any]:
    """A typed output's RuntimeArtifact for ``executor_output.json``: its stored file or folder as the URI.

    The metadata is the artifact's; a Metrics artifact's metrics are its metadata fields, one per metric, as
    kfp's ``Metrics.log_metric`` records them (the UI's metrics view lists them). Where the launcher keeps its
    own URI the stored one is ``pipecast_uri``. A metric and a metadata key of the same name are refused:
    one would hide the other.
    """
    metadata = dict(record.get("metadata") or {})
    for key in sorted(set(metadata) & set(record.get("metrics") or {})):
        raise PipecastError(f"step {step!r}: {record['artifact']} output {name!r} has {key!r} both as a metric and "
                            "as a metadata key, which the engine keeps in one place (the artifact's metadata); "
                            "rename one of them")
    metadata.update(record.get("metrics") or {})
    chosen = _chosen(uri, engine)
    if chosen != artifact_uri(uri):
        metadata["pipecast_uri"] = uri
    return {"name": engine.get("name", ""), "uri": chosen, "metadata": metadata}


def _chosen(uri: str, engine: Mapping[str, Any]) -> str:
    """The URI the UI shows: ours where the launcher takes it (:func:`launcher_accepts`), else the engine's."""
    shown = artifact_uri(uri)
    return shown if launcher_accepts(shown, engine.get("uri", "")) else str(engine.get("uri", ""))


def _write(path: str, text: str) -> None:
    """Write ``text`` to ``path``, making its folder.

    Vertex AI, unlike the KFP launcher, documents no folder made for it (kfp's executor makes it too,
    ``makedirs_recursively``).
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
