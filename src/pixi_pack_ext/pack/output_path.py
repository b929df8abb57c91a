"""Where a pack goes: refuse an output path that cannot work before anything is downloaded.

A pack replaces an existing file at its output path (and says so), but never a read-only one: the
read-only mode is how users protect a file, and ``os.replace`` would swap it out regardless (the
folder's permissions are what count) and leave a file with another mode in its place.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import UsageError


def is_read_only(st: os.stat_result, path: Path) -> bool:
    """No write permission bit set, or not writable by this user (root passes ``os.access``)."""
    return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK)


def check_output(output: Path, writes_folder: bool) -> bool:
    """Raise UsageError for an output path the format cannot write; True when a file is replaced."""
    if not output.parent.is_dir():
        raise UsageError(
            f"folder '{output.parent}' (of output '{output.name}') does not exist; create it or choose another -o"
        )
    try:
        st = output.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"cannot use output '{output}': {exc.strerror}; choose another -o") from None
    if writes_folder:
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"output '{output}' exists and is not a folder; remove it or choose another -o")
        if any(output.iterdir()):
            raise UsageError(
                f"output folder '{output}' already exists and is not empty; remove it or choose another -o"
            )
        return False
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(
            f"output '{output}' is a folder; give -o a file name, such as '{output / 'environment.tar'}'"
        )
    if stat.S_ISREG(st.st_mode) and is_read_only(st, output):
        raise UsageError(
            f"output '{output}' exists and is read-only; make it writable (chmod u+w '{output}') "
            "or choose another -o"
        )
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"output '{output}' exists and is not a regular file; choose another -o")
    return True


def check_cache_folder(folder: Path) -> None:
    """``--use-cache`` must name a folder (or a path where one can be made)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--use-cache '{folder}' is a file, not a folder; give the path of a folder")
