"""Extract the pack's packages into rattler's package cache while the pack is still being read.

Given ``file://`` records, ``rattler.install`` extracts every package into its cache and then links
it into the environment. Here each package is extracted ahead of the install with py-rattler's
extractor, which hashes the whole file as it reads it: that sha256 is the package's check against
the pack's repodata, so the bytes are read once instead of twice. Packages are handed over one by
one as the pack's reader writes them (``submit``), so extracting the first packages overlaps with
reading the rest of the pack; the work runs on an event loop of its own thread (the extractor
releases the GIL). Alongside each extraction the package guard lists the same archive's members
(the extractor silently skips a hostile ``../x`` member; the guard must see it to refuse it).

Until the repodata is known, a package is extracted into a staging folder named after its file;
``finish`` matches the staged folders with the records, checks every sha256 and renames each good
folder to where rattler looks for it (``<cache>/<name>-<version>-<build>/``), so the install only
links. The cache lives in the unpack's private work folder and rattler's extractor keeps every
entry inside its target folder; nothing reaches the environment before every hash and the package
guard have passed. A package the extractor cannot read, or two records sharing a cache folder,
are hashed instead and left to rattler to extract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import rattler
from rattler import Client
from rattler.package_streaming import download_and_extract

from .errors import InvalidPackError, UnsafeArchiveError
from .fetch import hash_file
from .package_guard import PackageContents, scan_package

log = logging.getLogger(__name__)

PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
STAGING = ".staging"


def cache_folder_name(record: rattler.RepoDataRecord) -> str:
    """The folder rattler's package cache keeps an extracted package in."""
    return f"{record.name.normalized}-{record.version}-{record.build}"


def is_package_member(name: str) -> bool:
    """Whether a pack member (``channel/<subdir>/<file>``) is a conda package worth extracting early."""
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == "channel" and parts[2].endswith(PACKAGE_SUFFIXES)


@dataclass
class Staged:
    """One package file's extraction: its sha256, the folder it went to (None: not extracted),
    and what the guard read of it (or why it refused it)."""

    sha256: str
    folder: Path | None
    contents: PackageContents | None = None
    refusal: UnsafeArchiveError | None = None


class CachePrefill:
    """Extract package files into ``cache_dir`` in the background and check them against records.

    Use as a context manager: ``submit`` files while the pack is read, then ``finish`` with the
    records. Leaving stops the work early when the block failed (what is being extracted
    finishes) and always waits for the thread.
    """

    def __init__(self, cache_dir: Path, concurrency: int = 2) -> None:
        self.cache_dir = cache_dir
        self.concurrency = max(1, concurrency)
        self._stop = threading.Event()
        self._results: dict[Path, concurrent.futures.Future[Staged]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Path, concurrent.futures.Future[Staged]] | None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixi-unpack-extract", daemon=True)

    def __enter__(self) -> CachePrefill:
        (self.cache_dir / STAGING).mkdir(parents=True, exist_ok=True)
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

    # -- the caller's side ---------------------------------------------------------------------------

    def submit(self, path: Path) -> None:
        """Start extracting the package file ``path`` (complete on disk); the first call per file counts."""
        key = path.resolve()
        if key in self._results or self._loop is None or self._queue is None:
            return
        future: concurrent.futures.Future[Staged] = concurrent.futures.Future()
        self._results[key] = future
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (key, future))

    def finish(self, records: list[rattler.RepoDataRecord], files: list[Path]) -> list[PackageContents]:
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
            staged = self._results[path.resolve()].result()
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
                    os.replace(staged.folder, target)
        if wrong:
            path = min(wrong)
            raise InvalidPackError(f"channel/{path.parent.name}/{path.name} is corrupt: {wrong[path]}")
        if refused:
            raise refused[min(refused)]
        return contents

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
            for future in self._results.values():  # a caller waiting on a dead thread must not hang
                if not future.done():
                    future.set_exception(RuntimeError("the package extraction stopped"))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._ready.set()
        client = Client()

        async def worker() -> None:
            assert self._queue is not None
            while (item := await self._queue.get()) is not None:
                path, future = item
                try:
                    future.set_result(await self._one(client, path))
                except BaseException as exc:  # handed to the caller's thread by the future
                    future.set_exception(exc)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, client: Client, path: Path) -> Staged:
        if self._stop.is_set():
            return Staged("", None)
        staged, scanned = await asyncio.gather(self._extract(client, path), _scan(path))
        if isinstance(scanned, UnsafeArchiveError):
            staged.refusal = scanned
        else:
            staged.contents = scanned
        return staged

    async def _extract(self, client: Client, path: Path) -> Staged:
        folder = self.cache_dir / STAGING / f"{path.parent.name}--{path.name}"
        try:
            sha256, _md5 = await download_and_extract(client, path.as_uri(), folder)
            return Staged(sha256.hex(), folder)
        except Exception as exc:  # an archive the extractor cannot read: hash it, rattler decides
            log.debug("could not extract %s ahead of the install: %s", path.name, exc)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(folder)
        return Staged((await asyncio.to_thread(hash_file, path, md5=False))[0], None)


async def _scan(path: Path) -> PackageContents | UnsafeArchiveError:
    try:
        return await scan_package(path)
    except UnsafeArchiveError as exc:
        return exc


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
