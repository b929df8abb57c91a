"""Concurrent, verified, cached downloads through the channel-source plugins.

Every file is hashed while it streams and checked against the hash the plan records before it is
moved into place; ``[mirrors]`` replace the original URL, as in pixi; a ``--use-cache`` folder in
channel layout is consulted first and filled atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import logging
import os
import queue
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..config import Settings
from ..errors import ChecksumError, DownloadError, OversizeDownloadError, PixiPackError
from ..hashing import hash_file, hash_from, new_hashes
from ..hookspecs import SourceSession
from ..plugins import PluginManager
from ..redact import redact_url

log = logging.getLogger(__name__)

#: Bytes of received data that may wait for the disk writer, over all downloads together.
WRITE_BUDGET = 16 << 20
#: How often a pack waiting for another one's lock on a cache entry looks again (seconds).
LOCK_POLL = 0.05
#: How often the size of a file that a source writes itself (``receive_file``) is looked at (seconds).
FILE_POLL = 0.1
#: Files up to this size that a source wrote itself are hashed right away, not on a thread.
HASH_INLINE = 256 << 10
#: A file that a source writes itself is hashed while it grows, this many bytes at a time.
FOLLOW_STEP = 8 << 20
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pixi-pack-ext.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


@dataclass(frozen=True)
class FetchItem:
    """One file to fetch: from ``url`` to ``dest``, proven by ``sha256`` (or ``md5``)."""

    label: str
    url: str
    dest: Path
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    #: Where the file lives in a ``--use-cache`` folder (``<subdir>/<file>``); None: never cached.
    cache_key: str | None = None


class DiskWriter:
    """One thread that writes and hashes the chunks of every download, so the event loop only
    receives: ``write`` and ``hashlib`` release the GIL, and the two run on separate cores.

    At most ``budget`` bytes wait in the queue; a download that gets further ahead of the disk
    waits (back-pressure), so memory stays bounded however many downloads run at once.
    """

    def __init__(self, budget: int = WRITE_BUDGET) -> None:
        self._budget = budget
        self._queued = 0
        self._closed = False
        self._room = threading.Condition()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pixi-pack-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None], size: int = 0) -> None:
        """Queue ``job``, holding ``size`` bytes of the budget until it has run; once the writer is
        closed (a Ctrl-C can end the run before its downloads), run it here."""

        def run() -> None:
            try:
                job()
            finally:
                with self._room:
                    self._queued -= size
                    self._room.notify_all()

        with self._room:
            while not self._closed and self._queued and self._queued + size > self._budget:
                self._room.wait()
            closed = self._closed
            if not closed:
                self._queued += size
                self._jobs.put(run)  # under the lock: never behind close()'s end marker
        if closed:
            self._thread.join()  # what was queued before goes first
            job()

    def close(self) -> None:
        """Finish what is queued and stop the thread."""
        with self._room:
            if self._closed:
                return
            self._closed = True
            self._room.notify_all()
            self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a sink records its own write errors; nothing may stop this thread
                log.exception("the download writer failed")


class HashingSink:
    """Writes a download to a temporary file while hashing it; ``restart`` starts over.

    With a ``DiskWriter`` the file is created, written and hashed on its thread, in order (creating
    a file can take a while on a busy file system; the event loop never waits for it); ``offset``
    counts the bytes handed over, ``finish`` waits for the queue without blocking the event loop,
    and ``restart``, ``digests`` and ``close`` wait for it when something is still queued. A write
    error there is raised by the next call.

    ``limit`` is the file's size as the lock records it: a source that sends more (a server lying
    about ``Content-Length``, or a compressed body decoded into gigabytes) is stopped at the first
    byte beyond it with ``OversizeDownloadError``, and so is every later write to this sink.
    """

    def __init__(
        self,
        path: Path,
        on_bytes: Callable[[int], None],
        *,
        md5: bool = True,
        writer: DiskWriter | None = None,
        limit: int | None = None,
    ) -> None:
        self.path = path
        self.limit = limit
        #: The most bytes a source tried to put here beyond ``limit``; None while within it.
        self.oversize: int | None = None
        self._on_bytes = on_bytes
        self._file: BinaryIO | None = None
        self._with_md5 = md5
        self._sha256, self._md5 = new_hashes(md5)
        self._offset = 0
        self._writer = writer
        self._error: OSError | None = None
        self._queued = False  # jobs handed to the writer since the last wait
        self._started = False  # the file is created by the first write (or by receive_file's writer)

    def _start(self) -> None:
        self._started = True
        if self._writer is None:
            self._open()
        else:
            self._submit(self._open)

    def _open(self) -> None:
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            self._error = exc

    def _submit(self, job: Callable[[], None], size: int = 0) -> None:
        assert self._writer is not None
        self._writer.submit(job, size)
        self._queued = True

    @property
    def offset(self) -> int:
        return self._offset

    def write(self, chunk: bytes) -> None:
        self._raise_error()
        self._check_limit(self._offset + len(chunk))
        if not self._started:
            self._start()
        if self._writer is None:
            self._write_now(chunk)
        else:
            self._submit(lambda: self._write_now(chunk), len(chunk))
        self._offset += len(chunk)
        self._on_bytes(len(chunk))

    def _check_limit(self, size: int) -> None:
        """Refuse to hold ``size`` bytes when that is more than the lock's size (sticky)."""
        if self.limit is not None and (size > self.limit or self.oversize is not None):
            self.oversize = max(size, self.oversize or 0)
            raise OversizeDownloadError(
                f"the server sent more than the {self.limit} bytes the lock records "
                f"(at least {self.oversize})"
            )

    def _write_now(self, chunk: bytes) -> None:
        if self._error is not None or self._file is None:
            return
        try:
            self._file.write(chunk)
        except OSError as exc:
            self._error = exc
            return
        self._sha256.update(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)

    def restart(self) -> None:
        self._wait()
        self._on_bytes(-self._offset)
        self._started = True
        if self._file is None:  # not created yet, or it could not be: try again
            self._open()
        else:
            self._file.seek(0)
            self._file.truncate()
        self._sha256, self._md5 = new_hashes(self._with_md5)
        self._offset = 0
        self._error = None

    def close(self) -> None:
        if not self._started:  # nothing was written: the file is still there, empty
            self._started = True
            self._open()
        self._wait()
        if self._file is not None:
            self._file.close()
            self._file = None

    async def receive_file(
        self, write_file: Callable[[Path], Awaitable[None]], idle_timeout: float | None = None
    ) -> None:
        """Let ``write_file`` write the file itself at a path the sink chooses, then take whatever
        is there as the sink's content: the whole file, or the part written before it failed or
        was cancelled (so a source can resume from ``offset``).

        The size is polled for progress while it writes; when it stays the same for
        ``idle_timeout`` seconds, ``write_file`` is cancelled and ``TimeoutError`` raised. A big
        file is hashed while it grows, the rest once it is done. Only at offset 0.
        """
        if self._offset:
            raise ValueError("receive_file needs an empty sink; call restart() first")
        if self._started:
            await self.finish()
            self.close()
        self._started = True
        task = asyncio.ensure_future(write_file(self.path))
        poll = FILE_POLL if idle_timeout is None else min(FILE_POLL, idle_timeout / 4)
        last_growth = time.monotonic()
        follower = _Follower(self.path, self._with_md5)
        hashing: asyncio.Future[None] | None = None
        abandoned = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=poll)
                if task.done():  # what it wrote is counted below
                    break
                size = _file_size(self.path)
                if self.limit is not None and size > self.limit:
                    self._check_limit(size)  # raises: the writer is stopped below
                if size != self._offset:
                    self._count_to(size)
                    last_growth = time.monotonic()
                elif idle_timeout is not None and time.monotonic() - last_growth >= idle_timeout:
                    raise TimeoutError(f"nothing was written for {idle_timeout:g} s")
                if size - follower.hashed >= FOLLOW_STEP:  # hash a big file while it arrives
                    hashing = asyncio.ensure_future(asyncio.to_thread(follower.hash_until, size))
                    await asyncio.shield(hashing)
            task.result()
        except asyncio.CancelledError:
            abandoned = True  # the run is ending: nobody reads this sink again
            raise
        finally:
            if hashing is not None:  # a cancelled wait leaves the thread running: let it end first
                await asyncio.gather(hashing, return_exceptions=True)
            if not task.done():
                task.cancel()
                # the writer has stopped before its bytes are read
                await asyncio.gather(task, return_exceptions=True)
            if abandoned or self.oversize is not None:
                follower.finish()  # closes its reader; an oversized file is not adopted
            elif _file_size(self.path) - follower.hashed <= HASH_INLINE:
                self._count_to(self._adopt(follower))
            else:
                self._count_to(await asyncio.to_thread(self._adopt, follower))
        self._check_limit(self._offset)  # it finished between two looks at its size

    def _count_to(self, size: int) -> None:
        if size != self._offset:
            self._on_bytes(size - self._offset)
            self._offset = size

    def _adopt(self, follower: _Follower) -> int:
        """Take the file as it now is: hashed (the rest of what ``follower`` has not hashed yet,
        or all of it when it was replaced meanwhile) and kept open at its end for further
        ``write`` calls; returns its size."""
        self._error = None
        try:
            if follower.untouched:  # nothing hashed yet: one handle hashes it and stays open
                self._file = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
                self._sha256, self._md5 = new_hashes(self._with_md5)
                return hash_from(self._file, self._sha256, self._md5)  # and stands at its end
            follower.hash_until()
            digests = follower.finish()
            if digests is None:
                follower = _Follower(self.path, self._with_md5)
                follower.hash_until()
                digests = follower.finish()
            assert digests is not None  # nothing else writes the file any more
            self._sha256, self._md5, size = digests
            self._file = open(self.path, "r+b")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            follower.finish()
            self._sha256, self._md5 = new_hashes(self._with_md5)
            self._open()
            return 0
        except OSError as exc:
            follower.finish()
            self._error = exc
            return self._offset
        self._file.seek(size)
        return size

    async def finish(self) -> None:
        """Wait, without blocking the event loop, until the writer has written everything queued."""
        if self._writer is None or not self._queued:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._writer.submit(lambda: loop.call_soon_threadsafe(_resolve, done))
        await done
        self._queued = False

    def digests(self) -> tuple[str, str]:
        """(sha256, md5) of everything written; md5 is "" when the sink was made without it."""
        self._wait()
        self._raise_error()
        return self._sha256.hexdigest(), self._md5.hexdigest() if self._md5 is not None else ""

    def _wait(self) -> None:
        """Let the writer thread finish this sink's queued chunks."""
        if self._writer is not None and self._queued:
            done = threading.Event()
            self._writer.submit(done.set)
            done.wait()
            self._queued = False

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


class _Follower:
    """Hashes a file that another writer is still appending to, up to sizes it was seen at."""

    def __init__(self, path: Path, md5: bool) -> None:
        self.path = path
        self.sha256, self.md5 = new_hashes(md5)
        self.hashed = 0
        self._reader: BinaryIO | None = None

    @property
    def untouched(self) -> bool:
        """Whether it has not opened the file yet."""
        return self._reader is None

    def hash_until(self, size: int | None = None) -> None:
        """Hash the bytes from where it stopped up to ``size`` (the writer has written them), or
        to the end of the file."""
        if self._reader is None:
            self._reader = open(self.path, "rb")  # noqa: SIM115 - closed in finish()
        self._reader.seek(self.hashed)
        limit = None if size is None else size - self.hashed
        self.hashed += hash_from(self._reader, self.sha256, self.md5, limit)

    def finish(self) -> tuple[hashlib._Hash, hashlib._Hash | None, int] | None:
        """The digests and how many bytes they cover; None when the file was replaced or cut
        shorter meanwhile (what was hashed is not what is there)."""
        if self._reader is None:
            return None if self.hashed else (self.sha256, self.md5, 0)
        with self._reader:
            try:
                now = os.stat(self.path)
                kept = os.fstat(self._reader.fileno()).st_ino == now.st_ino and now.st_size >= self.hashed
            except OSError:
                kept = False
        self._reader = None
        return (self.sha256, self.md5, self.hashed) if kept else None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled wait has nobody to tell
        future.set_result(None)


def check_hash(item: FetchItem, sha256: str, md5: str) -> str | None:
    """None when the digests match what the item expects, else a description of the mismatch."""
    if item.sha256:
        return None if sha256 == item.sha256 else f"expected sha256 {item.sha256}, got {sha256}"
    if item.md5:
        return None if md5 == item.md5 else f"expected md5 {item.md5}, got {md5}"
    return None


def candidate_urls(url: str, mirrors: dict[str, list[str]]) -> list[str]:
    """Where to fetch ``url`` from, as pixi does: a ``[mirrors]`` entry (the longest matching
    prefix wins) *replaces* the original, so the candidates are its mirrors in order, and the
    original is one of them only when it is listed there; without a matching entry, ``url``."""
    best = ""
    for prefix in mirrors:
        norm = prefix.rstrip("/") + "/"
        if url.startswith(norm) and len(norm) > len(best):
            best = norm
    if not best:
        return [url]
    rest = url[len(best) :]
    targets = next(v for k, v in mirrors.items() if k.rstrip("/") + "/" == best)
    return list(dict.fromkeys(t.rstrip("/") + "/" + rest for t in targets))


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (same filesystem), else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


class PackageCache:
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


class Progress:
    """What the fetcher reports; the CLI supplies a rich progress bar, tests and pipes a quiet one."""

    def start(self, total_files: int, total_bytes: int | None) -> None: ...

    def advance_bytes(self, n: int) -> None: ...

    def file_done(self, label: str) -> None: ...

    def stop(self) -> None: ...


class Fetcher:
    """Fetch many files concurrently through the source plugins, verifying each one."""

    def __init__(
        self,
        plugins: PluginManager,
        settings: Settings,
        cache: PackageCache | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.plugins = plugins
        self.settings = settings
        self.cache = cache
        self.progress = progress or Progress()
        self._sessions: dict[str, SourceSession] = {}
        self._stack = AsyncExitStack()
        self._session_lock = asyncio.Lock()
        self._writer: DiskWriter | None = None
        self._folders: set[Path] = set()

    async def _session_for(self, url: str) -> SourceSession:
        source = self.plugins.source_for(url)
        async with self._session_lock:
            if source.name not in self._sessions:
                self._sessions[source.name] = await self._stack.enter_async_context(
                    source.open(self.settings)
                )
            return self._sessions[source.name]

    async def fetch_all(self, items: list[FetchItem]) -> None:
        """Fetch every item; the first failure cancels the rest and is raised."""
        sizes = [i.size for i in items]
        self.progress.start(len(items), sum(s for s in sizes if s) if all(sizes) else None)
        semaphore = asyncio.Semaphore(max(1, self.settings.downloads))

        async def one(item: FetchItem) -> None:
            async with semaphore:
                await self.fetch(item)
            self.progress.file_done(item.label)

        self._writer = DiskWriter()
        try:
            async with self._stack, _TaskGroup() as group:
                for item in items:
                    group.create_task(one(item))
        finally:
            self._writer.close()
            self._writer = None
            self.progress.stop()

    async def fetch(self, item: FetchItem) -> None:
        """Put a verified copy of ``item`` at ``item.dest`` (from the cache when it has one)."""
        if item.dest.parent not in self._folders:  # one mkdir per folder, not per file
            item.dest.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(item.dest.parent)
        if self.cache is not None and item.cache_key is not None:
            if await asyncio.to_thread(self.cache.use_stamped, item):
                if item.size:
                    self.progress.advance_bytes(item.size)
                return
            # Another pack using the same cache waits here instead of downloading the same file or
            # removing a corrupt copy just after this one replaced it with a good one.
            async with self.cache.locked(item.cache_key):
                hit = await asyncio.to_thread(self.cache.verified_hit, item)
                if hit is not None:
                    if item.size:
                        self.progress.advance_bytes(item.size)
                    await asyncio.to_thread(self.cache.use, item)
                    return
                temp = self.cache.temp_path(item.cache_key)
                try:
                    await self._download_verified(item, temp)
                    os.replace(temp, self.cache.path(item.cache_key))
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
                await asyncio.to_thread(self.cache.use, item)
            return
        # Without a cache the file is downloaded in place: destinations are in a folder private to
        # the caller, who removes it when ``fetch_all`` fails (a rename per file costs on many files).
        try:
            await self._download_verified(item, item.dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                item.dest.unlink()
            raise

    async def _download_verified(self, item: FetchItem, temp: Path) -> None:
        """Try each candidate URL once until one yields the right bytes at ``temp``; when none
        does, one error names every URL tried and why it failed."""
        failures: list[tuple[str, PixiPackError]] = []
        candidates = candidate_urls(item.url, self.settings.mirrors)
        if not candidates:
            raise DownloadError(
                f"could not fetch {item.label}: the [mirrors] entry for {redact_url(item.url)} lists no "
                "URL; list at least one mirror (or the original URL itself)"
            )
        for url in candidates:
            sink = HashingSink(
                temp, self.progress.advance_bytes, md5=not item.sha256, writer=self._writer, limit=item.size
            )
            try:
                session = await self._session_for(url)
                try:
                    await session.download(url, sink)
                except Exception:
                    # A source may wrap the sink's refusal in an error of its own (rattler does)
                    if sink.oversize is None:
                        raise
                    raise OversizeDownloadError(
                        f"refusing {item.label} from {redact_url(url)}: the server sent more than the "
                        f"{item.size} bytes the lock records (at least {sink.oversize})"
                    ) from None
            except PixiPackError as exc:
                sink.restart()
                failures.append((url, exc))
                log.info("%s", exc)
                continue
            finally:
                try:
                    await sink.finish()
                finally:
                    sink.close()
            mismatch = check_hash(item, *sink.digests())
            if mismatch is None:
                return
            self.progress.advance_bytes(-sink.offset)
            error = ChecksumError(f"checksum mismatch for {item.label} from {redact_url(url)}: {mismatch}")
            failures.append((url, error))
            log.warning("%s", error)
        if len(failures) == 1:
            raise failures[0][1]
        reasons = "; ".join(f"{redact_url(url)}: {_reason(url, exc)}" for url, exc in failures)
        tried = len(failures)
        if all(isinstance(exc, ChecksumError) for _, exc in failures):  # a subclass of DownloadError
            raise ChecksumError(f"could not fetch {item.label} from any of its {tried} mirrors ({reasons})")
        raise DownloadError(f"could not fetch {item.label} from any of its {tried} mirrors ({reasons})")


def _reason(url: str, exc: PixiPackError) -> str:
    """Why fetching ``url`` failed, without the URL the message repeats."""
    text = str(exc)
    shown = redact_url(url)
    for prefix in (f"could not download {shown}: ", f"from {shown}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    if isinstance(exc, ChecksumError) and f" from {shown}: " in text:
        return "checksum mismatch, " + text.split(f" from {shown}: ", 1)[1]
    return text


class _TaskGroup:
    """Run tasks together; on the first failure cancel the others and raise that failure itself.

    Unlike ``asyncio.TaskGroup`` this raises the plain exception (not a group), which is what the
    CLI reports, and it works on Python 3.10.
    """

    async def __aenter__(self) -> _TaskGroup:
        self._tasks: list[asyncio.Task[None]] = []
        return self

    def create_task(self, coro: Coroutine[object, object, None]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in self._tasks if t.done() and not t.cancelled() and t.exception()]
        if failed or exc_info[0] is not None:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
