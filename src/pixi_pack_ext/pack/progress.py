"""What the fetcher reports as it goes; the CLI draws it, tests and pipes stay quiet."""

from __future__ import annotations


class Progress:
    """What the fetcher reports; the CLI supplies a rich progress bar, tests and pipes a quiet one."""

    def start(self, total_files: int, total_bytes: int | None) -> None: ...

    def advance_bytes(self, n: int) -> None: ...

    def file_done(self, label: str) -> None: ...

    def stop(self) -> None: ...
