"""Atomic file writes: a file a run leaves is either complete or absent, never half-written.

Every writer goes to a temporary file in the destination's directory (same filesystem, so the
final ``os.replace`` is atomic), flushes it to disk, then renames it over the destination. If
anything fails midway (a full disk, an interrupt), the temporary file is removed and the
destination keeps its previous content, if it had one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); a published result gets the usual mode (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:  # the bytes must be on disk before the rename publishes them
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Call ``write(handle)`` on a temporary file opened with ``mode`` ("w" or "wb"), then publish it."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        write(handle)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text))


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Strict JSON (NaN and infinities refused: they are not JSON), written atomically."""
    write_text(path, json.dumps(data, indent=indent, allow_nan=False))


__all__ = ["atomic_path", "write_atomic", "write_json", "write_text"]
