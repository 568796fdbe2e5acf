"""Atomic file writes, so a crash (even SIGKILL) never leaves a torn file behind.

A reader, or a run resumed after the crash, sees either the previous file or
the complete new one: the new content goes to a temporary file in the same
directory (same filesystem, so the rename is atomic), is fsynced, then renamed
over the target.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Callable

from efficientnet_tf.errors import one_line

# Temporary files start with this prefix and end with the target's own name, so
# writers that insist on a suffix (".keras", ".weights.h5", ".npz") accept them.
TEMP_PREFIX = ".tmp-"


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls `write(tmp)` to fill a temporary file, then moves it onto `path`.

    Any failure removes the temporary file and surfaces as one OSError that
    names `path` and the cause, because "disk full" or "directory deleted"
    deep inside a writer library is otherwise hard to trace back to a file.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if not isinstance(error, Exception):  # KeyboardInterrupt and friends pass through.
            raise
        cause = error.strerror if isinstance(error, OSError) and error.strerror else f"{type(error).__name__}: {error}"
        raise OSError(f"Could not write {path}: {one_line(cause)}") from error


def atomic_write_text(path: str, text: str) -> None:
    """`atomic_write` for a text file (UTF-8)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)

    atomic_write(path, write)


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable; only POSIX can open a directory for that."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
