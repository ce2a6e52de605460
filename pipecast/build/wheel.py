"""A wheel of the running pipecast, to ship where that exact version is not on the package index.

Built here without a build backend or the network: the package's own files (the folder ``pipecast`` is
imported from, source tree or installed copy) and the distribution's installed metadata (``METADATA``,
``entry_points.txt``), zipped reproducibly (sorted, fixed times and modes), so the same code gives the
same bytes. ``python -m pipecast.build.wheel DIR`` writes it into ``DIR`` and prints its path.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pipecast
from pipecast.errors import PipecastError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build time in the bytes
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
_WHEEL = "Wheel-Version: 1.0\nGenerator: pipecast.build.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_name() -> str:
    """The file name of a wheel of this pipecast version (``pipecast-<version>-py3-none-any.whl``)."""
    return f"pipecast-{pipecast.__version__}-py3-none-any.whl"


def pipecast_wheel(dest_dir: str | Path) -> Path:
    """Build a wheel of the running pipecast into ``dest_dir`` (made if missing) and return its path."""
    package = Path(pipecast.__file__).resolve().parent
    try:
        distribution = importlib.metadata.distribution("pipecast")
    except importlib.metadata.PackageNotFoundError:
        raise PipecastError("cannot build a wheel of pipecast: it is imported from a folder that is not installed "
                            f"({package}); install it, e.g. python -m pip install -e .") from None
    metadata = distribution.read_text("METADATA") or ""
    if f"\nVersion: {pipecast.__version__}\n" not in metadata:
        raise PipecastError(f"the installed pipecast metadata is not version {pipecast.__version__} ({package}); "
                            "reinstall pipecast from this source tree")
    dist_info = f"pipecast-{pipecast.__version__}.dist-info"
    entries = [(f"pipecast/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in _package_files(package)]
    entries += [(f"{dist_info}/METADATA", metadata.encode()), (f"{dist_info}/WHEEL", _WHEEL.encode())]
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    destination = Path(dest_dir)
    destination.mkdir(parents=True, exist_ok=True)
    path = destination / wheel_name()
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    partial.replace(path)
    return path


def _package_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and p.suffix not in _SKIPPED_SUFFIXES
                  and not _SKIPPED_DIRS.intersection(p.relative_to(package).parts))


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


if __name__ == "__main__":
    print(pipecast_wheel(sys.argv[1] if len(sys.argv) > 1 else "."))
