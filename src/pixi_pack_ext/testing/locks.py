"""Move a locked workspace to another channel address without solving again.

A pixi.lock names every package by its full URL (server, port and all). Tests that serve the same
channel from somewhere else (a mirror, an S3 bucket, a server needing credentials, a custom scheme)
copy a locked workspace and rewrite the URL prefix: the records, hashes and sizes stay exactly what
the solver wrote, as they would if the channel had been locked there.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def relocate_lock(lock_text: str, old_url: str, new_url: str) -> str:
    """``lock_text`` with every URL under ``old_url`` moved under ``new_url``.

    rattler leaves out a package's ``subdir`` when its URL shows it (http, https, file) and writes it
    otherwise (``s3://``, custom schemes); each moved package entry gets it the same way.
    """
    old, new = _slash(old_url), _slash(new_url)
    if old not in lock_text:
        raise ValueError(f"the lock names no URL under {old}")
    lines = lock_text.replace(old, new).splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        if line.startswith("- conda: ") and line[len("- conda: ") :].startswith(new):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if not following.startswith("  subdir: "):
                out.append(f"  subdir: {line.rstrip('/').rsplit('/', 2)[-2]}")
    return "\n".join(out) + "\n"


def relocate_workspace(source: Path, target: Path, old_url: str, new_url: str) -> Path:
    """Copy ``source``'s pixi.toml and pixi.lock into ``target`` with the channel moved; returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "pixi.toml", target / "pixi.toml")
    text = (source / "pixi.lock").read_text(encoding="utf-8")
    (target / "pixi.lock").write_text(relocate_lock(text, old_url, new_url), encoding="utf-8")
    return target
