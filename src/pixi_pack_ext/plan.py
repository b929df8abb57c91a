"""The pack plan: exactly which files go into a pack, with the hashes they must have.

A plan is made from a lock file (``lockfile.py``) or an installed prefix (``prefix.py``), may be
extended by injectors, and is then fetched and laid out. It knows nothing about where files come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rattler

from .activation_data import WorkspaceActivation


@dataclass
class CondaPackage:
    """One conda package of the plan: its repodata record and where to fetch it."""

    record: rattler.RepoDataRecord
    #: A URL (``https://``, ``s3://``, ``file://``) or, for injected packages, a local path.
    url: str
    local_path: Path | None = None
    note: str = ""
    #: ``--prefix``: a package cache's extracted folder to rebuild the package from when its
    #: archive can be had from nowhere (see ``rebuild.py``).
    rebuild_from: Path | None = None
    #: More fields for the pack's repodata record (a rebuilt package's original digests).
    repodata_extra: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.name.normalized

    @property
    def file_name(self) -> str:
        return self.record.file_name

    @property
    def subdir(self) -> str:
        return self.record.subdir

    @property
    def sha256(self) -> str | None:
        return self.record.sha256.hex() if self.record.sha256 else None

    @property
    def md5(self) -> str | None:
        return self.record.md5.hex() if self.record.md5 else None

    @property
    def spec(self) -> str:
        """``name=version=build``: how messages and environment.yml name the package."""
        return f"{self.name}={self.record.version}={self.record.build}"

    @property
    def pack_path(self) -> str:
        """Where the file lives inside the pack."""
        return f"channel/{self.subdir}/{self.file_name}"


@dataclass
class PypiPackage:
    """One PyPI package of the plan; only wheels can be packed."""

    name: str
    version: str
    #: A URL, or a path relative to the workspace (as pixi writes local wheels).
    location: str
    sha256: str | None = None
    local_path: Path | None = None
    editable: bool = False

    @property
    def file_name(self) -> str:
        if self.local_path is not None:
            return self.local_path.name
        return unquote(urlsplit(self.location.removeprefix("direct+")).path.rstrip("/").rsplit("/", 1)[-1])

    @property
    def is_wheel(self) -> bool:
        return self.file_name.lower().endswith(".whl") and not self.editable

    @property
    def pack_path(self) -> str:
        return f"pypi/{self.file_name}"


@dataclass
class PackPlan:
    """Everything one pack holds, for one environment on one platform."""

    platform: str
    environment: str = "default"
    conda: list[CondaPackage] = field(default_factory=list)
    pypi: list[PypiPackage] = field(default_factory=list)
    #: Virtual packages the lock records for this platform (``__glibc=2.17``, ...).
    virtual_packages: list[str] = field(default_factory=list)
    workspace: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: Added to a download error: where else the files were looked for (``--prefix`` says which caches).
    fetch_hint: str = ""
    #: The manifest's ``[activation]`` for this environment and platform (None: no manifest read).
    activation: WorkspaceActivation | None = None

    def conda_by_name(self) -> dict[str, CondaPackage]:
        return {pkg.name: pkg for pkg in self.conda}

    def subdirs(self) -> list[str]:
        """Every subdir the pack has a folder for: those used, plus ``noarch`` always."""
        return sorted({"noarch", self.platform, *(pkg.subdir for pkg in self.conda)})

    def replace_conda(self, package: CondaPackage) -> CondaPackage | None:
        """Add ``package``, replacing (and returning) a planned package of the same name."""
        for index, existing in enumerate(self.conda):
            if existing.name == package.name:
                self.conda[index] = package
                return existing
        self.conda.append(package)
        return None
