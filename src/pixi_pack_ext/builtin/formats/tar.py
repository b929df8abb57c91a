"""The default format: one uncompressed, deterministic tar (``environment.tar``), or a tar stream.

The tar code is imported where it is used: every run loads this plugin, and a pack's downloads
start before the pack is written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ...errors import InvalidPackError
from ...hookspecs import PackFiles, PackFormat, WriteRequest, hookimpl
from ...metadata import METADATA_FILE, METADATA_MAX_BYTES, metadata_too_large


def write(request: WriteRequest) -> None:
    from ...archive import write_tar

    if request.output is None:
        write_tar(request.staging, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    part = request.output.with_name(f".{request.output.name}.part")
    try:
        with open(part, "wb") as f:
            write_tar(request.staging, f)
        os.replace(part, request.output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def can_read(path: Path | None) -> bool:
    if path is None:
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(2)
    return head != b"#!" and _is_tar(path)


def _is_tar(path: Path) -> bool:
    """``tarfile.is_tarfile``, but a first header declaring gigabytes is refused, not read."""
    import tarfile

    from ...archive import BoundedTarInfo

    try:
        with tarfile.open(path, tarinfo=BoundedTarInfo):
            return True
    except tarfile.TarError:
        return False


def open_pack(path: Path | None, workdir: Path, files: PackFiles | None = None) -> Path:
    from ...archive import safe_extract

    if path is None:
        safe_extract(sys.stdin.buffer, workdir, files)
    else:
        with open(path, "rb") as f:
            safe_extract(f, workdir, files)
    return workdir


def peek_metadata(path: Path) -> str | None:
    """``pixi-pack.json`` of a tar file, read by skipping over the other members' data."""
    import tarfile

    from ...archive import BoundedTarInfo

    try:
        with tarfile.open(path, mode="r:", tarinfo=BoundedTarInfo) as tar:
            while (member := tar.next()) is not None:
                if member.isfile() and member.name.removeprefix("./") == METADATA_FILE:
                    source = tar.extractfile(member)
                    if source is None:
                        return None
                    if member.size > METADATA_MAX_BYTES:
                        raise metadata_too_large()
                    try:
                        return source.read(METADATA_MAX_BYTES).decode("utf-8")
                    except UnicodeDecodeError:
                        raise InvalidPackError(
                            f"{METADATA_FILE} is not UTF-8 text; this is not a valid pack"
                        ) from None
                tar.members.clear()
    except tarfile.TarError:
        return None
    return None


@hookimpl
def pixi_pack_formats() -> list[PackFormat]:
    return [
        PackFormat(
            name="tar",
            write=write,
            default_output=lambda platform: "environment.tar",
            can_read=can_read,
            open_pack=open_pack,
            reports_files=True,
            description="one deterministic tar file (pixi-pack format 1); '-o -' streams it",
            streams=True,
            peek_metadata=peek_metadata,
        )
    ]
