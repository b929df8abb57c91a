"""Find a package's original archive in the package caches of this machine, verified by hash.

An installed environment remembers where its packages were extracted (``extracted_package_dir``) and
sometimes the archive itself (``package_tarball_full_path``). conda and micromamba keep archives in
``<root>/pkgs``; rattler and pixi usually keep only the extracted folder, from which the original
archive cannot be rebuilt byte for byte, so such packages must come from elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import platformdirs
import rattler

from ...hashing import hash_file


def _env_dirs(name: str, separator: str) -> list[Path]:
    value = os.environ.get(name, "")
    return [Path(part).expanduser() for part in value.split(separator) if part.strip()]


def default_cache_dirs() -> list[Path]:
    """The package caches of conda, pixi and rattler named by the environment, then rattler's default."""
    dirs = _env_dirs("CONDA_PKGS_DIRS", ",")
    for variable in ("RATTLER_CACHE_DIR", "PIXI_CACHE_DIR"):
        for root in _env_dirs(variable, os.pathsep):
            dirs += [root / "pkgs", root]
    dirs.append(Path(platformdirs.user_cache_dir()) / "rattler" / "cache" / "pkgs")
    return dirs


def prefix_cache_dirs(prefix: Path, records: Iterable[rattler.PrefixRecord]) -> list[Path]:
    """Every folder that may hold the prefix's archives, most specific first, without duplicates.

    The folders the records were extracted into come first, then conda's ``<root>/pkgs`` for a
    prefix at ``<root>`` or ``<root>/envs/<name>``, then the machine's default caches.
    """
    dirs: list[Path] = []
    for record in records:
        if record.extracted_package_dir:
            dirs.append(Path(record.extracted_package_dir).parent)
        if record.package_tarball_full_path:
            dirs.append(Path(record.package_tarball_full_path).parent)
    dirs.append(prefix / "pkgs")
    if prefix.parent.name == "envs":
        dirs.append(prefix.parent.parent / "pkgs")
    dirs += default_cache_dirs()
    unique: dict[str, Path] = {}
    for folder in dirs:
        unique.setdefault(os.path.normcase(os.path.abspath(folder)), folder)
    return list(unique.values())


def matches_record(path: Path, record: rattler.RepoDataRecord) -> bool:
    """Whether ``path`` is a file with the record's size and sha256 (md5 when it has no sha256)."""
    try:
        if not path.is_file() or (record.size and path.stat().st_size != record.size):
            return False
        sha256, md5 = hash_file(path)
    except OSError:
        return False
    if record.sha256:
        return sha256 == record.sha256.hex()
    return bool(record.md5) and md5 == record.md5.hex()


def find_archive(record: rattler.PrefixRecord, cache_dirs: list[Path]) -> Path | None:
    """The first verified copy of the record's archive: its own tarball path, then the caches."""
    candidates: list[Path] = []
    if record.package_tarball_full_path:
        candidates.append(Path(record.package_tarball_full_path))
    candidates += [folder / record.file_name for folder in cache_dirs]
    seen: set[Path] = set()
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.add(candidate)
        if matches_record(candidate, record):
            return candidate
    return None
