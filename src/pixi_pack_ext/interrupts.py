"""Ctrl-C, SIGTERM and SIGHUP: one way to stop a run, at a moment that leaves nothing half-written.

A service manager stopping a run (SIGTERM), or a closed terminal (SIGHUP), must leave what Ctrl-C
leaves: no temporary folder, no partial pack or environment. ``handle_termination`` makes both
raise SIGINT in the process, noting which signal it was: whatever handles Ctrl-C at that moment
(Python's ``KeyboardInterrupt``, asyncio's orderly cancelling of a running loop, a deferral
below) handles them too, and the CLI exits with 128 + the signal's number (130 for Ctrl-C).

rattler installs in its own threads: cancelling the Python side of ``rattler.install`` does not
stop them, so a Ctrl-C there used to remove the environment while rattler was still filling it
(leaving part of it, and a traceback). Inside ``deferred_interrupts`` a stop signal is noted, the
work runs to its end, and then the interrupt is raised so the caller cleans up as usual.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """A stop signal other than Ctrl-C (SIGTERM, SIGHUP); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


#: The signals that stop a run besides SIGINT (those this system has).
TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
STOP_SIGNALS = (signal.SIGINT, *TERMINATION_SIGNALS)


#: The stop signal other than SIGINT that arrived, if any (for the exit code).
_received: list[int] = []


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)
    else:  # SIGINT ignored (a background job of a script): stop all the same
        raise Terminated(signum)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: Ctrl-C's own, or ``Terminated``."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def handle_termination() -> None:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does, from now on (a command's start)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in TERMINATION_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, _as_ctrl_c)


def _signum(exc: KeyboardInterrupt) -> int:
    if isinstance(exc, Terminated):
        return exc.signum
    return _received[0] if _received else signal.SIGINT


def exit_code_for(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal's number for SIGTERM and SIGHUP."""
    return 128 + _signum(exc)


def signal_name(exc: KeyboardInterrupt) -> str:
    signum = _signum(exc)
    if signum == signal.SIGINT:
        return "Ctrl-C"
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


@contextlib.contextmanager
def _replaced(handler: object) -> Iterator[None]:
    """Every stop signal handled by ``handler`` during the block; the previous handlers after."""
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}  # type: ignore[arg-type]
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def deferred_interrupts(what: str) -> Iterator[None]:
    """Hold the stop signals until the block ends; then raise the first one's interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; there is nothing to defer
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        if not received:
            log.warning("interrupted: stopping once %s has finished, then removing it", what)
        received.append(signum)

    with _replaced(note):
        yield
    if received:
        raise interrupt_for(received[0])


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Clean-up that must not stop halfway: a stop signal during the block is dropped (the run is
    already ending, with success or with the error being cleaned up after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _replaced(signal.SIG_IGN):
        yield


def ignore_interrupts() -> None:
    """After the work is done and in place, a late stop signal has nothing left to stop."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
