r"""GitHub Actions job summary: what a step produced, as Markdown on the run's summary page.

Under GitHub Actions (``$GITHUB_STEP_SUMMARY`` set) the runtime appends, after the step ends, a table of its
outputs (name, type, materializer, URI, size, sha256: what ``pipecast runs show`` lists; a typed artifact's
metadata and metrics) and tables of the metadata it logged with ``pipecast.log_metadata`` (docs.github.com,
"Workflow commands": "Adding a job summary").

Every value is data: each ASCII punctuation character is backslash-escaped (GitHub-flavored Markdown: "Any ASCII
punctuation character may be backslash-escaped", and ``\\|`` keeps a pipe inside a table cell), and control and
invisible format characters (newlines, bidi overrides) are shown as escapes, so no value can end a row, open a
link, an image, HTML or a code block. GitHub keeps at most 1 MiB of summary per step: long values are cut and rows
past the limit are left out, each saying so and where the full record is.
"""

from __future__ import annotations

import json
import os
import string
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from pipecast.errors import ArtifactError
from pipecast.runtime.artifacts import ArtifactStore

SUMMARY_VAR = "GITHUB_STEP_SUMMARY"
MAX_SUMMARY_BYTES = 1024 * 1024  # GitHub: "each step is limited to a maximum size of 1MiB"
MAX_CELL_CHARS = 500  # a cell longer than this is cut (the full value stays in meta.json)
_PUNCTUATION = frozenset(string.punctuation)
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})  # control, format (bidi, zero-width), line/paragraph separators


def cell(value: Any, limit: int = MAX_CELL_CHARS) -> str:
    """``value`` as the text of one Markdown table cell that shows it literally (strings as they are, else JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    out = []
    for char in text:
        if char in _PUNCTUATION:
            out.append("\\" + char)
        elif unicodedata.category(char) in _INVISIBLE:  # shown as its JSON escape, backslash escaped: "\\n"
            out.append("\\" + json.dumps(char)[1:-1])
        else:
            out.append(char)
    if cut > 0:
        out.append(f" … \\({cut} more characters: see the step's meta\\.json\\)")
    return "".join(out)


def summary_markdown(meta: Mapping[str, Any], uris: Mapping[str, str | None],
                     budget: int = MAX_SUMMARY_BYTES) -> str:
    """The Markdown for one step's record ``meta`` (its ``meta.json``); ``uris``: each output's URI.

    At most ``budget`` bytes (UTF-8): rows that do not fit are counted in a last line instead.
    """
    state = str(meta.get("status", "unknown"))
    if meta.get("cached"):
        source = meta.get("cached_from") or {}
        state += f" (from the cache: run {source.get('run_id')}, step {source.get('step')})"
    head = f"### pipecast step {cell(meta.get('step', '?'))}: {cell(state)}\n\nRun {cell(meta.get('run_id', '?'))}"
    head += f", pipeline {cell(meta.get('pipeline', '?'))}\n"
    outputs = meta.get("outputs") or {}
    output_rows = [(name, (_kind(record), record.get("materializer"), uris.get(name), record.get("size"),
                           record.get("sha256"))) for name, record in sorted(outputs.items())]
    artifact_rows = [(f"{name}: {key}{' (metric)' if part == 'metrics' else ''}", (value,))
                     for name, record in sorted(outputs.items()) for part in ("metadata", "metrics")
                     for key, value in sorted((record.get(part) or {}).items())]
    tables: list[tuple[str, tuple[str, ...], list[tuple[str, tuple[Any, ...]]]]] = [
        ("Output", ("Type", "Materializer", "URI", "Size (bytes)", "sha256"), output_rows),
        ("Artifact metadata", ("Value",), artifact_rows),
        ("Step metadata", ("Value",), [(k, (v,)) for k, v in sorted((meta.get("metadata") or {}).items())]),
        ("Run metadata", ("Value",), [(k, (v,)) for k, v in sorted((meta.get("run_metadata") or {}).items())])]
    parts, used, left_out = [head], len(head.encode()), 0
    for title, columns, rows in tables:
        if not rows:
            continue
        lines = [f"\n| {title} | {' | '.join(columns)} |\n", f"| --- |{' --- |' * len(columns)}\n"]
        cost = sum(len(line.encode()) for line in lines)
        for name, values in rows:
            row = f"| {cell(name)} | {' | '.join(cell('' if v is None else v) for v in values)} |\n"
            if left_out or used + cost + len(row.encode()) > budget - 200:  # room for the closing line
                left_out += 1
                continue
            lines.append(row)
            cost += len(row.encode())
        if len(lines) > 2:
            parts.extend(lines)
            used += cost
    if not outputs:
        parts.append("\nNo outputs.\n")
    if left_out:
        parts.append(f"\n{left_out} more rows left out \\(GitHub keeps 1 MiB of summary per step\\): see "
                     "`pipecast runs show` or the step's meta\\.json\\.\n")
    return "".join(parts)


def _kind(record: Mapping[str, Any]) -> Any:
    """An output's type: a typed artifact's schema (``system.Model``) and its value's type, else the type."""
    return f"{record['artifact']} ({record.get('type')})" if record.get("artifact") else record.get("type")


def output_uris(invocation: Any, outputs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, str | None]:
    """Each output's URI in the artifact store (as ``pipecast runs show`` gives it)."""
    store = ArtifactStore(invocation.artifact_root)
    folder = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
    return {name: store.url(store.file_in(folder, record["file"])) if record.get("file") else None
            for name, record in outputs}


def append_summary(invocation: Any, meta: Mapping[str, Any] | None = None) -> None:
    """Append the step's summary to ``$GITHUB_STEP_SUMMARY``, if set (``meta``: read from the store when None).

    The summary only shows what the run store already keeps, so a failure to write it is a warning on stderr,
    never the step's failure.
    """
    target = os.environ.get(SUMMARY_VAR)
    if not target:
        return
    try:
        if meta is None:
            store = ArtifactStore(invocation.artifact_root)
            folder = store.step_dir(invocation.pipeline, invocation.run_id, invocation.step)
            meta = store.read_json(f"{folder}/meta.json")
        uris = output_uris(invocation, (meta.get("outputs") or {}).items())
        budget = MAX_SUMMARY_BYTES - (os.path.getsize(target) if os.path.exists(target) else 0)
        if budget < 1024:
            raise ValueError(f"the step's summary already holds {MAX_SUMMARY_BYTES - budget} bytes, GitHub keeps "
                             f"{MAX_SUMMARY_BYTES}")
        text = summary_markdown(meta, uris, budget)
        with open(target, "a", encoding="utf-8") as file:
            file.write(text)
    except (ArtifactError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"pipecast: warning: step {invocation.step!r}: no job summary written to ${SUMMARY_VAR}: {err}",
              file=sys.stderr)
