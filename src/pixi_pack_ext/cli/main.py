"""The console scripts: ``pixi-pack`` and ``pixi-unpack``, with the words they take as subcommands.

The commands themselves live in ``pack.py`` and ``unpack.py``; ``completion.py`` prints scripts
for both. Dispatching here keeps those three free of each other.

This module imports nothing at its top: loading the commands (rich, rattler, the plugins) takes a
few tenths of a second, and a Ctrl-C in that time must end with one line and exit code 130, like a
Ctrl-C later in the run, not with a traceback from whatever module was being imported.

``--version``, and a ``--help`` rendered before for the same inputs (``help_cache``), are answered
before any of that is imported: ``pixi-pack --version`` took 188 ms, nearly all of it imports
(rattler, rich-click, rich, the plugins' entry points) for a line that needs none of them.
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
HELP = (["--help"], ["-h"])
VERSION = (["--version"], ["-V"])


def _run_guarded(prog: str, command: Callable[[], None]) -> None:
    """Answer at once what needs nothing loaded (``_answered_at_once``), else run ``command``
    through ``exit_without_teardown`` (which turns a Ctrl-C into one line and 130); a Ctrl-C
    while either loads (rich, ...) ends the process the same way."""
    try:
        if _answered_at_once(prog):
            return
        command = _with_help_kept(prog, command)
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
    _run_guarded("pixi-pack", run_pack)


def pixi_unpack() -> None:
    """The ``pixi-unpack`` console script."""
    _run_guarded("pixi-unpack", run_unpack)


def _answered_at_once(prog: str) -> bool:
    """Print the version (as click's ``--version`` prints it), or the kept help, when that is all
    that is asked; whether it did."""
    args = sys.argv[1:]
    if args in VERSION:
        from .. import __version__

        sys.stdout.write(f"{prog}, version {__version__}\n")
        sys.stdout.flush()
        return True
    if args in HELP:
        from .help_cache import print_kept

        return print_kept(prog)
    return False


def _with_help_kept(prog: str, run: Callable[[], None]) -> Callable[[], None]:
    """``run``, keeping what it prints when it is asked for the help alone."""
    if sys.argv[1:] not in HELP:
        return run
    from .help_cache import render_and_keep

    return lambda: render_and_keep(prog, run)


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
    from .rich_variant import run_command

    with contextlib.suppress(PixiPackError):  # a broken plugin set is reported when packing
        add_format_flags(pack_command, get_plugin_manager().formats)  # --base-image, ...
    run_command(pack_command, "pixi-pack")


def run_unpack() -> None:
    """``pixi-unpack`` itself; ``pixi-unpack completion -s SHELL`` (when no pack is named so) prints completion."""
    args = sys.argv[1:]
    if args[:1] == ["completion"] and not os.path.exists("completion"):
        from .completion import completion_command

        completion_command(args=args[1:], prog_name="pixi-unpack completion")
        return
    from .rich_variant import run_command
    from .unpack import HELP_SETTINGS, unpack_command

    run_command(unpack_command, "pixi-unpack", HELP_SETTINGS)
