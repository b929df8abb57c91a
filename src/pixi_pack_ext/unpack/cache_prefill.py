"""Extract the pack's packages into rattler's package cache while the pack is still being read.

Given ``file://`` records, ``rattler.install`` extracts every package into its cache and then links
it into the environment. Here each package is extracted ahead of the install with py-rattler's
extractor, which hashes the whole file as it reads it: that sha256 is the package's check against
the pack's repodata, so the bytes are read once instead of twice. The work runs on an event loop of
its own thread (the extractor releases the GIL) while the pack's format is still extracting:

- a package is submitted as soon as its file is complete, and the package guard lists the same
  archive's members alongside the extraction (rattler refuses climbing and absolute names there);
  the folder must then hold every listed member, since the extractor silently drops a hostile
  ``../x`` member or a hard link leaving the package, and the guard must see that to refuse it;
- a small package inside a plain tar file is copied into a private RAM folder (``RamStaging``)
  and extracted there, when there is room;
- a big package inside a plain tar file is never copied out: the extractor reads its bytes from
  the tar through a named pipe, and the guard reads what was extracted (paths.json, symlinks and
  files in the folder; a member the extractor dropped is then left out, not refused). Copying
  gigabytes out first would double the unpack's disk writes.

Until the repodata is known, a package is extracted into a staging folder named after its file;
``finish`` matches the staged folders with the records, checks every sha256 and moves each good
folder to where rattler looks for it (``<cache>/<name>-<version>-<build>/``; a symlink when the
cache is on another file system), so the install only links. The cache and the staging folders
are private to the unpack and rattler's extractor keeps every entry inside its target folder;
nothing reaches the environment before every hash and the package guard have passed. A package
the extractor cannot read, or two records sharing a cache folder, are written out as files (if
they were not) and left to rattler to extract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import shutil
import tarfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import rattler
from rattler import Client
from rattler.package_streaming import download_and_extract

from ..archive import copy_range
from ..errors import InvalidPackError, UnsafeArchiveError
from ..hashing import hash_file
from ..metadata import is_package_member
from ..untrusted import Component, reraise_interrupts
from ..untrusted import cache_folder_name as untrusted_cache_folder
from .package_bounds import Bounds, Stopped, bound_package
from .package_guard import (
    PackageContents,
    list_members,
    read_extracted_contents,
    refuse_unsafe_members,
    scan_package,
)
from .ram_staging import RamStaging

log = logging.getLogger(__name__)

STAGING = ".staging"
PIPES = ".pipes"
#: Packages at least this big are extracted straight from the pack's bytes, never copied out
#: (smaller ones wait for their file: a pipe and a thread cost more than they save there).
#: ``PIXI_UNPACK_STREAM_MIN_SIZE`` (bytes) overrides it.
STREAM_MIN_SIZE = 8 << 20
STREAM_MIN_SIZE_ENV = "PIXI_UNPACK_STREAM_MIN_SIZE"
#: The pipe buffer asked for (Linux's default maximum): the extractor reads in large steps.
PIPE_CHUNK = 1 << 20
#: How often a pipe's feeder looks whether the extractor opened the pipe (seconds).
PIPE_POLL = 0.002
#: A ``.conda`` smaller than this is bounded on the event loop itself (a fraction of a millisecond).
INLINE_BOUND = 1 << 20
#: At most this many packages are extracted at once, however many cores there are.
MAX_CONCURRENCY = 8


def default_concurrency() -> int:
    """One extraction per usable core, plus one: a worker also waits on its package's guard listing
    and folder scan, and the extra worker keeps the cores busy meanwhile."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return min(MAX_CONCURRENCY, cores + 1)


def cache_folder_name(record: rattler.RepoDataRecord) -> Component:
    """The folder rattler's package cache keeps an extracted package in: one plain component (the
    record's name, version and build were checked by ``untrusted``; this checks the result again,
    so a record can never move a staged folder anywhere but into the cache)."""
    return untrusted_cache_folder(record.name.normalized, str(record.version), str(record.build))


@dataclass
class Staged:
    """One package file's extraction: its sha256, the folder it went to (None: not extracted),
    and what the guard read of it (or why it refused it)."""

    sha256: str
    folder: Path | None
    contents: PackageContents | None = None
    refusal: UnsafeArchiveError | None = None


@dataclass
class _Job:
    """One package to extract: from its file, or (``source`` set) from its bytes inside the pack."""

    path: Path
    future: concurrent.futures.Future[Staged]
    source: Path | None = None
    offset: int = 0
    size: int = 0
    #: A copy of the bytes in RAM to extract from (a small package taken from the pack).
    copy: Path | None = None

    @property
    def piped(self) -> bool:
        """Whether the extractor reads the bytes from the pack itself, through a pipe."""
        return self.source is not None and self.copy is None


class CachePrefill:
    """Extract package files into ``cache_dir`` in the background and check them against records.

    Packages not extracted in RAM are extracted in ``disk_dir`` (default: ``cache_dir``); a cache
    entry on another file system than its extraction is a symlink to it (a cache in RAM keeps the
    lock files and entries rattler makes per package off the disk, and big packages on disk are
    still hard-linked into the environment).

    Use as a context manager and as the ``PackFiles`` of a format's ``open_pack``: files are
    submitted as the pack is read; then ``finish`` with the records. Leaving stops the work early
    when the block failed (what is being extracted finishes) and always waits for the thread.
    """

    def __init__(
        self,
        cache_dir: Path,
        concurrency: int | None = None,
        ram: RamStaging | None = None,
        disk_dir: Path | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.disk_dir = disk_dir or cache_dir
        self.ram = ram
        self.concurrency = max(1, concurrency or default_concurrency())
        self._stop = threading.Event()
        self._jobs: dict[Path, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixi-unpack-extract", daemon=True)

    def __enter__(self) -> CachePrefill:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for folder in (STAGING, PIPES):
            (self.disk_dir / folder).mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._stop.set()
        self._close()
        self._thread.join()

    # -- the caller's side (PackFiles) ---------------------------------------------------------------

    def file_located(self, name: str, path: Path, source: Path, offset: int, size: int) -> bool:
        """Take a package over (True), so it is not written into the pack folder: a big one is
        extracted straight from the pack's bytes, a small one from a copy in RAM when there is room."""
        if not is_package_member(name) or not self._accepts(path):
            return False
        if size >= _stream_min_size():
            return hasattr(os, "mkfifo") and self._add(path, source, offset, size)
        if self.ram is None or not self.ram.reserve(size):
            return False
        copy = self.ram.archive_path(path.parent.name, path.name)
        try:
            with open(source, "rb") as src, open(copy, "xb") as out:
                copy_range(src.fileno(), offset, size, out.fileno())  # a short pack: the tar reader says so
        except OSError as exc:  # the tmpfs is full: the file goes to the pack folder as usual
            copy.unlink(missing_ok=True)
            log.debug("no room in RAM for %s: %s", path.name, exc)
            return False
        return self._add(path, source, offset, size, copy)

    @property
    def streamed(self) -> set[Path]:
        """The package files taken over from the pack (absolute paths): they are not in the pack folder."""
        return {key for key, job in self._jobs.items() if job.source is not None}

    def file_ready(self, name: str, path: Path) -> None:
        if is_package_member(name):
            self.submit(path)

    def submit(self, path: Path) -> None:
        """Start extracting the package file ``path`` (complete on disk), unless it already is."""
        self._add(path)

    def _accepts(self, path: Path) -> bool:
        return self._loop is not None and _key(path) not in self._jobs

    def _add(
        self, path: Path, source: Path | None = None, offset: int = 0, size: int = 0, copy: Path | None = None
    ) -> bool:
        key = _key(path)
        if key in self._jobs or self._loop is None or self._queue is None:
            return False
        job = _Job(key, concurrent.futures.Future(), source, offset, size, copy)
        self._jobs[key] = job
        self._loop.call_soon_threadsafe(self._queue.put_nowait, job)
        return True

    def finish(
        self, records: list[rattler.RepoDataRecord], files: list[Path], pack: Path | None = None
    ) -> list[PackageContents]:
        """Check ``files[i]`` against ``records[i].sha256`` and move each extraction into place.

        Returns what the guard read of each package, for ``check_contents``. Raises
        ``InvalidPackError`` for the first wrong hash (in file order), else the guard's refusal of
        the first unreadable or hostile archive."""
        names = Counter(cache_folder_name(r) for r in records)
        for path in sorted(files, key=_size, reverse=True):  # the longest first
            self.submit(path)
        wrong: dict[Path, str] = {}
        refused: dict[Path, UnsafeArchiveError] = {}
        contents: list[PackageContents] = []
        for record, path in zip(records, files, strict=True):
            staged = self._jobs[_key(path)].future.result()
            assert record.sha256 is not None  # verify_channel refuses records without one
            expected = record.sha256.hex()
            if staged.sha256 != expected:
                wrong[path] = f"expected sha256 {expected}, got {staged.sha256}"
            elif staged.refusal is not None or staged.contents is None:
                refused[path] = staged.refusal or UnsafeArchiveError(f"refusing package {path.name}")
            else:
                contents.append(staged.contents)
                target = self.cache_dir / cache_folder_name(record)
                if staged.folder is not None and names[target.name] == 1 and not target.exists():
                    _place(staged.folder, target)
                else:  # rattler extracts this one itself, from the file
                    self._materialize(self._jobs[_key(path)])
        if wrong:
            path = min(wrong)
            where = "" if pack is None else f" in '{pack}'"
            raise InvalidPackError(
                f"channel/{path.parent.name}/{path.name}{where} is corrupt: {wrong[path]}; "
                "nothing was installed"
            )
        if refused:
            raise refused[min(refused)]
        return contents

    @staticmethod
    def _materialize(job: _Job) -> None:
        """Copy a package taken straight from the pack out to its file, where rattler can read it."""
        if job.source is None or job.path.exists():
            return
        with open(job.source, "rb") as src, open(job.path, "xb") as out:
            try:
                copy_range(src.fileno(), job.offset, job.size, out.fileno())
            except tarfile.ReadError:
                raise InvalidPackError(f"the pack ends inside {job.path.name}") from None

    # -- the worker thread ---------------------------------------------------------------------------

    def _close(self) -> None:
        if self._loop is not None and self._queue is not None and self._thread.is_alive():
            for _ in range(self.concurrency):
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._ready.set()
            for job in self._jobs.values():  # a caller waiting on a dead thread must not hang
                if not job.future.done():
                    job.future.set_exception(RuntimeError("the package extraction stopped"))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._ready.set()
        client = Client()

        async def worker() -> None:
            assert self._queue is not None
            while (job := await self._queue.get()) is not None:
                try:
                    job.future.set_result(await self._one(client, job))
                except BaseException as exc:  # handed to the caller's thread by the future
                    job.future.set_exception(exc)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, client: Client, job: _Job) -> Staged:
        if self._stop.is_set():
            return Staged("", None)
        # Nothing extracts an archive before it is bounded by what it declares (a bomb is refused)
        try:
            size = job.size if job.source is not None else _size(job.path)
            if job.path.name.endswith(".conda") and size < INLINE_BOUND:
                bounds = self._bound(job)  # a small .conda's block walk: quicker than a thread hop
            else:
                bounds = await asyncio.to_thread(self._bound, job)
        except Stopped:
            return Staged("", None)
        except UnsafeArchiveError as exc:
            staged = Staged(await asyncio.to_thread(_hash_job, job), None, refusal=exc)
            if job.copy is not None:
                job.copy.unlink(missing_ok=True)
            return staged
        folder = self._staging_folder(job, bounds.expanded)
        scanned: PackageContents | UnsafeArchiveError | None
        if job.piped:
            # No file to read the archive from: the guard reads the extracted folder instead
            sha256 = await self._extract_streamed(client, job, folder)
            scanned = None if sha256 is None else await self._scan_folder(folder, job.path.name)
        else:
            # The guard lists the archive's members alongside; links and paths.json are then read
            # from the extracted folder, which must hold every listed member
            archive = job.copy or job.path
            listed: list[str] | UnsafeArchiveError | None
            if bounds.members is not None:  # the bound's pass listed them (.tar.bz2)
                sha256, listed = (
                    await _extract(client, archive.as_uri(), folder),
                    _checked(job.path.name, bounds.members),
                )
            else:
                sha256, listed = await asyncio.gather(
                    _extract(client, archive.as_uri(), folder), _list(archive)
                )
            if sha256 is None and self.ram is not None and self.ram.holds(folder):
                # An archive can unpack to many times its size and fill the tmpfs: try the disk
                shutil.rmtree(folder, ignore_errors=True)
                folder = self.disk_dir / STAGING / folder.name
                sha256 = await _extract(client, archive.as_uri(), folder)
            if job.copy is not None:  # the RAM is worth more than the copy now
                job.copy.unlink()
            if isinstance(listed, UnsafeArchiveError):
                scanned = listed
            else:
                scanned = None if sha256 is None else await self._scan_folder(folder, job.path.name, listed)
        if sha256 is None:  # an archive the extractor cannot read: hash it, rattler decides
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(folder)
            await asyncio.to_thread(self._materialize, job)
            staged = Staged((await asyncio.to_thread(hash_file, job.path, md5=False))[0], None)
            if scanned is None:
                scanned = await _scan(job.path)
        else:
            staged = Staged(sha256, folder)
        if isinstance(scanned, UnsafeArchiveError):
            staged.refusal = scanned
        else:
            staged.contents = scanned
        return staged

    def _bound(self, job: _Job) -> Bounds:
        name = job.path.name
        if job.copy is not None:
            return bound_package(job.copy, name, stop=self._stop)
        if job.source is not None:
            return bound_package(
                job.source,
                name,
                offset=job.offset,
                size=job.size,
                stop=self._stop,
                scratch=self.disk_dir / PIPES,
            )
        return bound_package(job.path, name, stop=self._stop)

    def _staging_folder(self, job: _Job, expanded: int) -> Path:
        """A small package is extracted in RAM when what it can expand to fits, anything else on disk."""
        name = f"{job.path.parent.name}--{job.path.name}"
        if self.ram is not None and not job.piped:
            small = job.copy is not None or _size(job.path) < _stream_min_size()
            if small and self.ram.reserve(expanded):
                return self.ram.package_folder(name)
        return self.disk_dir / STAGING / name

    async def _scan_folder(
        self, folder: Path, name: str, listed: list[str] | None = None
    ) -> PackageContents | UnsafeArchiveError:
        return await _scan_folder(
            folder, name, listed, in_ram=self.ram is not None and self.ram.holds(folder)
        )

    async def _extract_streamed(self, client: Client, job: _Job, folder: Path) -> str | None:
        """Extract from a named pipe that a thread fills with the package's bytes in the pack."""
        assert job.source is not None
        pipe = self.disk_dir / PIPES / folder.name  # the name keeps the package's suffix
        os.mkfifo(pipe, 0o600)
        done = threading.Event()
        feeding = asyncio.ensure_future(
            asyncio.to_thread(_feed_pipe, pipe, job.source, job.offset, job.size, done)
        )
        try:
            return await _extract(client, pipe.as_uri(), folder)
        finally:
            done.set()  # a feeder still waiting for the extractor to open the pipe gives up
            await feeding
            pipe.unlink()


async def _extract(client: Client, url: str, folder: Path) -> str | None:
    """The sha256 of the archive at ``url`` extracted into ``folder``; None when it cannot be."""
    try:
        sha256, _md5 = await download_and_extract(client, url, folder)
        return sha256.hex()
    except BaseException as exc:  # rattler's errors, or a panic in its extractor: rattler decides later
        reraise_interrupts(exc)
        log.debug("could not extract %s ahead of the install: %s", url, exc)
        return None


def _feed_pipe(pipe: Path, source: Path, offset: int, size: int, done: threading.Event) -> None:
    """Write ``size`` bytes at ``offset`` of ``source`` into ``pipe`` once a reader opened it."""
    while True:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or done.wait(PIPE_POLL):
                return  # no reader yet (ENXIO): wait, unless the extraction is already over
    try:
        os.set_blocking(fd, True)
        _widen_pipe(fd)
        with open(source, "rb") as src:
            copy_range(src.fileno(), offset, size, fd)
    except (BrokenPipeError, tarfile.ReadError):
        pass  # the extractor stopped reading, or the pack ends early: the extraction says so
    finally:
        os.close(fd)


def _place(folder: Path, entry: Path) -> None:
    """Make ``folder`` the cache entry ``entry``: moved there, or linked from another file system."""
    try:
        os.replace(folder, entry)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        entry.symlink_to(folder, target_is_directory=True)


def _key(path: Path) -> Path:
    """A file's key among the jobs: absolute, without a system call (the pack folder that formats
    report files under is already a resolved path)."""
    return Path(os.path.abspath(path))


def _stream_min_size() -> int:
    value = os.environ.get(STREAM_MIN_SIZE_ENV, "")
    return int(value) if value.isdigit() else STREAM_MIN_SIZE


def _widen_pipe(fd: int) -> None:
    """Linux: a 1 MiB pipe buffer, so the extractor reads in large steps (64 KiB by default)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_CHUNK)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        pass  # other systems, or a pipe-max-size below 1 MiB: the default works, a little slower


async def _scan_folder(
    folder: Path, name: str, listed: list[str] | None = None, *, in_ram: bool = False
) -> PackageContents | UnsafeArchiveError:
    try:
        if in_ram:  # read at once: quicker than handing it to a thread and back
            return read_extracted_contents(folder, name, listed)
        return await asyncio.to_thread(read_extracted_contents, folder, name, listed)
    except UnsafeArchiveError as exc:
        return exc
    except (OSError, ValueError) as exc:
        return UnsafeArchiveError(f"refusing package {name}: its metadata is unreadable ({exc})")


async def _list(path: Path) -> list[str] | UnsafeArchiveError:
    try:
        return await list_members(path)
    except UnsafeArchiveError as exc:
        return exc


async def _scan(path: Path) -> PackageContents | UnsafeArchiveError:
    try:
        return await scan_package(path)
    except UnsafeArchiveError as exc:
        return exc


def _checked(name: str, members: list[str]) -> list[str] | UnsafeArchiveError:
    try:
        refuse_unsafe_members(name, members)
    except UnsafeArchiveError as exc:
        return exc
    return members


def _hash_job(job: _Job) -> str:
    """The sha256 of a job's package bytes, wherever they are."""
    if job.copy is not None:
        return hash_file(job.copy, md5=False)[0]
    if job.source is None:
        return hash_file(job.path, md5=False)[0]
    import hashlib

    digest = hashlib.sha256()
    with open(job.source, "rb") as f:
        f.seek(job.offset)
        left = job.size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
