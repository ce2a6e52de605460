"""``pipecast compile --out DIR``: pipecast owns the files it writes there, and only those.

A compile writes its files and a record of them, ``DIR/.pipecast/written/<target>/<pipeline>.json`` (each file's
relative path and sha256). The next compile of the same pipeline for the same target into DIR removes the files
of that record it no longer emits (a ``.code/`` module no longer shipped, a file a setting no longer asks for), so
DIR holds exactly what was compiled. It never touches a file it did not write: an existing file that no record
names, or that another pipeline's record names, is refused before anything is written; a stale file changed since
pipecast wrote it is left where it is, with a warning. DIR may be shared (an Airflow DAGs folder holds many
pipelines): each pipeline and target has its own record.

The same rule as every compile: a compile that fails leaves DIR as it was. Files are staged beside their
destination and moved into place with ``os.replace``; the record is written first as the union of the old and
the new files, so an interrupted compile leaves nothing unowned.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipecast.errors import OutputError

RECORDS = ".pipecast/written"
FORMAT = 1


@dataclass
class Written:
    """What a compile did to DIR: files written, stale files removed, stale files left because they changed."""

    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def write_owned(files: Iterable[tuple[str, str]], out_dir: str, *, target: str, pipeline: str) -> Written:
    """Write ``files`` (relative POSIX path, text) under ``out_dir`` as the compile of ``pipeline`` for ``target``."""
    files = list(files)
    new = {relative: _sha256(text.encode("utf-8")) for relative, text in files}
    records = _records(out_dir)
    own_record = _record_path(out_dir, target, pipeline)
    old = records.pop(own_record, (target, pipeline, {}))[2]
    _check_collisions(out_dir, new, old, records)
    staged = stage(files, out_dir)
    try:
        _write_record(own_record, target, pipeline, {**old, **new})  # the union: nothing unowned if interrupted
    except BaseException:
        discard(staged)
        raise
    commit(staged)
    result = Written(written=[destination for _, destination in staged])
    for relative in sorted(set(old) - set(new)):  # before the final record: an interruption leaves them owned
        path = _destination(out_dir, relative)
        if not os.path.isfile(path):
            continue
        if _file_sha256(path) != old[relative]:
            result.kept.append(path)
            continue
        os.unlink(path)
        _prune(os.path.dirname(path), out_dir)
        result.removed.append(path)
    _write_record(own_record, target, pipeline, new)
    return result


def stage(files: Iterable[tuple[str, str]], out_dir: str) -> list[tuple[str, str]]:
    """Write each file to a temporary beside its destination; on failure remove them and the folders made."""
    staged: list[tuple[str, str]] = []
    made: list[str] = []
    try:
        for relative, text in files:
            destination = _destination(out_dir, relative)
            made.extend(_makedirs(os.path.dirname(destination) or "."))
            fd, temporary = tempfile.mkstemp(dir=os.path.dirname(destination) or ".", prefix=".pipecast-")
            staged.append((temporary, destination))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
    except BaseException as err:
        discard(staged)
        for folder in reversed(made):
            _rmdir(folder)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write the files under {out_dir!r}: {err.strerror or err}"
                              f"{f' ({err.filename})' if err.filename else ''}") from None
        raise
    return staged


def commit(staged: list[tuple[str, str]]) -> None:
    """Move staged files into place."""
    for temporary, destination in staged:
        try:
            os.replace(temporary, destination)
        except OSError as err:
            discard(staged)
            raise OutputError(f"cannot write {destination!r}: {err.strerror or err}") from None


def discard(staged: list[tuple[str, str]]) -> None:
    """Remove staged files."""
    for temporary, _ in staged:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _check_collisions(out_dir: str, new: Mapping[str, str], old: Mapping[str, str],
                      others: Mapping[str, tuple[str, str, dict[str, str]]]) -> None:
    owners = {relative: (target, pipeline) for target, pipeline, files in others.values() for relative in files}
    problems = []
    for relative in new:
        if relative == ".pipecast" or relative.startswith(".pipecast/"):
            problems.append(f"{relative!r} is inside pipecast's own folder of records")
        elif relative in owners:
            target, pipeline = owners[relative]
            problems.append(f"{relative!r} was written by the compile of pipeline {pipeline!r} for target "
                            f"{target!r}")
        elif relative not in old and os.path.lexists(_destination(out_dir, relative)):
            problems.append(f"{relative!r} exists and pipecast did not write it (no record under "
                            f"{os.path.join(out_dir, RECORDS)!r} names it)")
    if problems:
        raise OutputError(f"will not overwrite files under {out_dir!r}: {'; '.join(problems)}; pipecast replaces "
                          f"and removes only files it wrote there. Fix: move those files away, or compile into "
                          f"another folder with --out (files compiled by a pipecast older than these records have "
                          f"none: remove them once)")


def _records(out_dir: str) -> dict[str, tuple[str, str, dict[str, str]]]:
    """Every record under ``out_dir``: record path -> (target, pipeline, {relative path: sha256})."""
    found: dict[str, tuple[str, str, dict[str, str]]] = {}
    root = os.path.join(out_dir, *RECORDS.split("/"))
    if not os.path.isdir(root):
        return found
    for target in sorted(os.listdir(root)):
        folder = os.path.join(root, target)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            path = os.path.join(folder, name)
            if not name.endswith(".json"):
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
                files = data["files"]
                if data.get("format") != FORMAT or not isinstance(files, dict):
                    raise ValueError("unknown format")
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise OutputError(f"cannot read pipecast's record of written files {path!r}: {err}. Fix: remove "
                                  f"that record and the files it lists, then compile again") from None
            found[path] = (str(data.get("target", target)), str(data.get("pipeline", name[:-5])),
                           {str(key): str(value) for key, value in files.items()})
    return found


def _record_path(out_dir: str, target: str, pipeline: str) -> str:
    return os.path.join(out_dir, *RECORDS.split("/"), target, f"{pipeline}.json")


def _write_record(path: str, target: str, pipeline: str, files: Mapping[str, str]) -> None:
    text = json.dumps({"format": FORMAT, "target": target, "pipeline": pipeline, "files": dict(sorted(files.items()))},
                      indent=1) + "\n"
    commit(stage([(os.path.basename(path), text)], os.path.dirname(path)))


def _destination(out_dir: str, relative: str) -> str:
    return os.path.join(out_dir, *relative.split("/"))


def _makedirs(folder: str) -> list[str]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    missing = []
    while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    if missing:
        os.makedirs(missing[0], exist_ok=True)
    return list(reversed(missing))


def _rmdir(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _prune(folder: str, out_dir: str) -> None:
    """Remove ``folder`` and its parents up to ``out_dir`` (kept) while they are empty."""
    stop = os.path.abspath(out_dir)
    while os.path.abspath(folder).startswith(stop + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return _sha256(handle.read())
