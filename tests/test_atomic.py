"""Atomic writes: the whole new file or the old one, with the permissions an ordinary open() would give."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest

from loan_default.common.atomic import atomic_write, atomic_write_text, file_mode


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_file_gets_the_mode_open_would_give(tmp_path, mask):
    with umask(mask):
        reference = tmp_path / "plain.txt"
        reference.write_text("x")  # the independent oracle: what open() makes under this umask
        written = atomic_write_text(tmp_path / "sub" / "atomic.txt", "hello")
        assert file_mode() == 0o666 & ~mask
    assert mode(written) == mode(reference) == 0o666 & ~mask
    assert written.read_text() == "hello"


def test_default_umask_gives_world_readable_0644(tmp_path):
    with umask(0o022):
        path = atomic_write_text(tmp_path / "report.json", "{}")
    assert mode(path) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
