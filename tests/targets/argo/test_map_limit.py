"""Maps over list parameters on Argo: Argo counts no items (workflow/controller/dag.go expandTask expands every one),
so a large list compiles and submits; what bounds it is the one container argument pipecast passes it in
(``--argo-flow-param NAME=list:TEXT``, Linux's MAX_ARG_STRLEN), checked at compile (the default) and at submit
(the values) by pipecast/targets/map_limits.py. The argument as emitted is what ``flow_param_bytes`` measures."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from pipecast.cli import main
from pipecast.compiler import ir
from pipecast.errors import ParameterError
from pipecast.runtime.params import render_parameter
from pipecast.targets.argo_maps import MAX_ARG_TEXT, flow_param_bytes
from pipecast.targets.map_limits import check_values
from pipecast.targets.registry import get_target
from tests.unit import map_limit_pipelines

PIPELINES = "tests/unit/map_limit_pipelines.py"
SETTINGS = {"artifact_root": "s3://bucket/pipecast", "image": "ghcr.io/acme/ml:1"}


def _compile(pipeline, out):
    args = ["compile", f"{PIPELINES}:{pipeline}", "-t", "argo", "--out", str(out)]
    for key, value in SETTINGS.items():
        args += ["--set", f"{key}={value}"]
    return CliRunner().invoke(main, args)


def test_a_large_list_parameter_compiles_and_is_passed_as_one_argument(tmp_path):
    result = _compile("many_ints", tmp_path / "out")  # 10,000 items: past GitHub's 256, Airflow's 1,024
    assert result.exit_code == 0, result.output
    documents = [d for f in sorted((tmp_path / "out").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    templates = [t for d in documents for t in (d.get("spec") or {}).get("templates", [])]
    args = [a for t in templates for a in (t.get("container") or {}).get("args", [])]
    # Every task of the map gets the list as this one argument; Argo substitutes the Workflow's parameter text.
    assert "items=list:{{workflow.parameters.items}}" in args
    values = [p["value"] for d in documents for p in ((d.get("spec") or {}).get("arguments") or {})
              .get("parameters", []) if p["name"] == "items"]
    assert values and values[0] == render_parameter(ir.TypeName.LIST, list(range(10_000)))
    assert len(f"items=list:{values[0]}".encode()) == flow_param_bytes("items", list(range(10_000))) == 58_901


def test_a_list_past_one_pod_argument_fails_the_compile(tmp_path):
    result = _compile("too_many_ints", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert ("map 'map_1' iterates the default of parameter 'items', 163901 bytes as its container argument; Argo "
            "bounds no map's items, but pipecast passes the list to the map's tasks as one container argument, and "
            "Linux takes at most 131072 bytes per argument (MAX_ARG_STRLEN, with its NUL)") in result.output
    assert "pass large data as a step's output, and map over that" in result.output


def test_submit_checks_the_values_to_the_byte():
    pipeline = map_limit_pipelines.short_default.build()
    argo = get_target("argo")
    room = MAX_ARG_TEXT - flow_param_bytes("items", [""])
    check_values(pipeline, argo, SETTINGS, {"items": ["a" * room]})  # exactly MAX_ARG_STRLEN with its NUL
    check_values(pipeline, argo, SETTINGS, {"items": list(range(20_000))})  # 20,000 items pass
    with pytest.raises(ParameterError, match="iterates the value of parameter 'items', 131072 bytes as its "
                                             "container argument"):
        check_values(pipeline, argo, SETTINGS, {"items": ["a" * (room + 1)]})
