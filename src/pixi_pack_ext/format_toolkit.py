"""What a format plugin needs to build an installed environment itself, as the OCI format does.

Most formats only write the laid-out pack files (``WriteRequest.files``) somewhere. A format that
ships an installed environment instead (a container image, a prefix on a share) needs the pieces
``pixi-unpack`` is made of: verify the pack's channel, install its records with rattler, install
its wheels without running anything, write an activation script and a deterministic tar. This
module is that deliberate, stable subset; the modules behind it are internal.
"""

from __future__ import annotations

from pathlib import Path

from .archive import write_tar
from .envpython import (
    EnvPython,
    WheelName,
    describe_tags,
    fits_loosely,
    parse_wheel_name,
    python_for_wheels,
)
from .errors import PythonNotFoundError
from .metadata import CHANNEL_DIR, ENVIRONMENT_FILE, METADATA_FILE, PYPI_DIR, pack_wheels, read_metadata
from .unpack.activation import ManifestActivation, activation_script, install_scripts
from .unpack.driver import install_records, verify_channel
from .unpack.wheel_install import install_wheel, wheel_scheme

__all__ = [
    "CHANNEL_DIR",
    "ENVIRONMENT_FILE",
    "METADATA_FILE",
    "PYPI_DIR",
    "EnvPython",
    "ManifestActivation",
    "PythonNotFoundError",
    "WheelName",
    "activation_script",
    "describe_tags",
    "fits_loosely",
    "install_activation_scripts",
    "install_records",
    "install_wheel",
    "pack_wheels",
    "parse_wheel_name",
    "python_for_wheels",
    "verify_channel",
    "wheel_scheme",
    "write_tar",
]


def install_activation_scripts(pack_dir: Path, prefix: Path) -> ManifestActivation | None:
    """Copy the pack's ``[activation]`` scripts into an installed ``prefix`` (checked as untrusted
    pack data); returns what ``activation_script(..., manifest)`` applies, or None without any."""
    activation = read_metadata(pack_dir).activation
    return install_scripts(pack_dir, prefix, activation) if activation else None
