"""The console scripts: ``pixi-pack`` and ``pixi-unpack``, with the words they take as subcommands.

The commands themselves live in ``pack.py`` and ``unpack.py``; ``completion.py`` prints scripts
for both. Dispatching here keeps those three free of each other.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..errors import PixiPackError
from ..plugins import get_plugin_manager
from .common import exit_without_teardown, run_reporting_errors, setup_logging
from .plugin_list import list_plugins


def pixi_pack() -> None:
    """The ``pixi-pack`` console script."""
    exit_without_teardown(run_pack)


def pixi_unpack() -> None:
    """The ``pixi-unpack`` console script."""
    exit_without_teardown(run_unpack)


def run_pack() -> None:
    """``pixi-pack`` itself; ``pixi-pack plugins`` and ``pixi-pack completion`` are spelled like subcommands."""
    args = sys.argv[1:]
    if args[:1] == ["plugins"]:
        setup_logging(0, False)
        run_reporting_errors(list_plugins)
        return
    if args[:1] == ["completion"]:
        from .completion import completion_command

        completion_command(args=args[1:], prog_name="pixi-pack completion")
        return
    from .format_options import add_format_flags
    from .pack import pack_command

    with contextlib.suppress(PixiPackError):  # a broken plugin set is reported when packing
        add_format_flags(pack_command, get_plugin_manager().formats)  # --base-image, ...
    pack_command(prog_name="pixi-pack")


def run_unpack() -> None:
    """``pixi-unpack`` itself; ``pixi-unpack completion -s SHELL`` (when no pack is named so) prints completion."""
    args = sys.argv[1:]
    if args[:1] == ["completion"] and not Path("completion").exists():
        from .completion import completion_command

        completion_command(args=args[1:], prog_name="pixi-unpack completion")
        return
    from .unpack import unpack_command

    unpack_command(prog_name="pixi-unpack")
