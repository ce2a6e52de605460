"""The contract between the kubernetes target's emitter, its driver and its run handle.

The emitter writes a *plan* (JSON, in a ConfigMap mounted into the driver Job); the driver reads it and
creates one step Job per step from the plan's Job templates; the run handle reads the state the driver
records on its own Job. Everything they must agree on — labels, env var names, the plan's shape, how
Kubernetes' ``$(VAR)`` expansion is escaped — lives here, with no SDK import.

Plan (``plan.yaml``; gzipped JSON in ``plan.yaml.gz`` when too big for text; steps in dependency order)::

    version: 1
    pipeline: NAME
    max_parallel: N
    poll_seconds: S
    parameters: [{name, type, default_json (null: required)}]
    steps: [{name, job, upstream: [...], retry: {attempts, delay_seconds, ...} (only with retries),
             template: <a batch/v1 Job>}]
    flow: {artifact_root: URI, ir: <the pipeline's IR>}   (only with control flow: the driver runs
          maps, conditions, exit handlers and hooks from it; see flow_driver)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pipecast.compiler import ir
from pipecast.compiler.naming import NameRule, rule_for
from pipecast.targets.kube.limits import MAX_ARG_STRLEN

PLAN_VERSION = 1
PLAN_DIR = "/etc/pipecast"
PLAN_FILE = "plan.yaml"
PLAN_FILE_GZ = "plan.yaml.gz"  # a plan too big for the ConfigMap as text is stored gzipped in binaryData
PLAN_TEXT_LIMIT = 900 * 1024  # bytes of plan text kept readable; above it, compressed (etcd holds 1 MiB)

LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_PIPELINE = "pipecast.dev/pipeline"
LABEL_ROLE = "pipecast.dev/role"  # "driver" or "step"
LABEL_RUN = "pipecast.dev/run"  # the run id (the driver Job's name) on every step Job and its pods
LABEL_STEP = "pipecast.dev/step"
LABEL_ITEM = "pipecast.dev/item"  # a map item's index on its Job and pod ("2"; "2-0" inside a nested map)
ANNOTATION_STEP = "pipecast.dev/step-name"  # the step's pipecast name (labels cannot hold every name)
ANNOTATION_STATE = "pipecast.dev/state"  # the driver's record of the run, on the driver Job
ANNOTATION_PLAN = "pipecast.dev/plan"  # the plan ConfigMap a driver Job runs

# The Job controller labels every pod of a Job with the Job's name (Kubernetes >= 1.27).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# The CronJob controller annotates each Job it creates with the tick it was made for, time.RFC3339 in the CronJob's
# timeZone (Kubernetes >= 1.28, feature gate CronJobsScheduledAnnotation, GA 1.32; pkg/controller/cronjob/utils.go
# getJobFromTemplate2). The driver hands it to the steps as their logical time.
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"

RUN_ID_ENV = "PIPECAST_RUN_ID"
NAMESPACE_ENV = "PIPECAST_NAMESPACE"
PARAM_ENV_PREFIX = "PIPECAST_PARAM_"
DRIVER_MODULE = "pipecast.targets.kubernetes.driver"
STEP_CONTAINER = "step"
DRIVER_CONTAINER = "driver"

# Driver exit codes: the pod failure policy fails the driver Job at once on 1 and 2 (no driver retry); 3 (the
# API server failed the driver, or anything else went wrong that is not the pipeline's verdict) counts against
# the driver Job's backoffLimit, so Kubernetes starts a new driver pod that carries on with the run.
EXIT_PIPELINE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3

# Linux refuses a single argument or environment string of this many bytes with its NUL (MAX_ARG_STRLEN).
MAX_ARG_BYTES = MAX_ARG_STRLEN

# A CronJob's name leaves 11 characters for the "-<minutes>" suffix of the Jobs it creates.
_CRONJOB_RULE = NameRule("cronjob_name", "Kubernetes CronJob name: a DNS-1123 label of at most 52 characters",
                         rule_for("dns1123_label").convert, 52)


def escape(text: str) -> str:
    """Escape ``text`` for a container's ``command``/``args``/``env[].value``.

    Kubernetes expands ``$(VAR)`` there and turns ``$$`` into ``$``, so doubling every ``$`` makes any
    text come through verbatim.
    """
    return text.replace("$", "$$")


def param_env(name: str) -> str:
    """The env var a step pod reads parameter ``name`` from (names are Python identifiers)."""
    return f"{PARAM_ENV_PREFIX}{name}"


def dns_name(text: str) -> str:
    """``text`` as a DNS-1123 label (63 characters at most, hash-suffixed when cut)."""
    return rule_for("dns1123_label").apply(text)


def cronjob_name(pipeline_name: str) -> str:
    """``pipeline_name`` made a valid CronJob name."""
    return _CRONJOB_RULE.apply(pipeline_name)


def step_job_name(run_id: str, step_job: str) -> str:
    """The name of a step's Job in run ``run_id``: ``<run>-<step>``, cut with a hash to 63 characters."""
    return dns_name(f"{run_id}-{step_job}")


def run_name(pipecast_run_id: str) -> str:
    """The driver Job's name (the engine run id) for a pipecast run id."""
    return dns_name(pipecast_run_id)


def retry_plan(retry: ir.RetryPolicy) -> dict[str, Any]:
    """A step's retry policy as the plan stores it."""
    return {"attempts": retry.attempts, "delay_seconds": retry.delay_seconds, "backoff": retry.backoff,
            "max_delay_seconds": retry.max_delay_seconds}


def retry_policy(data: dict[str, Any]) -> ir.RetryPolicy:
    """The retry policy from the plan's form (see :func:`retry_plan`); missing keys take defaults."""
    return ir.RetryPolicy(attempts=int(data.get("attempts", 1)), delay_seconds=float(data.get("delay_seconds", 0)),
                          backoff=float(data.get("backoff", 1.0)), max_delay_seconds=data.get("max_delay_seconds"))


def plan_pipeline(plan: dict[str, Any]) -> ir.Pipeline:
    """A parameters-only IR of the plan's pipeline, for :func:`pipecast.runtime.params.resolve_parameters`."""
    return ir.Pipeline(name=plan["pipeline"], parameters=tuple(
        ir.Parameter(name=p["name"], type=ir.TypeName(p["type"]), default_json=p.get("default_json"))
        for p in plan["parameters"]
    ))


def dump_plan(plan: dict[str, Any]) -> str:
    """The plan's text: YAML through the shared dumper (stable, and readable inside the ConfigMap)."""
    from pipecast.targets.serialize import dump_yaml

    return dump_yaml(plan)


def pack_plan(plan: dict[str, Any]) -> tuple[str, str, str]:
    """Where the plan goes in its ConfigMap, and its encoded text.

    ``("data", "plan.yaml", YAML)`` when it fits as text, else ``("binaryData", "plan.yaml.gz", base64 of
    gzipped compact JSON)``, gzipped without a timestamp so the bytes are stable. Compact JSON is also the
    cheap way to see that YAML cannot fit. The JSON is written a top-level item at a time straight into the
    compressor (the bytes of ``gzip.compress(json.dumps(plan), 9, mtime=0)``): a 10,000-step plan's whole JSON
    string and its bytes were 24 MiB of a 60 MiB peak.
    """
    import zlib

    pending: list[bytes] = []  # the JSON while it may still fit as text
    size = 0
    compressor = None
    for chunk in _compact_chunks(plan):
        data = chunk.encode()
        if compressor is None:
            pending.append(data)
            size += len(data)
            if size <= PLAN_TEXT_LIMIT:
                continue
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip, mtime 0 (as gzip.compress)
            packed = [compressor.compress(piece) for piece in pending]
            pending = []
        else:
            packed.append(compressor.compress(data))
    if compressor is None:
        text = dump_plan(plan)
        if len(text.encode()) <= PLAN_TEXT_LIMIT:
            return "data", PLAN_FILE, text
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        packed = [compressor.compress(piece) for piece in pending]
    packed.append(compressor.flush())
    import base64

    return "binaryData", PLAN_FILE_GZ, base64.b64encode(b"".join(packed)).decode()


def _compact_chunks(plan: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(plan, separators=(",", ":"), ensure_ascii=False)`` in pieces: one per list item at the top."""
    dump = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    yield "{"
    for index, (key, value) in enumerate(plan.items()):
        yield ("," if index else "") + dump(key) + ":"
        if type(value) is list and value:
            for position, item in enumerate(value):
                yield ("[" if position == 0 else ",") + dump(item)
            yield "]"
        else:
            yield dump(value)
    yield "}"


def configmap_plan(configmap: dict[str, Any]) -> dict[str, Any]:
    """The plan held by a plan ConfigMap (either form of :func:`pack_plan`)."""
    if PLAN_FILE in (configmap.get("data") or {}):
        return load_plan(configmap["data"][PLAN_FILE])
    import base64

    return load_plan(base64.b64decode(configmap["binaryData"][PLAN_FILE_GZ]))


def load_plan(content: str | bytes) -> dict[str, Any]:
    """Parse a plan from its YAML text, or from its gzipped JSON bytes."""
    import yaml

    if isinstance(content, bytes):
        if content[:2] == b"\x1f\x8b":
            import gzip

            content = gzip.decompress(content)
        content = content.decode("utf-8")
    plan = json.loads(content) if content.startswith("{") else yaml.safe_load(content)
    if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION:
        raise ValueError(f"not a pipecast kubernetes plan of version {PLAN_VERSION}")
    return plan
