"""The console scripts: ``pixi-pack`` and ``pixi-unpack``, with the words they take as subcommands.

The commands themselves live in ``pack.py`` and ``unpack.py``; ``completion.py`` prints scripts
for both. Dispatching here keeps those three free of each other.

This module imports nothing at its top: loading the commands (rich, rattler, the plugins) takes a
few tenths of a second, and a Ctrl-C in that time must end with one line and exit code 130, like a
Ctrl-C later in the run, not with a traceback from whatever module was being imported.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing alone takes longer than the rest
if TYPE_CHECKING:
    from collections.abc import Callable

#: Words ``pixi-pack`` takes in place of MANIFEST_PATH as subcommands (see ``subcommand``; the
#: completers offer the same words, from ``completers.PACK_SUBCOMMANDS``).
PACK_SUBCOMMANDS = ("plugins", "completion", "verify", "sbom")
INTERRUPTED_EXIT = 130


def _run_guarded(command: Callable[[], None]) -> None:
    """Run ``command`` through ``exit_without_teardown`` (which turns a Ctrl-C into one line and
    130); a Ctrl-C while that loads (rich, ...) ends the process the same way."""
    try:
        from .common import exit_without_teardown
    except KeyboardInterrupt:
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        finally:
            os._exit(INTERRUPTED_EXIT)
    exit_without_teardown(command)


def pixi_pack() -> None:
    """The ``pixi-pack`` console script."""
    _run_guarded(run_pack)


def pixi_unpack() -> None:
    """The ``pixi-unpack`` console script."""
    _run_guarded(run_unpack)


def subcommand(args: list[str]) -> str | None:
    """The subcommand ``args`` start with, if any.

    ``plugins`` and ``completion`` are subcommands unless a workspace folder of that name (one
    holding a manifest) is in the current folder: then the word is MANIFEST_PATH, as it was before
    the subcommands existed. A path written with a slash (``./plugins``) is never a subcommand.
    """
    word = args[0] if args else None
    if word not in PACK_SUBCOMMANDS:
        return None
    if any(os.path.isfile(os.path.join(word, name)) for name in ("pixi.toml", "pyproject.toml")):
        return None
    return word


def run_pack() -> None:
    """``pixi-pack`` itself; ``plugins``, ``completion``, ``verify`` and ``sbom`` are spelled like subcommands."""
    import contextlib

    from ..errors import PixiPackError
    from ..plugins import get_plugin_manager
    from .common import run_reporting_errors, setup_logging

    args = sys.argv[1:]
    command = subcommand(args)
    if command == "plugins":
        from .plugin_list import list_plugins

        setup_logging(0, False)
        run_reporting_errors(list_plugins)
        return
    if command == "completion":
        from .completion import completion_command

        completion_command(args=args[1:], prog_name="pixi-pack completion")
        return
    if command in ("verify", "sbom"):
        from .verify import sbom_command, verify_command

        click_command = verify_command if command == "verify" else sbom_command
        click_command(args=args[1:], prog_name=f"pixi-pack {command}")
        return
    from .format_options import add_format_flags
    from .pack import pack_command

    with contextlib.suppress(PixiPackError):  # a broken plugin set is reported when packing
        add_format_flags(pack_command, get_plugin_manager().formats)  # --base-image, ...
    pack_command(prog_name="pixi-pack")


def run_unpack() -> None:
    """``pixi-unpack`` itself; ``pixi-unpack completion -s SHELL`` (when no pack is named so) prints completion."""
    args = sys.argv[1:]
    if args[:1] == ["completion"] and not os.path.exists("completion"):
        from .completion import completion_command

        completion_command(args=args[1:], prog_name="pixi-unpack completion")
        return
    from .unpack import unpack_command

    unpack_command(prog_name="pixi-unpack")
