"""``pixi-unpack PACK --all``: each environment of a pack into a folder of its own name, all or none.

Each environment is a full unpack of its own (the pack is read once per environment); its
activation script is named after it (``activate-NAME.sh``), since they share the output folder.
Every environment is assembled aside before any moves into place, and a failure of any leaves the
output folder as it was (``driver.unpack_together``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..environments import environment_names, is_delta_of_several, parse_environments
from ..errors import UsageError
from ..metadata import parse_metadata
from ..plugins import PluginManager, get_plugin_manager
from .driver import UnpackOptions, unpack_together


def unpack_all(options: UnpackOptions, plugins: PluginManager | None = None) -> list[Path]:
    """Unpack every environment of ``options.pack``; returns the prefixes."""
    plugins = plugins or get_plugin_manager()
    pack = options.pack
    if pack is None or not pack.exists():
        raise UsageError("--all reads the pack's list of environments first: pass the pack's path, not '-'")
    fmt = plugins.format_reading(pack)
    text = fmt.peek_metadata(pack) if fmt.peek_metadata is not None else None
    environments = parse_environments(text or "")
    if is_delta_of_several(environments):
        assert environments is not None
        from .delta import apply_each

        return apply_each(options, fmt, plugins, environments)
    names = environment_names(text or "")
    if not names:
        if text is not None:
            parse_metadata(text)  # a pixi-pack.json that cannot be read says why, not "holds one"
        raise UsageError("--all applies to a pack of several environments; this pack holds one")
    batch = [
        dataclasses.replace(options, environment=name, env_name=name, activation_script=f"activate-{name}")
        for name in names
    ]
    return unpack_together(batch, plugins)
