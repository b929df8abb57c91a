"""The built-in ``s3://`` source, on py-rattler's own HTTP client (no AWS SDK for Python needed).

``s3://bucket/channel/subdir/file`` is fetched through rattler's S3 middleware, which presigns each
request. Where the bucket lives comes from ``[s3-options.<bucket>]`` (``endpoint-url``, ``region``,
``force-path-style``), as in pixi's config; a bucket without options is reached the AWS way (region
and endpoint from the AWS configuration). Credentials are ``S3Credentials`` for ``s3://bucket`` in the
auth files, else the standard AWS chain (environment, profile, SSO, instance metadata).

rattler's messages carry the presigned URL (key id and signature), so they are never shown as they
are: each failure is turned into one line of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...config import S3Options, Settings
from ...errors import AuthenticationError, ConfigError, DownloadError
from ...hookspecs import ChannelSource, DownloadSink, hookimpl
from ...redact import register_secret

log = logging.getLogger(__name__)

_STATUS = re.compile(r"\((\d{3})[^)]*\)")
_QUERY = re.compile(r"\?[^\s)]*")
_HOST = re.compile(r"for url \((?:https?://)?([^/?)\s]+)")
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
CREDENTIAL_HELP = (
    "give S3Credentials for 's3://{bucket}' with --auth-file or RATTLER_AUTH_FILE, "
    "or AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials)"
)


class _Failure(Exception):
    """A classified rattler error: the message to show and whether trying again may help."""

    def __init__(self, error: DownloadError, transient: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.transient = transient


def _bucket(url: str) -> str:
    return urlsplit(url).netloc


def where(bucket: str, options: S3Options | None) -> str:
    """How the bucket is reached, for messages (an endpoint is no secret)."""
    if options is None:
        return "AWS (no [s3-options] for this bucket)"
    style = "path-style" if options.force_path_style else "virtual-host style"
    return f"{options.endpoint_url} ({style}, region {options.region})"


def classify(url: str, exc: BaseException, options: S3Options | None) -> _Failure:
    """Turn one rattler error into a clear, secret-free line."""
    bucket = _bucket(url)
    text = _QUERY.sub("?***", str(exc))  # the presigned query holds the key id and signature
    reach = where(bucket, options)
    match = _STATUS.search(text) if "status" in text else None
    if match is None and "presign" in text:
        return _Failure(
            AuthenticationError(
                f"no usable S3 credentials for bucket '{bucket}' ({url}); "
                + CREDENTIAL_HELP.format(bucket=bucket)
            ),
            transient=False,
        )
    if match:
        status = int(match.group(1))
        if status in (401, 403):
            return _Failure(
                AuthenticationError(
                    f"S3 at {reach} refused {url} (HTTP {status}); check the credentials for bucket "
                    f"'{bucket}': " + CREDENTIAL_HELP.format(bucket=bucket)
                ),
                transient=False,
            )
        if status == 404:
            return _Failure(
                DownloadError(f"{url} does not exist (HTTP 404 from S3 at {reach})"), transient=False
            )
        return _Failure(
            DownloadError(f"could not download {url}: HTTP {status} from S3 at {reach}"),
            transient=status in RETRY_STATUS,
        )
    if "error sending request" in text:
        host = _HOST.search(text)
        detail = f"could not connect to {host.group(1)}" if host else "could not connect"
    else:
        detail = text.splitlines()[0][:200] if text else type(exc).__name__
    return _Failure(DownloadError(f"could not download {url} from S3 at {reach}: {detail}"), transient=True)


class S3Session:
    """Downloads ``s3://`` URLs through one rattler client (its connection pool is shared)."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def download(self, url: str, sink: DownloadSink) -> None:
        from rattler.package_streaming import download_to_writer

        options = self.settings.s3_options.get(_bucket(url))
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            if sink.offset:  # presigned GETs restart from the beginning
                sink.restart()
            try:
                await download_to_writer(self.client, url, sink)
                return
            except OSError as exc:
                if not isinstance(exc, ConnectionError):  # the sink could not write: not a download issue
                    raise
                failure = classify(url, exc, options)
            except Exception as exc:  # rattler reports every failure as a plain exception with text
                failure = classify(url, exc, options)
            if not failure.transient or attempt == attempts - 1:
                raise failure.error
            log.info("retrying %s after: %s", url, failure)
            import random

            await asyncio.sleep(0.25 * 2**attempt * (1 + random.random()))


@contextlib.contextmanager
def _rattler_auth_file(settings: Settings) -> Iterator[None]:
    """Show rattler the S3 credentials of all our auth files while its client is built.

    rattler reads ``RATTLER_AUTH_FILE`` when the client is created; a private temporary file with
    only the S3 entries (``--auth-file`` first) stands in for it, and is gone right after.
    """
    entries = settings.auth.rattler_json(("S3Credentials",))
    if not entries:
        yield
        return
    for secret in settings.auth.secrets():
        register_secret(secret)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pixi-pack-auth-") as folder:
        path = Path(folder) / "credentials.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f)
        previous = os.environ.get("RATTLER_AUTH_FILE")
        os.environ["RATTLER_AUTH_FILE"] = str(path)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("RATTLER_AUTH_FILE", None)
            else:
                os.environ["RATTLER_AUTH_FILE"] = previous


def make_client(settings: Settings) -> Any:
    """A rattler client that presigns ``s3://`` requests with each bucket's options."""
    from rattler.networking import Client, S3Middleware
    from rattler.networking.middleware import S3Config

    configs = {}
    for bucket, options in settings.s3_options.items():
        style = "path" if options.force_path_style else "virtual-host"
        try:
            configs[bucket] = S3Config(options.endpoint_url, options.region, style)
        except Exception as exc:
            raise ConfigError(f"s3-options.{bucket} cannot be used: {exc}") from None
    with _rattler_auth_file(settings):
        return Client(middlewares=[S3Middleware(configs)])


@asynccontextmanager
async def open_s3(settings: Settings) -> AsyncIterator[S3Session]:
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # masked should they ever be shown
        register_secret(os.environ.get(name))
    yield S3Session(make_client(settings), settings)


@hookimpl
def pixi_pack_sources() -> list[ChannelSource]:
    return [
        ChannelSource(
            name="s3",
            schemes=("s3",),
            open=open_s3,
            description="s3:// buckets ([s3-options.<bucket>], S3Credentials or the AWS chain)",
        )
    ]
