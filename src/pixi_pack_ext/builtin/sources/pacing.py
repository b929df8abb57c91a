"""How many requests to one origin may wait for their answer to begin at once.

A server accepts connections from a queue of fixed length, the listen backlog: 5 in Python's
``socketserver`` (``python -m http.server``), a common way to serve a channel folder. When more
connections arrive than it has accepted yet, the kernel drops the handshake's last packet and the
client waits a retransmission timeout (1 s, then 2 s, ...) for nothing. A server that closes the
connection after each answer (HTTP/1.0, ``Connection: close``) meets a new connection for every
file, so 50 downloads at once lost seconds per pack there (8 s against 0.6 s from a server that
keeps connections open).

A request whose answer has begun was accepted, so bounding the requests still waiting for their
answer bounds what can sit in that queue. Linux queues one connection more than the backlog, so
``BASE`` (6) fits a backlog of 5 (browsers, too, open six connections per host over HTTP/1.x).
Until the origin is known to keep its connections open, that is the bound, and while the probe
that asks is out, its own connection takes one of the places. Once an answer came from an origin
known to keep connections open, only the run's download limit applies; an origin that closes them
keeps the bound for the whole run. (Widening the bound while the probe was out, so that small
files from a keep-alive server did not wait for it, overflowed a backlog of 5 on packs of many
small files: a handshake dropped there costs a second.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Requests to one origin that may wait for their answer at once while it may close connections.
BASE = 6


@dataclass
class _Origin:
    waiting: int = 0
    #: Whether the origin closes each connection after its answer; None while not known.
    closes: bool | None = None
    answered: bool = False
    #: Whether a probe is asking the origin (its connection counts against the bound meanwhile).
    probing: bool = False
    queue: list[asyncio.Future[None]] = field(default_factory=list)

    def window(self, limit: int) -> int:
        if self.closes is False and self.answered:
            return limit
        if self.closes is None and self.probing:  # the probe's connection takes a place
            return max(1, min(BASE - 1, limit))
        return min(BASE, limit)

    def wake(self, limit: int) -> None:
        """Let as many queued requests re-check as there is room."""
        room = self.window(limit) - self.waiting
        for waiter in self.queue:
            if room <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                room -= 1


class AnswerPacer:
    """Per origin, at most ``window`` requests waiting for their answer to begin (see the module).

    ``probe(url)``, when given, is run once per origin on a thread of its own to learn whether the
    origin closes its connections (None: it could not tell, taken as keeping them open); without
    it the caller reports what answers say with ``learn``.
    """

    def __init__(self, limit: int, probe: Callable[[str], bool | None] | None = None) -> None:
        self._limit = max(1, limit)
        self._origins: dict[str, _Origin] = {}
        self._probe = probe

    def window(self, origin: str) -> int:
        """How many requests to ``origin`` may wait for an answer at once now."""
        return self._origins.setdefault(origin, _Origin()).window(self._limit)

    def learn(self, origin: str, closes: bool) -> None:
        """Record whether ``origin`` closes its connections (what an answer said)."""
        state = self._origins.setdefault(origin, _Origin())
        if state.closes is not closes:
            state.closes = closes
            state.wake(self._limit)

    def _start_probe(self, origin: str, url: str) -> None:
        assert self._probe is not None
        probe = self._probe
        loop = asyncio.get_running_loop()

        def deliver(closes: bool | None) -> None:
            state = self._origins[origin]
            state.probing = False
            if state.closes is None:  # an answer seen meanwhile knows better
                self.learn(origin, bool(closes))
            else:
                state.wake(self._limit)  # the probe's place is free

        def run() -> None:
            closes = probe(url)
            with contextlib.suppress(RuntimeError):  # the run has ended meanwhile
                loop.call_soon_threadsafe(deliver, closes)

        # a daemon thread, not the loop's executor: a probe left waiting never holds up the exit
        threading.Thread(target=run, name="pixi-pack-probe", daemon=True).start()

    @contextlib.asynccontextmanager
    async def request(self, origin: str, url: str = "") -> AsyncIterator[Callable[[], None]]:
        """Wait for room to send a request for ``url`` to ``origin``; call the yielded function when
        its answer begins. Leaving the block without that call frees the room too."""
        state = self._origins.get(origin)
        if state is None:
            state = self._origins[origin] = _Origin()
            if self._probe is not None and url:
                state.probing = True
                self._start_probe(origin, url)
        while state.waiting >= state.window(self._limit):
            waiter = asyncio.get_running_loop().create_future()
            state.queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    state.wake(self._limit)  # it was let in: pass its turn on
                raise
            finally:
                state.queue.remove(waiter)
        state.waiting += 1
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                state.waiting -= 1
                state.wake(self._limit)

        def answered() -> None:
            if not freed:
                state.answered = True
            free()

        try:
            yield answered
        finally:
            free()


def answer_closes(http_version: str, connection: str | None) -> bool:
    """Whether an answer of ``http_version`` with this ``Connection`` header ends its connection."""
    tokens = {token.strip().lower() for token in (connection or "").split(",")}
    if "close" in tokens:
        return True
    return http_version.upper() == "HTTP/1.0" and "keep-alive" not in tokens


def closes_connections(url: str, timeout: float) -> bool | None:
    """Whether the plain-HTTP server of ``url`` closes the connection after an answer (HTTP/1.0
    without keep-alive, or ``Connection: close``), from one ``HEAD`` request without credentials;
    None when it cannot tell. HTTPS servers are not asked (they are taken to keep connections
    open, as servers behind TLS do in practice): the question would cost a TLS handshake.

    The request is written on a plain socket and only the status line and ``Connection`` headers
    of the answer are read (at most ``PROBE_HEAD_LIMIT`` bytes): it runs while the first downloads
    do, and loading an HTTP client for it would hold up the event loop more than the answer helps.
    """
    import socket

    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        return None
    if parts.scheme != "http" or not host:
        return None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = host if ":" not in host else f"[{host}]"
    if parts.port:
        authority += f":{parts.port}"
    request = f"HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nAccept-Encoding: identity\r\n\r\n"
    try:
        # an ASCII name goes as bytes: a str would load the IDNA codec to encode it
        address = host.encode("ascii") if host.isascii() else host
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(request.encode("ascii", "strict"))
            head = b""
            deadline = time.monotonic() + timeout  # a server trickling its head gets no longer
            while b"\r\n\r\n" not in head and len(head) < PROBE_HEAD_LIMIT:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the answer's head did not end in time")
                conn.settimeout(left)
                chunk = conn.recv(PROBE_HEAD_LIMIT - len(head))
                if not chunk:
                    break
                head += chunk
    except (OSError, UnicodeError, ValueError) as exc:
        log.debug("could not tell whether %s keeps connections open: %s", host, exc)
        return None
    return _head_closes(head.partition(b"\r\n\r\n")[0])


#: The most of an answer's head the probe reads (bytes).
PROBE_HEAD_LIMIT = 64 << 10


def _head_closes(head: bytes) -> bool | None:
    """``answer_closes`` of an answer's head (status line and headers); None when it is no HTTP answer."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if version not in ("HTTP/1.0", "HTTP/1.1") or not rest[:3].isdigit():
        return None
    connection = ",".join(
        value
        for name, _, value in (line.partition(":") for line in lines[1:])
        if name.strip().lower() == "connection"
    )
    return answer_closes(version, connection or None)
