"""Which files of an installed environment differ from what its packages installed.

A pack made from a prefix ships the original packages, so local edits are lost; listing them lets
the user notice. Files whose prefix placeholder was rewritten at install time are compared with the
hash recorded after the rewrite (``sha256_in_prefix``) and skipped when there is none.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import rattler

CHUNK = 1 << 20


@dataclass(frozen=True)
class ChangedFile:
    """One installed file that is missing or has other content than the package installed."""

    path: str
    package: str
    missing: bool = False

    def describe(self) -> str:
        return f"{self.path} ({self.package}{', missing' if self.missing else ''})"


@dataclass(frozen=True)
class _Expected:
    path: str
    package: str
    sha256: str
    #: The size to expect, when the file was installed as-is (a cheap first check).
    size: int | None


def _expected_files(records: list[rattler.PrefixRecord]) -> list[_Expected]:
    expected: list[_Expected] = []
    for record in records:
        for entry in record.paths_data.paths:
            if not entry.path_type.hardlink:
                continue  # links, folders, compiled .pyc and entry points are made at install time
            if entry.sha256_in_prefix:
                digest, size = entry.sha256_in_prefix.hex(), None
            elif entry.prefix_placeholder or not entry.sha256:
                continue
            else:
                digest, size = entry.sha256.hex(), entry.size_in_bytes
            expected.append(_Expected(str(entry.relative_path), record.name.normalized, digest, size))
    return expected


def _check(prefix: Path, item: _Expected) -> ChangedFile | None:
    path = prefix / item.path
    try:
        if item.size is not None and path.stat().st_size != item.size:
            return ChangedFile(item.path, item.package)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return ChangedFile(item.path, item.package, missing=True)
    except OSError:
        return ChangedFile(item.path, item.package)
    return None if digest.hexdigest() == item.sha256 else ChangedFile(item.path, item.package)


def changed_files(prefix: Path, records: list[rattler.PrefixRecord]) -> list[ChangedFile]:
    """Files of ``prefix`` that are missing or changed since their package installed them."""
    expected = _expected_files(records)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda item: _check(prefix, item), expected)
        return sorted((r for r in results if r is not None), key=lambda r: r.path)
