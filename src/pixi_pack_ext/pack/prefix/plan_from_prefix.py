"""Pack an installed environment (``pixi-pack --prefix PATH``) instead of a lock.

The records come from ``PATH/conda-meta/*.json`` and are turned back into the repodata records the
environment was solved with, so the pack is the same, byte for byte, as the one made from the lock
that created the environment. Each package file is taken from the first local package cache holding
the original archive with the right hash; the rest are fetched as usual (``--use-cache``, then the
record's URL through the source plugins). Local edits to installed files are reported, not packed.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import rattler

from ...errors import PrefixError, UsageError
from ...hashing import hash_file
from ...plan import CondaPackage, PackPlan, PypiPackage
from .edits import changed_files
from .installed_wheels import find_wheel, installed_dists
from .package_caches import find_archive, prefix_cache_dirs
from .rebuild import extracted_folder

if TYPE_CHECKING:
    from ...config import Settings
    from ..options import PackOptions

log = logging.getLogger(__name__)

#: How many names an error or warning lists before it says "and N more".
SHOWN = 8


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"


def read_record(path: Path) -> rattler.PrefixRecord:
    """One ``conda-meta`` record, refusing those that cannot be packed (no URL, no hash)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not valid JSON"
        raise PrefixError(f"package record '{path}' cannot be read ({reason})") from None
    if not isinstance(data, dict):
        raise PrefixError(f"package record '{path}' is not a JSON object")
    if not data.get("url"):
        raise PrefixError(
            f"package record '{path}' has no URL, so the package it was installed from is unknown; "
            "it cannot be packed"
        )
    if not data.get("sha256") and not data.get("md5"):
        raise PrefixError(
            f"package record '{path}' has no sha256 or md5, so its package file cannot be verified; "
            "it cannot be packed"
        )
    try:
        return rattler.PrefixRecord.from_path(path)
    except Exception as exc:  # rattler raises its own exception types for every parse problem
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PrefixError(f"package record '{path}' is malformed ({reason})") from None


def read_records(prefix: Path) -> list[rattler.PrefixRecord]:
    """Every package record of a conda prefix, sorted by name; a clear error if it is none."""
    if not prefix.exists():
        raise PrefixError(f"prefix '{prefix}' does not exist")
    meta = prefix / "conda-meta"
    if not meta.is_dir():
        raise PrefixError(
            f"'{prefix}' is not a conda environment (it has no conda-meta folder); pass the folder of "
            "an environment made by pixi, conda, micromamba or rattler"
        )
    records = [read_record(path) for path in sorted(meta.glob("*.json"))]
    if not records:
        raise PrefixError(f"'{prefix}' has no installed conda packages (conda-meta holds no records)")
    by_name: dict[str, rattler.PrefixRecord] = {}
    for record in records:
        name = record.name.normalized
        if name in by_name:
            raise PrefixError(
                f"'{prefix}' has two records for '{name}' ({by_name[name].file_name} and "
                f"{record.file_name}); repair the environment before packing it"
            )
        by_name[name] = record
    return [by_name[name] for name in sorted(by_name)]


def prefix_platform(prefix: Path, records: list[rattler.PrefixRecord], requested: str | None) -> str:
    """The platform the records were installed for (``-p`` only for an all-noarch environment)."""
    subdirs = sorted({record.subdir for record in records} - {"noarch"})
    if len(subdirs) > 1:
        raise PrefixError(f"'{prefix}' mixes packages for {', '.join(subdirs)}; it cannot be packed")
    platform = subdirs[0] if subdirs else (requested or str(rattler.Subdir.current()))
    if requested is not None and requested != platform:
        raise UsageError(
            f"the environment at '{prefix}' is installed for {platform}; it cannot be packed for "
            f"{requested} (drop -p/--platform)"
        )
    return platform


def repodata_record(record: rattler.PrefixRecord) -> rattler.RepoDataRecord:
    """The repodata record a prefix record was installed from, without the prefix-only fields."""
    channel = record.channel or ""
    if "://" not in channel:  # old conda records name the channel only ("conda-forge"): its URL's
        channel = record.url.rsplit("/", 2)[0] + "/"  # the package URL's <channel>/<subdir>/<file>
    return rattler.RepoDataRecord(record, record.file_name, record.url, channel)


def _missing_hint(missing: list[rattler.PrefixRecord], cache_dirs: list[Path]) -> str:
    """Said after a failed download: what was searched (packages with an extracted folder in a
    cache are rebuilt from it instead, so they are not among ``missing``)."""
    names = [f"{r.name.normalized}={r.version}={r.build}" for r in missing]
    hint = (
        f"no verified archive or extracted folder of {_listing(names)} in the package caches "
        f"({_listing([str(d) for d in cache_dirs])})"
    )
    return (
        hint + "; put the archives in a --use-cache folder (<subdir>/<file>) or make their channel reachable"
    )


def _add_conda(plan: PackPlan, prefix: Path, records: list[rattler.PrefixRecord]) -> None:
    cache_dirs = prefix_cache_dirs(prefix, records)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        archives = list(pool.map(lambda record: find_archive(record, cache_dirs), records))
    missing: list[rattler.PrefixRecord] = []
    for record, archive in zip(records, archives, strict=True):
        package = CondaPackage(record=repodata_record(record), url=record.url, local_path=archive)
        plan.conda.append(package)
        if archive is None:
            package.rebuild_from = extracted_folder(record, cache_dirs)
            if package.rebuild_from is None:
                missing.append(record)
        else:
            log.debug("%s: using %s", record.file_name, archive)
    fetched = sum(1 for archive in archives if archive is None)
    if fetched:
        log.info("%d package(s) are in no local package cache; fetching them", fetched)
    if missing:
        plan.fetch_hint = _missing_hint(missing, cache_dirs)


def _note_edits(plan: PackPlan, prefix: Path, records: list[rattler.PrefixRecord]) -> None:
    edits = changed_files(prefix, records)
    if edits:
        plan.notes.append(
            f"{len(edits)} file(s) of '{prefix}' changed since installation; the pack ships the "
            f"original packages, not these edits: {_listing([e.describe() for e in edits])}"
        )


def _add_wheels(
    plan: PackPlan, prefix: Path, records: list[rattler.PrefixRecord], options: PackOptions
) -> None:
    for folder in options.wheel_dirs:
        if not folder.is_dir():
            raise UsageError(f"--wheel-dir '{folder}' is not a folder")
    dists = installed_dists(prefix, records)
    if not dists:
        return
    wheel_dirs = [*options.wheel_dirs, *([options.use_cache / "pypi"] if options.use_cache else [])]
    missing = []
    for dist in dists:
        wheel = find_wheel(dist, wheel_dirs)
        if wheel is None:
            missing.append(dist.spec)
            continue
        plan.pypi.append(
            PypiPackage(
                name=dist.name,
                version=dist.version,
                location=str(wheel),
                sha256=hash_file(wheel)[0],
                local_path=wheel.absolute(),
            )
        )
    if not missing:
        return
    where = "--wheel-dir or the --use-cache folder's pypi/"
    if not options.ignore_pypi_non_wheel:
        raise PrefixError(
            f"PyPI package(s) installed in '{prefix}' have no wheel in {where}: {_listing(missing)}; "
            "pass the folder holding their wheels with --wheel-dir, or --ignore-pypi-non-wheel to skip them"
        )
    plan.notes.append(f"skipping PyPI package(s) with no wheel in {where}: {_listing(missing)}")


def plan_from_prefix(prefix: Path, options: PackOptions, settings: Settings) -> PackPlan:
    """The pack plan of the environment installed at ``prefix``; fetching needs no ``settings`` yet."""
    prefix = prefix.expanduser().absolute()
    records = read_records(prefix)
    plan = PackPlan(platform=prefix_platform(prefix, records, options.platform), environment=prefix.name)
    _add_wheels(plan, prefix, records, options)
    _add_conda(plan, prefix, records)
    _note_edits(plan, prefix, records)
    return plan
