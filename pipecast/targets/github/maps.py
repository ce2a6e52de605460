"""Maps as GitHub Actions matrix jobs (issue 16): one job per item, fan-in from pipecast's artifact store.

A mapped step's job gets ``strategy.matrix.index``: the indices of the map's items. For a map over a step's
output that step's runtime publishes them (``items_NAME``, :mod:`pipecast.runtime.publish_github`), for a map
over a parameter a small job counts the input (GitHub expressions cannot), for constants they are written out.
A product of lists known only at run time gets a small job too, which sees every list (a step's published
``items_NAME``, a parameter's input, a constant's length) and outputs the product's flat indices: item
``k = i*len(ys) + j`` of ``Product(xs, ys)``, the first list varying slowest, so every job runs as instance
``step[k]``, the name ``pipecast run`` gives it (a matrix of one key per list would run the same combinations,
but no job could then name its instance before it runs). A zip counts its first list; the runtime checks the
lengths. Each job's runtime takes item ``matrix.index`` from the list itself,
so values keep their exact JSON (GitHub's numbers are doubles: ``1.0`` would come back as ``1``), and runs as
instance ``step[i]``. Indices rather than ``strategy.job-index``: act (the runner the tests use) leaves that
empty. ``strategy.max-parallel`` is the map's parallelism. ``strategy.fail-fast`` is false: a failed item stops
only the items not started yet (:mod:`pipecast.runtime.github_fail_fast`), as ``pipecast run`` does.

A matrix job's outputs keep only one item's (the last to finish), so the items' results never travel as job
outputs: each item writes ``step[i]`` in the artifact store, and the step after the map (the fan-in) reads
them there in item order. Maps therefore need a remote ``artifact_root``. GitHub runs at most 256 jobs per
matrix and fails a job whose matrix is empty: those are refused or reported here. A nested map is emulated
(:mod:`pipecast.targets.github.nested`): a step's matrix is its outermost map.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping

from pipecast.compiler import ir
from pipecast.runtime.flow_plan import FlowPlan
from pipecast.runtime.params import encode_constant, render_parameter
from pipecast.targets.base import EmitContext
from pipecast.targets.github import nested
from pipecast.targets.github.syntax import param_env

MAX_MATRIX_JOBS = 256  # "A matrix will generate a maximum of 256 jobs per workflow run"
INDEX_ENV = "PIPECAST_GITHUB_INDEX"
_OUTPUT_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_FIX = "run it with the local target (`pipecast run FILE`), or move the inner loop or decision inside one step"


def step_map(plan: FlowPlan, step: ir.Step) -> ir.Group | None:
    """The map whose matrix the step's job runs (the outermost: an inner map's items are its runtime's)."""
    maps = plan.maps[step.name]
    return plan.groups[maps[0]] if maps else None


def check_maps(plan: FlowPlan, remote_root: str | None, context: EmitContext) -> None:
    """Report the maps GitHub cannot run as matrices (once per map)."""
    pipeline = plan.pipeline
    if pipeline.parallelism is not None:
        context.error(f"pipeline {pipeline.name!r} bounds its running steps to {pipeline.parallelism}; GitHub "
                      "Actions bounds only the jobs of one matrix (strategy.max-parallel)",
                      location=str(pipeline.location) if pipeline.location else None,
                      fix="bound each map instead (ParallelFor(..., parallelism=N)), or drop the pipeline's bound")
    for group in pipeline.groups:
        if group.kind is not ir.GroupKind.MAP:
            continue
        where = str(group.location)
        inner = nested.is_inner(pipeline, group)  # its items run in the outer item's job: no matrix limits
        if remote_root is None:
            context.error(f"map {group.name!r}: on GitHub Actions the step after a map reads every item's result "
                          "from pipecast's artifact store (a matrix job's outputs keep only the last item's), so "
                          "maps need a remote artifact root", location=where,
                          fix="set artifact_root (e.g. --set artifact_root=s3://bucket/pipecast)")
        count = 1
        for operand in group.items:
            if operand.kind is ir.BindingKind.PARAMETER:
                param = pipeline.parameter(operand.parameter or "")
                if pipeline.schedule or "${{" in render_parameter(param.type, param.default if
                                                                  not param.required else []):
                    context.error(f"map {group.name!r} iterates parameter {param.name!r}, which its matrix reads "
                                  "from the run's inputs: a scheduled run has none (and a default holding '${{' "
                                  "is not an input's default)", location=where,
                                  fix="map over a step's output that returns the list, or drop the schedule")
            elif operand.kind is ir.BindingKind.OUTPUT and not _OUTPUT_ID.match(operand.output or ""):
                context.error(f"map {group.name!r} iterates output {operand.output!r}, which cannot name a GitHub "
                              "job output (letters, digits, _ and - only)", location=where,
                              fix="rename the output")
            elif (operand.kind is ir.BindingKind.OUTPUT and plan.maps[operand.step or ""]
                  and not (inner and nested.reads_own_outer(plan, group, operand))):
                context.error(f"map {group.name!r} iterates an output of mapped step {operand.step!r}; GitHub "
                              "Actions cannot nest matrices", location=where, fix=_FIX)
            elif operand.kind is ir.BindingKind.CONSTANT and not inner:
                size = len(operand.value) if isinstance(operand.value, list) else 0
                count = size if group.combine is not ir.Combine.PRODUCT else count * size
                if not size:
                    context.error(f"map {group.name!r} iterates an empty list; GitHub fails a job whose matrix "
                                  "has no values", location=where, fix="map over a list with items")
        if (group.combine is not ir.Combine.PRODUCT and len(group.items) > 1
                and all(o.kind is ir.BindingKind.CONSTANT for o in group.items)
                and len({len(o.value) if isinstance(o.value, list) else 0 for o in group.items}) > 1):
            context.error(f"map {group.name!r} zips constant lists of different lengths; zip pairs item i of each "
                          "list, so give them one length (or use Product)", location=where, fix=_FIX)
        if count > MAX_MATRIX_JOBS:
            context.error(f"map {group.name!r} has {count} items; GitHub runs at most {MAX_MATRIX_JOBS} jobs per "
                          "matrix", location=where, fix="map over fewer items, or batch several items per step")


def list_sources(plan: FlowPlan, step: ir.Step, jobs: Mapping[str, str]) -> list[str]:
    """Jobs whose published indices the step's matrix reads (they must be in ``needs``)."""
    group = step_map(plan, step)
    if group is None:
        return []
    first = group.items[0]
    if _counted_product(group):
        return [items_job(group)]
    if first.kind is ir.BindingKind.OUTPUT and first.step:
        return [jobs[first.step]]
    return [items_job(group)] if first.kind is ir.BindingKind.PARAMETER else []


def _counted_product(group: ir.Group) -> bool:
    """Whether the map is a product of lists of which some are known only at run time (a job counts it)."""
    return group.combine is ir.Combine.PRODUCT and any(o.kind is not ir.BindingKind.CONSTANT for o in group.items)


def counting_jobs(plan: FlowPlan, steps: list[str]) -> dict[str, str]:
    """The counting jobs of the maps of ``steps``, each → the first of those steps in its map.

    A failed count is that step's failure, as the local runner reports a list that is not one.
    """
    found: dict[str, str] = {}
    for name in steps:
        group = step_map(plan, plan.steps[name])
        if group is not None and list_sources(plan, plan.steps[name], {}) == [items_job(group)]:
            found.setdefault(items_job(group), name)
    return found


def items_job(group: ir.Group) -> str:
    """The job that publishes the indices of a map over a parameter."""
    return f"{group.name}_items"


_PUBLISHED: list[tuple[ir.Pipeline, dict[str, list[str]]]] = []  # published_lists of the pipeline being emitted


def published_lists(pipeline: ir.Pipeline) -> dict[str, list[str]]:
    """Per step, its outputs a map counts (its first list; every list of a counted product).

    The step's job publishes their indices (``items_NAME``). Every job asks: found once per pipeline.
    """
    if not _PUBLISHED or _PUBLISHED[0][0] is not pipeline:
        _PUBLISHED[:] = [(pipeline, _published_lists(pipeline))]
    return _PUBLISHED[0][1]


def _published_lists(pipeline: ir.Pipeline) -> dict[str, list[str]]:
    found: dict[str, dict[str, None]] = {}
    for group in pipeline.groups:
        if nested.is_inner(pipeline, group):
            continue  # the outer item's runtime reads the list from the artifact store
        counted = group.items if _counted_product(group) else group.items[:1]
        for operand in counted:
            if operand.kind is ir.BindingKind.OUTPUT and operand.step and operand.output:
                found.setdefault(operand.step, {})[operand.output] = None
    return {step: list(outputs) for step, outputs in found.items()}


def strategy(plan: FlowPlan, group: ir.Group, jobs: Mapping[str, str]) -> dict[str, object]:
    """The job's ``strategy``: a matrix of item indices, and the map's bound."""
    first = group.items[0]
    published = published_indices(group, jobs)
    index: object
    if all(o.kind is ir.BindingKind.CONSTANT for o in group.items):
        index = list(range(_constant_count(group)))
    elif published:
        index = f"${{{{ fromJSON({published}) }}}}"
    else:
        index = list(range(len(first.value) if isinstance(first.value, list) else 0))
    spec: dict[str, object] = {}
    if group.parallelism is not None:
        spec["max-parallel"] = group.parallelism
    spec["matrix"] = {"index": index}
    # GitHub's default (true) cancels the matrix's running and queued jobs when one fails; pipecast run lets
    # running items finish, and the items that start later skip themselves (runtime/github_fail_fast.py).
    spec["fail-fast"] = False
    return spec


def published_indices(group: ir.Group, jobs: Mapping[str, str]) -> str | None:
    """The job output holding the indices of a map over a run-time list (None: the map's lists are constants)."""
    first = group.items[0]
    if all(o.kind is ir.BindingKind.CONSTANT for o in group.items):
        return None
    if first.kind is ir.BindingKind.PARAMETER or _counted_product(group):
        return f"needs.{items_job(group)}.outputs.index"
    if first.kind is ir.BindingKind.OUTPUT:
        return f"needs.{jobs[first.step or '']}.outputs.items_{first.output}"
    return None


def empty_tests(plan: FlowPlan, jobs: Mapping[str, str]) -> dict[str, str]:
    """Per mapped step over a run-time list, the expression that is true when the list is empty.

    GitHub fails a job whose matrix has no values ("Matrix vector 'index' does not contain any values") where
    ``pipecast run`` runs no items, so the step's job is skipped on it and the fan-in after it runs anyway, with
    an empty list. The indices are canonical JSON, so an empty list is exactly ``[]``. Every job asks, so the
    answer for the workflow being built is kept (one pass over the steps per workflow, not per job).
    """
    if _EMPTY and _EMPTY[0][0] is plan and _EMPTY[0][1] is jobs:
        return _EMPTY[0][2]
    tests = {}
    for step in plan.pipeline.steps:
        group = step_map(plan, step)
        published = published_indices(group, jobs) if group is not None else None
        if published:
            tests[step.name] = f"{published} == '[]'"
    _EMPTY[:] = [(plan, jobs, tests)]
    return tests


_EMPTY: list[tuple[FlowPlan, Mapping[str, str], dict[str, str]]] = []  # the last workflow's empty_tests


def _constant_count(group: ir.Group) -> int:
    sizes = [len(o.value) if isinstance(o.value, list) else 0 for o in group.items]
    if group.combine is ir.Combine.PRODUCT:
        return math.prod(sizes)
    return min(sizes) if sizes else 0


_INDICES_SCRIPT = """python3 - <<'PIPECAST'
import json, os
value = json.loads(os.environ["PIPECAST_LIST"])
if not isinstance(value, list):
    raise SystemExit("pipecast: the map iterates a parameter that is not a list: " + repr(value)[:80])
if len(value) > 256:
    raise SystemExit(f"pipecast: the map has {len(value)} items; GitHub runs at most 256 jobs per matrix")
with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
    out.write("index=" + json.dumps(list(range(len(value)))) + "\\n")
PIPECAST
"""

# The product's flat indices: every combination, the first list varying slowest (itertools.product's order).
_PRODUCT_SCRIPT = """python3 - <<'PIPECAST'
import json, math, os
sizes = []
for k in range(int(os.environ["PIPECAST_LISTS"])):
    value = json.loads(os.environ[f"PIPECAST_LIST_{k}"])
    if not isinstance(value, list):
        raise SystemExit(f"pipecast: list {k} of the product is not a list: " + repr(value)[:80])
    sizes.append(len(value))
count = math.prod(sizes)
if count > 256:
    raise SystemExit(f"pipecast: the product has {count} items; GitHub runs at most 256 jobs per matrix")
with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
    out.write("index=" + json.dumps(list(range(count))) + "\\n")
PIPECAST
"""


def items_jobs(plan: FlowPlan, runs_on: str | list[str], jobs: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """A small job per map over a parameter or a product of run-time lists: its matrix's indices.

    GitHub expressions cannot count a list.
    It needs only the runner's ``python3`` (no checkout, no pipecast); the values reach it through ``env``.
    """
    built: dict[str, dict[str, object]] = {}
    for group in plan.pipeline.groups:
        first = group.items[0] if group.kind is ir.GroupKind.MAP and group.items else None
        if first is not None and nested.is_inner(plan.pipeline, group):
            continue  # counted by the outer item's runtime
        if first is not None and _counted_product(group):
            built[items_job(group)] = _product_job(group, runs_on, jobs)
        if first is None or first.kind is not ir.BindingKind.PARAMETER or group.combine is ir.Combine.PRODUCT:
            continue
        built[items_job(group)] = {
            "runs-on": runs_on,
            "outputs": {"index": "${{ steps.items.outputs.index }}"},
            "steps": [{"name": f"Count the items of parameter {first.parameter}", "id": "items", "shell": "bash",
                       "env": {"PIPECAST_LIST": f"${{{{ inputs.{first.parameter} }}}}"},
                       "run": _INDICES_SCRIPT}],
        }
    return built


def map_args(plan: FlowPlan, step: ir.Step, argv: list[str], placeholder: Callable[[str], str],
             env: dict[str, str]) -> list[str]:
    """The runtime command of a matrix job or a fan-in: instance name, items, collected results."""
    group = step_map(plan, step)
    argv = list(argv)
    if group is not None:
        env[INDEX_ENV] = "${{ matrix.index }}"
        index = placeholder(INDEX_ENV)
        argv[argv.index("--step") + 1] = f"{step.name}[{index}]"
        for binding in step.bindings:  # chained: item i reads item i of the step before it in the map
            if binding.kind is ir.BindingKind.OUTPUT and step_map(plan, plan.steps[binding.step or ""]) is group:
                word = argv.index(f"{binding.input}={binding.step}/{binding.output}")
                argv[word] = f"{binding.input}={binding.step}[{index}]/{binding.output}"
    for binding in step.bindings:
        if binding.kind is ir.BindingKind.ITEM:
            mapped = plan.groups[binding.group or ""]
            which = "-" if binding.index is None else str(binding.index)
            argv += _lists(plan, mapped, binding.input, placeholder, env)
            argv += ["--github-item", f"{binding.input}={_combine(mapped)}:{which}"]
        elif binding.kind is ir.BindingKind.COLLECTED:
            mapped = plan.groups[plan.maps[binding.step or ""][-1]]
            argv += _lists(plan, mapped, binding.input, placeholder, env)
            argv += ["--github-collect", f"{binding.input}={_combine(mapped)}:{binding.step}/{binding.output}"]
    return argv


def _combine(group: ir.Group) -> str:
    return (group.combine or ir.Combine.ZIP).value


def _lists(plan: FlowPlan, group: ir.Group, name: str, placeholder: Callable[[str], str],
           env: dict[str, str]) -> list[str]:
    """The map's lists bound to ``NAME#k`` (the runtime removes them before the step runs)."""
    args = []
    for k, operand in enumerate(group.items):
        if operand.kind is ir.BindingKind.PARAMETER:
            param = plan.pipeline.parameter(operand.parameter or "")
            env[param_env(param)] = f"${{{{ inputs.{param.name} }}}}"
            args += ["--param", f"{name}#{k}={param.type.value}:{placeholder(param_env(param))}"]
        elif operand.kind is ir.BindingKind.OUTPUT:
            args += ["--upstream", f"{name}#{k}={operand.step}/{operand.output}"]
        else:
            args += ["--const", f"{name}#{k}={encode_constant(operand.value_json or 'null')}"]
    return args


def _product_job(group: ir.Group, runs_on: str | list[str], jobs: Mapping[str, str]) -> dict[str, object]:
    """The job that outputs a product's flat indices from every list's length."""
    env = {"PIPECAST_LISTS": str(len(group.items))}
    needs: dict[str, None] = {}
    for k, operand in enumerate(group.items):
        if operand.kind is ir.BindingKind.PARAMETER:
            env[f"PIPECAST_LIST_{k}"] = f"${{{{ inputs.{operand.parameter} }}}}"
        elif operand.kind is ir.BindingKind.OUTPUT:
            needs[jobs[operand.step or ""]] = None
            env[f"PIPECAST_LIST_{k}"] = f"${{{{ needs.{jobs[operand.step or '']}.outputs.items_{operand.output} }}}}"
        else:  # a constant: its indices stand for it (only the length counts)
            size = len(operand.value) if isinstance(operand.value, list) else 0
            env[f"PIPECAST_LIST_{k}"] = json.dumps(list(range(size)))
    job: dict[str, object] = {"needs": list(needs)} if needs else {}
    job.update({"runs-on": runs_on, "outputs": {"index": "${{ steps.items.outputs.index }}"},
                "steps": [{"name": f"Count the combinations of map {group.name}", "id": "items", "shell": "bash",
                           "env": env, "run": _PRODUCT_SCRIPT}]})
    return job
