"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, path by path.

Tests of retries, resumes, timeouts and interrupts need a server that fails in exactly one way at
exactly one moment. ``FaultyServer`` serves a folder like ``ChannelServer`` (HTTP/1.1 keep-alive,
``Range`` requests, optional credentials) and, for any path, plays a queue of faults first: one per
request, then normal service (or the last fault forever with ``always=True``)::

    with FaultyServer(channel_dir) as server:
        server.add_faults("/linux-64/x.conda", Status(500), Reset(after=100))
        server.add_faults("/noarch/y.conda", Stall(), always=True)
        ...  # the 1st request of x gets a 500, the 2nd a reset after 100 bytes, the 3rd the file
        server.wait_for(lambda log: log.count("/noarch/y.conda") >= 1)

Paths are matched after the ``/t/<token>`` prefix is removed, so conda-token URLs work too.
"""

from __future__ import annotations

import base64
import functools
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .world import ChannelServer

#: The longest any fault holds a request thread (so a forgotten server never hangs a test run).
MAX_HOLD = 120.0


@dataclass(frozen=True)
class Status:
    """Answer with this status (and an optional ``Retry-After``) instead of the file."""

    code: int = 500
    retry_after: str | None = None


@dataclass(frozen=True)
class Reset:
    """Send the headers and ``after`` bytes of the body, then reset the connection (TCP RST)."""

    after: int | None = None


@dataclass(frozen=True)
class Truncate:
    """Send the full ``Content-Length`` but only ``after`` bytes of the body, then close cleanly."""

    after: int | None = None


@dataclass(frozen=True)
class Overlong:
    """Send the file and then ``extra`` bytes more than ``Content-Length`` says."""

    extra: bytes = b"\0" * 1024


@dataclass(frozen=True)
class Garbage:
    """Send the file plus ``extra`` bytes with no ``Content-Length``, closing to end the body."""

    extra: bytes = b"garbage"


@dataclass(frozen=True)
class Corrupt:
    """Send bytes of the right length with one of them flipped (a wrong hash, nothing else wrong)."""


@dataclass(frozen=True)
class Stall:
    """Send the headers and ``after`` body bytes, then go silent until released or stopped."""

    after: int = 0


@dataclass(frozen=True)
class Hold:
    """Wait until released (``FaultyServer.release``), then serve the file normally."""


@dataclass(frozen=True)
class Endless:
    """Send the file and then zeros with no ``Content-Length`` (or with a false, small one when
    ``declared`` is set, in HTTP/1.0 style: the body ends when the connection does), up to
    ``total`` bytes or until the client leaves."""

    total: int = 1 << 30
    declared: int | None = None


@dataclass(frozen=True)
class GzipBomb:
    """Answer with ``Content-Encoding: gzip`` and a small gzip body that decodes to ``expanded``
    zero bytes (a client that decodes transparently writes all of them)."""

    expanded: int = 1 << 30

    def __post_init__(self) -> None:
        _gzip_zeros(self.expanded)  # made once, now: a slow first answer would be a stall


@dataclass(frozen=True)
class RedirectLoop:
    """Answer ``302 Found`` pointing at the same URL, forever."""


Fault = (
    Status
    | Reset
    | Truncate
    | Overlong
    | Garbage
    | Corrupt
    | Stall
    | Hold
    | Endless
    | GzipBomb
    | RedirectLoop
)


@dataclass
class Served:
    """One request as the server saw it."""

    path: str
    range: str | None
    authorization: str | None
    outcome: str = "pending"
    user_agent: str = ""


@dataclass
class FaultLog:
    """Every request, in order, and a condition to wait on for a state the test expects."""

    requests: list[Served] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def count(self, path: str, outcome: str | None = None) -> int:
        with self.condition:
            return sum(1 for r in self.requests if r.path == path and outcome in (None, r.outcome))

    def paths(self, outcome: str | None = None) -> list[str]:
        with self.condition:
            return [r.path for r in self.requests if outcome in (None, r.outcome)]


class _FaultyHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: FaultyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server_state
        raw_path = unquote(urlsplit(self.path).path)
        token, path = _split_token(raw_path)
        entry = Served(
            path,
            self.headers.get("Range"),
            self.headers.get("Authorization"),
            user_agent=self.headers.get("User-Agent", ""),
        )
        state._record(entry)
        try:
            outcome = self._respond(state, entry, token, path)
        except (BrokenPipeError, ConnectionResetError):
            outcome = "client-gone"
        state._finish(entry, outcome)

    def _respond(self, state: FaultyServer, entry: Served, token: str | None, path: str) -> str:
        if not state._authorized(entry.authorization, token):
            self._plain(401, b"credentials required\n", {"WWW-Authenticate": 'Basic realm="test"'})
            return "401"
        fault = state._next_fault(path)
        if isinstance(fault, Hold):
            state._released.wait(MAX_HOLD)
            fault = None
        if isinstance(fault, RedirectLoop):
            self._plain(302, b"see there\n", {"Location": self.path})
            return "redirect"
        if isinstance(fault, Status):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._plain(fault.code, f"fault {fault.code}\n".encode(), headers)
            return str(fault.code)
        file = (state.directory / path.lstrip("/")).resolve()
        if not file.is_file() or state.directory.resolve() not in file.parents:
            self._plain(404, b"not found\n")
            return "404"
        data = file.read_bytes()
        if isinstance(fault, Corrupt) and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = _range_start(entry.range, len(data)) if fault is None else 0
        if start is not None and start >= len(data) and data:
            self._plain(416, b"range not satisfiable\n", {"Content-Range": f"bytes */{len(data)}"})
            return "416"
        body = data[start:] if start else data
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if isinstance(fault, (Endless, GzipBomb)):
            return self._send_unbounded(fault, body)
        if isinstance(fault, Garbage):
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body + fault.extra)
            self.close_connection = True
            return "garbage"
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return self._send_body(state, fault, body)

    def _send_body(self, state: FaultyServer, fault: Fault | None, body: bytes) -> str:
        if isinstance(fault, Reset):
            self.wfile.write(body[: len(body) // 2 if fault.after is None else fault.after])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return "reset"
        if isinstance(fault, Truncate):
            self.wfile.write(body[: len(body) // 2 if fault.after is None else fault.after])
            self.close_connection = True
            return "truncated"
        if isinstance(fault, Stall):
            self.wfile.write(body[: fault.after])
            self.wfile.flush()
            state._released.wait(MAX_HOLD)
            self.close_connection = True
            return "stalled"
        if isinstance(fault, Overlong):
            self.wfile.write(body + fault.extra)
            return "overlong"
        self.wfile.write(body)
        return "corrupt" if isinstance(fault, Corrupt) else "ok"

    def _send_unbounded(self, fault: Endless | GzipBomb, body: bytes) -> str:
        """The body of an ``Endless`` or ``GzipBomb`` fault, ended by closing the connection."""
        self.close_connection = True
        if isinstance(fault, GzipBomb):
            payload = _gzip_zeros(fault.expanded)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return "gzip-bomb"
        self.send_header("Connection", "close")
        if fault.declared is not None:
            self.send_header("Content-Length", str(fault.declared))
        self.end_headers()
        self.wfile.write(body)
        sent, zeros = len(body), b"\0" * (1 << 16)
        while sent < fault.total:
            self.wfile.write(zeros[: fault.total - sent])
            sent += len(zeros)
        return "endless"

    def _plain(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@functools.lru_cache(maxsize=4)
def _gzip_zeros(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes (about a thousandth of that), made in bounded memory."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block, parts = b"\0" * (1 << 20), []
    for done in range(0, size, len(block)):
        parts.append(packer.compress(block[: size - done]))
    parts.append(packer.flush())
    return b"".join(parts)


def _split_token(path: str) -> tuple[str | None, str]:
    """``/t/<token>/rest`` -> (token, ``/rest``); other paths have no token."""
    if path.startswith("/t/"):
        token, _, rest = path[3:].partition("/")
        return token, "/" + rest
    return None, path


def _range_start(header: str | None, length: int) -> int | None:
    """The first byte of a ``bytes=N-`` range (the only form a resuming client sends)."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    try:
        return int(header[len("bytes=") : -1])
    except ValueError:
        return None


class FaultyServer(ChannelServer):
    """A ``ChannelServer`` whose answers can be made to fail, per path, in a chosen order."""

    def __init__(
        self,
        directory: Path,
        *,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        conda_token: str | None = None,
    ) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._always: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.fault_log = FaultLog()
        self._expected_auth: str | None = None
        if basic_auth is not None:
            self._expected_auth = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
        elif bearer_token is not None:
            self._expected_auth = f"Bearer {bearer_token}"
        self._conda_token = conda_token
        handler = type("FaultyHandler", (_FaultyHandler,), {"server_state": self})
        super().__init__(directory, handler=handler)

    def add_faults(self, path: str, *faults: Fault, always: bool = False) -> None:
        """Queue ``faults`` for successive requests of ``path``; ``always`` repeats the last one."""
        with self._lock:
            if always:
                *queued, self._always[path] = faults
                self._faults.setdefault(path, []).extend(queued)
            else:
                self._faults.setdefault(path, []).extend(faults)

    def clear_faults(self) -> None:
        """Serve every path normally from now on."""
        with self._lock:
            self._faults.clear()
            self._always.clear()

    def release(self) -> None:
        """Let every held or stalled request go on (stalled ones then close)."""
        self._released.set()

    def wait_for(self, predicate: Callable[[FaultLog], bool], timeout: float = 60.0) -> bool:
        """Block until ``predicate(log)`` holds (or ``timeout`` passes); returns whether it holds."""
        deadline = time.monotonic() + timeout
        with self.fault_log.condition:
            while not predicate(self.fault_log):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.fault_log.condition.wait(remaining)
            return True

    def stop(self) -> None:
        self.release()
        super().stop()

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if queue:
                return queue.pop(0)
            return self._always.get(path)

    def _authorized(self, authorization: str | None, token: str | None) -> bool:
        if self._conda_token is not None and token != self._conda_token:
            return False
        return self._expected_auth is None or authorization == self._expected_auth

    def _record(self, entry: Served) -> None:
        with self.fault_log.condition:
            self.fault_log.requests.append(entry)
            self.fault_log.condition.notify_all()

    def _finish(self, entry: Served, outcome: str) -> None:
        with self.fault_log.condition:
            entry.outcome = outcome
            self.fault_log.condition.notify_all()
