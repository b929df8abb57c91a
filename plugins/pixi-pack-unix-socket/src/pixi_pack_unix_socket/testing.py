"""A channel folder served over HTTP on a Unix domain socket, for tests of this plugin."""

from __future__ import annotations

import shutil
import socketserver
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def address_string(self) -> str:  # a Unix socket peer has no address
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


class UnixChannelServer:
    """Serve ``directory`` on a fresh socket in a short temporary folder (socket paths are short)."""

    def __init__(self, directory: Path) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="pp-sock-"))
        self.socket_path = self._folder / "channel.sock"
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"requests": self.requests})
        self._server = socketserver.ThreadingUnixStreamServer(
            str(self.socket_path), partial(handler, directory=str(directory))
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http+unix://<percent-encoded socket path>/``."""
        return f"http+unix://{quote(str(self.socket_path), safe='')}/"

    def __enter__(self) -> UnixChannelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._folder, ignore_errors=True)
