"""Pictures of the DAG: Mermaid text always, SVG/PNG through Graphviz's ``dot`` when installed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from pipecast.compiler import ir
from pipecast.errors import OutputError, PipecastError


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")


def mermaid(pipeline: ir.Pipeline) -> str:
    """The DAG as a Mermaid flowchart; dashed edges are ``.after()`` edges without data."""
    lines = ["flowchart TD"]
    ids = {s.name: f"s{i}" for i, s in enumerate(pipeline.steps)}
    if pipeline.groups:
        lines += _subgraphs(pipeline, ids)
    else:
        for step in pipeline.steps:
            lines.append(f'    {ids[step.name]}["{_quote(step.name)}"]')
    for step in pipeline.steps:
        data: dict[str, list[str]] = {}
        for binding in step.bindings:
            if binding.kind is ir.BindingKind.OUTPUT and binding.step in ids:
                data.setdefault(binding.step, []).append(binding.output or "")
            elif binding.kind is ir.BindingKind.COLLECTED and binding.step in ids:
                data.setdefault(binding.step, []).append(f"{binding.output} (list)")
            for source in binding.sources:  # a OneOf: one edge per branch
                data.setdefault(source.step, []).append(f"{source.output} (one of)")
        for upstream, outputs in data.items():
            label = _quote(", ".join(dict.fromkeys(outputs)))
            lines.append(f'    {ids[upstream]} -->|"{label}"| {ids[step.name]}')
        for upstream in step.after:
            if upstream in ids and upstream not in data:
                lines.append(f"    {ids[upstream]} -.-> {ids[step.name]}")
    return "\n".join(lines) + "\n"


def _subgraphs(pipeline: ir.Pipeline, ids: dict[str, str]) -> list[str]:
    """The steps inside Mermaid subgraphs, one per group (maps, branches, exit handlers), nested as traced."""
    children: dict[str | None, list[ir.Group]] = {}
    for group in pipeline.groups:
        children.setdefault(group.parent, []).append(group)
    members: dict[str | None, list[ir.Step]] = {}
    for step in pipeline.steps:
        members.setdefault(step.group, []).append(step)
    lines: list[str] = []

    def emit(group: str | None, indent: str) -> None:
        for step in members.get(group, []):
            lines.append(f'{indent}{ids[step.name]}["{_quote(step.name)}"]')
        for child in children.get(group, []):
            lines.append(f'{indent}subgraph g_{_quote(child.name)} ["{_quote(_group_label(child))}"]')
            emit(child.name, indent + "    ")
            lines.append(f"{indent}end")

    emit(None, "    ")
    return lines


def _group_label(group: ir.Group) -> str:
    if group.kind is ir.GroupKind.MAP:
        bound = f", {group.parallelism} at once" if group.parallelism else ""
        return f"for each item ({group.name}{bound})"
    if group.kind is ir.GroupKind.CONDITION:
        return f"{group.label or 'if'} {group.condition}" if group.condition is not None else "else"
    return f"exit handler ({group.name})"


def dot(pipeline: ir.Pipeline) -> str:
    """The DAG in Graphviz's DOT language."""
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(pipeline.name)} {{", "  rankdir=TB;", "  node [shape=box, style=rounded];"]
    for step in pipeline.steps:
        lines.append(f"  {q(step.name)};")
    for step in pipeline.steps:
        for upstream in step.upstream():
            style = " [style=dashed]" if upstream in step.after else ""
            lines.append(f"  {q(upstream)} -> {q(step.name)}{style};")
    return "\n".join(lines) + "\n}\n"


def graph_record(pipeline: ir.Pipeline) -> dict[str, Any]:
    """The DAG as plain data for the run store: steps, their upstream steps and typed outputs' artifact types."""
    steps = []
    for step in pipeline.steps:
        data = list(dict.fromkeys(b.step for b in step.bindings if b.kind is ir.BindingKind.OUTPUT and b.step))
        typed = {o.name: o.artifact for o in step.outputs if o.artifact}  # only steps with typed artifacts
        steps.append({"name": step.name, "upstream": data, "after": [a for a in step.after if a not in data],
                      **({"artifacts": typed} if typed else {})})
    return {"pipeline": pipeline.name, "steps": steps}


def render_graph(pipeline: ir.Pipeline, out: str | None) -> str | None:
    """Return Mermaid text when ``out`` is None or ``.mmd``; otherwise draw ``out`` with Graphviz."""
    if out is None:
        return mermaid(pipeline)
    if out.endswith(".mmd"):
        try:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(mermaid(pipeline))
        except OSError as err:
            raise OutputError(f"cannot write {out!r}: {err.strerror or err}") from None
        return None
    fmt = out.rsplit(".", 1)[-1].lower()
    if fmt not in ("svg", "png", "pdf"):
        raise PipecastError(f"cannot draw {out!r}: use .mmd, .svg, .png or .pdf")
    executable = shutil.which("dot")
    if executable is None:
        raise PipecastError("drawing SVG/PNG needs Graphviz's `dot` (apt-get install graphviz); "
                            "without it, `pipecast graph` prints Mermaid")
    drawn = subprocess.run([executable, f"-T{fmt}", "-o", out], input=dot(pipeline).encode(), capture_output=True)
    if drawn.returncode != 0:
        raise OutputError(f"Graphviz could not draw {out!r}: {drawn.stderr.decode(errors='replace').strip()}")
    return None
