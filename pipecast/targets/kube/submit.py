"""The submit module of the custom-resource targets (Tekton PipelineRuns, Argo Workflows).

One code path for both engines, their differences being data (:class:`~pipecast.targets.kube.crd.Engine`):
the definitions (``Pipeline``/``WorkflowTemplate``) are created or replaced (idempotent), the run object is
created under a name derived from pipecast's run id, and the returned :class:`CustomResourceRun` reads the
run's status, cancels it and knows its UI URL. The framework records the run; nothing here writes the run
store. The client is imported lazily by :mod:`pipecast.targets.kube.client`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from typing import Any, cast

import yaml

from pipecast.compiler import ir, naming
from pipecast.errors import SubmitError
from pipecast.runs.status import EngineRun, RunStatus
from pipecast.runtime.params import render_parameter
from pipecast.targets import versions
from pipecast.targets.base import Bundle, SubmitRequest
from pipecast.targets.kube.client import KubeError, check_config, connect
from pipecast.targets.kube.crd import CustomResourceTarget, Engine, parameter_value_problems
from pipecast.targets.kube.limits import refuse_oversized
from pipecast.targets.kube.objects import RUN_ANNOTATION, Kube, apply_all, create_run_object


def submit(request: SubmitRequest) -> CustomResourceRun:
    """Create the bundle's definitions (idempotently) and its run object; return the run."""
    target = cast(CustomResourceTarget, request.target)
    engine = target.engine
    check_config(target.name, request.config, target.connection_keys())
    _check_parameter_values(request.pipeline, request.parameters, engine)
    definitions, run = _documents(request.bundle, engine)
    cluster = connect(request.config)  # reads the configuration; no request yet
    # -c namespace, else the namespace setting (written on the objects), else the context's
    namespace = str(request.config.get("namespace") or run["metadata"].get("namespace") or cluster.namespace
                    or "default")
    name = naming.rule_for("dns1123_label").apply(request.run_id)
    for definition in definitions:
        definition["metadata"]["namespace"] = namespace
    run["metadata"] = {
        "name": name, "namespace": namespace, "labels": run["metadata"].get("labels", {}),
        "annotations": {**run["metadata"].get("annotations", {}), RUN_ANNOTATION: request.run_id},
    }
    engine.set_parameters(run, request.pipeline, request.parameters)
    refuse_oversized([*definitions, run])
    if engine.check_run:
        engine.check_run(request.pipeline, [*definitions, run], request.parameters)
    versions.check_cluster(target.name, cluster)  # too old a cluster or engine: refused before anything is made
    api = Kube(cluster, namespace, engine.custom_kinds())
    if engine.check_access:
        engine.check_access(api, definitions, run)
    apply_all(api, definitions)
    url = _ui_url(engine, request.config, namespace, name)
    request.note(engine_run_id=f"{namespace}/{name}", url=url)  # before a create whose answer may be lost
    create_run_object(api, run, request.run_id)
    return CustomResourceRun(run_id=request.run_id, target=target.name, engine=engine, api=api, name=name, url=url)


def reconnect(record: Mapping[str, Any], config: Mapping[str, Any]) -> CustomResourceRun:
    """The run of a record (its engine run id is ``namespace/name``)."""
    from pipecast.targets.registry import get_target

    target = cast(CustomResourceTarget, get_target(str(record["target"])))
    engine = target.engine
    check_config(target.name, config, target.connection_keys())
    namespace, _, name = str(record.get("engine_run_id") or "").partition("/")
    if not namespace or not name:
        raise SubmitError(f"run {record.get('id')!r} has no engine run id 'namespace/name' to reconnect to")
    api = Kube(connect(config), namespace, engine.custom_kinds())
    return CustomResourceRun(run_id=str(record["id"]), target=target.name, engine=engine, api=api, name=name,
                             url=record.get("url"))


class CustomResourceRun(EngineRun):
    """A run object in a namespace: status from the object, cancel by a merge patch."""

    def __init__(self, *, run_id: str, target: str, engine: Engine, api: Kube, name: str, url: str | None) -> None:
        super().__init__(run_id=run_id, target=target, engine_run_id=f"{api.namespace}/{name}", url=url)
        self.engine = engine
        self.api = api
        self.namespace = api.namespace
        self.name = name

    def fetch_status(self) -> RunStatus:
        """Read the run object and map its state (the failing task goes into ``detail``)."""
        engine = self.engine
        try:
            obj = self.api.get(engine.run_kind, self.name)
        except KubeError as err:
            if err.status != 404:
                raise
            self.detail = (f"{engine.run_kind} {self.name!r} does not exist in namespace {self.namespace!r}: it was "
                           "deleted, or never created")
            return RunStatus.FAILED
        status, message = engine.read_status(obj)
        self.detail = message
        if status is RunStatus.FAILED:
            self.detail = engine.failure_detail(self.api, obj) or message
        return status

    def cancel(self) -> None:
        """Ask the engine to stop the run (it stops its tasks and ends the run as cancelled)."""
        self.api.patch(self.engine.run_kind, self.name, copy.deepcopy(dict(self.engine.cancel_patch)))

    def logs(self, step: str | None = None, follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The step pods' logs, found by the labels the engine puts on a run's pods."""
        from pipecast.targets.kube.logs import PodLogs, pod_logs

        where = PodLogs(f"{self.engine.pod_run_label}={self.name}", self.engine.step_container,
                        self.engine.pod_step_label)
        return pod_logs(self.api, where, self.run_id, lambda: self.fetch_status().finished, step, follow, timeout)


def _ui_url(engine: Engine, config: Mapping[str, Any], namespace: str, name: str) -> str:
    base = str(config.get(engine.ui_setting) or os.environ.get(engine.ui_env) or engine.default_ui)
    return engine.ui_url(base, namespace, name)


def _check_parameter_values(pipeline: ir.Pipeline, parameters: Mapping[str, Any], engine: Engine) -> None:
    """Refuse values the engine or the kubelet would change, before any request.

    A value equal to the parameter's default is left alone: compile already reported the default
    (as an error, or as a warning the user accepted with ``--on-unsupported=warn``).
    """
    given = {}
    for param in pipeline.parameters:
        if param.name in parameters and (param.required or render_parameter(param.type, parameters[param.name])
                                         != render_parameter(param.type, param.default)):
            given[param.name] = parameters[param.name]
    problems = parameter_value_problems(pipeline, given, "value", prefixes=engine.injected_env,
                                        engine_change=engine.value_change, engine_fix=engine.value_change_fix)
    if problems:
        fixes = sorted({fix for _, _, fix in problems})
        raise SubmitError("; ".join(message for _, message, _ in problems)
                          + f"; nothing was submitted ({'; '.join(fixes)})")


def _documents(bundle: Bundle, engine: Engine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The definitions and the one run object of the bundle (the schedule's objects are left out)."""
    definitions: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for _, text in bundle.files:
        for document in yaml.safe_load_all(text):
            if not isinstance(document, dict) or document.get("apiVersion") != engine.api_version:
                continue
            if document.get("kind") in engine.definition_kinds:
                definitions.append(document)
            elif document.get("kind") == engine.run_kind:
                runs.append(document)
    if len(runs) != 1:
        raise SubmitError(f"the bundle holds {len(runs)} {engine.run_kind} objects; expected exactly one")
    return definitions, runs[0]
