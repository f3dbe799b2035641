"""File helpers every writer of derain shares: atomic replacement and content digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

# Temporaries are ``.derain-PID-RANDOM.tmp``: short whatever the target's name, never guessable,
# and the PID tells whether the run that left one is still alive.
_TMP_PREFIX, _TMP_SUFFIX = ".derain-", ".tmp"
_swept_folders: set[Path] = set()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A crash or an exception therefore never leaves a half-written ``path``: readers see the
    old file or the new one. The temporary is created by ``mkstemp`` (exclusively, so a link
    planted beside ``path`` is never followed); temporaries left by dead processes are removed
    the first time a folder is written to.
    """
    path = Path(path)
    _sweep_stale_temporaries(path.parent)
    fd, name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():  # some writers (safetensors) create private files; give the usual mode
            tmp.chmod(0o666 & ~_umask())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _sweep_stale_temporaries(folder: Path) -> None:
    """Delete the temporaries of processes that no longer run (killed in the middle of a write)."""
    if folder in _swept_folders:
        return
    _swept_folders.add(folder)
    for tmp in folder.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        pid = tmp.name[len(_TMP_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _umask() -> int:
    """The process umask, read without setting it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
