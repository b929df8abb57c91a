"""One ``pixi-unpack`` at a time per output folder.

Two runs into one folder would race past the emptiness check and replace each other's finished
environment (or remove the folder the other one filled). A run holds an exclusive lock on the
output folder itself for its whole length; a second run refuses at once with one line rather
than waiting an unknown time. On POSIX the lock is ``flock`` on the folder's own descriptor, so
nothing is left in the folder; elsewhere it is a ``filelock`` file inside it. The operating
system releases the lock of a process that dies, however it dies.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError

#: The lock file where a folder cannot be locked itself (Windows).
LOCK_FILE = ".pixi-unpack.lock"


def _busy(folder: Path) -> UsageError:
    return UsageError(
        f"another pixi-unpack is unpacking into '{folder}' right now; wait for it to finish, "
        "or choose another output folder with -o"
    )


@contextlib.contextmanager
def locked_output(folder: Path) -> Iterator[None]:
    """Hold ``folder`` (which exists) for this run; raise ``UsageError`` when another run holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield from _file_lock(folder)
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise UsageError(f"cannot use '{folder}' as the output folder: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _file_lock(folder: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(folder / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise _busy(folder) from None
    try:
        yield
    finally:
        lock.release()
