"""The code that ships: which files, their digest, the size check, the reproducible copy."""

from __future__ import annotations

import os

import pytest

from pipecast.build.context import FIXED_MTIME, code_digest, code_files, copy_code, module_root
from pipecast.errors import BuildError


@pytest.fixture
def root(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.csv").write_text("1,2\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref\n")
    (tmp_path / ".gitignore").write_text("data/\n")
    (tmp_path / "pkg" / ".pipecastignore").write_text("secret.txt\n")
    (tmp_path / "pkg" / "secret.txt").write_text("s")
    (tmp_path / "secret.txt").write_text("kept: the nested ignore file applies below its own folder only")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    return tmp_path


def test_files_respect_ignore_files_and_skip_what_is_never_code(root):
    assert code_files(root) == [".gitignore", "pkg/.pipecastignore", "pkg/a.py", "run.sh", "secret.txt"]


def test_digest_depends_on_content_and_exec_bit_not_on_mtime(root):
    first = code_digest(root)
    os.utime(root / "pkg" / "a.py", (1, 1))
    (root / "data" / "big.csv").write_text("ignored files do not count")
    assert code_digest(root) == first
    os.chmod(root / "run.sh", 0o755)
    assert code_digest(root) != first
    os.chmod(root / "run.sh", 0o644)
    assert code_digest(root) == first
    (root / "pkg" / "a.py").write_text("x = 2\n")
    assert code_digest(root) != first


def test_copy_is_reproducible(root, tmp_path_factory):
    dest = tmp_path_factory.mktemp("ctx")
    files = copy_code(root, dest / "code")
    assert files == code_files(root)
    assert code_digest(dest / "code") == code_digest(root)
    assert {os.stat(dest / "code" / f).st_mtime for f in files} == {FIXED_MTIME}
    assert os.stat(dest / "code" / "pkg" / "a.py").st_mode & 0o777 == 0o644


def test_size_limit_names_the_largest_files(root, tmp_path_factory):
    (root / "model.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(BuildError, match=r"more than the .* limit; the largest files: 'model.bin'.*\n    fix: "):
        copy_code(root, tmp_path_factory.mktemp("ctx"), max_bytes=1024)


def test_module_root(tmp_path):
    assert module_root("a.b.c", str(tmp_path / "a" / "b" / "c.py")) == tmp_path
    assert module_root("a.b", str(tmp_path / "a" / "b" / "__init__.py")) == tmp_path
    assert module_root("ml_training", str(tmp_path / "ml_training.py")) == tmp_path
