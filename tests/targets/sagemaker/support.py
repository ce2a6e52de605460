"""Compiling golden cases for the sagemaker target in tests."""

from __future__ import annotations

import json
from typing import Any

from pipecast.compiler import ir
from pipecast.flow import EmitOptions, compile_pipeline
from pipecast.targets.base import Bundle
from tests.helpers.cases import case, golden_settings

SETTINGS = golden_settings("sagemaker")


def compile_ir(pipeline: ir.Pipeline, on_unsupported: str = "error", **settings: Any) -> Bundle:
    """Compile with the golden settings, overridden by ``settings``."""
    return compile_pipeline(pipeline, "sagemaker",
                            EmitOptions(settings={**SETTINGS, **settings}, on_unsupported=on_unsupported))


def compile_case(name: str, on_unsupported: str = "error", **settings: Any) -> Bundle:
    return compile_ir(case(name).build(), on_unsupported, **settings)


def definition(bundle: Bundle) -> dict[str, Any]:
    """The parsed pipeline definition of a bundle."""
    return json.loads(bundle[bundle.main_file])
