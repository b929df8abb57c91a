"""The ``--use-cache`` folder: verified downloads kept in channel layout, shared safely between runs.

An entry is written aside and moved into place under a lock, and stamped with the hash it was
checked against, so a later run trusts it without reading it again unless the file changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from ..hashing import hash_file
from .fetch_item import FetchItem, check_hash

log = logging.getLogger(__name__)


#: How often a pack waiting for another one's lock on a cache entry looks again (seconds).
LOCK_POLL = 0.05


CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pixi-pack-ext.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (same filesystem), else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


class DownloadCache:
    """A ``--use-cache`` folder in channel layout: ``DIR/<subdir>/<file>`` plus a ``CACHEDIR.TAG``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        tag = root / "CACHEDIR.TAG"
        if not tag.exists():
            with contextlib.suppress(OSError):
                tag.write_text(CACHEDIR_TAG)

    def path(self, key: str) -> Path:
        return self.root / key

    def verified_hit(self, item: FetchItem) -> Path | None:
        """The cached file when it exists and still matches the item's hash; a corrupt one is removed.

        A file whose stamp (see ``use``) still describes it (size, mtime, inode) is trusted without
        reading it: writing to a file changes its mtime, replacing it changes its inode. What goes
        unseen here is a same-size rewrite that sets the mtime back (``touch -d``, ``rsync
        --inplace --times``) or damage below the file system; pixi-unpack checks every package's
        sha256 again. Anything else is hashed.
        """
        assert item.cache_key is not None
        path = self.path(item.cache_key)
        st = _regular_file_stat(path)
        if st is None:
            return None
        if self._stamp_matches(item, st):
            return path
        mismatch = check_hash(item, *hash_file(path, md5=not item.sha256))
        if mismatch is None:
            return path
        log.warning("cached %s is corrupt (%s); fetching it again", path, mismatch)
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            self._stamp_path(item.cache_key).unlink()
        return None

    def use_stamped(self, item: FetchItem) -> bool:
        """Put the cached file of ``item`` at ``item.dest`` when its stamp says it was verified as it
        is (True), without taking its lock: the cache only ever receives verified files, by rename,
        so a concurrent pack can replace the file with an equally good one at most."""
        assert item.cache_key is not None
        path = self.path(item.cache_key)
        st = _regular_file_stat(path)
        if st is None or not self._stamp_matches(item, st):
            return False
        try:
            link_or_copy(path, item.dest)
        except FileNotFoundError:  # removed meanwhile: the locked path looks again
            return False
        return True

    def use(self, item: FetchItem) -> None:
        """Put the verified cached file of ``item`` at ``item.dest`` and stamp it as verified.

        Call it holding ``locked(key)``, after the file was checked. A hit whose stamp is already
        right writes no stamp.
        """
        assert item.cache_key is not None
        path = self.path(item.cache_key)
        link_or_copy(path, item.dest)
        stamp = _stamp_line(item, path.stat())
        if stamp is None:
            return
        target = self._stamp_path(item.cache_key)
        with contextlib.suppress(OSError):
            if target.read_text() == stamp:
                return
        with contextlib.suppress(OSError):
            target.parent.mkdir(exist_ok=True)
            temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temp.write_text(stamp)
            os.replace(temp, target)

    def _stamp_matches(self, item: FetchItem, st: os.stat_result) -> bool:
        """Whether the entry's stamp describes the file as it is now (``st``)."""
        assert item.cache_key is not None
        stamp = _stamp_line(item, st)
        if stamp is None:
            return False
        try:
            return self._stamp_path(item.cache_key).read_text() == stamp
        except OSError:
            return False

    def _stamp_path(self, key: str) -> Path:
        return self.root / ".verified" / f"{key.replace('/', '--')}.stamp"

    def temp_path(self, key: str) -> Path:
        """A fresh partial-download file for ``key``; call it holding ``locked(key)``.

        Partial downloads of the same entry that a killed run left behind go first: with the
        entry's lock held, no other run is writing one.
        """
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
            with contextlib.suppress(OSError):
                stale.unlink()
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        return Path(name)

    @contextlib.asynccontextmanager
    async def locked(self, key: str) -> AsyncIterator[None]:
        """Hold ``key`` against other processes using this cache (checking, filling, removing it).

        Polled rather than blocking, so Ctrl-C cancels a wait; the operating system releases the
        lock of a process that dies.
        """
        from filelock import FileLock, Timeout

        path = self.root / ".locks" / f"{key.replace('/', '--')}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        while True:
            try:
                lock.acquire(timeout=0)
                break
            except Timeout:
                await asyncio.sleep(LOCK_POLL)
        try:
            yield
        finally:
            lock.release()


def _regular_file_stat(path: Path) -> os.stat_result | None:
    """``path``'s stat when it is a regular file (a cache entry can be nothing else)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _stamp_line(item: FetchItem, st: os.stat_result) -> str | None:
    """What a cache stamp says about a file verified against ``item``; None when there is no hash."""
    digest = f"sha256:{item.sha256}" if item.sha256 else f"md5:{item.md5}" if item.md5 else None
    if digest is None:
        return None
    return f"{digest} {st.st_size} {st.st_mtime_ns} {st.st_ino} {st.st_dev}\n"
