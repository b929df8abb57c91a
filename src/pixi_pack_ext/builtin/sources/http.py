"""The built-in http/https source: rattler's downloader for a plain first attempt (see
``native_http``), then httpx: HTTP/2 where offered, pooled, retried, resumable.

Authentication follows rattler: credentials for the URL's host from the auth store (bearer token,
basic auth, conda token in the path), or user:password in the URL itself. Secrets never reach a
message: URLs are redacted before they are shown.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ...config import Settings
from ...errors import AuthenticationError, DownloadError, OversizeDownloadError
from ...hookspecs import ChannelSource, DownloadSink, hookimpl
from ...redact import redact, redact_url, register_secret
from .native_http import NativeDownloader, NativeFailure
from .pacing import AnswerPacer, answer_closes, closes_connections

if TYPE_CHECKING:  # imported where used: pixi-unpack, which never downloads, does without httpx
    import httpx

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 30.0
#: Redirects followed for one request (httpx's default); more is a loop.
MAX_REDIRECTS = 20
#: Bytes asked of the socket per read. httpcore asks 64 KiB; on a fast link the cost of each read
#: (protocol events, timeouts, one chunk to write and hash) then outweighs the copying. A read
#: returns what has arrived, so a slow link loses nothing; memory is this per open connection.
READ_SIZE = 1 << 20


def _read_larger_chunks() -> None:
    """Raise httpcore's per-read size (a class setting of its HTTP/1.1 and HTTP/2 connections)."""
    import httpcore

    for name in ("AsyncHTTP11Connection", "AsyncHTTP2Connection"):
        connection = getattr(httpcore, name, None)
        if connection is not None and getattr(connection, "READ_NUM_BYTES", READ_SIZE) < READ_SIZE:
            connection.READ_NUM_BYTES = READ_SIZE


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(float(value), MAX_RETRY_AFTER)
    except ValueError:
        import email.utils  # only for a Retry-After given as a date

        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, min(parsed.timestamp() - time.time(), MAX_RETRY_AFTER)) if parsed else None


def _range_starts_at(response: httpx.Response, offset: int) -> bool:
    """Whether a 206 answer's ``Content-Range: bytes START-END/TOTAL`` starts where we asked."""
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    start = spec.split("-", 1)[0]
    return unit.strip().lower() == "bytes" and start.isdigit() and int(start) == offset


def _describe(exc: Exception, settings: Settings, attempts: int | None = None) -> str:
    """A transport failure in words: its kind, then why (a stall names the timeout and how to
    change it; a connection failure what the resolver or the socket said)."""
    import httpx

    if isinstance(exc, httpx.ReadTimeout):
        detail = (
            f"the server sent nothing for {settings.read_timeout:g} s; "
            "PIXI_PACK_READ_TIMEOUT sets how long to wait"
        )
    else:
        detail = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
    kind = type(exc).__name__ + (f" after {attempts} attempts" if attempts else "")
    return f"{kind} ({detail})" if detail else kind


def _phrase(status: int) -> str:
    try:
        import http

        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _status_error(status: int, phrase: str, url: str, shown: str, *, sent: bool) -> DownloadError:
    """The error for a final HTTP status (not worth a retry); 401/403 say how to give credentials."""
    if status in (401, 403):
        host = urlsplit(url).hostname
        what = "refused the credentials given for it" if sent else "needs credentials"
        return AuthenticationError(
            f"{host} {what} (HTTP {status} for {shown}); give credentials for '{host}' with "
            "--auth-file, RATTLER_AUTH_FILE, ~/.rattler/credentials.json or ~/.netrc"
        )
    return DownloadError(f"could not download {shown}: HTTP {status} {phrase}".rstrip())


def _basic_auth(username: str, password: str) -> httpx.Auth:
    import httpx

    return httpx.BasicAuth(username, password)


def _jitter() -> float:
    """A random number in [0, 1) that spreads retries apart (``random`` loads only on a retry)."""
    import random

    return random.random()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class HttpSession:
    """The http(s) downloads of a run: rattler's downloader first where it applies, else (and for
    every retry) one pooled httpx client, made when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._unreachable: dict[str, str] = {}
        native = NativeDownloader.usable(settings)
        # rattler's downloader does not show answers' headers: a HEAD request tells the pacer
        # whether an origin closes its connections (httpx's answers tell it themselves)
        probe = (lambda url: closes_connections(url, settings.read_timeout)) if native else None
        self._pacer = AnswerPacer(settings.downloads, probe)
        self._native = NativeDownloader(settings, self._pacer) if native else None
        for secret in settings.auth.secrets():
            register_secret(secret)

    def _authorize(self, url: str) -> tuple[str, dict[str, str], httpx.Auth | None]:
        """The URL to request, extra headers and auth for ``url``'s host."""
        parts = urlsplit(url)
        token = re.search(r"/t/([^/]+)/", parts.path)
        if token:  # a conda token in the lock's URL is as secret as one in an auth file
            register_secret(token.group(1))
        if parts.username is not None:
            register_secret(parts.password if parts.password else parts.username)
            netloc = parts.hostname or ""
            if parts.port:
                netloc = f"{netloc}:{parts.port}"
            clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
            return clean, {}, _basic_auth(parts.username or "", parts.password or "")
        credential = self.settings.auth.lookup(parts.hostname or "")
        if credential is None:
            return url, {}, None
        for secret in credential.secrets():  # netrc entries are only known once looked up
            register_secret(secret)
        if credential.bearer_token:
            return url, {"Authorization": f"Bearer {credential.bearer_token}"}, None
        if credential.username is not None:
            return url, {}, _basic_auth(credential.username, credential.password or "")
        if credential.conda_token and "/t/" not in parts.path:
            path = f"/t/{credential.conda_token}{parts.path}"
            return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment)), {}, None
        return url, {}, None

    async def download(self, url: str, sink: DownloadSink) -> None:
        request_url, headers, auth = self._authorize(url)
        origin = _origin(request_url)
        if origin in self._unreachable:
            # a host that refused connections for a whole file's retries is not asked again this
            # run: a dead mirror then costs one file's retries, not every file's
            raise DownloadError(
                f"could not download {redact_url(url)}: {redact_url(origin)} was unreachable earlier "
                f"in this run ({self._unreachable[origin]})"
            )
        attempts = self.settings.retries + 1
        first = 0
        if self._native_first(url, request_url, headers, auth, sink, attempts):
            assert self._native is not None
            first = 1  # the native try is the first attempt
            try:
                await self._native.download(request_url, origin, sink)
                return
            except NativeFailure as exc:
                shown = redact_url(url)
                if exc.status is not None and exc.status >= 400 and exc.status not in RETRY_STATUS:
                    # the server's answer is final: asking again through httpx would only request
                    # the same file from the same candidate twice
                    raise _status_error(
                        exc.status, _phrase(exc.status), request_url, shown, sent=False
                    ) from None
                log.info("retrying %s after %s", shown, exc)
                if exc.status in RETRY_STATUS:
                    await asyncio.sleep(0.25 * (1 + _jitter()))
        import httpx

        shown = redact_url(url)

        for attempt in range(first, attempts):
            last = attempt == attempts - 1
            try:
                retry = await self._attempt(request_url, headers, auth, sink, shown)
            except httpx.TooManyRedirects:
                raise DownloadError(
                    f"could not download {shown}: the server redirects in a loop (or through more than "
                    f"{MAX_REDIRECTS} places); check the URL in the lock or the [mirrors] for it"
                ) from None
            except httpx.TransportError as exc:
                if last:
                    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                        self._unreachable[origin] = type(exc).__name__
                    raise DownloadError(
                        f"could not download {shown}: {_describe(exc, self.settings, attempts)}"
                    ) from None
                delay = None
                log.info("retrying %s after %s", shown, _describe(exc, self.settings))
            else:
                if retry is None:
                    return
                delay, reason = retry
                if last:
                    raise DownloadError(f"could not download {shown}: {reason} after {attempts} attempts")
            await asyncio.sleep(delay if delay is not None else (0.25 * 2**attempt) * (1 + _jitter()))

    def _native_first(
        self,
        url: str,
        request_url: str,
        headers: dict[str, str],
        auth: httpx.Auth | None,
        sink: DownloadSink,
        attempts: int,
    ) -> bool:
        """Whether the first attempt goes to rattler's downloader: the request carries no
        credentials, the sink is empty and a retry is left for httpx to take over after a failure."""
        return (
            self._native is not None
            and attempts > 1
            and request_url == url
            and not headers
            and auth is None
            and sink.offset == 0
            and self._native.serves(_origin(url))
        )

    async def _attempt(
        self,
        url: str,
        headers: dict[str, str],
        auth: httpx.Auth | None,
        sink: DownloadSink,
        shown: str,
    ) -> tuple[float, str] | None:
        """One request; None when the file is complete, else (delay before retrying, why)."""
        import httpx

        # The file's own bytes, never a compressed encoding of them: they are hashed as they come,
        # and counted against the lock's size (aiter_raw never decodes what a server sends anyway).
        request_headers = {"Accept-Encoding": "identity", **headers}
        resume_from = sink.offset
        if resume_from:
            request_headers["Range"] = f"bytes={resume_from}-"
        client = self._httpx()
        origin = _origin(url)
        async with (
            self._pacer.request(origin) as answered,
            client.stream("GET", url, headers=request_headers, auth=auth) as response,
        ):
            self._pacer.learn(
                origin, answer_closes(response.http_version, response.headers.get("connection"))
            )
            answered()
            status = response.status_code
            if status in (401, 403):
                sent = auth is not None or "Authorization" in headers or "/t/" in urlsplit(url).path
                raise _status_error(status, response.reason_phrase, url, shown, sent=sent)
            if status in RETRY_STATUS:
                log.info("%s answered HTTP %s; retrying", shown, status)
                return _retry_after(response) or 0.25 + _jitter() * 0.25, f"HTTP {status}"
            if status == 416 and resume_from:
                sink.restart()
                return 0.0, "HTTP 416"
            if status >= 400:
                raise _status_error(status, response.reason_phrase, url, shown, sent=False)
            if resume_from and (status != 206 or not _range_starts_at(response, resume_from)):
                sink.restart()  # the server sent the whole file (or another part): start over
                if status == 206:
                    return 0.0, "a wrong Content-Range"
            declared = response.headers.get("content-length", "")
            limit = getattr(sink, "limit", None)
            if limit is not None and declared.isdigit() and sink.offset + int(declared) > limit:
                raise OversizeDownloadError(
                    f"refusing {shown}: the server announces {int(declared) + sink.offset} bytes "
                    f"(Content-Length), more than the {limit} bytes the lock records"
                )
            # No chunk_size: httpx would hold bytes back until a chunk fills, and lose them to a
            # dropped connection; as received, every byte counts toward the resume offset.
            async for chunk in response.aiter_raw():
                sink.write(chunk)
            expected = response.headers.get("content-length")
            if expected is not None and status == 200 and int(expected) != sink.offset:
                got = sink.offset
                sink.restart()
                raise httpx.RemoteProtocolError(f"body of {got} bytes, header said {expected}")
        return None

    def _httpx(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = _new_client(self.settings)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _new_client(settings: Settings) -> httpx.AsyncClient:
    """A pooled client sized for the run's download concurrency."""
    import httpx

    _read_larger_chunks()
    limits = httpx.Limits(max_connections=settings.downloads, max_keepalive_connections=settings.downloads)
    timeout = httpx.Timeout(connect=30.0, read=settings.read_timeout, write=30.0, pool=None)
    try:
        import h2  # noqa: F401

        http2 = True
    except ImportError:  # HTTP/2 is optional: plain HTTP/1.1 pooling still works
        http2 = False
    return httpx.AsyncClient(
        max_redirects=MAX_REDIRECTS,
        http2=http2,
        limits=limits,
        timeout=timeout,
        follow_redirects=True,
        verify=settings.tls_verify,
        trust_env=True,
    )


@asynccontextmanager
async def open_http(settings: Settings) -> AsyncIterator[HttpSession]:
    session = HttpSession(settings)
    try:
        yield session
    finally:
        await session.aclose()


@hookimpl
def pixi_pack_sources() -> list[ChannelSource]:
    return [
        ChannelSource(
            name="http",
            schemes=("http", "https"),
            open=open_http,
            description="HTTP(S): rattler's downloader, then httpx (HTTP/2, retries, resume, rattler-style auth)",
        )
    ]
