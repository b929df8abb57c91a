"""What both commands share: logging set-up, the progress bar, and turning errors into one line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from ..errors import PixiPackError
from ..interrupts import ignore_interrupts
from ..pack.fetch import Progress
from ..redact import RedactingFilter, redact
from ..status import STATUS_LOGGER
from ..untrusted import printable

T = TypeVar("T")

stderr = Console(stderr=True, highlight=False)


class _StatusHandler(logging.Handler):
    """Status lines as they are: no level, no time."""

    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(redact(record.getMessage()), markup=False, highlight=False, soft_wrap=True)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Warnings by default, info with -v, debug with -vv, errors only with -q; secrets always masked."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False)
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
            stderr.print("[bold red]interrupted[/]")
        code = 130
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run_reporting_errors(action: Callable[[], T]) -> T:
    """Run ``action``; a PixiPackError becomes one red line and its exit code, Ctrl-C exit 130.

    Once ``action`` has finished its work is in place: a Ctrl-C after that is ignored rather than
    turned into a failure (or a half-printed traceback) for work that was done.
    """
    try:
        result = action()
        ignore_interrupts()
        return result
    except PixiPackError as exc:
        # escape: a message may hold brackets ("[mirrors]") that rich would take for markup, and
        # names from a pack, whose control characters must not reach the terminal
        message = escape(printable(redact(str(exc))))
        stderr.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, emoji=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]; nothing was left half-written")
        sys.exit(130)


class RichDownloadProgress(Progress):
    """Bytes, rate and file count on a terminal.

    Counts are gathered here and handed to rich at most every ``UPDATE_EVERY`` seconds (and on
    stop): the fetcher reports every chunk and every file, and going through rich's locked task
    update for each cost a few percent of a pack of a thousand small packages.
    """

    UPDATE_EVERY = 0.1

    def __init__(self) -> None:
        self._progress = RichProgress(
            TextColumn("[bold]downloading"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
            refresh_per_second=5,
        )
        self._bytes: TaskID | None = None
        self._files = 0
        self._pending = 0
        self._next_update = 0.0

    def start(self, total_files: int, total_bytes: int | None) -> None:
        self._progress.start()
        self._total_files = total_files
        self._bytes = self._progress.add_task("packages", total=total_bytes, files=f"0/{total_files}")

    def advance_bytes(self, n: int) -> None:
        self._pending += n
        self._maybe_update()

    def file_done(self, label: str) -> None:
        self._files += 1
        self._maybe_update()

    def _maybe_update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._bytes is None or (now < self._next_update and not force):
            return
        self._next_update = now + self.UPDATE_EVERY
        pending, self._pending = self._pending, 0
        self._progress.update(self._bytes, advance=pending, files=f"{self._files}/{self._total_files}")

    def stop(self) -> None:
        self._maybe_update(force=True)
        self._progress.stop()


def progress_for(quiet: bool) -> Progress:
    """A rich bar on an interactive terminal, silence otherwise (logs say what happened)."""
    if quiet or not stderr.is_terminal:
        return Progress()
    return RichDownloadProgress()
