"""The download progress bar of ``pixi-pack`` on a terminal (rich)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from ..pack.progress import Progress


class RichDownloadProgress(Progress):
    """Bytes, rate and file count on a terminal.

    Counts are gathered here and handed to rich at most every ``UPDATE_EVERY`` seconds (and on
    stop): the fetcher reports every chunk and every file, and going through rich's locked task
    update for each cost a few percent of a pack of a thousand small packages.
    """

    UPDATE_EVERY = 0.1

    def __init__(self, console: Console) -> None:
        self._progress = RichProgress(
            TextColumn("[bold]downloading"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
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
