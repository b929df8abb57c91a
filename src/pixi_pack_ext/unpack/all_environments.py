"""``pixi-unpack PACK --all``: each environment of a pack into a folder of its own name.

Each environment is a full unpack of its own (the pack is read once per environment); its
activation script is named after it (``activate-NAME.sh``), since they share the output folder.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..environments import environment_names
from ..errors import UsageError
from ..metadata import parse_metadata
from ..plugins import PluginManager, get_plugin_manager
from .activation import activation_path
from .driver import UnpackOptions, host_platform, unpack


def unpack_all(options: UnpackOptions, plugins: PluginManager | None = None) -> list[Path]:
    """Unpack every environment of ``options.pack``; returns the prefixes."""
    plugins = plugins or get_plugin_manager()
    pack = options.pack
    if pack is None or not pack.exists():
        raise UsageError("--all reads the pack's list of environments first: pass the pack's path, not '-'")
    fmt = plugins.format_reading(pack)
    text = fmt.peek_metadata(pack) if fmt.peek_metadata is not None else None
    names = environment_names(text or "")
    if not names:
        if text is not None:
            parse_metadata(text)  # a pixi-pack.json that cannot be read says why, not "holds one"
        raise UsageError("--all applies to a pack of several environments; this pack holds one")
    prefixes = []
    output_dir = options.output_directory.absolute()
    suffix = activation_path(output_dir, options.shell, host_platform()).suffix
    for name in names:  # checked before anything is installed, as unpack checks activate.*
        named = output_dir / f"activate-{name}{suffix}"
        if (named.is_symlink() or named.exists()) and not options.force:
            raise UsageError(f"'{named}' already exists; remove it or pass --force to replace it")
    for name in names:
        prefix = unpack(dataclasses.replace(options, environment=name, env_name=name), plugins)
        for script in output_dir.glob("activate.*"):
            os.replace(script, output_dir / f"activate-{name}{script.suffix}")
        prefixes.append(prefix)
    return prefixes
