"""Verify the pack's packages and extract them into rattler's package cache in one pass.

Given ``file://`` records, ``rattler.install`` extracts every package into its cache and then links
it into the environment. Here each package is extracted ahead of the install with py-rattler's
extractor, which hashes the whole file as it reads it: that sha256 is the package's check against
the pack's repodata, so the bytes are read once instead of twice. It runs on an event loop of its
own thread (the extractor releases the GIL), while the package guard reads the same archives.

rattler then finds each package in its cache (``<cache>/<name>-<version>-<build>/``) and only links.
The cache lives in the unpack's private work folder and rattler's extractor keeps every entry inside
its target folder; nothing reaches the environment before every hash and the guard have passed.
A package the extractor cannot read, or two records sharing a cache folder, are hashed here
instead and left to rattler to extract, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType

import rattler
from rattler import Client
from rattler.package_streaming import download_and_extract

from .errors import InvalidPackError, PixiPackError
from .fetch import hash_file

log = logging.getLogger(__name__)


def cache_folder_name(record: rattler.RepoDataRecord) -> str:
    """The folder rattler's package cache keeps an extracted package in."""
    return f"{record.name.normalized}-{record.version}-{record.build}"


class CachePrefill:
    """Check ``files[i]`` against ``records[i].sha256`` and extract it into ``cache_dir``, in the background.

    Use as a context manager: the work starts on entry. Leaving waits for it and raises the first
    wrong hash (in file order), also in place of a ``PixiPackError`` the block raised: a corrupt
    package explains a guard refusal, not the other way round. Other exceptions stop the work
    early (what is being extracted finishes) and pass through.
    """

    def __init__(
        self, records: list[rattler.RepoDataRecord], files: list[Path], cache_dir: Path, concurrency: int = 2
    ) -> None:
        names = Counter(cache_folder_name(r) for r in records)
        jobs = [(r, f, names[cache_folder_name(r)] == 1) for r, f in zip(records, files, strict=True)]
        self.jobs = sorted(jobs, key=lambda job: _size(job[1]), reverse=True)  # the longest first
        self.cache_dir = cache_dir
        self.concurrency = max(1, concurrency)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._wrong: dict[Path, str] = {}
        self._thread = threading.Thread(target=self._run, name="pixi-unpack-extract", daemon=True)

    def __enter__(self) -> CachePrefill:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if self.jobs:
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, PixiPackError):
            self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        if self._wrong:
            path = min(self._wrong)
            raise InvalidPackError(
                f"channel/{path.parent.name}/{path.name} is corrupt: {self._wrong[path]}"
            ) from None
        if exc_type is None and self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._extract_all())
        except BaseException as exc:  # handed to the caller's thread in __exit__
            self._error = exc

    async def _extract_all(self) -> None:
        client = Client()
        queue = list(reversed(self.jobs))

        async def worker() -> None:
            while queue and not self._stop.is_set():
                record, path, extract = queue.pop()
                await self._one(client, record, path, extract)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, client: Client, record: rattler.RepoDataRecord, path: Path, extract: bool) -> None:
        assert record.sha256 is not None  # verify_channel refuses records without one
        expected = record.sha256.hex()
        target = self.cache_dir / cache_folder_name(record)
        actual: str | None = None
        if extract:
            try:
                sha256, _md5 = await download_and_extract(client, path.resolve().as_uri(), target)
                actual = sha256.hex()
            except Exception as exc:  # an archive the extractor cannot read: hash it, rattler decides
                log.debug("could not extract %s ahead of the install: %s", path.name, exc)
                shutil.rmtree(target, ignore_errors=True)
        if actual is None:
            actual = (await asyncio.to_thread(hash_file, path, md5=False))[0]
        if actual != expected:
            shutil.rmtree(target, ignore_errors=True)
            self._wrong[path] = f"expected sha256 {expected}, got {actual}"


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
