"""Atomic file writes: readers see the old file or the whole new one, never half of it.

Write to a uniquely named temporary file in the same folder (parallel writers never collide), fsync, then rename over
the target. The file gets the mode an ordinary ``open()`` would give (0666 less the umask, typically 0644): mkstemp
makes it private (0600), yet reports, bundles and summaries are meant to be read by servers and teammates.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0666 less the process umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports the umask in /proc; elsewhere read it by setting it (briefly process-wide, so only as a fallback).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; not every platform lets a directory be opened, and then this is best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_tree_readable(folder: Path) -> None:
    """0755 folders and 0644 files under ``folder``: mkdtemp makes a folder private, and a server or a training job
    may read it as another user."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    log.debug("renameat2 exchange unavailable (errno %d); replacing in two renames", ctypes.get_errno())
    return False


def replace_folder(new: Path, path: Path) -> None:
    """Put the complete folder ``new`` at ``path``; an existing folder there ends up at ``new`` (for deletion).

    Readers of ``path`` see the old folder or the new one, never neither: one atomic exchange where the system offers
    it, else the old one is renamed aside and put back if the new one cannot be renamed in (a window of one rename).
    """
    if not path.exists():
        os.replace(new, path)
    elif not _exchange(new, path):
        aside = new.with_name(new.name + ".old")
        os.replace(path, aside)
        try:
            os.replace(new, path)
        except BaseException:
            os.replace(aside, path)
            raise
        os.replace(aside, new)
