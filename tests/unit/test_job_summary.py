"""GitHub job summary (issue 17): the step's outputs and logged metadata, appended to ``$GITHUB_STEP_SUMMARY``.

The Markdown is rendered with cmark-gfm (``cmarkgfm``: GitHub's own fork of cmark, with its table extension) and
the rendered tables are read back: hostile values must stay inside their cell, shown literally, with no link,
image, HTML or extra row.
"""

from __future__ import annotations

import json
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

import pipecast
from pipecast.runtime.__main__ import main
from pipecast.runtime.job_summary import MAX_SUMMARY_BYTES, cell, summary_markdown
from pipecast.runtime.params import encode_constant

HOSTILE = ["a | b", "x\n| y | z |\n", "<script>alert(1)</script>", "![i](http://e.test/t.png)",
           "[l](javascript:alert(1))", "`code` *em* __b__ ~~s~~", "&lt; &amp;", "\\|\\", "```\nfence",
           "# heading", "<details><summary>x", "\u202egnp.exe", "line\r\nbreak\x00nul", "\\", "-->", ":rocket:",
           "|", "   ", "", "1. list", "> quote"]


class _Tables(HTMLParser):
    """Every table's rows of cell texts, and the tags other than the table's seen anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _render(markdown: str) -> _Tables:
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    parsed = _Tables()
    parsed.feed(html)
    parsed.close()
    return parsed


def _shown(value: str) -> str:
    """What the cell must show: the value, with invisible characters as their JSON escapes."""
    return "".join(json.dumps(c)[1:-1] if c in "\n\r\x00\u202e" else c for c in value)


def test_hostile_values_stay_in_their_cell_and_show_literally():
    meta = {"step": "train | x", "run_id": "r1", "pipeline": "p", "status": "succeeded",
            "outputs": {f"o{i}": {"type": text, "materializer": "json", "file": f"outputs/o{i}.json", "size": 3,
                                  "sha256": "ab" * 32} for i, text in enumerate(HOSTILE)},
            "metadata": {text or "empty": text for text in HOSTILE}}
    uris = {f"o{i}": text for i, text in enumerate(HOSTILE)}
    parsed = _render(summary_markdown(meta, uris))
    assert parsed.tags <= {"h3", "p", "table", "thead", "tbody", "tr", "th", "td"}  # no a, img, script, pre...
    outputs, metadata = parsed.tables
    assert outputs[0] == ["Output", "Type", "Materializer", "URI", "Size (bytes)", "sha256"]
    assert sorted(outputs[1:]) == sorted([f"o{i}", _shown(text).strip(), "json", _shown(text).strip(), "3",
                                          "ab" * 32] for i, text in enumerate(HOSTILE))
    assert metadata[0] == ["Step metadata", "Value"]
    assert sorted(metadata[1:]) == sorted([_shown(text or "empty").strip(), _shown(text).strip()]
                                          for text in HOSTILE)


def test_long_values_are_cut_and_rows_past_githubs_limit_are_counted():
    assert cell("x" * 600).startswith("x" * 500 + " … \\(100 more characters")
    meta = {"step": "s", "run_id": "r", "pipeline": "p", "status": "succeeded", "outputs": {},
            "metadata": {f"k{i:05}": "v" * 500 for i in range(3000)}}
    text = summary_markdown(meta, {})
    assert len(text.encode()) <= MAX_SUMMARY_BYTES
    rows = _render(text).tables[0][1:]
    shown = len(rows)
    assert 1000 < shown < 3000
    assert f"{3000 - shown} more rows left out" in text
    assert "No outputs." in text


def _summary_step(model_dir: str) -> tuple[Path, dict, pipecast.Metrics]:
    pipecast.log_metadata(accuracy=0.93, note="a | b\n| c |")
    pipecast.log_metadata(run=True, dataset="<b>v2</b>")
    return Path(model_dir), {"rows": 3}, pipecast.Metrics(accuracy=0.93, metadata={"split": "test | *all*"})


def _failing_step() -> int:
    pipecast.log_metadata(seen="before the error")
    raise RuntimeError("boom")


@pytest.fixture
def summary(tmp_path, monkeypatch):
    path = tmp_path / "summary.md"
    path.write_text("earlier step's summary\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    return path


def _argv(root: Path, fn: str, step: str, *extra: str) -> list[str]:
    return ["run", "--fn", f"{__name__}:{fn}", "--pipeline", "p", "--step", step, "--run-id", "r1",
            "--artifact-root", str(root), "--quiet", *extra]


def test_the_runtime_appends_the_summary_of_a_step_that_ran_and_of_its_cache_hit(tmp_path, summary):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 1000)
    root = tmp_path / "store"
    argv = _argv(root, "_summary_step", "train", "--const", f"model_dir={encode_constant(json.dumps(str(model)))}",
                 "--output", "model", "--output", "stats", "--output", "scores")
    assert main(argv) == 0
    meta = json.loads((root / "p" / "runs" / "r1" / "train" / "meta.json").read_text())
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step's summary\n")  # appended, never overwritten
    parsed = _render(text)
    outputs, artifact_meta, step_meta, run_meta = parsed.tables
    scores = meta["outputs"]["scores"]
    assert outputs[2] == ["scores", f"Metrics ({scores['type']})", scores["materializer"],
                          f"file://{root}/p/runs/r1/train/{scores['file']}", str(scores["size"]), scores["sha256"]]
    assert artifact_meta[1:] == [["scores: split", "test | *all*"], ["scores: accuracy (metric)", "0.93"]]
    assert [outputs[1], outputs[3]] == [
        ["model", "directory", "path", f"file://{root}/p/runs/r1/train/{meta['outputs']['model']['file']}", "1000",
         meta["outputs"]["model"]["sha256"]],
        ["stats", "dict", "json", f"file://{root}/p/runs/r1/train/{meta['outputs']['stats']['file']}",
         str(meta["outputs"]["stats"]["size"]), meta["outputs"]["stats"]["sha256"]]]
    assert step_meta[1:] == [["accuracy", "0.93"], ["note", "a | b\\n| c |"]]
    assert run_meta[1:] == [["dataset", "<b>v2</b>"]]

    summary.write_text("", encoding="utf-8")
    assert main([a if a != "r1" else "r2" for a in argv]) == 0
    cached = summary.read_text(encoding="utf-8")
    assert "from the cache: run r1, step train" in cached.replace("\\", "")
    assert _render(cached).tables[2][1:] == step_meta[1:]  # the metadata of the try that made the outputs


def test_a_failed_step_still_shows_what_it_logged(tmp_path, summary):
    assert main(_argv(tmp_path / "store", "_failing_step", "fit", "--output", "n")) == 1
    text = summary.read_text(encoding="utf-8")
    assert "failed" in text
    assert _render(text).tables[0][1:] == [["seen", "before the error"]]


def test_without_github_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    with tempfile.TemporaryDirectory() as cwd:
        monkeypatch.chdir(cwd)
        assert main(_argv(tmp_path / "store", "_failing_step", "fit", "--output", "n")) == 1
        assert list(Path(cwd).iterdir()) == []
