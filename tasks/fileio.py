"""Atomic file writes: a file a run leaves is either complete or absent, never half-written.

Every writer goes to a temporary file in the destination's directory (same filesystem, so the
final ``os.replace`` is atomic), flushes it to disk, then renames it over the destination. If
anything fails midway (a full disk, an interrupt), the temporary file is removed and the
destination keeps its previous content, if it had one.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


# The errors of writing a file that are the place's, not the program's: a full disk or quota, a
# read-only filesystem, no permission (an immutable file included), a parent that is missing or
# not a directory, a file too big. ``atomic_path`` turns them into a ``WriteError`` naming the file.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                          errno.ENOTDIR, errno.EISDIR, errno.EFBIG, errno.ENAMETOOLONG})


class WriteError(OSError):
    """A file that could not be written where it was asked for (``WRITE_ERRNOS``); its message is one
    sentence naming the file, and the file keeps its previous content or stays absent."""

    def __init__(self, path: str | Path, err: OSError, message: str | None = None) -> None:
        reason = err.strerror or type(err).__name__
        super().__init__(err.errno, (message or "cannot write {path} ({reason}); nothing was written there").format(path=path, reason=reason))
        self.filename = str(path)

    def __str__(self) -> str:
        return f"{self.strerror}."


def write_error(path: str | Path, err: BaseException) -> WriteError | None:
    """``err`` as a ``WriteError`` naming ``path`` when it is one of ``WRITE_ERRNOS``, else None."""
    if isinstance(err, WriteError):
        return err
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        return WriteError(path, err)
    return None


def check_writable_dir(directory: str | Path, what: str = "the output") -> Path:
    """Refuse, before any work, a directory where no file can be created: a probe file is created
    and removed in it (``tempfile``), which is what the writes will do, so it holds for root too
    (a read-only mount, an immutable directory, a path below a regular file); a directory that does
    not exist yet is probed in its nearest existing parent (where it would be made). Raises ``WriteError``
    (one sentence naming the directory and ``what`` goes there); returns the directory."""
    directory = probe_dir = Path(directory)
    while not probe_dir.exists() and probe_dir != probe_dir.parent:  # a folder the command would make: its nearest existing parent
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe_dir))
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=probe_dir)
    except OSError as err:
        raise WriteError(directory, err, f"cannot write {what} into {{path}} ({{reason}}); nothing was computed or written") from err
    os.close(fd)
    os.unlink(probe)
    return directory


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically. A write
    the place refuses (``WRITE_ERRNOS``: a full disk, a read-only folder, ...) is a ``WriteError``
    naming ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        failure = write_error(path, err)
        if failure is None:
            raise
        raise failure from err
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
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        failure = write_error(path, err)
        if failure is None:
            raise
        raise failure from err


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Call ``write(handle)`` on a temporary file opened with ``mode`` ("w" or "wb"), then publish it."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        write(handle)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text))


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Strict JSON (NaN and infinities refused: they are not JSON), written atomically."""
    write_text(path, json.dumps(data, indent=indent, allow_nan=False))


# What ``npz_arrays`` lets a ``.npz`` file given on the command line declare, at most: the file's own
# size, and its arrays' bytes together as their headers declare them (an npz is a zip archive whose
# members may be deflated: a 5 MB file can declare 5 GB).
MAX_NPZ_FILE_BYTES = 2**30
MAX_NPZ_ARRAY_BYTES = 2**30
_NPZ_KINDS = "biuf"  # bool, signed and unsigned integers, floats: never objects, strings or records


def regular_file_size(path: str | Path, max_bytes: int, what: str) -> int:
    """The size of ``path`` once it is known to be a regular file (not a pipe, which would block,
    nor a device such as /dev/zero) of at most ``max_bytes``; ``ValueError`` with one sentence
    naming ``what`` the file should be otherwise. The one check every bounded reader makes first."""
    import stat

    try:
        info = os.stat(path)
    except OSError as err:
        raise ValueError(f"{path} is not a readable {what} ({err.strerror or type(err).__name__}).") from err
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a readable {what} (not a regular file: a pipe, a device or a directory).")
    if info.st_size > max_bytes:
        raise ValueError(f"{path} has {info.st_size} bytes, more than the {max_bytes} a {what} may have here.")
    return info.st_size


def npz_arrays(path: str | Path, max_file_bytes: int = MAX_NPZ_FILE_BYTES,
               max_array_bytes: int = MAX_NPZ_ARRAY_BYTES, kinds: str = _NPZ_KINDS) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{name: (shape, dtype)}`` of the arrays in the ``.npz`` at ``path``, read from their headers
    alone (no array data), so that a file can be refused before it costs memory: ``ValueError``
    with one sentence unless ``path`` is a regular file of at most ``max_file_bytes`` (not a pipe,
    which would block, nor a device such as /dev/zero), a zip archive of ``.npy`` members in
    format 1.0 or 2.0 holding plain numbers (``kinds``, numpy's dtype kinds: ``_NPZ_KINDS``; the
    dataset cache adds ``U`` for its checksum string), declaring at most ``max_array_bytes`` in all."""
    import zipfile

    import numpy as np

    path = Path(path)
    regular_file_size(path, max_file_bytes, ".npz file")
    arrays, total = {}, 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"array {name!r} is in .npy format {version}, not 1.0 or 2.0")
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(handle)
                if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
                    raise ValueError(f"array {name!r} has dtype {dtype}, not a plain number type")
                total += int(np.prod(shape, dtype=object)) * dtype.itemsize
                arrays[name] = (tuple(int(n) for n in shape), dtype)
    except ValueError as err:
        raise ValueError(f"{path} is not a readable .npz file of plain number arrays ({err}).") from err
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError, NotImplementedError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}).") from err
    if total > max_array_bytes:
        raise ValueError(f"{path} declares arrays of {total} bytes, more than the {max_array_bytes} a .npz file may hold here.")
    return arrays


__all__ = ["MAX_NPZ_ARRAY_BYTES", "MAX_NPZ_FILE_BYTES", "WRITE_ERRNOS", "WriteError", "atomic_path", "check_writable_dir", "npz_arrays",
           "write_atomic", "write_error", "write_json", "write_text"]
