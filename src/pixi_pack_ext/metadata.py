"""``pixi-pack.json`` (pack format "1") and ``environment.yml``: the pack's self-description.

Both match pixi-pack's, so packs travel both ways between the tools and conda/micromamba can create
the environment from ``environment.yml`` and the local channel.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import PACK_FORMAT_VERSION, __version__, untrusted
from .activation_data import ACTIVATION_FIELD, PackActivation, parse_activation
from .errors import InvalidPackError

if TYPE_CHECKING:
    from .plan import PackPlan

log = logging.getLogger(__name__)

METADATA_FILE = "pixi-pack.json"
ENVIRONMENT_FILE = "environment.yml"
CHANNEL_DIR = "channel"
PYPI_DIR = "pypi"
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
#: Every file of the pack with its size and sha256 (``manifest.py``), and its SSH signature: the
#: tar's first two members.
MANIFEST_FILE = "pixi-pack-manifest.json"
SIGNATURE_FILE = MANIFEST_FILE + ".sig"
SEAL_FILES = (MANIFEST_FILE, SIGNATURE_FILE)
#: The largest ``pixi-pack.json`` read (the bound of every small JSON file of a pack): a delta's
#: package lines or the file lists of many environments and platforms run past 64 KiB.
METADATA_MAX_BYTES = untrusted.MAX_SMALL_JSON


def compact_json(data: object, *, sort_keys: bool = True) -> str:
    """The text of a JSON file the pack carries (repodata, manifest, SBOM): compact, so that the C
    encoder writes it; an indented dump runs in Python, ~10x slower for a thousand packages."""
    return json.dumps(data, sort_keys=sort_keys, separators=(",", ":"))


def metadata_too_large() -> InvalidPackError:
    return InvalidPackError(
        f"refusing {METADATA_FILE}: it has more than the {METADATA_MAX_BYTES} bytes a pack's file may have"
    )


def is_package_member(name: str) -> bool:
    """Whether a pack member's path (``channel/<subdir>/<file>``) is a conda package."""
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2].endswith(PACKAGE_SUFFIXES)


@dataclass(frozen=True)
class PackMetadata:
    """The content of ``pixi-pack.json``."""

    version: str
    platform: str
    pixi_pack_version: str | None = None
    #: The lock's virtual packages for the platform (``__glibc=2.28``: the least the host must have).
    #: Optional, so format "1" readers that do not know it still read the pack.
    virtual_packages: tuple[str, ...] = ()
    #: The manifest's ``[activation]`` (values and the scripts in ``activation/``). Optional too.
    activation: PackActivation | None = None

    def to_json(self) -> str:
        data: dict[str, object] = {"version": self.version}
        if self.pixi_pack_version is not None:
            data["pixi-pack-version"] = self.pixi_pack_version
        data["platform"] = self.platform
        if self.virtual_packages:
            data["virtual-packages"] = list(self.virtual_packages)
        if self.activation:
            data[ACTIVATION_FIELD] = self.activation.to_json()
        return json.dumps(data)


def metadata_for(
    platform: str,
    virtual_packages: list[str] | tuple[str, ...] = (),
    activation: PackActivation | None = None,
) -> PackMetadata:
    return PackMetadata(
        version=PACK_FORMAT_VERSION,
        platform=platform,
        pixi_pack_version=__version__,
        virtual_packages=tuple(virtual_packages),
        activation=activation or None,
    )


def parse_metadata(text: str, source: str = METADATA_FILE) -> PackMetadata:
    """Parse ``pixi-pack.json``; anything malformed is an ``InvalidPackError`` naming what is wrong."""
    if not text.strip():
        raise InvalidPackError(f"{source} is empty; this is not a valid pack")
    data = untrusted.load_json(text, source)
    if not isinstance(data, dict):
        raise InvalidPackError(f"{source} must be a JSON object")
    version = data.get("version")
    if not isinstance(version, str):
        raise InvalidPackError(f"{source} has no string 'version'; this is not a valid pack")
    if version != PACK_FORMAT_VERSION and "delta" in data:
        raise InvalidPackError(
            "this is a delta pack: it updates an installed environment, from a pack file or folder "
            "(not standard input); pass its path to pixi-unpack"
        )
    if version != PACK_FORMAT_VERSION:
        raise InvalidPackError(
            f"pack format version {untrusted.shown(version)} is not supported (this pixi-unpack reads "
            f"version '{PACK_FORMAT_VERSION}'); unpack it with the tool version that made it"
        )
    platform = data.get("platform")
    if not isinstance(platform, str) or not platform:
        raise InvalidPackError(f"{source} has no string 'platform'")
    untrusted.pack_platform(platform, source)
    made_by = data.get("pixi-pack-version")
    if made_by is not None and not isinstance(made_by, str):
        raise InvalidPackError(f"{source} has a non-string 'pixi-pack-version'")
    if made_by is not None and (len(made_by) > untrusted.MAX_FIELD or untrusted.component_problem(made_by)):
        raise untrusted.refuse(source, "pixi-pack-version", made_by, "is not a plain version")
    virtual = data.get("virtual-packages", [])
    if not isinstance(virtual, list) or not all(isinstance(v, str) and v.startswith("__") for v in virtual):
        raise InvalidPackError(
            f"{source} has a 'virtual-packages' that is not a list of '__name=version' strings"
        )
    for entry in virtual:
        untrusted.virtual_package_entry(entry, source)
    activation = data.get(ACTIVATION_FIELD)
    return PackMetadata(
        version=version,
        platform=platform,
        pixi_pack_version=made_by,
        virtual_packages=tuple(virtual),
        activation=parse_activation(activation, source) if activation is not None else None,
    )


def pack_wheels(pack_dir: Path) -> list[Path]:
    """The pack's ``pypi/*.whl``, in name order (none when it has no ``pypi/`` folder)."""
    folder = pack_dir / PYPI_DIR
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def read_metadata(pack_dir: Path) -> PackMetadata:
    path = pack_dir / METADATA_FILE
    try:
        text = untrusted.read_limited(path, METADATA_FILE).decode("utf-8")
    except FileNotFoundError:
        raise InvalidPackError(f"the pack has no {METADATA_FILE}; this is not a pixi-pack pack") from None
    except UnicodeDecodeError:
        raise InvalidPackError(f"{METADATA_FILE} is not UTF-8 text; this is not a valid pack") from None
    return parse_metadata(text)


def environment_yml(plan: PackPlan) -> str:
    """The conda/micromamba environment file: the local channel only, exact name=version=build pins."""
    lines = ["channels:", f"  - ./{CHANNEL_DIR}", "  - nodefaults", "dependencies:"]
    for package in sorted(plan.conda, key=lambda p: p.name):
        lines.append(f"  - {package.spec}")
    wheels = [p for p in plan.pypi if p.is_wheel]
    if wheels:
        if "pip" not in plan.conda_by_name():
            log.warning(
                "the environment has PyPI packages but no pip: conda/micromamba compatibility mode "
                "(environment.yml) cannot install them; add pip to the environment"
            )
        lines += ["  - pip:", "    - --no-index", f"    - --find-links ./{PYPI_DIR}"]
        lines += [f"    - {p.name}=={p.version}" for p in sorted(wheels, key=lambda p: p.name.lower())]
    return "\n".join(lines) + "\n"
