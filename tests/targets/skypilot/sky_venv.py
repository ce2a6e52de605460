"""A Python interpreter with SkyPilot installed, for the tests that need SkyPilot's own code.

SkyPilot 0.14.1 cannot share the project's virtualenv: it pins ``uvicorn<0.36`` while Airflow 3 needs
``uvicorn>=0.37`` (and it pins ``click<8.2`` and ``bcrypt==4.0.1``). So ``pipecast[skypilot]`` stays
out of ``pipecast[all]`` and these tests run SkyPilot in a virtualenv of its own, made here the first
time (``<project venv>/skypilot-venv``, about 330 MB; see ``tests/helpers/side_venv.py``) and reused after.
``PIPECAST_SKYPILOT_PYTHON`` points at another interpreter that has SkyPilot instead.
The snippets run there import pipecast from this source tree (``PYTHONPATH``), never an installed copy.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.cases import env_with_cases
from tests.helpers.side_venv import side_venv

SKYPILOT_REQUIREMENT = "skypilot==0.14.1"


def sky_python() -> str:
    """The interpreter to run SkyPilot with, installing SkyPilot into its own venv if need be."""
    explicit = os.environ.get("PIPECAST_SKYPILOT_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("sky") is not None:
        return sys.executable
    return str(side_venv("skypilot-venv", (SKYPILOT_REQUIREMENT, "fsspec")))


def run_sky(python: str, script: Path, *args: str, home: Path, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with SkyPilot's interpreter; ``HOME`` is a temporary folder (SkyPilot writes ~/.sky)."""
    full_env = env_with_cases()
    for key in list(full_env):
        if key.startswith("SKYPILOT_"):
            del full_env[key]  # the developer's own API server settings must not leak into the tests
    full_env.update({"HOME": str(home), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"})
    full_env.update(env or {})
    result = subprocess.run([python, str(script), *args], env=full_env, capture_output=True, text=True,
                            timeout=timeout, cwd=str(home))
    assert result.returncode == 0, f"{script.name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result
