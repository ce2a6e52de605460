"""Hostile step and output names put into a built IR, to test the targets' own defences.

Tracing refuses such names (pipecast's one name rule), but an IR read from JSON could still carry them,
and every target must keep a name data whatever it holds; these tests rename after building.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pipecast.compiler import ir


def renamed(pipeline: ir.Pipeline, steps: Mapping[str, str],
            outputs: Mapping[tuple[str, str], str] | None = None) -> ir.Pipeline:
    """``pipeline`` with steps renamed (old → new) and outputs renamed (``(old step, old output)`` → new),
    every reference to them (bindings, ``after`` edges, pipeline outputs) renamed too."""
    outputs = dict(outputs or {})

    def step_name(name: str | None) -> str | None:
        return steps.get(name, name) if name is not None else None

    def output_name(step: str | None, output: str | None) -> str | None:
        return outputs.get((step or "", output or ""), output)

    def binding(b: ir.Binding) -> ir.Binding:
        if b.kind is not ir.BindingKind.OUTPUT:
            return b
        return dataclasses.replace(b, step=step_name(b.step), output=output_name(b.step, b.output))

    new_steps = tuple(
        dataclasses.replace(
            s, name=steps.get(s.name, s.name), after=tuple(steps.get(a, a) for a in s.after),
            bindings=tuple(binding(b) for b in s.bindings),
            outputs=tuple(dataclasses.replace(o, name=outputs.get((s.name, o.name), o.name)) for o in s.outputs),
        )
        for s in pipeline.steps
    )
    new_outputs = tuple(dataclasses.replace(o, step=steps.get(o.step, o.step),
                                            output=outputs.get((o.step, o.output), o.output))
                        for o in pipeline.outputs)
    return dataclasses.replace(pipeline, steps=new_steps, outputs=new_outputs)
