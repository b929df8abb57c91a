"""A private folder in RAM (a tmpfs) where small packages are extracted before the install.

rattler installs from an extracted package cache. For small packages most of an unpack's time is
the filesystem's per-file work on disk: creating the cache's folders and files, linking them into
the environment, then removing the cache again. In a tmpfs that work costs next to nothing, and the
install copies the files into the environment instead of hard-linking them (the files are written
to disk once either way). The package cache itself lives there too, so rattler's lock file and
entry per package stay off the disk; big packages are extracted on disk and their cache entries
are symlinks to those folders, so the install still hard-links their files.

The RAM used is bounded: at most ``PIXI_UNPACK_RAM_STAGING`` bytes (default 256 MiB; 0 turns RAM
staging off) of package archives and of what they may expand to (the sizes their paths.json
declares, checked before extraction: a small archive that would expand beyond them is refused),
at most an eighth of the tmpfs's free space, and no package is staged when it would leave the
tmpfs with less than half of its starting free space. The folder is removed
when the unpack ends; one left by a killed unpack is removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from ..staging_owner import make_owned_folder

RAM_STAGING_ENV = "PIXI_UNPACK_RAM_STAGING"
DEFAULT_LIMIT = 256 << 20
PREFIX = "pixi-unpack-"
#: Where a tmpfs is found on Linux. Other systems have none at a fixed place: disk only there.
TMPFS_CANDIDATES = ("/dev/shm",)


class RamStaging:
    """A private tmpfs folder and the archive bytes already staged in it."""

    def __init__(self, folder: Path, limit: int, keep_free: int) -> None:
        self.folder = folder
        self.limit = limit
        self.keep_free = keep_free
        self.used = 0
        self._lock = threading.Lock()
        self._subdirs: set[str] = set()

    @classmethod
    def create(cls) -> RamStaging | None:
        """A new private folder on a tmpfs, or None when there is none, it is full or it is turned off."""
        limit = _configured_limit()
        if limit <= 0:
            return None
        for candidate in TMPFS_CANDIDATES:
            try:
                folder = make_owned_folder(Path(candidate), PREFIX)  # abandoned ones go first
            except OSError:
                continue
            try:
                free = _free_bytes(folder)
                if free // 8 >= 1 << 20:  # else too small to be worth a folder
                    (folder / "packages").mkdir()
                    return cls(folder, min(limit, free // 8), free // 2)
            except OSError:
                pass
            shutil.rmtree(folder, ignore_errors=True)
        return None

    def reserve(self, size: int) -> bool:
        """Whether ``size`` more bytes may be put here (and count them): a package archive's copy,
        or the most its extraction can take (bounded by what the package declares, see
        ``package_bounds``), never more than the limit or the tmpfs's free space allow."""
        with self._lock:
            if size < 0 or self.used + size > self.limit:
                return False
            try:
                if _free_bytes(self.folder) - size < self.keep_free:
                    return False
            except OSError:
                return False
            self.used += size
            return True

    def archive_path(self, subdir: str, filename: str) -> Path:
        """Where a copy of a package archive goes (its folder is created)."""
        folder = self.folder / "archives" / subdir
        if subdir not in self._subdirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._subdirs.add(subdir)
        return folder / filename

    def package_folder(self, name: str) -> Path:
        """Where the package ``name`` is extracted."""
        return self.folder / "packages" / name

    def cache_folder(self) -> Path:
        """Where the package cache itself lives (rattler's lock file and entry per package)."""
        return self.folder / "cache"

    def holds(self, path: Path) -> bool:
        return path.is_relative_to(self.folder)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _configured_limit() -> int:
    value = os.environ.get(RAM_STAGING_ENV, "").strip()
    return int(value) if value.isdigit() else DEFAULT_LIMIT


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
