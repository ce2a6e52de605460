"""The HTML of ``pipecast ui``: the runs list and a run's page. Every value is escaped: run data is never markup."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from pipecast.ui.svg import COLOURS, draw

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .7em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.status { padding: .1em .5em; border-radius: .6em; border: 1px solid #999; white-space: nowrap; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; max-height: 30em; }
.note { color: #a33; }
a.engine, code { word-break: break-all; }
form label { margin-right: 1em; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _status(status: str) -> str:
    colour = COLOURS.get(status, COLOURS["unknown"])
    return f'<span class="status status-{_e(status)}" style="background:{colour}">{_e(status)}</span>'


def _run_href(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def engine_link(url: str | None) -> str:
    """A link to the engine's UI; only an http(s) or file URL becomes a link (never ``javascript:``)."""
    if not url:
        return ""
    if url.startswith(("http://", "https://", "file://")):
        return f'<a class="engine" href="{_e(url)}" rel="noopener noreferrer">{_e(url)}</a>'
    return _e(url)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s" if minutes else \
        f"{value:.1f}s"


def _page(title: str, body: str, *, refresh: bool) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{meta}<title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _select(name: str, options: Sequence[str], chosen: str | None) -> str:
    items = ['<option value="">any</option>'] + [
        f'<option value="{_e(o)}"{" selected" if o == chosen else ""}>{_e(o)}</option>' for o in options]
    return f'<label>{_e(name)} <select name="{_e(name)}">{"".join(items)}</select></label>'


def runs_page(rows: Sequence[Mapping[str, Any]], choices: Mapping[str, Sequence[str]],
              filters: Mapping[str, str | None]) -> str:
    """The runs list with its filter form."""
    form = ('<form method="get" action="/" id="filters">'
            + "".join(_select(key, choices.get(key, ()), filters.get(key)) for key in ("pipeline", "stack", "status"))
            + '<button type="submit">filter</button> <a href="/">all runs</a></form>')
    head = "".join(f"<th>{h}</th>" for h in ("run", "pipeline", "target", "stack", "status", "started", "duration",
                                             "engine UI"))
    body = []
    for row in rows:
        body.append(
            f'<tr class="run" data-run="{_e(row["id"])}" data-status="{_e(row["status"])}">'
            f'<td><a href="{_e(_run_href(row["id"]))}">{_e(row["id"])}</a></td><td class="pipeline">'
            f'{_e(row["pipeline"])}</td><td>{_e(row["target"])}</td><td>{_e(row["stack"])}</td>'
            f'<td>{_status(row["status"])}</td><td>{_e(row["started"])}</td><td>{_seconds(row["duration"])}</td>'
            f'<td>{engine_link(row["url"])}</td></tr>')
    table = (f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>' if rows
             else '<p id="no-runs">No runs match.</p>')
    unfinished = any(row["status"] not in ("succeeded", "failed", "cancelled") for row in rows)
    return _page("pipecast runs", f"<h1>pipecast runs</h1>{form}{table}", refresh=unfinished)


def run_page(run: Mapping[str, Any], *, refresh_error: str | None, local_logs: Mapping[str, list[str]]) -> str:
    """One run: its facts, parameters, DAG, steps, artifacts and logs (read here for a local run)."""
    facts = [("pipeline", _e(run["pipeline"])), ("target", _e(run["target"])), ("stack", _e(run["stack"])),
             ("status", _status(run["status"])), ("detail", _e(run["detail"])), ("started", _e(run["started"])),
             ("ended", _e(run["ended"])), ("duration", _seconds(run["duration"])),
             ("engine run id", _e(run["engine_run_id"])), ("engine UI", engine_link(run["url"]))]
    parts = [f'<p><a href="/">all runs</a></p><h1 id="run-id">{_e(run["id"])}</h1>']
    if refresh_error:
        parts.append(f'<p class="note" id="refresh-error">status not refreshed from the engine: '
                     f"{_e(refresh_error)}</p>")
    parts.append('<table id="facts">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
                 + "</table>")
    parameters = "".join(f'<tr><th>{_e(k)}</th><td><code>{_e(json.dumps(v))}</code></td></tr>'
                         for k, v in sorted(run["parameters"].items()))
    parts.append(f'<h2>Parameters</h2><table id="parameters">{parameters}</table>')
    parts.append('<h2>Graph</h2><div id="graph">' + draw(run["graph"], run["step_statuses"]) + "</div>")
    if not run["steps"]:
        parts.append("<p>The engine's per-step status is not recorded here: see the engine's UI.</p>")
    parts.append(_steps_table(run))
    parts.append(_artifacts_table(run["artifacts"]))
    parts.append(_logs(run, local_logs))
    return _page(f"run {run['id']}", "".join(parts), refresh=run["status"] not in ("succeeded", "failed", "cancelled"))


def _steps_table(run: Mapping[str, Any]) -> str:
    if not run["steps"]:
        return ""
    rows = "".join(
        f'<tr class="step" data-step="{_e(s["step"])}"><td>{_e(s["step"])}</td><td>{_status(s["status"])}</td>'
        f'<td>{_e(s.get("attempts"))}</td><td>{_e(s.get("started_at"))}</td><td>{_e(s.get("ended_at"))}</td>'
        f'<td>{_e(s.get("error"))}</td></tr>' for s in run["steps"])
    return ('<h2>Steps</h2><table id="steps"><thead><tr><th>step</th><th>status</th><th>tries</th><th>started</th>'
            f"<th>ended</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>")


def _artifacts_table(found: Sequence[Mapping[str, Any]]) -> str:
    if not found:
        return '<h2>Artifacts</h2><p id="no-artifacts">None recorded under a local artifact root.</p>'
    rows = "".join(f'<tr class="artifact"><td>{_e(a["step"])}</td><td>{_e(a["name"])}</td><td>{_e(a["type"])}</td>'
                   f'<td><code>{_e(a["uri"])}</code></td></tr>' for a in found)
    return ('<h2>Artifacts</h2><table id="artifacts"><thead><tr><th>step</th><th>output</th><th>type</th>'
            f"<th>URI</th></tr></thead><tbody>{rows}</tbody></table>")


def _logs(run: Mapping[str, Any], local_logs: Mapping[str, list[str]]) -> str:
    href = _e(_run_href(run["id"]) + "/logs")
    if not local_logs:  # an engine's logs: fetched on request, so the page never waits for the engine
        return f'<h2>Logs</h2><p><a id="logs-link" href="{href}">read the logs from the engine</a></p>'
    blocks = "".join(
        f'<details class="log" data-step="{_e(step)}"><summary>{_e(step)}</summary><pre>{_e(chr(10).join(lines))}'
        f'</pre><a href="{href}?{_e(urlencode({"step": step}))}">plain text</a></details>'
        for step, lines in local_logs.items())
    return f'<h2>Logs</h2><div id="logs">{blocks}</div>'


def text_page(title: str, text: str, status_note: str = "") -> str:
    """A plain page around ``text`` (an error, a log read from an engine)."""
    note = f'<p class="note">{_e(status_note)}</p>' if status_note else ""
    return _page(title, f'<p><a href="/">all runs</a></p><h1>{_e(title)}</h1>{note}<pre>{_e(text)}</pre>',
                 refresh=False)
