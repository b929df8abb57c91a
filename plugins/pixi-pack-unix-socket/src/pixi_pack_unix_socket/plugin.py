"""The ``http+unix://`` channel source: HTTP to a server listening on a Unix domain socket.

``http+unix://%2Frun%2Fchannel.sock/noarch/x.conda`` asks the server on ``/run/channel.sock`` for
``/noarch/x.conda``. One pooled httpx client per socket serves every download of a pack run; a
download that breaks off is resumed with a ``Range`` request. pixi-pack checks each file's hash,
tries mirrors and limits concurrency, so a source only moves bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pixi_pack_ext.config import Settings
from pixi_pack_ext.errors import DownloadError
from pixi_pack_ext.hookspecs import ChannelSource, DownloadSink, hookimpl

if TYPE_CHECKING:  # imported when a download starts: every pixi-pack and pixi-unpack run loads plugins
    import httpx

SCHEME = "http+unix"


def split_url(url: str) -> tuple[str, str]:
    """``http+unix://%2Fa%2Fb.sock/x/y?q`` -> (``/a/b.sock``, ``/x/y?q``)."""
    parts = urlsplit(url)
    socket_path = unquote(parts.netloc)
    if not socket_path:
        raise DownloadError(f"'{url}' names no socket: write it as http+unix://%2Fpath%2Fto.sock/file")
    path = parts.path or "/"
    return socket_path, f"{path}?{parts.query}" if parts.query else path


class UnixSocketSession:
    """The httpx clients of one pack run, one per socket path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, socket_path: str) -> httpx.AsyncClient:
        import httpx

        if socket_path not in self._clients:
            transport = httpx.AsyncHTTPTransport(uds=socket_path, retries=1)
            timeout = httpx.Timeout(30.0, read=self.settings.read_timeout)
            self._clients[socket_path] = httpx.AsyncClient(transport=transport, timeout=timeout)
        return self._clients[socket_path]

    async def download(self, url: str, sink: DownloadSink) -> None:
        import httpx

        socket_path, path = split_url(url)
        client = self._client(socket_path)
        for attempt in range(self.settings.retries + 1):
            headers = {"Range": f"bytes={sink.offset}-"} if sink.offset else {}
            try:
                async with client.stream("GET", f"http://localhost{path}", headers=headers) as response:
                    if response.status_code >= 400:
                        raise DownloadError(f"{url}: HTTP {response.status_code} from {socket_path}")
                    if sink.offset and response.status_code != 206:
                        sink.restart()  # the server sent the whole file again
                    async for chunk in response.aiter_raw():
                        sink.write(chunk)
                return
            except httpx.TransportError as exc:
                if attempt == self.settings.retries:
                    raise DownloadError(
                        f"could not download {url} from socket {socket_path}: {type(exc).__name__}"
                    ) from None
                await asyncio.sleep(0.2 * 2**attempt)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


@asynccontextmanager
async def open_session(settings: Settings) -> AsyncIterator[UnixSocketSession]:
    session = UnixSocketSession(settings)
    try:
        yield session
    finally:
        await session.aclose()


@hookimpl
def pixi_pack_sources() -> list[ChannelSource]:
    return [
        ChannelSource(
            name="unix-socket",
            schemes=(SCHEME,),
            open=open_session,
            description="HTTP over a Unix domain socket (http+unix://%2Fpath%2Fto.sock/...)",
        )
    ]
