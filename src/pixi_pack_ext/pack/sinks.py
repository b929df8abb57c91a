"""Where downloads land: one writer thread hashes and writes every chunk; sinks count, bound and resume.

Every byte is hashed once, as it is written, and a file larger than the lock says is stopped where
it is written, whichever source sends it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import OversizeDownloadError
from ..hashing import hash_from, new_hashes

log = logging.getLogger(__name__)


#: Bytes of received data that may wait for the disk writer, over all downloads together.
WRITE_BUDGET = 16 << 20


#: How often the size of a file that a source writes itself (``receive_file``) is looked at (seconds).
FILE_POLL = 0.1


#: Files up to this size that a source wrote itself are hashed right away, not on a thread.
HASH_INLINE = 256 << 10


#: A file that a source writes itself is hashed while it grows, this many bytes at a time.
FOLLOW_STEP = 8 << 20


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
