"""The shared dumper writes the same bytes with libyaml's emitter and with PyYAML's pure-Python one."""

from __future__ import annotations

import pytest
import yaml

from pipecast.errors import ValidationError
from pipecast.targets import serialize
from pipecast.targets.registry import target_paths
from tests.helpers.cases import CASE_IDS, CASES, compile_case


class PurePythonDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


PurePythonDumper.add_representer(str, serialize._str)


def emit_all(case):
    pipeline = case.build()
    files = {}
    for target in target_paths():
        try:
            files[target] = compile_case(target, pipeline, golden=True).bundle.files
        except ValidationError as err:
            files[target] = str(err)
    return files


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_both_emitters_write_the_same_bytes(case, monkeypatch):
    fast = emit_all(case)
    monkeypatch.setattr(serialize, "_Dumper", PurePythonDumper)
    assert emit_all(case) == fast


def test_tricky_strings_round_trip():
    doc = {"multi": "a\nb\n", "trailing": "a \nb", "number": "1e5", "octal": "0o17", "yes": "yes", "empty": "",
           "hostile": "a'b\"c\n{{ x }} ${{ y }} $(z) `id` \\", "list": ["on", "off", "null", "~"]}
    assert yaml.safe_load(serialize.dump_yaml(doc)) == doc


@pytest.mark.parametrize("data", [
    {}, [], "text", None, {"a": [1, 2.5, None, True, "caf\u00e9\n\"x\""], "b": {}, "c": [[]]},
    {"steps": [{"name": f"s{i}", "args": ["--k", str(i)], "nested": {"x": [i, None]}} for i in range(3_000)]},
], ids=["empty-dict", "empty-list", "str", "null", "mixed", "many-pieces"])
def test_json_is_json_dumps_bytes_joined_in_chunks(data):
    import json

    assert serialize.dump_json(data) == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
