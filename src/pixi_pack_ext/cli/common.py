"""What both commands share: logging set-up, the progress bar, and turning errors into one line.

rich is imported when something is shown with it (a log record, an error, the progress bar, the
closing line), not when a command starts: a quiet run that goes well never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..errors import PixiPackError
from ..interrupts import exit_code_for, handle_termination, ignore_interrupts, signal_name
from ..redact import RedactingFilter, redact
from ..status import STATUS_LOGGER
from ..untrusted import printable

if TYPE_CHECKING:
    from rich.console import Console

    from ..pack.progress import Progress

T = TypeVar("T")


class _LazyConsole:
    """The rich console on standard error, made on first use."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    @property
    def made(self) -> bool:
        """Whether the console (and rich) has been loaded."""
        return self._console is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


stderr = _LazyConsole()


class _LazyRichHandler(logging.Handler):
    """Hands records to a ``RichHandler`` on ``stderr``, made when the first record comes."""

    def __init__(self) -> None:
        super().__init__()
        self._handler: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._handler is None:
            from rich.logging import RichHandler

            self._handler = RichHandler(
                console=stderr.console, show_time=False, show_path=False, markup=False
            )
        self._handler.handle(record)


class _StatusHandler(logging.Handler):
    """Status lines as they are: no level, no time."""

    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(redact(record.getMessage()), markup=False, highlight=False, soft_wrap=True)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Warnings by default, info with -v, debug with -vv, errors only with -q; secrets always masked."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = _LazyRichHandler()
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pixi_pack_ext").setLevel(level)
    for name in ("httpx", "httpcore", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    # what a slow step is doing (fetching the bundled unpacker's wheels, ...): plain lines, shown
    # by default so that a long first run is not silent
    status = logging.getLogger(STATUS_LOGGER)
    status.handlers[:] = [_StatusHandler()]
    status.propagate = False
    status.setLevel(logging.ERROR if quiet else logging.INFO)


def exit_code(exc: SystemExit) -> int:
    """The process exit code a SystemExit stands for (a message means failure, as in Python)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def exit_without_teardown(command: Callable[[], object]) -> NoReturn:
    """Run a console command, then leave with its exit code, skipping interpreter teardown.

    py-rattler's native runtime can crash (SIGSEGV/SIGABRT in a worker thread) while Python tears
    down a process that installed or read packages, which would turn a finished, successful run into
    a crash exit. Every file has been written and closed by then, so the command's own code is the
    true outcome.
    """
    try:
        command()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    except KeyboardInterrupt:  # before the work started (option parsing, loading plugins)
        with contextlib.suppress(Exception):
            if stderr.made:
                stderr.print("[bold red]interrupted[/]")
            else:  # not rich: importing it now could be what is interrupted next
                sys.stderr.write("interrupted\n")
        code = 130
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run_reporting_errors(action: Callable[[], T]) -> T:
    """Run ``action``; a PixiPackError becomes one red line and its exit code, Ctrl-C exit 130
    (SIGTERM and SIGHUP are handled alike: exit 128 + the signal's number).

    Once ``action`` has finished its work is in place: a Ctrl-C after that is ignored rather than
    turned into a failure (or a half-printed traceback) for work that was done.
    """
    handle_termination()
    try:
        result = action()
        ignore_interrupts()
        return result
    except PixiPackError as exc:
        from rich.markup import escape

        # escape: a message may hold brackets ("[mirrors]") that rich would take for markup, and
        # names from a pack, whose control characters must not reach the terminal
        message = escape(printable(redact(str(exc))))
        stderr.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, emoji=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        ignore_interrupts()  # the clean-up is done: a second signal must not print a traceback
        stderr.print(f"[bold red]interrupted[/] ({signal_name(exc)}); nothing was left half-written")
        sys.exit(exit_code_for(exc))


def progress_for(quiet: bool) -> Progress:
    """A rich bar on an interactive terminal, silence otherwise (logs say what happened)."""
    from ..pack.progress import Progress

    if quiet or not stderr.is_terminal:
        return Progress()
    from .progress import RichDownloadProgress

    return RichDownloadProgress(stderr.console)
