"""rattler's own downloader (Rust, reqwest) for the first try of a plain HTTP(S) download.

It writes the file itself, outside the event loop and without Python handling each chunk, which
is what keeps a pack of many files or of fast links at the speed of the network. It is used only
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
            from rattler.package_streaming import download_to_path  # noqa: F401
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

        try:
            # waiting for room is not part of the stall timeout: the sink starts its clock after
            async with self._pacer.request(origin, url) as answered:
                await sink.receive_file(write_file, idle_timeout=self._read_timeout)
        except PixiPackError:
            raise  # the sink refused what was sent (more than the lock's size): not worth a retry
        except Exception as exc:  # rattler raises plain RuntimeError/OSError with a message
            match = _STATUS.search(str(exc)) if "HTTP status" in str(exc) else None
            if match is None:
                self._given_up.add(origin)
            reason = f"HTTP {match.group(1)}" if match else type(exc).__name__
            raise NativeFailure(reason, int(match.group(1)) if match else None) from None
