"""conda platforms (subdirs) and their OCI ``os``/``architecture``/``variant``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import UnsupportedPlatformError


@dataclass(frozen=True)
class OciPlatform:
    """An OCI platform as image configs and index descriptors spell it."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    def matches(self, other: OciPlatform) -> bool:
        """Same os and architecture; variants compared only where both say one (arm64 is v8)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        mine, theirs = _variant(self), _variant(other)
        return mine is None or theirs is None or mine == theirs


def _variant(platform: OciPlatform) -> str | None:
    if platform.architecture == "arm64" and platform.variant in (None, "v8"):
        return None
    return platform.variant


#: conda subdir -> OCI platform, for every Linux subdir conda knows.
LINUX_PLATFORMS: dict[str, OciPlatform] = {
    "linux-64": OciPlatform("linux", "amd64"),
    "linux-aarch64": OciPlatform("linux", "arm64"),
    "linux-armv7l": OciPlatform("linux", "arm", "v7"),
    "linux-armv6l": OciPlatform("linux", "arm", "v6"),
    "linux-32": OciPlatform("linux", "386"),
    "linux-ppc64le": OciPlatform("linux", "ppc64le"),
    "linux-ppc64": OciPlatform("linux", "ppc64"),
    "linux-s390x": OciPlatform("linux", "s390x"),
    "linux-riscv64": OciPlatform("linux", "riscv64"),
}


def oci_platform(subdir: str) -> OciPlatform:
    """The OCI platform for a conda subdir; anything but Linux is refused with the choices."""
    try:
        return LINUX_PLATFORMS[subdir]
    except KeyError:
        raise UnsupportedPlatformError(
            f"the oci format builds Linux images, and '{subdir}' is not a Linux platform; "
            f"pack for one of {', '.join(LINUX_PLATFORMS)} (-p)"
        ) from None


def platform_of(data: Mapping[str, object]) -> OciPlatform:
    """The platform an image config or an index descriptor's ``platform`` names."""
    variant = data.get("variant")
    return OciPlatform(
        os=str(data.get("os") or "?"),
        architecture=str(data.get("architecture") or "?"),
        variant=str(variant) if variant else None,
    )
