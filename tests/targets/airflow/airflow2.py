"""A Python interpreter with Airflow 2.10 installed, for the tests of ``--set airflow_version=2``.

Airflow 2 and Airflow 3 cannot share a virtualenv, so these tests run Airflow 2.10.5 in one of its own,
made here the first time (``<project venv>/airflow2-venv``, about 20 s with uv and 400 MB; ``make clean``
removes it with the project venv) and reused after. ``PIPECAST_AIRFLOW2_PYTHON`` points at another
interpreter that has Airflow 2.10 instead. The DAG files' tasks run pipecast from this source tree
(``PYTHONPATH``), never an installed copy, so the venv holds only what pipecast's runtime imports.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The newest Airflow 2 and the Kubernetes provider our Airflow 2 DAG files import; pinned so that the
# proof does not drift with new releases.
REQUIREMENTS = ("apache-airflow==2.10.5", "apache-airflow-providers-cncf-kubernetes==10.10.0",
                "fsspec", "PyYAML", "click", "rich", "jinja2")
INSTALL_TIMEOUT = 900  # seconds: creating the venv and installing ~200 wheels on a cold cache


def airflow2_python() -> Path:
    """The interpreter of the Airflow 2 virtualenv, creating it if need be."""
    explicit = os.environ.get("PIPECAST_AIRFLOW2_PYTHON")
    if explicit:
        return Path(explicit)
    folder = Path(sys.prefix) / "airflow2-venv"
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    with open(Path(sys.prefix) / ".airflow2-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build it at once
        if not stamp.exists() or stamp.read_text() != wanted:
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=INSTALL_TIMEOUT)
            uv = Path(sys.prefix) / "bin" / "uv"
            installer = ([str(uv), "pip", "install", "--quiet", "--python", str(python)] if uv.exists()
                         else [str(python), "-m", "pip", "install", "--quiet"])
            subprocess.run([*installer, *REQUIREMENTS], check=True, timeout=INSTALL_TIMEOUT)
            stamp.write_text(wanted)
    return python
