"""``--pixi-unpack-source PATH|URL``: the pixi-unpack executable to embed instead of the bundled one."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DownloadError, UsageError
from ..file_urls import url2pathname
from ..redact import redact_url


def _is_url(source: str) -> bool:
    return len(urlsplit(source).scheme) > 1  # "C:\\..." is a Windows path, not a URL


def local_source(source: str) -> Path | None:
    """The file a local ``source`` names (None for an http(s) URL); refuses what is not a file."""
    parts = urlsplit(source)
    if _is_url(source) and parts.scheme in ("http", "https"):
        return None
    if _is_url(source) and parts.scheme != "file":
        raise UsageError(
            f"--pixi-unpack-source: '{parts.scheme}://' URLs are not supported (http, https, file)"
        )
    path = Path(url2pathname(parts.path)) if parts.scheme == "file" else Path(source).expanduser()
    if not path.is_file():
        raise UsageError(f"--pixi-unpack-source '{source}' is not a file")
    if path.stat().st_size == 0:
        raise UsageError(f"--pixi-unpack-source '{source}' is empty")
    return path


def fetch_unpacker(source: str, folder: Path) -> Path:
    """The embedded unpacker as a local file: ``source`` itself, or its download in ``folder``."""
    path = local_source(source)
    if path is not None:
        return path
    import httpx

    target = folder / "pixi-unpack.download"
    shown = redact_url(source)
    try:
        with (
            httpx.stream("GET", source, follow_redirects=True, trust_env=True, timeout=60.0) as response,
            open(target, "wb") as out,
        ):
            if response.status_code >= 400:
                raise DownloadError(
                    f"could not download the pixi-unpack executable {shown}: HTTP {response.status_code}"
                )
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    except httpx.HTTPError as exc:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise DownloadError(
            f"could not download the pixi-unpack executable {shown}: {type(exc).__name__}"
        ) from None
    if target.stat().st_size == 0:
        raise DownloadError(f"the pixi-unpack executable downloaded from {shown} is empty")
    return target
