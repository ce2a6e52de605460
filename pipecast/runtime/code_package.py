"""The runtime side of ``package`` code delivery: fetch, verify, extract and import the code package.

Before the step's import, ``--code-sha256 H`` makes the runtime read the archive from the artifact store
(``ARTIFACT_ROOT/.pipecast/code/H.tar.gz``, under the task's own artifact root as the engine gives it, so a
root mounted at another path in the task is found; ``--code-package URI`` names another place), refuse it
unless its sha256 is ``H``, extract it into ``<cache>/<H>`` (a temporary folder renamed into place, so a
half-extracted package is never used and tasks on one host share it), and put that folder first on
``sys.path``. A folder of that name is only ever made from bytes that had the sha256 it is named by, so a
later task on the host uses it without downloading again.

The cache is ``$PIPECAST_CODE_CACHE``, else ``$PIPECAST_HOME/code`` (``~/.pipecast/code``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile

from pipecast.errors import ArtifactError, CodeMismatchError, PipecastError

_SHA256 = re.compile(r"[0-9a-f]{64}")
PACKAGE_FOLDER = ".pipecast/code"  # under the artifact root; pipecast.build.package uploads there


def cache_root() -> str:
    """Where extracted code packages are kept on this host (a temporary folder when home is not writable)."""
    from pipecast.runtime.artifacts import pipecast_home

    chosen = os.path.abspath(os.path.expanduser(os.environ.get("PIPECAST_CODE_CACHE") or
                                                os.path.join(pipecast_home(), "code")))
    try:
        os.makedirs(chosen, exist_ok=True)
    except OSError:  # a container user with no home of its own (docker run --user UID:GID)
        chosen = os.path.join(tempfile.gettempdir(), f"pipecast-code-{os.getuid() if hasattr(os, 'getuid') else 0}")
    return chosen


def activate(artifact_root: str, sha256: str, *, uri: str | None = None, cache: str | None = None) -> str:
    """Make the code package ``sha256`` importable (first on ``sys.path``); return its folder.

    Args:
        artifact_root: The task's artifact root: the package is ``.pipecast/code/<sha256>.tar.gz`` under it.
        sha256: The package's sha256, as compiled.
        uri: Where the package is, when not under the artifact root.
        cache: The cache folder (default: :func:`cache_root`).
    """
    if not _SHA256.fullmatch(sha256 or ""):
        raise PipecastError(f"--code-sha256 {sha256!r} is not a sha256 (64 lowercase hex digits); the task "
                            "command is damaged; fix: compile and submit again")
    if uri is None:
        from pipecast.runtime.artifacts import ArtifactStore

        store = ArtifactStore(artifact_root)
        uri = store.url(f"{store.root}/{PACKAGE_FOLDER}/{sha256}.tar.gz")
    folder = os.path.join(cache or cache_root(), sha256)
    if not os.path.isdir(folder):
        _extract(_download(uri, sha256), folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return folder


def _download(uri: str, sha256: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        raise ArtifactError(f"code package {uri!r} does not exist: it is uploaded by submit; fix: submit again "
                            "(or upload it with the compiled files)") from None
    except (ImportError, ValueError, OSError) as err:
        raise ArtifactError(f"cannot read code package {uri!r}: {err}") from err
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise CodeMismatchError(f"code package {uri!r} has sha256 {actual}, but the task was compiled for sha256 "
                                f"{sha256}: it changed after submit, so it is not run; fix: delete it and submit "
                                "again (a package is uploaded only when none of its name is there)")
    return data


def _extract(data: bytes, folder: str) -> None:
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.", dir=parent)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:  # a package holds plain files only, inside its folder (any Python version)
                parts = member.name.split("/")
                if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
                    raise ArtifactError(f"code package member {member.name!r} is not a plain file inside the "
                                        "package; refusing to extract it")
            tar.extractall(staging, members=members)
        try:
            os.rename(staging, folder)
        except OSError:
            if not os.path.isdir(folder):  # another task on this host won the race: its folder is the same
                raise
    except (tarfile.TarError, OSError) as err:
        raise ArtifactError(f"cannot extract the code package into {parent!r}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
