"""Requests waiting for their answer are paced per origin, so a server with Python's listen backlog
of 5 (``python -m http.server``) never has handshakes dropped by a burst of new connections."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest

from pixi_pack_ext.builtin.sources.pacing import BASE, answer_closes, closes_connections
from pixi_pack_ext.config import Settings
from pixi_pack_ext.pack.fetch import Fetcher
from pixi_pack_ext.pack.fetch_item import FetchItem
from pixi_pack_ext.plugins import PluginManager
from pixi_pack_ext.testing.world import ChannelServer, _QuietHandler

FILES = 60


class _Waiting:
    """How many requests the server holds before answering, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0


class _SlowToAnswer(_QuietHandler):
    """Answers each request 20 ms after reading it, as a busy server would (an HTTP/1.0 server:
    one connection per file)."""

    waiting: _Waiting

    def do_GET(self) -> None:
        with self.waiting.lock:
            self.waiting.now += 1
            self.waiting.most = max(self.waiting.most, self.waiting.now)
        time.sleep(0.02)
        with self.waiting.lock:
            self.waiting.now -= 1
        super().do_GET()


def _serve_files(root: Path) -> list[tuple[str, str, int]]:
    names = []
    for i in range(FILES):
        data = f"file {i}\n".encode() * 50
        (root / f"f{i:03d}.bin").write_bytes(data)
        names.append((f"f{i:03d}.bin", hashlib.sha256(data).hexdigest(), len(data)))
    return names


@pytest.fixture(params=["file", "memory"])
def sized(request: pytest.FixtureRequest) -> bool:
    """Without a size from the lock rattler writes each file itself; with one (small files) it is
    received in memory: the pacing must hold either way."""
    return bool(request.param == "memory")


def _fetch_all(tmp_path: Path, handler: type[_SlowToAnswer], sized: bool) -> _Waiting:
    """Download FILES files from a server with ``handler``, 50 at a time; how many waited at once."""
    served = tmp_path / "served"
    served.mkdir()
    names = _serve_files(served)
    waiting = _Waiting()
    with ChannelServer(served, handler=type("Handler", (handler,), {"waiting": waiting})) as server:
        items = [
            FetchItem(
                label=name,
                url=server.url + name,
                dest=tmp_path / "out" / name,
                sha256=digest,
                size=size if sized else None,
            )
            for name, digest, size in names
        ]
        fetcher = Fetcher(PluginManager(autoload=False), Settings(downloads=50))
        asyncio.run(fetcher.fetch_all(items))
    for name, _, _ in names:
        assert (tmp_path / "out" / name).read_bytes() == (served / name).read_bytes()
    return waiting


def test_a_server_that_closes_each_connection_never_has_many_requests_waiting(
    tmp_path: Path, sized: bool
) -> None:
    # without pacing, all 50 downloads wait at the server at once; with it, BASE at most
    waiting = _fetch_all(tmp_path, _SlowToAnswer, sized)
    assert waiting.most <= BASE, f"{waiting.most} requests waited for an answer at once"


class _SlowToTell(_SlowToAnswer):
    """Answers the probe (HEAD) late: the downloads go on meanwhile, and its connection counts."""

    def do_HEAD(self) -> None:
        with self.waiting.lock:
            self.waiting.now += 1
            self.waiting.most = max(self.waiting.most, self.waiting.now)
        time.sleep(0.3)
        with self.waiting.lock:
            self.waiting.now -= 1
        super().do_HEAD()


def test_while_the_probe_is_out_its_connection_counts_too(tmp_path: Path, sized: bool) -> None:
    """A backlog of 5 holds 6 connections: the probe and the downloads together never exceed that."""
    waiting = _fetch_all(tmp_path, _SlowToTell, sized)
    assert waiting.most <= BASE, f"{waiting.most} connections waited for an answer at once"


class _KeepsConnections(_SlowToAnswer):
    protocol_version = "HTTP/1.1"


def test_a_server_that_keeps_connections_open_gets_the_full_concurrency(tmp_path: Path, sized: bool) -> None:
    waiting = _fetch_all(tmp_path, _KeepsConnections, sized)
    assert waiting.most > BASE, f"only {waiting.most} requests waited at once: the pacing held it back"


@pytest.mark.parametrize(
    ("version", "connection", "closes"),
    [
        ("HTTP/1.0", None, True),
        ("HTTP/1.0", "keep-alive", False),
        ("HTTP/1.1", None, False),
        ("HTTP/1.1", "Close", True),
        ("HTTP/1.1", "Upgrade, close", True),
        ("HTTP/2", None, False),
    ],
)
def test_what_answers_say_about_their_connection(version: str, connection: str | None, closes: bool) -> None:
    assert answer_closes(version, connection) is closes


class _KeepAlive(_QuietHandler):
    protocol_version = "HTTP/1.1"


class _SaysClose(_QuietHandler):
    protocol_version = "HTTP/1.1"

    def end_headers(self) -> None:
        self.send_header("Connection", "close")
        super().end_headers()


@pytest.mark.parametrize(
    ("handler", "closes"), [(_QuietHandler, True), (_KeepAlive, False), (_SaysClose, True)]
)
def test_the_probe_asks_a_real_server(tmp_path: Path, handler: type[_QuietHandler], closes: bool) -> None:
    (tmp_path / "f.conda").write_bytes(b"x" * 100)
    with ChannelServer(tmp_path, handler=handler) as server:
        assert closes_connections(server.url + "f.conda", timeout=5) is closes


def _raw_server(answer: bytes, endless: bool = False) -> tuple[str, threading.Thread]:
    """A server on 127.0.0.1 that answers one connection with ``answer`` (repeated while the
    client reads, when ``endless``); its URL and thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                with contextlib.suppress(OSError):
                    conn.sendall(answer)
                    while endless:
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/f.conda", thread


@pytest.mark.parametrize(
    ("answer", "closes"),
    [
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nCONNECTION: Keep-Alive, Close\r\n\r\n", True),
        (b"HTTP/1.1 404 Not Found\r\nconnection:close\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nX-Connection: close\r\n\r\n", False),
        (b"SSH-2.0-OpenSSH_9.2\r\n", None),
        (b"HTTP/2 200\r\n\r\n", None),
        (b"", None),
    ],
)
def test_the_probe_reads_only_the_status_line_and_connection_headers(
    answer: bytes, closes: bool | None
) -> None:
    url, thread = _raw_server(answer)
    assert closes_connections(url, timeout=5) is closes
    thread.join(5)


def test_a_server_sending_an_endless_head_costs_the_probe_a_bounded_read() -> None:
    url, _ = _raw_server(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 4096, endless=True)
    start = time.monotonic()
    assert closes_connections(url, timeout=5) is False  # what the bounded head said
    assert time.monotonic() - start < 5


def test_a_server_that_never_answers_the_probe_is_given_up_after_the_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    with listener:
        start = time.monotonic()
        assert closes_connections(f"http://127.0.0.1:{listener.getsockname()[1]}/f", timeout=0.5) is None
        assert time.monotonic() - start < 3


def test_a_server_trickling_its_head_is_given_up_after_the_timeout() -> None:
    """One byte every 0.2 s never trips a read's own timeout; the probe's whole wait is bounded."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                conn.recv(4096)
                while not stop.wait(0.2):
                    conn.sendall(b"a")

    threading.Thread(target=serve, daemon=True).start()
    start = time.monotonic()
    try:
        assert closes_connections(f"http://127.0.0.1:{listener.getsockname()[1]}/f", timeout=1) is None
        assert time.monotonic() - start < 3
    finally:
        stop.set()
