"""A Python interpreter with Airflow 2.10 installed, for the tests of ``--set airflow_version=2``.

Airflow 2 and Airflow 3 cannot share a virtualenv, so these tests run Airflow 2.10.5 in one of its own
(``<project venv>/airflow2-venv``, about 20 s with uv and 400 MB; see ``tests/helpers/side_venv.py``).
``PIPECAST_AIRFLOW2_PYTHON`` points at another interpreter that has Airflow 2.10 instead. The DAG files'
tasks run pipecast from this source tree (``PYTHONPATH``), never an installed copy, so the venv holds only
Airflow and what pipecast's runtime imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers.side_venv import side_venv

# The newest Airflow 2 and the Kubernetes provider our Airflow 2 DAG files import; pinned so that the
# proof does not drift with new releases.
REQUIREMENTS = ("apache-airflow==2.10.5", "apache-airflow-providers-cncf-kubernetes==10.10.0",
                "fsspec", "PyYAML", "click", "rich", "jinja2")


def airflow2_python() -> Path:
    """The interpreter of the Airflow 2 virtualenv, creating it if need be."""
    explicit = os.environ.get("PIPECAST_AIRFLOW2_PYTHON")
    return Path(explicit) if explicit else side_venv("airflow2-venv", REQUIREMENTS)
