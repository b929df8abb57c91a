"""The identity of an environment's package set: what a delta pack applies to and what it makes.

An environment is named by the sorted lines of its packages:

- ``conda NAME=VERSION=BUILD SHA256`` for every conda package (the sha256 of its archive), and
- ``pypi NAME==VERSION`` for every PyPI package (its name normalized as PEP 503 says).

and its identity is the sha256 of those lines (each ending in a newline). Wheels are named by name
and version only: an installed ``*.dist-info`` keeps no hash of the wheel it came from, so that is
all an installed environment can tell. The same lines come from a lock (``pixi.lock``), a pack
(its repodata and wheel file names) and an installed prefix (``conda-meta`` and ``*.dist-info``),
so any of them can be the base of a delta.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import rattler

from .errors import UnpackError

#: How many differing lines an error message shows.
SHOWN = 5


def pypi_name(name: str) -> str:
    """A PyPI distribution name as PEP 503 normalizes it (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_line(name: str, version: str, build: str, sha256: str) -> str:
    return f"conda {name}={version}={build} {sha256}"


def pypi_line(name: str, version: str) -> str:
    return f"pypi {pypi_name(name)}=={version}"


def record_line(record: rattler.PackageRecord) -> str:
    """The line of a repodata or prefix record; a record without a sha256 cannot be named."""
    if record.sha256 is None:
        raise UnpackError(
            f"package {record.name.normalized}={record.version}={record.build} has no sha256 in its "
            "record, so it cannot be compared with a delta's base"
        )
    return conda_line(record.name.normalized, str(record.version), record.build, record.sha256.hex())


def wheel_line(file_name: str) -> str | None:
    """The line of a wheel file (``name-version-...whl``), None when the name is not a wheel's."""
    parts = file_name.removesuffix(".whl").split("-")
    if not file_name.endswith(".whl") or len(parts) < 5:
        return None
    return pypi_line(parts[0], parts[1])


@dataclass(frozen=True)
class PackageSet:
    """The lines of one environment's packages."""

    lines: frozenset[str]

    @classmethod
    def of(cls, lines: Iterable[str]) -> PackageSet:
        return cls(frozenset(lines))

    @property
    def digest(self) -> str:
        """The sha256 of the sorted lines: the set's identity."""
        return hashlib.sha256("".join(line + "\n" for line in sorted(self.lines)).encode()).hexdigest()

    def sorted(self) -> list[str]:
        return sorted(self.lines)

    def difference(self, other: PackageSet) -> str:
        """What this set has that ``other`` lacks and the other way round, in one short phrase."""
        missing = sorted(other.lines - self.lines)
        extra = sorted(self.lines - other.lines)
        parts = []
        if missing:
            parts.append(f"lacks {_listing([_short(line) for line in missing])}")
        if extra:
            parts.append(f"has {_listing([_short(line) for line in extra])} instead")
        return "; ".join(parts) or "the same packages"


def _short(line: str) -> str:
    """``conda x=1=h0 <sha>`` -> ``x=1=h0``; ``pypi x==1`` -> ``x==1 (PyPI)``."""
    kind, _, rest = line.partition(" ")
    return rest.split(" ")[0] if kind == "conda" else f"{rest} (PyPI)"


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"


def installed_records(prefix: Path) -> list[rattler.PrefixRecord]:
    """The prefix's ``conda-meta/*.json`` records (an ``UnpackError`` for one that cannot be read)."""
    records = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            records.append(rattler.PrefixRecord.from_path(path))
        except Exception as exc:  # rattler's parse errors
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnpackError(
                f"package record '{path}' cannot be read ({reason}); repair the environment"
            ) from None
    return records


@dataclass(frozen=True)
class PypiDist:
    """A PyPI package installed into the prefix by a wheel installer (not by conda)."""

    name: str
    version: str
    dist_info: Path


#: Where site-packages lives in a prefix on Unix and on Windows.
SITE_PACKAGES_GLOBS = ("lib/python*/site-packages", "Lib/site-packages")


def installed_pypi(prefix: Path, records: list[rattler.PrefixRecord]) -> list[PypiDist]:
    """The ``*.dist-info`` of the prefix's site-packages that no conda package installed."""
    from email.parser import BytesHeaderParser  # here: an unpack without a delta never needs it

    conda_files = {Path(f).as_posix() for record in records for f in record.files}
    found = []
    for pattern in SITE_PACKAGES_GLOBS:
        for dist_info in sorted(prefix.glob(f"{pattern}/*.dist-info")):
            relative = dist_info.relative_to(prefix).as_posix()
            if f"{relative}/METADATA" in conda_files or f"{relative}/RECORD" in conda_files:
                continue
            try:
                if (dist_info / "INSTALLER").read_text(errors="replace").strip().lower() == "conda":
                    continue
            except OSError:
                pass
            try:
                headers = BytesHeaderParser().parsebytes((dist_info / "METADATA").read_bytes())
            except OSError:
                continue
            if headers.get("Name") and headers.get("Version"):
                found.append(PypiDist(str(headers["Name"]), str(headers["Version"]), dist_info))
    return found


def installed_set(prefix: Path, records: list[rattler.PrefixRecord]) -> PackageSet:
    """The lines of an installed environment: its conda records and the PyPI packages no conda
    package installed."""
    lines = [record_line(record) for record in records]
    lines += [pypi_line(dist.name, dist.version) for dist in installed_pypi(prefix, records)]
    return PackageSet.of(lines)
