"""The run's DAG as an SVG drawing, coloured by each step's status (no JavaScript, no Graphviz).

Layout: a step's row is the length of the longest path to it from a step with no upstream; steps keep the
pipeline's order within a row. Every name is escaped: a step name is data, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

# Fill colours by step status (the local runner's words and the run store's run words).
COLOURS = {
    "done": "#b7e4c7", "succeeded": "#b7e4c7", "cached": "#a8dadc", "running": "#9ecbff", "failed": "#f4a6a6",
    "cancelled": "#ffd6a5", "skipped": "#e9ecef", "pending": "#ffffff", "unknown": "#f1f3f5",
}
_WIDTH, _HEIGHT, _GAP_X, _GAP_Y, _MARGIN = 180, 44, 30, 56, 16
_MAX_LABEL = 24  # characters shown in a box; the full name is in its tooltip


def _rows(steps: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Steps grouped by depth (longest upstream path), each row in the pipeline's order."""
    upstream = {str(s["name"]): [str(u) for u in (*s.get("upstream", ()), *s.get("after", ()))] for s in steps}
    depth: dict[str, int] = {}
    children: dict[str, list[str]] = {name: [] for name in upstream}
    waiting = {}
    for name, parents in upstream.items():
        known = [p for p in dict.fromkeys(parents) if p in upstream]
        waiting[name] = len(known)
        for parent in known:
            children[parent].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    while ready:  # Kahn's order, iterative: a long chain needs no deep recursion
        name = ready.pop()
        depth.setdefault(name, 0)
        for child in children[name]:
            depth[child] = max(depth.get(child, 0), depth[name] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    rows: list[list[str]] = []
    for name in upstream:
        level = depth.get(name, 0)  # a step on a cycle (a damaged record) goes to the top row
        while len(rows) <= level:
            rows.append([])
        rows[level].append(name)
    return rows


def _label(name: str) -> str:
    return name if len(name) <= _MAX_LABEL else name[: _MAX_LABEL - 1] + "…"


def draw(graph: Mapping[str, Any], statuses: Mapping[str, str]) -> str:
    """The SVG of ``graph`` (:func:`pipecast.compiler.drawing.graph_record`); ``statuses`` maps step to status."""
    steps = list(graph.get("steps", ()))
    rows = _rows(steps)
    widest = max((len(row) for row in rows), default=1)
    width = 2 * _MARGIN + widest * _WIDTH + (widest - 1) * _GAP_X
    height = 2 * _MARGIN + len(rows) * _HEIGHT + max(len(rows) - 1, 0) * _GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for level, row in enumerate(rows):
        offset = (width - (len(row) * _WIDTH + (len(row) - 1) * _GAP_X)) / 2
        for index, name in enumerate(row):
            where[name] = (offset + index * (_WIDTH + _GAP_X), _MARGIN + level * (_HEIGHT + _GAP_Y))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width:g}" height="{height:g}" '
             f'viewBox="0 0 {width:g} {height:g}" role="img" aria-label="pipeline graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for step in steps:
        name = str(step["name"])
        for kind in ("upstream", "after"):
            for parent in step.get(kind, ()):
                if str(parent) in where and name in where:
                    parts.append(_edge(where[str(parent)], where[name], dashed=kind == "after"))
    for name, (x, y) in where.items():
        status = statuses.get(name, "unknown")
        fill = COLOURS.get(status, COLOURS["unknown"])
        parts.append(
            f'<g class="node status-{escape(status)}" data-step="{escape(name)}" data-status="{escape(status)}">'
            f"<title>{escape(name)}: {escape(status)}</title>"
            f'<rect x="{x:g}" y="{y:g}" width="{_WIDTH}" height="{_HEIGHT}" rx="8" fill="{fill}" stroke="#444"/>'
            f'<text x="{x + _WIDTH / 2:g}" y="{y + 18:g}" text-anchor="middle" font-size="13" '
            f'font-family="sans-serif">{escape(_label(name))}</text>'
            f'<text x="{x + _WIDTH / 2:g}" y="{y + 35:g}" text-anchor="middle" font-size="11" fill="#333" '
            f'font-family="sans-serif">{escape(status)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(start: tuple[float, float], end: tuple[float, float], *, dashed: bool) -> str:
    x1, y1 = start[0] + _WIDTH / 2, start[1] + _HEIGHT
    x2, y2 = end[0] + _WIDTH / 2, end[1]
    bend = (y2 - y1) / 2
    dash = ' stroke-dasharray="5,4"' if dashed else ""
    return (f'<path class="edge" d="M {x1:g} {y1:g} C {x1:g} {y1 + bend:g}, {x2:g} {y2 - bend:g}, {x2:g} {y2:g}" '
            f'fill="none" stroke="#555"{dash} marker-end="url(#arrow)"/>')
