"""A Python interpreter with SkyPilot installed, for the tests that need SkyPilot's own code.

SkyPilot 0.14.1 cannot share the project's virtualenv: it pins ``uvicorn<0.36`` while Airflow 3 needs
``uvicorn>=0.37`` (and it pins ``click<8.2`` and ``bcrypt==4.0.1``). So ``pipecast[skypilot]`` stays
out of ``pipecast[all]`` and these tests run SkyPilot in a virtualenv of its own, made here the first
time (``<project venv>/skypilot-venv``, about 330 MB; ``make clean`` removes it with the project venv) and
reused after. ``PIPECAST_SKYPILOT_PYTHON`` points at another interpreter that has SkyPilot instead.
The snippets run there import pipecast from this source tree (``PYTHONPATH``), never an installed copy.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.cases import env_with_cases

SKYPILOT_REQUIREMENT = "skypilot==0.14.1"
INSTALL_TIMEOUT = 900  # seconds: creating the venv and installing ~100 wheels on a cold cache


def venv_dir() -> Path:
    return Path(sys.prefix) / "skypilot-venv"


def sky_python() -> str:
    """The interpreter to run SkyPilot with, installing SkyPilot into its own venv if need be."""
    explicit = os.environ.get("PIPECAST_SKYPILOT_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("sky") is not None:
        return sys.executable
    folder = venv_dir()
    python = folder / "bin" / "python"
    stamp = folder / f".installed-{SKYPILOT_REQUIREMENT}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".skypilot-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build it at once
        if not stamp.exists():
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=INSTALL_TIMEOUT)
            uv = Path(sys.prefix) / "bin" / "uv"
            installer = ([str(uv), "pip", "install", "--quiet", "--python", str(python)] if uv.exists()
                         else [str(python), "-m", "pip", "install", "--quiet"])
            subprocess.run([*installer, SKYPILOT_REQUIREMENT, "fsspec"], check=True, timeout=INSTALL_TIMEOUT)
            stamp.write_text(SKYPILOT_REQUIREMENT + "\n")
    return str(python)


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
