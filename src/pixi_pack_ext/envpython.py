"""An environment's python, read from its conda records: version, paths, and the wheels it can run.

The version comes from the ``python`` record rather than from running the interpreter, so the same
code answers for a pack plan (a foreign platform) and for an installed prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags, platform_tags
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename

from .errors import PythonNotFoundError

#: A free-threaded CPython build carries ``_cp313t`` (python) or ``*_cp313t`` (python_abi) in its build.
_FREE_THREADED = re.compile(r"cp3\d+t(?:_|$)")
#: A PyPy environment's python_abi build names its ABI, e.g. ``4_pypy39_pp73``.
_PYPY_ABI = re.compile(r"pypy\d+_pp\d+")


class _Record(Protocol):
    """What a conda record (lock, repodata or prefix) offers that matters here."""

    @property
    def name(self) -> object: ...

    @property
    def version(self) -> object: ...

    @property
    def build(self) -> object: ...

    @property
    def python_site_packages_path(self) -> str | None: ...


@dataclass(frozen=True)
class EnvPython:
    """The python of one environment: ``(major, minor)``, free-threading, and where packages go."""

    major: int
    minor: int
    free_threaded: bool = False
    #: The PyPy ABI (``pypy39_pp73``) when the python is PyPy, else None (CPython).
    pypy_abi: str | None = None
    #: The record's ``python_site_packages_path`` (relative to the prefix), when it sets one.
    site_packages_path: str | None = None
    #: The full version the record names (``3.11.7``), for ``Requires-Python``.
    full_version: str = ""

    @property
    def version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def abi(self) -> str:
        if self.pypy_abi is not None:
            return self.pypy_abi
        return f"cp{self.major}{self.minor}{'t' if self.free_threaded else ''}"

    def site_packages(self, platform: str) -> str:
        """Where purelib/platlib live, relative to the prefix (conda's layout)."""
        if self.site_packages_path:
            return self.site_packages_path
        if platform.startswith("win-"):
            return "Lib/site-packages"
        return f"lib/python{self.major}.{self.minor}{'t' if self.free_threaded else ''}/site-packages"

    def include_dir(self, platform: str) -> str:
        if platform.startswith("win-"):
            return "Include"
        return f"include/python{self.major}.{self.minor}{'t' if self.free_threaded else ''}"

    def executable_candidates(self, platform: str) -> list[str]:
        """Paths (relative to the prefix) a conda python may live at, preferred first."""
        if platform.startswith("win-"):
            return ["python.exe"]
        suffix = "t" if self.free_threaded else ""
        return ["bin/python", "bin/python3", f"bin/python{self.major}.{self.minor}{suffix}"]

    def supported_tags(self, platforms: Iterable[str]) -> set[Tag]:
        """Every wheel tag this python accepts on ``platforms`` (pip's order does not matter here)."""
        plats = list(platforms)
        if self.pypy_abi is not None:
            interpreter = f"pp{self.major}{self.minor}"
            tags = set(generic_tags(interpreter, [self.pypy_abi], plats))
        else:
            interpreter = f"cp{self.major}{self.minor}"
            tags = set(cpython_tags(self.version, abis=[self.abi], platforms=plats))
        tags.update(compatible_tags(self.version, interpreter=interpreter, platforms=plats))
        return tags

    @classmethod
    def from_records(cls, records: Iterable[_Record]) -> EnvPython | None:
        """The python of a set of conda records, or None when there is no ``python`` package."""
        python: _Record | None = None
        abi_build = ""
        for record in records:
            name = _name(record)
            if name == "python":
                python = record
            elif name == "python_abi":
                abi_build = str(record.build)
        if python is None:
            return None
        return cls._from(str(python.version), str(python.build), abi_build, python.python_site_packages_path)

    @classmethod
    def from_prefix(cls, prefix: Path) -> EnvPython | None:
        """The python installed in ``prefix``, read from its ``conda-meta`` records."""
        found: dict[str, dict[str, object]] = {}
        for path in sorted((prefix / "conda-meta").glob("python*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("name") in ("python", "python_abi"):
                found[str(data["name"])] = data
        python = found.get("python")
        if python is None:
            return None
        site = python.get("python_site_packages_path")
        return cls._from(
            str(python.get("version", "")),
            str(python.get("build", "")),
            str(found.get("python_abi", {}).get("build", "")),
            site if isinstance(site, str) else None,
        )

    @classmethod
    def _from(cls, version: str, build: str, abi_build: str, site: str | None) -> EnvPython:
        match = re.match(r"(\d+)\.(\d+)", version)
        if match is None:
            raise ValueError(f"python version '{version}' has no major.minor")
        free_threaded = bool(_FREE_THREADED.search(build) or _FREE_THREADED.search(abi_build))
        pypy = _PYPY_ABI.search(abi_build) or _PYPY_ABI.search(build)
        full = re.match(r"\d+(?:\.\d+)*", version)
        return cls(
            int(match[1]),
            int(match[2]),
            free_threaded,
            pypy[0] if pypy else None,
            site or None,
            full[0] if full else f"{match[1]}.{match[2]}",
        )


def python_for_wheels(prefix: Path, platform: str, *, dangling_ok: bool = False) -> tuple[EnvPython, str]:
    """The python installed in ``prefix`` (read from ``conda-meta``) and its interpreter's path relative to
    the prefix: the first of ``executable_candidates`` that is there.

    ``dangling_ok`` also takes a symbolic link whose target is not on this machine, as in an
    environment installed for another platform or prefix (an image's). Raises PythonNotFoundError.
    """
    try:
        python = EnvPython.from_prefix(prefix)
    except ValueError as exc:
        raise PythonNotFoundError(f"cannot install the pack's wheels: {exc}") from None
    if python is None:
        raise PythonNotFoundError(
            "the pack has PyPI wheels but the environment has no python to install them into; "
            "add python to the environment and pack again"
        )
    candidates = python.executable_candidates(platform)
    for candidate in candidates:
        path = prefix / candidate
        if path.exists() or (dangling_ok and path.is_symlink()):
            return python, candidate
    raise PythonNotFoundError(
        f"the environment's python {python.major}.{python.minor} has no interpreter at "
        f"{' or '.join(candidates)}; cannot install the pack's wheels"
    )


def _name(record: _Record) -> str:
    name = record.name
    return str(getattr(name, "normalized", name))


@dataclass(frozen=True)
class WheelName:
    """What a wheel's file name says: distribution, version and the tags it was built for."""

    name: NormalizedName
    version: str
    tags: frozenset[Tag]


def parse_wheel_name(file_name: str) -> WheelName:
    """Parse ``name-version(-build)?-py-abi-platform.whl``; raises ValueError with the reason."""
    try:
        name, version, _, tags = parse_wheel_filename(file_name)
    except InvalidWheelFilename as exc:
        raise ValueError(str(exc)) from None
    return WheelName(name, str(version), tags)


def host_platform_tags() -> list[str]:
    """The platform tags this machine runs (manylinux levels from its glibc, macOS versions, ...)."""
    return list(platform_tags())


#: Conda platform -> the architecture names wheel platform tags use for it.
_ARCHES = {
    "linux-64": ("x86_64",),
    "linux-32": ("i686", "i386"),
    "linux-aarch64": ("aarch64",),
    "linux-ppc64le": ("ppc64le",),
    "linux-s390x": ("s390x",),
    "linux-armv7l": ("armv7l",),
    "osx-64": ("x86_64", "intel", "universal2", "universal", "fat64", "fat3"),
    "osx-arm64": ("arm64", "universal2"),
    "win-64": ("amd64",),
    "win-32": ("win32",),
    "win-arm64": ("arm64",),
}


def platform_tag_fits(tag_platform: str, conda_platform: str) -> bool:
    """Whether a wheel platform tag can run on a conda platform, judged by OS and architecture only.

    Used at pack time for a foreign platform, where the exact glibc or macOS version is unknown; the
    unpack step checks exactly against the host.
    """
    if tag_platform == "any":
        return True
    arches = _ARCHES.get(conda_platform)
    if arches is None:
        return True  # a platform we do not know: leave the verdict to the unpack step
    if conda_platform.startswith("linux-"):
        return bool(
            re.fullmatch(rf"(?:many)?linux(?:_\d+_\d+|1|2010|2014)?_(?:{'|'.join(arches)})", tag_platform)
        )
    if conda_platform.startswith("osx-"):
        return bool(re.fullmatch(rf"macosx_\d+_\d+_(?:{'|'.join(arches)})", tag_platform))
    if conda_platform == "win-32":
        return tag_platform == "win32"
    return tag_platform in (f"win_{arch}" for arch in arches)


def fits_loosely(wheel: WheelName, python: EnvPython, conda_platform: str) -> bool:
    """Pack-time check: some tag matches the python exactly and the platform by OS/architecture."""
    accepted = python.supported_tags(["any"])
    return any(
        Tag(tag.interpreter, tag.abi, "any") in accepted and platform_tag_fits(tag.platform, conda_platform)
        for tag in wheel.tags
    )


def describe_tags(wheel: WheelName) -> str:
    return ", ".join(sorted(str(t) for t in wheel.tags))
