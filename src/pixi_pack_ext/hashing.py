"""Hashing files and streams: sha256 always, md5 only where a lock or record names no sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

#: Read size for hashing and copying: large enough that the per-call cost vanishes.
CHUNK = 1 << 20


def new_hashes(md5: bool) -> tuple[hashlib._Hash, hashlib._Hash | None]:
    return hashlib.sha256(), hashlib.md5() if md5 else None


def hash_file(path: Path, *, md5: bool = True) -> tuple[str, str]:
    """(sha256, md5) of a file, read in large chunks; md5 is "" when not asked for (it costs more
    than sha256 on CPUs with SHA extensions)."""
    sha256, md5_hash = new_hashes(md5)
    with open(path, "rb") as f:
        hash_from(f, sha256, md5_hash)
    return sha256.hexdigest(), md5_hash.hexdigest() if md5_hash is not None else ""


def hash_from(f: BinaryIO, sha256: hashlib._Hash, md5: hashlib._Hash | None, limit: int | None = None) -> int:
    """Hash what ``f`` holds from where it stands, ``limit`` bytes or to its end; returns how many."""
    done = 0
    while limit is None or done < limit:
        chunk = f.read(CHUNK if limit is None else min(CHUNK, limit - done))
        if not chunk:
            break
        sha256.update(chunk)
        if md5 is not None:
            md5.update(chunk)
        done += len(chunk)
    return done
