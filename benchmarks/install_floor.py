"""The floor of any rattler-based installer: ``rattler.install`` of a channel folder's records, nothing else.

Usage: ``python install_floor.py CHANNEL_DIR PREFIX CACHE_DIR`` (CHANNEL_DIR holds ``<subdir>/repodata.json``
and the package files, as an extracted pack does). No hashing, no tar, no activation script.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import rattler
from rattler import Channel, RepoData


def records(channel_dir: Path) -> list[rattler.RepoDataRecord]:
    """Every record of every subdir's repodata.json, with ``file://`` URLs into ``channel_dir``."""
    channel = Channel(channel_dir.resolve().as_uri() + "/")
    found: list[rattler.RepoDataRecord] = []
    for repodata in sorted(channel_dir.glob("*/repodata.json")):
        found.extend(RepoData.from_path(repodata).into_repo_data(channel))
    return found


def main() -> None:
    channel_dir, prefix, cache_dir = (Path(a) for a in sys.argv[1:4])
    asyncio.run(
        rattler.install(
            records(channel_dir),
            target_prefix=prefix,
            cache_dir=cache_dir,
            platform=rattler.Subdir("linux-64"),
            show_progress=False,
            execute_link_scripts=False,
        )
    )
    # py-rattler 0.28's runtime threads can crash the interpreter's shutdown (SIGSEGV/SIGABRT) when
    # it comes right after ``install``; the work is done and on disk, so leave without finalizing.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
