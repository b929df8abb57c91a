"""Run a command defined with plain click; rich-click renders its help and its errors.

rich-click (and the rich it loads) costs about a tenth of a run's start-up, and most runs print
neither help nor a usage error. So the commands are defined with click alone; a run that asks for
the help gets the same command as a ``RichCommand`` (same parameters and callback), and a run
whose arguments or callback raise a click error, or that is aborted, has that error shown by the
rich variant too, as a ``RichCommand`` shows it: same text, same exit code.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

HELP_FLAGS = ("-h", "--help")
#: Settings of the rich variant by program: the help's layout (``RichHelpConfiguration`` fields).
HelpSettings = dict[str, Any]


def rich_variant(
    command: click.Command, settings: HelpSettings | None = None, callback: Callable[..., Any] | None = None
) -> click.Command:
    """``command`` as a ``RichCommand``: its parameters, help and epilog, and ``callback`` (default:
    its own)."""
    import rich_click

    rich_click.rich_click.USE_RICH_MARKUP = True
    context_settings = dict(command.context_settings)
    if settings:
        context_settings["rich_help_config"] = rich_click.RichHelpConfiguration(**settings)
    return rich_click.RichCommand(
        name=command.name,
        context_settings=context_settings,
        callback=callback or command.callback,
        params=command.params,
        help=command.help,
        epilog=command.epilog,
        short_help=command.short_help,
        options_metavar=command.options_metavar,
        add_help_option=command.add_help_option,
    )


def run_command(command: click.Command, prog_name: str, settings: HelpSettings | None = None) -> None:
    """Run ``command`` on ``sys.argv[1:]`` as click's standalone mode does (exits with its code)."""
    args = sys.argv[1:]
    if any(arg in HELP_FLAGS for arg in args):
        rich_variant(command, settings).main(args=args, prog_name=prog_name)
        return
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except (click.ClickException, click.Abort) as exc:
        _show(command, prog_name, settings, args, exc)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _show(command, prog_name, settings, args, exc)
    if isinstance(code, int):  # click returns the code of a ``ctx.exit(code)`` (``--version``)
        sys.exit(code)


def _show(
    command: click.Command, prog_name: str, settings: HelpSettings | None, args: list[str], exc: BaseException
) -> NoReturn:
    """Show ``exc`` as the rich variant shows it: the variant parses the same arguments (failing the
    same way when they were the problem) and its callback raises ``exc`` again, doing nothing."""

    def raise_again(**_: object) -> NoReturn:
        raise exc

    rich_variant(command, settings, callback=raise_again).main(args=args, prog_name=prog_name)
    raise AssertionError("the rich variant exits")  # pragma: no cover
