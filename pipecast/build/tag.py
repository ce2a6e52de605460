"""The image tag: a hash of everything that goes into the image.

That is the build context — the Dockerfile (parent image, apt packages, the steps' requirements, pipecast's
version), the shipped wheels, pipecast's own wheel and the code when it is baked in — and the parent image's id
where the builder knows it, so a moved parent tag gives a new image. Same inputs, same tag: an image already
in the registry under it is not built again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

TAG_LENGTH = 32  # hex digits of sha256: collisions are not a practical concern, names stay readable


def tree_digest(folder: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of every file under ``folder``: path, executable bit, content (mtimes left out)."""
    base = Path(folder)
    total = hashlib.sha256()
    paths = sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file() or p.is_symlink())
    for relative in paths:
        path = base / relative
        if path.is_symlink():
            kind, content = b"l", os.readlink(path).encode()
        else:
            kind, content = (b"x" if path.stat().st_mode & stat.S_IXUSR else b"f"), path.read_bytes()
        total.update(b"%s %s %s\n" % (kind, relative.encode(), hashlib.sha256(content).hexdigest().encode()))
    return total.hexdigest()


def image_tag(context_digest: str, parent_id: str) -> str:
    """The tag of an image built from a context with ``context_digest`` on the parent ``parent_id``."""
    return hashlib.sha256(f"pipecast-image-v1\n{context_digest}\n{parent_id}\n".encode()).hexdigest()[:TAG_LENGTH]


def repository_name(name: str) -> str:
    """A pipeline name as a repository path component (lower case; ``_`` and ``.`` kept, others ``-``)."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name.lower()).strip("._-")
    return cleaned or "pipeline"
