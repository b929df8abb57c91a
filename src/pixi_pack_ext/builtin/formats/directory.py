"""The folder format (``--directory-only``): the pack laid out as a plain folder, used in place."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import PackError
from ...hookspecs import PackFormat, WriteRequest, hookimpl
from ...metadata import METADATA_FILE
from ...untrusted import read_limited


def write(request: WriteRequest) -> None:
    assert request.output is not None
    output = request.output
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PackError(
            f"output folder '{output}' already exists and is not empty; remove it or choose another -o"
        )
    if output.is_dir():
        output.rmdir()
    os.replace(request.staging, output)


def can_read(path: Path | None) -> bool:
    return path is not None and path.is_dir() and (path / METADATA_FILE).is_file()


def open_pack(path: Path | None, workdir: Path) -> Path:
    assert path is not None
    return path


def peek_metadata(path: Path) -> str | None:
    try:  # bounded, never a FIFO or a device: the folder is anyone's
        return read_limited(path / METADATA_FILE, METADATA_FILE).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@hookimpl
def pixi_pack_formats() -> list[PackFormat]:
    return [
        PackFormat(
            name="directory",
            write=write,
            default_output=lambda platform: "environment",
            can_read=can_read,
            open_pack=open_pack,
            peek_metadata=peek_metadata,
            description="the pack as a plain folder (--directory-only); pixi-unpack uses it in place",
            writes_folder=True,
        )
    ]
