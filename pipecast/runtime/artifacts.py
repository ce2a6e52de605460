"""The artifact store: a URI root (``file://``, ``s3://``, ``gs://``, ``az://``) reached through fsspec.

Layout under the root::

    <pipeline>/runs/<run_id>/<step>/meta.json            # written last: the step's commit record
    <pipeline>/runs/<run_id>/<step>/outputs/<name>.<ext>
    <pipeline>/cache/<cache_key>.json                    # points at the run step that produced it
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from functools import lru_cache
from typing import Any

from pipecast.errors import ArtifactError
from pipecast.runtime.checks import check_path_name

DEFAULT_ROOT = "~/.pipecast/artifacts"


def pipecast_home() -> str:
    """``$PIPECAST_HOME`` or ``~/.pipecast``: where local state lives."""
    return os.path.expanduser(os.environ.get("PIPECAST_HOME") or "~/.pipecast")


def default_root() -> str:
    """The artifact root for local runs: ``$PIPECAST_HOME/artifacts``."""
    return os.path.join(pipecast_home(), "artifacts")


def safe_segment(text: str) -> str:
    """A path segment made from an engine's run id or a name (``/``, ``:`` and the like become ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", text)
    return cleaned if cleaned not in ("", ".", "..") else "_"


def expand_root(root: str) -> str:
    """Expand ``~`` and ``$VARS`` in a local root; remote URIs are returned unchanged."""
    if "://" in root and not root.startswith("file://"):
        return root
    path = root[len("file://"):] if root.startswith("file://") else root
    return "file://" + os.path.abspath(os.path.expandvars(os.path.expanduser(path)))


@lru_cache(maxsize=16)
def _filesystem(root: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(root)
    except (ImportError, ValueError) as err:
        scheme = root.split("://", 1)[0]
        package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(scheme, "")
        hint = f"; install it with: python -m pip install {package}" if package else ""
        raise ArtifactError(f"artifact root {root!r} needs a filesystem that is not available ({err}){hint}") from err
    return fs, path.rstrip("/")


class ArtifactStore:
    """Reads and writes a pipeline's artifacts under one root."""

    def __init__(self, root: str) -> None:
        self.uri = expand_root(root)
        self.fs, self.root = _filesystem(self.uri)
        self.local = getattr(self.fs, "protocol", None) in ("file", ("file", "local"))

    def step_dir(self, pipeline: str, run_id: str, step: str) -> str:
        """The folder of one step of one run; names that would leave the root are refused."""
        check_path_name("step name", step)
        return self._inside(self.root, f"{self.run_dir(pipeline, run_id)}/{step}")

    def run_dir(self, pipeline: str, run_id: str) -> str:
        """The folder of one run (run ids are engine text: characters unsafe in paths become ``_``)."""
        check_path_name("pipeline name", pipeline)
        check_path_name("run id", run_id)
        return self._inside(self.root, f"{self.root}/{safe_segment(pipeline)}/runs/{safe_segment(run_id)}")

    def file_in(self, folder: str, relative: str) -> str:
        """``folder/relative``, refused unless it stays inside ``folder`` (a recorded file name is data)."""
        return self._inside(folder, f"{folder}/{relative}")

    @staticmethod
    def _inside(folder: str, path: str) -> str:
        # The last line of defence, whatever the store: paths are compared as normalised POSIX strings, which
        # is what fsspec's object stores use too ("bucket/key").
        if not posixpath.normpath(path).startswith(posixpath.normpath(folder).rstrip("/") + "/") or "\x00" in path:
            raise ArtifactError(f"path {path!r} leaves {folder!r}; refusing to read or write it")
        return path

    def cache_path(self, pipeline: str, key: str) -> str:
        """Where the cache entry for ``key`` is kept in the pipeline's folder; bad names are refused."""
        check_path_name("pipeline name", pipeline)
        check_path_name("cache key", key)
        return self._inside(self.root, f"{self.root}/{safe_segment(pipeline)}/cache/{key}.json")

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write atomically: a temporary file renamed into place (a single put on object stores)."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
            return
        self.fs.pipe_file(path, data)

    def read_bytes(self, path: str) -> bytes:
        """The content stored at ``path``; ArtifactError if there is none."""
        try:
            if self.local:
                with open(path, "rb") as handle:
                    return handle.read()
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            raise ArtifactError(f"artifact {path!r} does not exist") from None

    def write_json(self, path: str, value: Any) -> None:
        """Write ``value`` as JSON with sorted keys, atomically (see :meth:`write_bytes`)."""
        self.write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())

    def read_json(self, path: str) -> Any:
        """The JSON value stored at ``path``."""
        return json.loads(self.read_bytes(path))

    def exists(self, path: str) -> bool:
        """Whether something is stored at ``path``."""
        return os.path.exists(path) if self.local else bool(self.fs.exists(path))

    def copy(self, source: str, destination: str) -> None:
        """Copy what is stored at ``source`` to ``destination``, atomically."""
        self.write_bytes(destination, self.read_bytes(source))

    def url(self, path: str) -> str:
        """A URL for a path under the root (``file:///...`` locally)."""
        return f"file://{path}" if self.local else self.fs.unstrip_protocol(path)
