"""A wheel of the running pipecast, for images and hosts where the package index has no such version.

The wheel is written here, not by a build backend: the package's own files (``pipecast/``, compiled files left
out) and the installed distribution's metadata (its version, dependencies and entry points, which the target
registry reads). Entries are sorted and carry a fixed date, so the same pipecast gives the same bytes, and an
image built from it the same tag.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import zipfile
from pathlib import Path

import pipecast

DISTRIBUTION = "pipecast"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def pipecast_version() -> str:
    """The version of the running pipecast, from its installed distribution."""
    return importlib.metadata.version(DISTRIBUTION)


def wheel_name() -> str:
    """The file name of the running pipecast's wheel (``pipecast-0.1.0-py3-none-any.whl``)."""
    return f"{DISTRIBUTION}-{pipecast_version()}-py3-none-any.whl"


def pipecast_dependencies() -> tuple[str, ...]:
    """What the running pipecast's distribution requires, extras left out, sorted."""
    requires = importlib.metadata.distribution(DISTRIBUTION).requires or []
    return tuple(sorted(r for r in requires if "extra ==" not in r.replace("extra==", "extra ==")))


def extra_requirements(extra: str) -> tuple[str, ...]:
    """What pipecast's extra ``extra`` adds (``kubernetes`` → ``kubernetes>=29``), pinned as the metadata pins it."""
    from packaging.requirements import Requirement

    found = []
    for text in importlib.metadata.distribution(DISTRIBUTION).requires or []:
        requirement = Requirement(text)
        if str(requirement.marker) == f'extra == "{extra}"':  # only what the extra alone adds, for every Python
            requirement.marker = None
            found.append(str(requirement))
    if not found:
        raise LookupError(f"pipecast {pipecast_version()} has no extra {extra!r}")
    return tuple(sorted(found))


def pipecast_wheel(dest_dir: str | os.PathLike[str]) -> Path:
    """Write a wheel of the running pipecast into ``dest_dir`` and return its path (reproducible bytes)."""
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    version = distribution.version
    info = f"{DISTRIBUTION}-{version}.dist-info"
    package = Path(pipecast.__file__).parent
    entries: list[tuple[str, bytes]] = []
    for folder, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(folder) / name
            entries.append((f"{DISTRIBUTION}/{path.relative_to(package).as_posix()}", path.read_bytes()))
    entries.sort()
    metadata = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}"]
    requires_python = distribution.metadata["Requires-Python"]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata += [f"Requires-Dist: {requirement}" for requirement in pipecast_dependencies()]
    entries.append((f"{info}/METADATA", ("\n".join(metadata) + "\n").encode()))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pipecast\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n"))
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = "".join(f"{name},sha256={_urlsafe_sha256(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    destination = Path(dest_dir) / f"{DISTRIBUTION}-{version}-py3-none-any.whl"
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            item = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    os.replace(temporary, destination)
    return destination


def _urlsafe_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
