"""GitHub Actions spellings shared by the workflow and its jobs: escaped literals, env and artifact names."""

from __future__ import annotations

import base64
import re

from pipecast.compiler import ir
from pipecast.runtime.params import render_parameter

RUN_ID_INPUT = "pipecast_run_id"  # the correlation input `pipecast submit` sets and `run-name` shows
LOCAL_ROOT = "${{ runner.temp }}/pipecast-artifacts"  # where a job keeps artifacts when none is remote


def literal(text: str) -> str:
    """``text`` for a field GitHub evaluates as a template: every ``${{`` becomes an expression that yields it."""
    return text.replace("${{", "${{ '${{' }}")


def encoded(text: str) -> str:
    """``text`` as base64 of its UTF-8: a value no number of template evaluations can change."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_line(variable: str, source: str) -> list[str]:
    """Bash lines that set ``variable`` to the text base64-encoded in ``source`` (trailing newlines kept)."""
    return [f'{variable}="$(printf %s "${{{source}}}" | base64 -d && printf .)"',
            f'{variable}="${{{variable}%.}}"']


def workflow_path(pipeline: ir.Pipeline) -> str:
    """Where the workflow lives in the repository."""
    return f".github/workflows/{pipeline.name}.yml"


def param_env(param: ir.Parameter) -> str:
    """The job environment variable that holds ``param``'s value."""
    return f"PIPECAST_PARAM_{param.name.upper()}"


def default_env(param: ir.Parameter) -> str:
    """The environment variable holding ``param``'s default, used when a scheduled run has no inputs."""
    return f"PIPECAST_DEFAULT_{param.name.upper()}"


def withheld_default(param: ir.Parameter) -> bool:
    """Whether the parameter's default stays out of the input's ``default:`` (it holds ``${{``).

    Linters evaluate ``${{`` in an input's default as an expression, so such a default is never written
    there: the input gets none, and the job's script uses the default (from ``env:``, base64) when the
    input arrives empty.
    """
    return not param.required and "${{" in render_parameter(param.type, param.default)


def secret_name(secret: ir.SecretRef) -> str:
    """The GitHub secret a reference names: ``name`` (plus ``_key``), upper-cased, non-alphanumerics as ``_``."""
    raw = f"{secret.name}_{secret.key}" if secret.key else secret.name
    return re.sub(r"[^A-Za-z0-9_]", "_", raw).upper()


def title_prefix(pipeline: ir.Pipeline) -> str:
    """The fixed start of every run's title: the pipeline's name and its tags (GitHub runs have no tags)."""
    tags = [tag for tag in pipeline.tags if tag.isprintable()]
    return f"{pipeline.name} [{', '.join(tags)}]" if tags else pipeline.name


def run_title(pipeline: ir.Pipeline, run_id: str) -> str:
    """The title (``run-name``) of a run dispatched with ``run_id``: how submit finds it."""
    return f"{title_prefix(pipeline)} ({run_id})"


def artifact_name(job_id: str) -> str:
    """The name of the GitHub artifact that holds the outputs of job ``job_id``."""
    return f"pipecast-{job_id}"
