"""What a SkyPilot VM gets of the pipeline's code: the workdir, and the setup that installs pipecast and the rest.

The ``workdir`` is the pipeline's import root (``examples/quickstart.py`` → ``examples``): SkyPilot syncs it to
``~/sky_workdir`` and runs ``setup`` and ``run`` there, so ``python3 -m pipecast.runtime`` imports the step
modules from it. SkyPilot reads a relative workdir from the folder ``sky`` is called in, so it is written
relative to the folder pipecast compiles in when the root is inside it (``pipecast submit`` launches from that
same folder; a YAML kept in a project stays portable), else as an absolute path.

``setup`` installs exactly the compiling pipecast, never an unpinned one: the wheel of the running pipecast that
``pipecast submit`` ships as a SkyPilot file mount (``~/.pipecast/pipecast-VERSION-py3-none-any.whl``) when the
package index has no such version or this pipecast is an editable install, else ``pipecast==VERSION`` from the
index. Then, in the same ``pip install``, the artifact store's fsspec backend, the pipeline's requirements
(``@pipeline(requirements=...)``, else the import root's ``requirements.txt``/``pyproject.toml``, as
``pipecast build`` reads them), the task's steps' ``@step(packages=...)`` and the ``pip_packages`` setting.
Emitting writes nothing: the wheel is made at submit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pipecast
from pipecast.build.context import module_root
from pipecast.build.plan import fsspec_backend, pipeline_requirements
from pipecast.compiler import ir
from pipecast.compiler.user_code import is_user_file
from pipecast.errors import SubmitError
from pipecast.targets.base import EmitContext
from pipecast.targets.skypilot.settings import SkyPilotSettings
from pipecast.targets.skypilot.shell import shell_word, var

WHEEL_DIR = ".pipecast"  # under the VM's home, where submit mounts the wheel of the running pipecast


def wheel_file() -> str:
    """The file name of the compiling pipecast's wheel."""
    return f"pipecast-{pipecast.__version__}-py3-none-any.whl"


def remote_wheel() -> str:
    """Where the shipped wheel lands on the VM (a SkyPilot ``file_mounts`` destination)."""
    return f"~/{WHEEL_DIR}/{wheel_file()}"


def code_root(pipeline: ir.Pipeline, context: EmitContext) -> Path | None:
    """The import root of the pipeline's own step modules; None when every step comes from an installed package."""
    roots: dict[Path, ir.Step] = {}
    for step in pipeline.steps:
        module = sys.modules.get(step.function.module)
        filename = getattr(module, "__file__", None)
        if filename and is_user_file(filename):
            roots.setdefault(module_root(step.function.module, filename), step)
    if len(roots) > 1:
        shown = ", ".join(f"{str(root)!r} (step {step.name!r})" for root, step in sorted(roots.items()))
        context.error(f"the steps' modules come from several import roots ({shown}); one SkyPilot workdir holds "
                      "one", fix="keep the step modules under one folder, or set working_directory= and install "
                                 "the others with requirements=")
    return next(iter(roots), None) if len(roots) == 1 else None


def workdir(root: Path | None, settings: SkyPilotSettings) -> str:
    """The task's ``workdir``: the setting when given, else the import root (relative to here when inside it)."""
    if settings.working_directory is not None:
        return settings.working_directory
    if root is None:
        return ""
    here = Path(os.getcwd()).resolve()
    resolved = root.resolve()
    return resolved.relative_to(here).as_posix() if resolved.is_relative_to(here) else str(resolved)


def setup_script(pipeline: ir.Pipeline, settings: SkyPilotSettings, artifact_root: str, root: Path | None,
                 packages: Sequence[str] = ()) -> str:
    """The task's ``setup``: pinned pipecast (shipped wheel first), the store's backend, the requirements.

    ``packages`` are the task's steps' own ``@step(packages=...)``, after the pipeline's requirements.
    """
    python = settings.python
    store = fsspec_backend(artifact_root)
    others = list(dict.fromkeys([*([store] if store else []), *pipeline_requirements(pipeline, root), *packages,
                                 *settings.pip_packages]))

    def install(*first: str) -> str:
        return " ".join(shell_word(w) for w in [python, "-m", "pip", "install", *first, *others])

    lines = ["set -euo pipefail"]
    if settings.pipecast_package is not None:
        lines.append(install(settings.pipecast_package))
    else:
        wheel = var("HOME") + f"/{WHEEL_DIR}/{wheel_file()}"
        lines += ["# Exactly the compiling pipecast: the wheel pipecast submit ships, else that version from the "
                  "index.",
                  f"if [ -f {shell_word(wheel)} ]; then",
                  "  " + install(wheel),
                  "else",
                  "  " + install(f"pipecast=={pipecast.__version__}"),
                  "fi"]
    if settings.requirements_file:
        lines.append(" ".join(shell_word(w) for w in [python, "-m", "pip", "install", "-r",
                                                      settings.requirements_file]))
    return "\n".join(lines) + "\n"


def pipecast_mount(pipeline: ir.Pipeline, setups: list[str]) -> dict[str, str]:
    """At submit: ``{remote: local}`` for the wheel of the running pipecast when the setup wants it shipped.

    The same rule as ``pipecast build``: the wheel unless the package index has this very version and this
    pipecast is no editable install (``settings={"build": {"pipecast_from": ...}}`` decides otherwise).
    """
    if not any(f"/{WHEEL_DIR}/{wheel_file()}" in setup for setup in setups):
        return {}  # the user's own pipecast_package
    import importlib.metadata

    from pipecast.build.images import cached_pipecast_wheel
    from pipecast.build.plan import pipecast_source
    from pipecast.build.settings import build_settings

    try:
        if not pipecast_source(build_settings(pipeline, {})).endswith(".whl"):
            return {}
        local = cached_pipecast_wheel()
    except importlib.metadata.PackageNotFoundError as err:
        raise SubmitError("pipecast runs from a source tree with no installed distribution, so no wheel of it can "
                          "be shipped to the VMs; install it (pip install -e .) or set pipecast_package=") from err
    if local.name != wheel_file():
        raise SubmitError(f"the installed pipecast's wheel is {local.name!r} but the code running is "
                          f"{pipecast.__version__}; reinstall pipecast")
    return {remote_wheel(): str(local)}
