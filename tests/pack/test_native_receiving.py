"""rattler's downloader receives a small file in memory and a big one straight to disk; both ways
must keep the same promises against a real (faulty) server: the locked bytes and their hashes,
nothing beyond the lock's size, a stall stopped after the read timeout, and what arrived before a
failure kept in the sink so the next try resumes after it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixi_pack_ext.builtin.sources import native_http
from pixi_pack_ext.builtin.sources.native_http import NativeDownloader, NativeFailure
from pixi_pack_ext.builtin.sources.pacing import BASE, AnswerPacer
from pixi_pack_ext.config import Settings
from pixi_pack_ext.errors import OversizeDownloadError
from pixi_pack_ext.pack.sinks import DiskWriter, HashingSink
from pixi_pack_ext.testing.faulty_server import FaultyServer, Garbage, Reset, Stall, Status, Truncate
from pixi_pack_ext.testing.world import ChannelServer, _QuietHandler

SIZE = 300 << 10
NAME = "/linux-64/big-1.0-0.conda"


@pytest.fixture(params=["memory", "file"])
def receiving(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs once with the file received in memory, once written by rattler to disk."""
    monkeypatch.setattr(native_http, "SMALL_FILE", 1 << 20 if request.param == "memory" else 0)
    return str(request.param)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FaultyServer, bytes]]:
    body = os.urandom(SIZE)
    (tmp_path / "serve" / "linux-64").mkdir(parents=True)
    (tmp_path / "serve" / NAME.lstrip("/")).write_bytes(body)
    with FaultyServer(tmp_path / "serve") as server:
        yield server, body


def _receive(
    server: FaultyServer, dest: Path, read_timeout: float = 60.0
) -> tuple[HashingSink, BaseException | None]:
    """One native download of ``NAME`` into a fresh sink; the sink and what it raised, if anything."""

    async def run() -> tuple[HashingSink, BaseException | None]:
        writer = DiskWriter()
        sink = HashingSink(dest, lambda _n: None, md5=True, writer=writer, limit=SIZE)
        url = server.url.rstrip("/") + NAME
        origin = server.url.rstrip("/")
        raised: BaseException | None = None
        try:
            await NativeDownloader(Settings(read_timeout=read_timeout)).download(url, origin, sink)
        except Exception as exc:  # the caller looks at what it was
            raised = exc
        finally:
            await sink.finish()
            sink.close()
            writer.close()
        return sink, raised

    return asyncio.run(run())


def test_the_locked_bytes_and_their_hashes(receiving: str, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, body = served
    sink, raised = _receive(server, tmp_path / "out.conda")
    assert raised is None
    assert (tmp_path / "out.conda").read_bytes() == body
    assert sink.offset == SIZE
    assert sink.digests() == (hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest())


def test_more_than_the_locks_size_is_refused(receiving: str, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    server.add_faults(NAME, Garbage(extra=b"x" * 70_000))
    sink, raised = _receive(server, tmp_path / "out.conda")
    assert raised is not None
    assert sink.oversize is not None and sink.oversize > SIZE
    if receiving == "memory":  # the sink refuses it itself, naming the lock's size, and writes none of it
        assert isinstance(raised, OversizeDownloadError) and f"the {SIZE} bytes the lock records" in str(
            raised
        )
        assert (tmp_path / "out.conda").stat().st_size == 0


@pytest.mark.parametrize("fault", [Stall(after=100_000), Truncate(after=100_000), Reset(after=100_000)])
def test_what_arrived_before_a_failure_is_kept_for_the_next_try(  # type: ignore[no-untyped-def]
    receiving: str, served, fault: object, tmp_path: Path
) -> None:
    server, body = served
    server.add_faults(NAME, fault)  # type: ignore[arg-type]
    sink, raised = _receive(server, tmp_path / "out.conda", read_timeout=0.5)
    assert isinstance(raised, NativeFailure) and raised.status is None
    kept = (tmp_path / "out.conda").read_bytes()
    # what the sink holds is a prefix of the file, and its offset says how long
    assert 0 < sink.offset <= 100_000 and kept == body[: sink.offset]
    server.release()


def test_an_http_status_is_reported_with_its_code(receiving: str, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    server.add_faults(NAME, Status(404))
    sink, raised = _receive(server, tmp_path / "out.conda")
    assert isinstance(raised, NativeFailure) and raised.status == 404
    assert sink.offset == 0


class _SlowToAnswer(_QuietHandler):
    """Answers each request 0.2 s after reading it: slow, but well within the read timeout."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(0.2)
        super().do_GET()


def test_waiting_for_room_at_the_origin_is_not_a_stall(receiving: str, tmp_path: Path) -> None:
    """The read timeout starts when the request is sent, not while it waits for the pacer: a file
    queued behind others for longer than the timeout still arrives on the first try."""
    body = os.urandom(SIZE)
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "a.conda").write_bytes(body)

    async def run() -> None:
        with ChannelServer(tmp_path / "serve", handler=_SlowToAnswer) as server:
            origin = server.url.rstrip("/")
            pacer = AnswerPacer(1)  # one request may wait for its answer at a time
            held = asyncio.Event()

            async def hold_the_place() -> None:
                async with pacer.request(origin):
                    held.set()
                    await asyncio.sleep(1.0)  # twice the read timeout

            holder = asyncio.ensure_future(hold_the_place())
            await held.wait()
            writer = DiskWriter()
            sink = HashingSink(tmp_path / "out.conda", lambda _n: None, writer=writer, limit=SIZE)
            try:
                downloader = NativeDownloader(Settings(read_timeout=0.5), pacer)
                await downloader.download(origin + "/a.conda", origin, sink)
            finally:
                await sink.finish()
                sink.close()
                writer.close()
                await holder
            assert downloader.serves(origin)

    asyncio.run(run())
    assert (tmp_path / "out.conda").read_bytes() == body


def test_a_connection_dropped_before_any_answer_does_not_widen_the_pacing(
    receiving: str, tmp_path: Path
) -> None:
    """Only an answer tells the pacer that requests to an origin get through; a connection the
    server drops before answering does not (the next requests would overflow its backlog)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def drop_one() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, before any byte of an answer

    dropper = threading.Thread(target=drop_one, daemon=True)
    dropper.start()
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def run() -> None:
        pacer = AnswerPacer(50)
        pacer.learn(origin, closes=False)  # keeps connections open, as far as it is known
        writer = DiskWriter()
        sink = HashingSink(tmp_path / "out.conda", lambda _n: None, writer=writer, limit=SIZE)
        try:
            with pytest.raises(NativeFailure):
                await NativeDownloader(Settings(read_timeout=5), pacer).download(
                    origin + "/a.conda", origin, sink
                )
        finally:
            await sink.finish()
            sink.close()
            writer.close()
        assert pacer.window(origin) == BASE

    with listener:
        asyncio.run(run())
    dropper.join(5)


def test_a_chunk_after_the_bytes_were_taken_changes_nothing() -> None:
    """rattler's thread may still deliver a chunk after a stopped download's bytes went to the
    sink (whose writer thread writes that very buffer): it is refused, the taken bytes stay."""
    received = native_http._Received(limit=100)
    received.write(b"abc")
    taken = received.take()
    with pytest.raises(ValueError):
        received.write(b"def")
    assert taken == b"abc"
