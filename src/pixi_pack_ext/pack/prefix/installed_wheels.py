"""PyPI packages installed into a conda prefix, and the wheels they were installed from.

An installed distribution (``*.dist-info``) does not keep its wheel, so the wheel must be found in
folders the user names. A wheel matches when its name, version and tags are the installed ones and
its ``METADATA`` is byte-for-byte the installed ``METADATA``; that proves it is the same release
without trusting file names alone.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

import rattler

#: Where site-packages lives in a prefix on Unix and on Windows.
SITE_PACKAGES_GLOBS = ("lib/python*/site-packages", "Lib/site-packages")


def normalize_name(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427 / PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


@dataclass(frozen=True)
class InstalledDist:
    """One PyPI distribution installed in the prefix (not by conda)."""

    name: str
    version: str
    dist_info: Path
    #: The wheel tags the installer recorded in ``WHEEL`` (empty when it recorded none).
    tags: frozenset[str]

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _installed_by_conda(dist_info: Path, prefix: Path, conda_files: set[str]) -> bool:
    relative = dist_info.relative_to(prefix).as_posix()
    if f"{relative}/METADATA" in conda_files or f"{relative}/RECORD" in conda_files:
        return True
    return _read_text(dist_info / "INSTALLER").strip().lower() == "conda"


def _tags(dist_info: Path) -> frozenset[str]:
    """The ``Tag:`` lines of an installed ``WHEEL`` file."""
    wheel = dist_info / "WHEEL"
    if not wheel.is_file():
        return frozenset()
    return frozenset(BytesHeaderParser().parsebytes(wheel.read_bytes()).get_all("Tag") or [])


def installed_dists(prefix: Path, records: list[rattler.PrefixRecord]) -> list[InstalledDist]:
    """Distributions in the prefix's site-packages that no conda package installed."""
    conda_files = {Path(f).as_posix() for record in records for f in record.files}
    found: list[InstalledDist] = []
    for pattern in SITE_PACKAGES_GLOBS:
        for site in sorted(prefix.glob(pattern)):
            for dist_info in sorted(site.glob("*.dist-info")):
                metadata = dist_info / "METADATA"
                if not metadata.is_file() or _installed_by_conda(dist_info, prefix, conda_files):
                    continue
                headers = BytesHeaderParser().parsebytes(metadata.read_bytes())
                name, version = headers.get("Name"), headers.get("Version")
                if not name or not version:
                    continue
                found.append(InstalledDist(name.strip(), version.strip(), dist_info, _tags(dist_info)))
    return found


def _wheel_tags(file_name: str) -> tuple[str, str, frozenset[str]] | None:
    """(normalized name, version, expanded tags) of a wheel file name, None when it is not one."""
    parts = file_name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    name, version, python, abi, platform = parts[0], parts[1], parts[-3], parts[-2], parts[-1]
    tags = frozenset(
        f"{p}-{a}-{pl}" for p in python.split(".") for a in abi.split(".") for pl in platform.split(".")
    )
    return normalize_name(name), version, tags


def _wheel_metadata(wheel: Path) -> bytes | None:
    """The ``METADATA`` file inside a wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                top, _, rest = member.partition("/")
                if rest == "METADATA" and top.endswith(".dist-info"):
                    return archive.read(member)
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def wheel_matches(wheel: Path, dist: InstalledDist) -> bool:
    """Whether ``wheel`` is the wheel ``dist`` was installed from."""
    parsed = _wheel_tags(wheel.name)
    if parsed is None:
        return False
    name, version, tags = parsed
    if name != normalize_name(dist.name) or version != dist.version.replace("-", "_"):
        return False
    if dist.tags and tags != dist.tags:
        return False
    try:
        installed = (dist.dist_info / "METADATA").read_bytes()
    except OSError:
        return False
    return _wheel_metadata(wheel) == installed


def find_wheel(dist: InstalledDist, wheel_dirs: list[Path]) -> Path | None:
    """The first wheel in ``wheel_dirs`` (in order, names sorted) that ``dist`` was installed from."""
    for folder in wheel_dirs:
        for wheel in sorted(folder.glob("*.whl")):
            if wheel.is_file() and wheel_matches(wheel, dist):
                return wheel
    return None
