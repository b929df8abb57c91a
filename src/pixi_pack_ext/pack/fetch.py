"""Concurrent, verified, cached downloads through the channel-source plugins.

Every file is hashed while it streams and checked against the hash the plan records before it is
moved into place; ``[mirrors]`` replace the original URL, as in pixi; a ``--use-cache`` folder in
channel layout is consulted first and filled atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path

from ..config import Settings
from ..errors import ChecksumError, DownloadError, OversizeDownloadError, PixiPackError
from ..hookspecs import SourceSession
from ..plugins import PluginManager
from ..redact import redact_url
from .download_cache import DownloadCache
from .fetch_item import FetchItem, check_hash
from .progress import Progress
from .sinks import DiskWriter, HashingSink

log = logging.getLogger(__name__)


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


class Fetcher:
    """Fetch many files concurrently through the source plugins, verifying each one."""

    def __init__(
        self,
        plugins: PluginManager,
        settings: Settings,
        cache: DownloadCache | None = None,
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
