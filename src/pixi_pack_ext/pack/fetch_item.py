"""One file a pack needs: where it comes from, where it goes, and the hashes that prove it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FetchItem:
    """One file to fetch: from ``url`` to ``dest``, proven by ``sha256`` (or ``md5``)."""

    label: str
    url: str
    dest: Path
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    #: Where the file lives in a ``--use-cache`` folder (``<subdir>/<file>``); None: never cached.
    cache_key: str | None = None


def check_hash(item: FetchItem, sha256: str, md5: str) -> str | None:
    """None when the digests match what the item expects, else a description of the mismatch."""
    if item.sha256:
        return None if sha256 == item.sha256 else f"expected sha256 {item.sha256}, got {sha256}"
    if item.md5:
        return None if md5 == item.md5 else f"expected md5 {item.md5}, got {md5}"
    return None
