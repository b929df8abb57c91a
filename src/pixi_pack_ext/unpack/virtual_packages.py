"""Refuse to install an environment the host cannot run (too old glibc, no CUDA, old macOS, ...).

The environment's needs come from two places: its records' depends on virtual packages
(``__glibc >=2.28``) and the lock's virtual packages for the platform (``__glibc=2.28``, the least
the environment was solved for, recorded in ``pixi-pack.json``). The host's come from
``rattler.VirtualPackage.detect()`` with conda's ``CONDA_OVERRIDE_*`` variables applied, so a
wrong detection can be corrected the way conda users already know.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import rattler

from ..errors import EnvironmentMismatchError

log = logging.getLogger(__name__)

#: Virtual packages whose build string is not a plain label to match (the host's microarchitecture
#: satisfies older ones too); only their presence and version are checked.
BUILD_NOT_COMPARED = {"__archspec"}

#: Virtual packages whose detection conda's ``CONDA_OVERRIDE_<NAME>`` variables can correct.
OVERRIDABLE = {"__glibc", "__cuda", "__osx", "__archspec"}


@dataclass(frozen=True)
class Need:
    """One virtual package the environment needs: its name, version spec, build glob and why."""

    name: str
    version: str | None
    build: str | None
    needed_by: str

    def describe(self) -> str:
        return " ".join(p for p in (self.name, self.version, self.build) if p)


def host_virtual_packages() -> dict[str, rattler.GenericVirtualPackage]:
    """The host's virtual packages by name, ``CONDA_OVERRIDE_GLIBC`` and friends applied."""
    detected = rattler.VirtualPackage.detect(rattler.VirtualPackageOverrides.from_env())
    return {str(vp.name.normalized): vp for vp in (v.into_generic() for v in detected)}


def needs_of_records(records: Iterable[rattler.RepoDataRecord]) -> list[Need]:
    needs = []
    for record in records:
        for depend in record.depends:
            if not depend.startswith("__"):
                continue
            spec = rattler.MatchSpec(depend)
            name = spec.name.normalized if spec.name else depend.split()[0]
            version = str(spec.version) if spec.version else None
            build = str(spec.build) if spec.build else None
            needs.append(
                Need(name, None if version == "*" else version, build, f"package '{record.name.normalized}'")
            )
    return needs


def needs_of_lock(virtual_packages: Iterable[str]) -> list[Need]:
    """``__glibc=2.28`` (as locks write them) means: at least glibc 2.28."""
    needs = []
    for entry in virtual_packages:
        name, _, rest = entry.partition("=")
        version = rest.partition("=")[0]
        needs.append(
            Need(name.strip(), f">={version}" if version and version != "0" else None, None, "the lock")
        )
    return needs


def unmet(need: Need, host: dict[str, rattler.GenericVirtualPackage]) -> str | None:
    """What the host lacks for ``need`` (a sentence), or None when it is met."""
    have = host.get(need.name)
    if have is None:
        return f"this machine has no {need.name}"
    try:
        version_ok = need.version is None or rattler.VersionSpec(need.version).matches(have.version)
    except Exception:  # a spec rattler cannot read cannot be checked; let the install decide
        log.warning("cannot check '%s' (%s) against this machine", need.describe(), need.needed_by)
        return None
    build_ok = (
        need.build is None
        or need.name in BUILD_NOT_COMPARED
        or fnmatch.fnmatchcase(str(have.build_string), need.build)
    )
    if version_ok and build_ok:
        return None
    shown = f"{have.version}" if build_ok else f"{have.version} {have.build_string}"
    return f"this machine has {need.name} {shown}"


def check_virtual_packages(
    records: list[rattler.RepoDataRecord], platform: str, lock_virtual_packages: Iterable[str] = ()
) -> None:
    """Raise ``EnvironmentMismatchError`` naming the first virtual package the host does not meet."""
    host = host_virtual_packages()
    for need in [*needs_of_lock(lock_virtual_packages), *needs_of_records(records)]:
        problem = unmet(need, host)
        if problem is not None:
            hint = "pass --ignore-virtual-packages to install anyway"
            if need.name in OVERRIDABLE:
                hint += f" (or correct the detection with CONDA_OVERRIDE_{need.name[2:].upper()})"
            raise EnvironmentMismatchError(
                f"the environment needs {need.describe()} ({need.needed_by}) but {problem}; {hint}"
            )
