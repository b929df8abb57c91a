"""Refuse to install an environment the host cannot run (too old glibc, no CUDA, old macOS, ...).

The environment's needs come from its records' depends on virtual packages (``__glibc >=2.28``);
the host's from ``rattler.VirtualPackage.detect()``.
"""

from __future__ import annotations

import logging

import rattler

from .errors import EnvironmentMismatchError

log = logging.getLogger(__name__)


def host_virtual_packages() -> dict[str, rattler.GenericVirtualPackage]:
    return {str(vp.name.normalized): vp for vp in (v.into_generic() for v in rattler.VirtualPackage.detect())}


def check_virtual_packages(records: list[rattler.RepoDataRecord], platform: str) -> None:
    """Raise when a record depends on a virtual package the host lacks or has too old."""
    host = host_virtual_packages()
    for record in records:
        for depend in record.depends:
            if not depend.startswith("__"):
                continue
            spec = rattler.MatchSpec(depend)
            name = spec.name.normalized if spec.name else depend.split()[0]
            have = host.get(name)
            if have is None:
                raise EnvironmentMismatchError(
                    f"package '{record.name.normalized}' needs '{depend}', which this machine does not have; "
                    "pass --ignore-virtual-packages to install anyway"
                )
            if spec.version and not rattler.VersionSpec(spec.version).matches(have.version):
                raise EnvironmentMismatchError(
                    f"package '{record.name.normalized}' needs '{depend}' but this machine has "
                    f"{name} {have.version}; pass --ignore-virtual-packages to install anyway"
                )
