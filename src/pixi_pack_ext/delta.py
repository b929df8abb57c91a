"""Delta packs in ``pixi-pack.json``: which base a delta applies to and which set it makes.

A delta pack is laid out like a full pack, but its channel (and ``pypi/``) hold only the packages
its base lacks, and its ``pixi-pack.json`` says ``"version": "2"`` (so readers of format "1",
like the Rust ``pixi-unpack``, refuse it instead of installing half an environment) with::

    "delta": {"base": SHA256, "target": SHA256,
              "base-packages": [LINE, ...], "target-packages": [LINE, ...]}

``base``/``target`` are ``PackageSet`` digests; the lines are the sets themselves, so a refusal
can say what differs, and the kept packages are named exactly (see ``package_set.py``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from . import __version__, untrusted
from .activation_data import ACTIVATION_FIELD, parse_activation
from .errors import InvalidPackError
from .metadata import METADATA_FILE, PackMetadata
from .package_set import PackageSet, pypi_name

DELTA_FORMAT_VERSION = "2"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LINE = re.compile(r"(conda [^\s]+ [0-9a-f]{64}|pypi [^\s]+==[^\s]+)")


@dataclass(frozen=True)
class DeltaInfo:
    """The ``delta`` member of a delta pack's ``pixi-pack.json``."""

    base: PackageSet
    target: PackageSet

    def to_json(self, metadata: PackMetadata) -> str:
        data: dict[str, object] = {
            "version": DELTA_FORMAT_VERSION,
            "pixi-pack-version": metadata.pixi_pack_version or __version__,
            "platform": metadata.platform,
        }
        if metadata.virtual_packages:
            data["virtual-packages"] = list(metadata.virtual_packages)
        if metadata.activation:
            data[ACTIVATION_FIELD] = metadata.activation.to_json()
        data["delta"] = self.member_json()
        return json.dumps(data, indent=1)

    def member_json(self) -> dict[str, object]:
        """The ``delta`` member: of the pack, or of one environment of a pack of several."""
        return {
            "base": self.base.digest,
            "target": self.target.digest,
            "base-packages": self.base.sorted(),
            "target-packages": self.target.sorted(),
        }


def _package_name(line: str) -> str:
    """``conda NAME`` or ``pypi NAME`` of a package line."""
    kind, _, rest = line.partition(" ")
    name = rest.split("==" if kind == "pypi" else "=", 1)[0]
    return f"{kind} {pypi_name(name) if kind == 'pypi' else name}"


def is_delta(text: str) -> bool:
    """Whether ``pixi-pack.json``'s text is a delta pack's (anything unreadable is not)."""
    try:
        data = untrusted.load_json(text, METADATA_FILE)
    except untrusted.UntrustedDataError:
        return False  # parse_metadata says what is wrong with it
    return isinstance(data, dict) and "delta" in data


def parse_delta(text: str, source: str = METADATA_FILE) -> tuple[PackMetadata, DeltaInfo]:
    """A delta pack's metadata, each field checked (the pack is untrusted)."""
    data = untrusted.load_json(text, source)
    if not isinstance(data, dict) or data.get("version") != DELTA_FORMAT_VERSION:
        raise InvalidPackError(f"{source} of a delta pack must say version '{DELTA_FORMAT_VERSION}'")
    platform = data.get("platform")
    if not isinstance(platform, str) or not platform:
        raise InvalidPackError(f"{source} has no string 'platform'")
    virtual = data.get("virtual-packages", [])
    if not isinstance(virtual, list) or not all(isinstance(v, str) and v.startswith("__") for v in virtual):
        raise InvalidPackError(
            f"{source} has a 'virtual-packages' that is not a list of '__name=version' strings"
        )
    untrusted.pack_platform(platform, source)
    for entry in virtual:
        untrusted.virtual_package_entry(entry, source)
    info = parse_delta_member(data.get("delta"), source)
    made_by = data.get("pixi-pack-version")
    activation = data.get(ACTIVATION_FIELD)
    metadata = PackMetadata(
        version=DELTA_FORMAT_VERSION,
        platform=platform,
        pixi_pack_version=made_by if isinstance(made_by, str) else None,
        virtual_packages=tuple(virtual),
        activation=parse_activation(activation, source) if activation is not None else None,
    )
    return metadata, info


def parse_delta_member(delta: object, source: str, field: str = "delta") -> DeltaInfo:
    """A ``delta`` member (of a pack, or of one environment: ``field`` names where it is), checked."""
    if not isinstance(delta, dict):
        raise InvalidPackError(f"{source} has a '{field}' that is not an object")
    sets = {}
    for key in ("base", "target"):
        lines = delta.get(f"{key}-packages")
        if not isinstance(lines, list) or not all(isinstance(x, str) and _LINE.fullmatch(x) for x in lines):
            raise InvalidPackError(
                f"{source} has a '{field}.{key}-packages' that is not a list of package lines"
            )
        names = Counter(_package_name(line) for line in set(lines))
        twice = sorted(n for n, count in names.items() if count > 1)
        if twice:
            raise InvalidPackError(
                f"{source} has a '{field}.{key}-packages' that names {twice[0].split(' ', 1)[1]} twice; "
                "an environment holds one version of each package"
            )
        sets[key] = PackageSet.of(lines)
        digest = delta.get(key)
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest) or digest != sets[key].digest:
            raise InvalidPackError(
                f"{source} has a '{field}.{key}' that is not the sha256 of its package lines"
            )
    return DeltaInfo(base=sets["base"], target=sets["target"])
