"""The built-in local source: ``file://`` URLs and plain paths (as locks write local packages)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ...config import Settings
from ...errors import DownloadError
from ...hookspecs import ChannelSource, DownloadSink, hookimpl

CHUNK = 1 << 20


def url_to_path(url: str) -> Path:
    """The local path of a ``file://`` URL or a plain path (``C:\\x`` on Windows too)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return Path(url)
    path = unquote(parts.path)
    if sys.platform == "win32" and path.startswith("/") and len(path) > 2 and path[2] == ":":
        path = path[1:]
    if parts.netloc and parts.netloc != "localhost":
        path = f"//{parts.netloc}{path}"
    return Path(path)


class FileSession:
    """Copies local files into the sink in large chunks, off the event loop."""

    async def download(self, url: str, sink: DownloadSink) -> None:
        path = url_to_path(url)
        try:
            await asyncio.to_thread(self._copy, path, sink)
        except FileNotFoundError:
            raise DownloadError(f"local package file '{path}' does not exist") from None
        except IsADirectoryError:
            raise DownloadError(f"'{path}' is a folder, not a package file") from None
        except OSError as exc:
            raise DownloadError(f"could not read '{path}': {exc.strerror}") from None

    @staticmethod
    def _copy(path: Path, sink: DownloadSink) -> None:
        if sink.offset:
            sink.restart()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                sink.write(chunk)


@asynccontextmanager
async def open_file(settings: Settings) -> AsyncIterator[FileSession]:
    yield FileSession()


@hookimpl
def pixi_pack_sources() -> list[ChannelSource]:
    return [
        ChannelSource(
            name="file", schemes=("file",), open=open_file, description="file:// URLs and local paths"
        )
    ]
