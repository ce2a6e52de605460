"""The YAML writer (pipecast/targets/yaml_emit.py) writes PyYAML's bytes, and what it writes reads back the same
with PyYAML (YAML 1.1) and ruamel.yaml (YAML 1.2), hostile strings included: random documents by hypothesis."""

from __future__ import annotations

import io
import math

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from pipecast.targets import serialize
from pipecast.targets.yaml_emit import Unsupported, Writer

# Strings a reader could take for something else, or that change a document's structure if written bare.
HOSTILE = [
    "on", "off", "yes", "no", "y", "n", "Y", "ON", "true", "False", "null", "Null", "~", "", " ", "  ",
    "1", "-1", "+1", "0", "007", "0o17", "0x1F", "0b101", "1_000", "1e5", "1E+5", "1.5", ".5", "-.5", "1.", ".inf",
    "-.Inf", ".nan", "12:30", "190:20:30", "2026-12-03", "2026-12-03T08:30:00Z", "<<", "=",
    "{{ x }}", "{{$.inputs.parameters['a']}}", "${{ secrets.X }}", "$(whoami)", "`id`", "%TAG", "@x", "&a", "*a",
    "!tag", "|", ">", "#", "a #b", "a#b", "# c", "a: b", "a:b", "a:", ":a", ": a", "- a", "-", "-a", "?", "? a",
    "---", "...", "--- x", "'", "''", '"', "a'b\"c", "[1, 2]", "{a: 1}", "a,b", "\\", "\\n",
    " lead", "trail ", "\ttab", "tab\t", "é", "日本語", "emoji 🎉", "\u2028", "\x85", "\ufeff", "\x00", "\x1b[0m",
    "a\nb", "a\n", "a\n\n", "\n", "\na", "a \nb", "a\n b", "a\r\nb", "key: value\n- item\n",
]
WORD = st.text(alphabet=st.sampled_from("abcxyz019:#'\"-{}$ .é"), min_size=1, max_size=12)
TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.from_regex(r"[!-~]{1,30}", fullmatch=True),
    st.lists(WORD, min_size=1, max_size=40).map(" ".join),  # long lines PyYAML folds at width 120
    st.lists(st.sampled_from(HOSTILE + ["word"] * 5), max_size=8).map("\n".join),
)
KEY = st.one_of(st.sampled_from(HOSTILE), st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.-]{0,20}", fullmatch=True),
                st.text(max_size=20), st.text(min_size=95, max_size=130))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
DOCUMENT = st.recursive(
    SCALAR, lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(KEY, children, max_size=5)),
    max_leaves=40,
)
PLAIN_KEY = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.-]{0,20}", fullmatch=True)
# a "|+" block (text ending in two line breaks) is left to PyYAML: at a stream's end it may add "..."
OURS_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        TEXT.filter(lambda text: not text.endswith("\n\n") and text != "\n"))
OURS = st.recursive(
    OURS_SCALAR,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(PLAIN_KEY, children, max_size=5)),
    max_leaves=40,
)
ROOT = st.one_of(st.dictionaries(KEY, DOCUMENT, max_size=6), st.lists(DOCUMENT, max_size=6))
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def yaml12(text: str) -> object:
    reader = YAML(typ="safe", pure=True)
    return list(reader.load_all(io.StringIO(text)))


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to itself and ints not taken for bools."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


@PROPERTY
@given(ROOT)
def test_writes_pyyamls_bytes(document):
    assert serialize.dump_yaml(document) == serialize.pyyaml_dump(document)


@PROPERTY
@given(st.lists(ROOT, min_size=1, max_size=3))
def test_writes_pyyamls_bytes_for_several_documents(documents):
    assert serialize.dump_yaml_all(documents) == serialize.pyyaml_dump_all(documents)


@PROPERTY
@given(ROOT)
@example({"on": "._"})  # ruamel's 1.2 resolver reads "._" as a float: such strings are quoted
def test_reads_back_the_same_with_yaml_1_1_and_1_2(document):
    text = serialize.dump_yaml(document)
    assert same(yaml.safe_load(text), document)
    assert same(yaml12(text)[0], document)


@PROPERTY
@given(st.dictionaries(PLAIN_KEY, OURS, min_size=1, max_size=6))
def test_documents_shaped_like_ours_take_the_fast_way(document):
    """Plain-keyed mappings (every target's shape) are written by the writer itself, not handed to PyYAML."""
    assert Writer(serialize.str_style, serialize.pyyaml_dump).document(document) == serialize.pyyaml_dump(document)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_stay_strings_in_every_position(value):
    document = {"value": value, "list": [value, [value]], "nested": {"k": {"deeper": value}}, "item": [{"k": value}]}
    if value and "\n" not in value and len(value) < 50:
        document[value] = value  # as a key too
    text = serialize.dump_yaml(document)
    assert text == serialize.pyyaml_dump(document)
    assert yaml.safe_load(text) == document
    assert yaml12(text)[0] == document


def test_what_it_leaves_to_pyyaml():
    writer = Writer(serialize.str_style, serialize.pyyaml_dump)
    for document in ({}, [], "scalar", {1: "int key"}, {"k" * 100: 1}, {"a\nb": 1}, {"t": (1, 2)},
                     {"keep": "a\n\n"}):
        with pytest.raises(Unsupported):
            writer.document(document)
        assert serialize.dump_yaml(document) == serialize.pyyaml_dump(document)


@pytest.mark.parametrize("length", range(100, 131, 3))
def test_spaced_text_at_the_fold_width(length):
    """Printable ASCII with spaces is written by the writer while its line ends within 120 columns, and by the
    dumper (which folds it) past that: both as PyYAML writes them, at every depth."""
    text = ("ab " * 50)[:length].strip() + " z"
    document = {"k": text, "deeper": {"key": [text, {"x": text}]}, "quoted": "'" + text, "colon": text + ": x"}
    assert serialize.dump_yaml(document) == serialize.pyyaml_dump(document)


SCRIPT_LINE = st.one_of(st.just(""), st.from_regex(r"[!-~]([ -~]{0,130}[!-~])?", fullmatch=True),
                        st.from_regex(r" {1,6}[!-~]{1,20}", fullmatch=True))
SCRIPT = st.lists(SCRIPT_LINE, min_size=2, max_size=8).map("\n".join).filter(lambda text: "\n" in text)


@PROPERTY
@given(SCRIPT, st.booleans(), st.integers(min_value=0, max_value=4))
def test_ascii_scripts_are_written_as_blocks_without_the_dumper(script, final_break, depth):
    """Multi-line printable ASCII (every target's scripts) is written as a ``|`` block by the writer itself,
    at every depth, as a mapping value and as a list item; what needs a hint stays with the dumper."""
    text = script + "\n" if final_break else script
    assume(not text.endswith("\n\n") and text != "\n")  # "|+": the whole document goes to PyYAML (above)
    node: object = {"run": text, "steps": [text, {"with": text}]}
    for level in range(depth):
        node = {f"level{level}": node}
    document = {"jobs": node}
    probes: list[object] = []

    def dump(data: object) -> str:
        probes.append(data)
        return serialize.pyyaml_dump(data)

    assert Writer(serialize.str_style, dump).document(document) == serialize.pyyaml_dump(document)
    needs_hint = text[0] in " \n" or text.endswith("\n\n")
    assert bool(probes) == needs_hint
