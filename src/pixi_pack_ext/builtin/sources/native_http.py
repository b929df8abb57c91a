"""rattler's own downloader (Rust, reqwest) for the first try of a plain HTTP(S) download.

It writes a big file itself, outside the event loop and without Python handling each chunk, which
is what keeps a pack of fast links at the speed of the network. A small file (the lock records
its size, at most ``SMALL_FILE``) is received in memory and handed to the sink in one piece: on
packs of many small files the file the downloader made, the looks at whether it exists yet and
the second read to hash it cost more than the download itself, and the sink's writer thread
creates the files one after another instead of several threads contending for the folder. It is used only
where nothing that only the httpx path does is needed: no credentials for the URL, no proxy and
no TLS setting of our own; an origin where it fails without an HTTP status (TLS, connection) is left to
httpx for the rest of the run. Whatever it wrote before a failure stays in the sink, so the next
(httpx) attempt resumes from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from pathlib import Path

from ...config import Settings
from ...errors import PixiPackError
from ...hookspecs import DownloadSink
from .pacing import AnswerPacer

#: Proxy settings: requests then go the way httpx takes them (rattler's client honours
#: ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` like httpx does).
PROXY_ENVIRONMENT = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_STATUS = re.compile(r"\((\d{3}) ")
#: The first and the longest pause between looks at whether an answer has begun (seconds).
ANSWER_POLL = (0.001, 0.05)
#: Files the lock records at most this size of are received in memory (bytes).
SMALL_FILE = 1 << 20
#: How often a download received in memory is looked at while it runs (seconds).
MEMORY_POLL = 0.1


class NativeFailure(Exception):
    """The native try failed; ``status`` is the HTTP status when the server answered with one."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class NativeDownloader:
    """One rattler client for a run, and the origins it has given up on."""

    def __init__(self, settings: Settings, pacer: AnswerPacer | None = None) -> None:
        from rattler.networking import Client

        self._client = Client()
        self._pacer = pacer or AnswerPacer(settings.downloads)
        self._read_timeout = settings.read_timeout
        self._given_up: set[str] = set()

    @staticmethod
    def usable(settings: Settings) -> bool:
        """Whether this run may use the native path at all."""
        if not settings.tls_verify or any(os.environ.get(name) for name in PROXY_ENVIRONMENT):
            return False
        try:
            from rattler.package_streaming import download_to_path, download_to_writer  # noqa: F401
        except ImportError:
            return False
        return True

    def serves(self, origin: str) -> bool:
        return origin not in self._given_up

    async def download(self, url: str, origin: str, sink: DownloadSink) -> None:
        """Download ``url`` into ``sink``; raise ``NativeFailure`` when it did not complete.

        Nothing arriving for the read timeout is a failure like any other (the sink cancels the
        download, which closes its connection). A failure without an HTTP status (a connection,
        TLS or stalled server) leaves the origin to httpx from then on.
        """
        try:
            if sink.limit is not None and sink.limit <= SMALL_FILE:
                await self._download_to_memory(url, origin, sink, sink.limit)
            else:
                await self._download_to_file(url, origin, sink)
        except PixiPackError:
            raise  # the sink refused what was sent (more than the lock's size): not worth a retry
        except Exception as exc:  # rattler raises plain RuntimeError/OSError with a message
            match = _STATUS.search(str(exc)) if "HTTP status" in str(exc) else None
            if match is None:
                self._given_up.add(origin)
            reason = f"HTTP {match.group(1)}" if match else type(exc).__name__
            raise NativeFailure(reason, int(match.group(1)) if match else None) from None

    async def _download_to_memory(self, url: str, origin: str, sink: DownloadSink, limit: int) -> None:
        """Receive ``url`` in memory and write it to ``sink`` in one piece (what arrived before a
        failure, too). More than ``limit`` bytes stop the download; the sink then refuses them."""
        from rattler.package_streaming import download_to_writer

        received = _Received(limit)
        cancelled = False
        try:
            async with self._pacer.request(origin, url) as answered:
                received.last = time.monotonic()  # waiting for room is not part of the stall timeout
                task = asyncio.ensure_future(download_to_writer(self._client, url, received))
                try:
                    while not (await asyncio.wait({task}, timeout=MEMORY_POLL))[0]:
                        if received.size:
                            answered()
                        if time.monotonic() - received.last >= self._read_timeout:
                            raise TimeoutError(f"nothing arrived for {self._read_timeout:g} s")
                    error = task.exception()
                    if received.size or error is None or "HTTP status" in str(error):
                        answered()  # an answer began; a connection lost before one only frees the place
                    task.result()
                except BaseException as exc:
                    cancelled = isinstance(exc, asyncio.CancelledError)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    raise
        finally:
            # what arrived is the sink's, a failed download's part too (the next try resumes
            # after it); nobody reads the sink of a cancelled run
            data = received.take()
            if data and not cancelled:
                sink.write(data)

    async def _download_to_file(self, url: str, origin: str, sink: DownloadSink) -> None:
        """Let rattler write ``url`` at the sink's path; the sink hashes what it wrote."""
        from rattler.package_streaming import download_to_path

        async def write_file(path: Path) -> None:
            # rattler creates the file when the answer begins: the request then stops counting
            # against the origin's pacing (a placeholder left there goes first)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            task = asyncio.ensure_future(download_to_path(self._client, url, path))
            try:
                pause = ANSWER_POLL[0]
                while not task.done() and not os.path.lexists(path):
                    await asyncio.wait({task}, timeout=pause)
                    pause = min(2 * pause, ANSWER_POLL[1])
                if os.path.lexists(path):
                    answered()
                await task
            except BaseException:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise

        # waiting for room is not part of the stall timeout: the sink starts its clock after
        async with self._pacer.request(origin, url) as answered:
            await sink.receive_file(write_file, idle_timeout=self._read_timeout)


class _Received:
    """The bytes of a download received in memory, in one buffer that the sink then takes as it is
    (no second copy); rattler calls ``write`` from its own threads.

    A chunk beyond ``limit`` is kept (the sink refuses it, naming the size) and stops the download;
    so does any chunk after ``take`` (a stopped download's last call cannot change what was taken).
    """

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.last = time.monotonic()
        self._lock = threading.Lock()
        self._taken = False

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        with self._lock:
            if self._taken:
                raise ValueError("the download was stopped")
            self.data += chunk
        self.last = time.monotonic()
        if self.size > self.limit:
            raise ValueError(f"more than the {self.limit} bytes expected")

    def take(self) -> bytearray:
        """What arrived; nothing is added to it afterwards."""
        with self._lock:
            self._taken = True
            return self.data
