"""Timing and memory of one command in a fresh child process, and medians over several runs.

Peak RSS comes from GNU ``/usr/bin/time -f %M`` when it is there: the kernel's ``ru_maxrss`` of a
child also counts the memory of the process it was forked from before ``exec`` (a big benchmark
process would inflate every figure), and ``time`` is a small process to fork from. Without it,
``os.wait4``'s figure is used. Either way the figure covers the waited-for descendants too (so
``sh -c`` and ``script -qc`` wrappers report the peak of the real work).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One finished command: wall seconds and peak RSS in MiB."""

    seconds: float
    rss_mib: float


@dataclass
class Series:
    """Several runs of the same measurement."""

    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs) if self.runs else float("nan")

    @property
    def peak_rss(self) -> float:
        return max((r.rss_mib for r in self.runs), default=float("nan"))


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class CommandFailed(RuntimeError):
    """A measured command exited non-zero."""


def run_once(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> Run:
    """Run ``argv`` to completion; wall time and peak RSS of exactly this child (and its waited children)."""
    full_env = {**os.environ, **(env or {})}
    command = [str(a) for a in argv]
    with (
        open(os.devnull, "rb") as stdin,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file,
    ):
        if GNU_TIME:
            command = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *command]
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=cwd, env=full_env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        message = err.read()[-3000:].decode(errors="replace")
        rss_kib = usage.ru_maxrss
        if GNU_TIME:
            lines = rss_file.read().split()
            rss_kib = int(lines[-1]) if lines and lines[-1].isdigit() else rss_kib
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(map(str, argv))[:300]} exited {proc.returncode}:\n{message}")
    return Run(seconds=elapsed, rss_mib=rss_kib / 1024)


def interleaved(
    rounds: int, steps: dict[str, Callable[[], Run]], before_each: Callable[[], None] | None = None
) -> dict[str, Series]:
    """Run every step once per round, in the same order, so drift on a shared machine hits all alike."""
    results = {name: Series() for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            # Start every run with no dirty pages left by the one before (their write-back would
            # be charged to whoever runs next).
            os.sync()
            if before_each is not None:
                before_each()
            results[name].runs.append(step())
    return results
