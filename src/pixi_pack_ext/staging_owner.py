"""Staging folders that name the process owning them, so that one a killed run left is removed.

A run stopped by SIGKILL or the OOM killer cannot remove its staging folder, which can hold
gigabytes of packages (or RAM, on a tmpfs). Each staging folder holds an owner file with the
process id and pid namespace of its run; the next run that makes a staging folder in the same
place removes the folders whose owner process is gone. A folder of another user, of another pid
namespace (a container sharing the folder), of a running process, or without an owner file yet,
is left alone. Only POSIX systems check: ``os.kill(pid, 0)`` ends the process on Windows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

OWNER_FILE = "owner.pid"


def make_owned_folder(parent: Path | None, prefix: str) -> Path:
    """A new private folder in ``parent`` (the system's temporary folder when None) holding its
    owner file, after removing the abandoned folders of the same ``prefix`` there. Raises OSError."""
    remove_abandoned(Path(parent) if parent is not None else Path(tempfile.gettempdir()), prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        (folder / OWNER_FILE).write_text(owner_line())
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def remove_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Remove this user's ``prefix*`` folders in ``parent`` whose owner process is gone; returns them."""
    if os.name != "posix":
        return []
    namespace = _pid_namespace()
    removed: list[Path] = []
    try:
        candidates = list(parent.glob(f"{prefix}*"))
    except OSError:
        return []
    for folder in candidates:
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            pid, _, owner_namespace = (folder / OWNER_FILE).read_text().strip().partition(" ")
            if owner_namespace != namespace or _running(int(pid)):
                continue  # another container's (its processes are not visible here), or busy
        except (OSError, ValueError):
            continue  # no owner file (being created, or not ours): leave it
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def remove_tree(path: Path, attempts: int = 40, pause: float = 0.05) -> bool:
    """Remove ``path`` and everything below it; True when it is gone. A writer that has not
    stopped yet (rattler's threads outlive an install that failed, a download being cancelled)
    can add a file while it is being removed: it is tried again a few times, never raising.
    What is left is removed by the next run, as the folder of a process that is gone."""
    import time

    for attempt in range(attempts):
        try:
            shutil.rmtree(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if attempt == attempts - 1:
                return False
            time.sleep(pause)
    return False


def owner_line() -> str:
    """What an owner file holds: this process's id and pid namespace."""
    return f"{os.getpid()} {_pid_namespace()}\n"


def _pid_namespace() -> str:
    """Which process-id namespace this process sees (Linux); a pid means nothing outside it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    if pid <= 0:
        return True  # 0 and negatives name process groups: never treat them as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
