"""Ctrl-C at a moment when stopping at once would leave files being written behind our back.

rattler installs in its own threads: cancelling the Python side of ``rattler.install`` does not
stop them, so a Ctrl-C there used to remove the environment while rattler was still filling it
(leaving part of it, and a traceback). Inside ``deferred_interrupts`` a Ctrl-C is noted, the work
runs to its end, and then ``KeyboardInterrupt`` is raised so the caller cleans up as usual.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)


@contextlib.contextmanager
def deferred_interrupts(what: str) -> Iterator[None]:
    """Hold SIGINT until the block ends; then raise ``KeyboardInterrupt`` if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; there is nothing to defer
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        if not received:
            log.warning("interrupted: stopping once %s has finished, then removing it", what)
        received.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Clean-up that must not stop halfway: a Ctrl-C during the block is dropped (the run is
    already ending, with success or with the error being cleaned up after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_interrupts() -> None:
    """After the work is done and in place, a late Ctrl-C has nothing left to stop."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
