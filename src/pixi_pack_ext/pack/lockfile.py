"""Read a workspace's ``pixi.lock`` (format v6 or v7) into a ``PackPlan`` for one environment+platform."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rattler

from ..errors import LockFileError
from ..plan import CondaPackage, PackPlan, PypiPackage

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("pixi.toml", "pyproject.toml")
LOCK_NAME = "pixi.lock"


def find_lock_file(manifest_path: Path) -> Path:
    """The ``pixi.lock`` for a manifest file, a workspace folder, or a lock file given directly."""
    if not manifest_path.exists():
        raise LockFileError(
            f"manifest '{manifest_path}' does not exist; pass a pixi.toml, a pyproject.toml or a workspace folder"
        )
    if manifest_path.is_dir():
        lock = manifest_path / LOCK_NAME
    elif manifest_path.suffix == ".lock":
        lock = manifest_path
    else:
        lock = manifest_path.parent / LOCK_NAME
    if not lock.is_file():
        raise LockFileError(
            f"no {LOCK_NAME} at '{lock.absolute()}'; run 'pixi lock' in the workspace first, "
            "or pass the workspace folder or its pixi.toml as MANIFEST_PATH"
        )
    return lock


#: The newest lock format this version reads when rattler does not say (rattler reads every older one).
NEWEST_KNOWN_VERSION = 7
_NEWER = re.compile(
    r"newer lock ?file format version (\d+), but only up to (?:and )?including version (\d+)", re.I
)
_VERSION_LINE = re.compile(r"^version:\s*(\d+)\s*$", re.M)


def _newer_version(lock_path: Path, message: str) -> tuple[int, int] | None:
    """(the lock's format version, the newest we read) when the lock is newer than we read."""
    match = _NEWER.search(message)
    if match:
        return int(match.group(1)), int(match.group(2))
    try:
        head = lock_path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return None
    found = _VERSION_LINE.search(head)
    if found and int(found.group(1)) > NEWEST_KNOWN_VERSION:
        return int(found.group(1)), NEWEST_KNOWN_VERSION
    return None


def _load(lock_path: Path) -> rattler.LockFile:
    try:
        return rattler.LockFile.from_path(lock_path)
    except Exception as exc:  # rattler raises its own exception types for every parse problem
        newer = _newer_version(lock_path, str(exc))
        if newer is not None:
            found, newest = newer
            raise LockFileError(
                f"'{lock_path}' is in pixi lock format version {found}; this pixi-pack-ext reads "
                f"versions 1 to {newest}; update pixi-pack-ext (regenerating the lock with pixi "
                "writes the same version)"
            ) from None
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LockFileError(
            f"'{lock_path}' is not a readable pixi lock file ({first_line}); regenerate it with 'pixi lock'"
        ) from None


def read_plan(manifest_path: Path, environment: str, platform: str | None) -> PackPlan:
    """Build the plan for ``environment`` on ``platform`` (default: the host's) from the lock."""
    lock_path = find_lock_file(manifest_path)
    lock = _load(lock_path)
    env = lock.environment(environment)
    if env is None:
        names = ", ".join(sorted(name for name, _ in lock.environments())) or "none"
        raise LockFileError(
            f"environment '{environment}' is not in {lock_path} (it has: {names}); choose one with -e/--environment"
        )
    platform = platform or str(rattler.Subdir.current())
    packages_by_platform = {lp.name: (lp, pkgs) for lp, pkgs in env.packages_by_platform().items()}
    if platform not in packages_by_platform:
        names = ", ".join(sorted(packages_by_platform)) or "none"
        raise LockFileError(
            f"platform '{platform}' is not locked for environment '{environment}' in {lock_path} "
            f"(it has: {names}); choose one with -p/--platform"
        )
    lock_platform, packages = packages_by_platform[platform]
    plan = PackPlan(
        platform=str(lock_platform.subdir),
        environment=environment,
        virtual_packages=list(lock_platform.virtual_packages or []),
        workspace=lock_path.parent,
    )
    for package in packages:
        if isinstance(package, rattler.CondaLockedBinaryPackage):
            plan.conda.append(_conda_package(package, lock_path.parent))
        elif isinstance(package, rattler.PypiLockedPackage):
            plan.pypi.append(_pypi_package(package, lock_path.parent))
        else:
            raise LockFileError(
                f"package '{package.name}' of environment '{environment}' is a conda source package; "
                "it must be built before it can be packed (build it and pass the result with --inject)"
            )
    return plan


def _conda_package(package: rattler.CondaLockedBinaryPackage, workspace: Path) -> CondaPackage:
    """A lock's conda entry; a path relative to the workspace (pixi writes those for local package
    files) is resolved against it, which rattler's own record conversion refuses to do."""
    location = str(package.location)
    if "://" not in location and not Path(location).is_absolute():
        path = (workspace / location).resolve()
        channel = path.parent.parent.as_uri()  # <channel>/<subdir>/<file>
        record = rattler.RepoDataRecord(package.package_record, path.name, path.as_uri(), channel)
        return CondaPackage(record=record, url=path.as_uri())
    record = package.repo_data_record()
    return CondaPackage(record=record, url=record.url)


def _pypi_package(package: rattler.PypiLockedPackage, workspace: Path) -> PypiPackage:
    """A lock's PyPI entry; local paths are resolved against the workspace."""
    location = str(package.location)
    sha256 = None
    try:
        if package.hashes is not None and package.hashes.sha256 is not None:
            sha256 = package.hashes.sha256.hex()
    except AttributeError:  # rattler exposes an empty hash object for entries without hashes
        sha256 = None
    pypi = PypiPackage(name=package.name, version=str(package.version), location=location, sha256=sha256)
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and location[1:3] in (":\\", ":/")):
        raw = unquote(urlsplit(location).path) if scheme == "file" else location
        path = Path(raw)
        pypi.local_path = path if path.is_absolute() else (workspace / path).resolve()
        pypi.editable = pypi.local_path.is_dir()
    return pypi
