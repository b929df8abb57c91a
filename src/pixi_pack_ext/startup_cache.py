"""Small texts that start-up would otherwise work out again on every run, kept per installation.

Listing the plugins' entry points needs ``importlib.metadata`` (importing it and reading every
installed distribution took a fifth of a pack's start-up), and rendering ``--help`` needs
rich-click; both results only change when what is installed changes. A kept text is used only while
its key, which ``installation_key`` describes, is exactly what it was.

Paths are plain strings here, and nothing heavier than ``os`` is imported: this runs before
anything else.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zlib

#: False: nothing is read or kept (the bundled unpacker of a self-extracting pack writes nothing to
#: the user's cache but what ``PIXI_UNPACK_CACHE_DIR`` allows, and what it has installed never changes).
ENABLED = True
#: Texts kept at most per kind (one per combination of inputs; the oldest go first).
KEEP = 16
#: Names in a ``sys.path`` folder whose change can change what is installed or importable.
_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".pth", ".egg-link")


def cache_dir(kind: str) -> str:
    """``kind/`` in the folder that ``platformdirs.user_cache_dir("pixi-pack-ext")`` names
    (worked out here: importing platformdirs costs more than the lookup)."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "pixi-pack-ext", "pixi-pack-ext", "Cache", kind)
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "pixi-pack-ext", kind)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return os.path.join(xdg if os.path.isabs(xdg) else os.path.join(home, ".cache"), "pixi-pack-ext", kind)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def installation_key() -> str:
    """What is installed, as one text: the interpreter, every ``sys.path`` folder, and in each the
    distributions' metadata folders, ``.pth`` and ``.egg-link`` files with their modification
    times and those of their ``entry_points.txt`` (installing, upgrading or removing a
    distribution, or editing its entry points, changes it)."""
    from . import __version__

    parts = [__version__, sys.executable, sys.version, repr(sys.flags)]
    for entry in sys.path:
        folder = entry or "."
        parts.append(f"{entry}@{_mtime(folder)}")
        try:
            with os.scandir(folder) as found:
                names = sorted(e.name for e in found if e.name.endswith(_METADATA_SUFFIXES))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            extra = _mtime(os.path.join(path, "entry_points.txt")) if name.endswith("-info") else 0
            parts.append(f"  {name}@{_mtime(path)}@{extra}")
    return "\n".join(parts)


def _owned_by_us(path: str) -> bool:
    """Whether only this user can have written ``path``: the cache names modules to import, so one
    another user could write (a root run keeping a user's HOME) is never read."""
    st = os.lstat(path)
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and not os.path.islink(path)


def _path_for(kind: str, key: str) -> str:
    return os.path.join(cache_dir(kind), f"{zlib.crc32(key.encode()):08x}.txt")


_SEPARATOR = "\n\0\n"


def read(kind: str, key: str) -> str | None:
    """The text kept under ``key``, or None."""
    if not ENABLED:
        return None
    path = _path_for(kind, key)
    try:
        if not _owned_by_us(path) or not _owned_by_us(os.path.dirname(path)):
            return None
        with open(path, encoding="utf-8") as f:
            kept = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    stored_key, sep, text = kept.partition(_SEPARATOR)
    return text if sep and stored_key == key else None


def keep(kind: str, key: str, text: str) -> None:
    """Keep ``text`` under ``key`` (whole or not at all; a failure to write is only a lost
    shortcut), and drop the oldest texts of ``kind`` beyond ``KEEP``."""
    if not ENABLED:
        return
    path = _path_for(kind, key)
    folder = os.path.dirname(path)
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(temp, "w", encoding="utf-8") as f:
            f.write(key + _SEPARATOR + text)
        os.replace(temp, path)
        kept = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".txt")), key=_mtime)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return
    for old in kept[:-KEEP]:
        with contextlib.suppress(OSError):
            os.unlink(old)
