"""Virtualenvs of their own for engine software that cannot share the project's (Airflow 2, SkyPilot).

Made on first use inside the project's venv (``<sys.prefix>/<name>``, so ``make clean`` removes them with it),
with uv when the project venv has it, and rebuilt when the requirements change. A lock keeps two test
processes from building one at once.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

INSTALL_TIMEOUT = 900  # seconds: creating the venv and installing a few hundred wheels on a cold cache


def side_venv(name: str, requirements: Sequence[str]) -> Path:
    """The interpreter of the venv ``name`` holding ``requirements``, creating it if need be."""
    folder = Path(sys.prefix) / name
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    wanted = "\n".join(requirements) + "\n"
    with open(Path(sys.prefix) / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != wanted:
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=INSTALL_TIMEOUT)
            uv = Path(sys.prefix) / "bin" / "uv"
            installer = ([str(uv), "pip", "install", "--quiet", "--python", str(python)] if uv.exists()
                         else [str(python), "-m", "pip", "install", "--quiet"])
            subprocess.run([*installer, *requirements], check=True, timeout=INSTALL_TIMEOUT)
            stamp.write_text(wanted)
    return python
