"""The self-extracting format (``--create-executable``): ``environment.sh`` or, for win-*, ``environment.ps1``.

Running the file verifies its payload and installs the environment like ``pixi-unpack`` on the
tar; ``pixi-unpack environment.sh`` reads it too. The embedded unpacker is the bundled pixi-unpack
zipapp (needs ``python3 >= 3.10`` on the target) or any executable given with
``--pixi-unpack-source`` (then the target needs nothing but the shell). See ``selfextract`` for
the layout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from ...errors import InvalidPackError, UsageError
from ...hookspecs import FormatOption, PackFiles, PackFormat, WriteRequest, hookimpl
from ...metadata import METADATA_FILE

# The self-extractor's modules are imported where they are used: every run loads this plugin.

SOURCE_OPTION = "pixi_unpack_source"
WHEELHOUSE_OPTION = "unpacker_wheelhouse"


def default_output(platform: str) -> str:
    from ...selfextract.layout import is_windows

    return "environment.ps1" if is_windows(platform) else "environment.sh"


def _wheelhouse(options: dict[str, object]) -> Path | None:
    value = options.get(WHEELHOUSE_OPTION)
    return Path(str(value)).expanduser() if value else None


def check(platform: str, options: dict[str, object]) -> None:
    """Refuse a missing unpacker source, wheelhouse or an unsupported platform before downloading."""
    source = options.get(SOURCE_OPTION)
    if source:
        from ...selfextract.unpacker_source import local_source

        local_source(str(source))
        return
    from ...selfextract.unpacker_wheels import check_platform

    check_platform(platform)
    wheelhouse = _wheelhouse(options)
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise UsageError(f"unpacker wheelhouse '{wheelhouse}' is not a folder")


def write(request: WriteRequest) -> None:
    import tempfile

    from ...archive import write_tar
    from ...selfextract.layout import is_windows
    from ...selfextract.writer import write_self_extracting

    assert request.output is not None, "the executable format does not stream"
    output = request.output
    check(request.platform, request.options)
    part = output.with_name(f".{output.name}.part")
    try:
        with tempfile.TemporaryDirectory(prefix=".pixi-pack-unpacker-", dir=output.parent) as tmp:
            source = request.options.get(SOURCE_OPTION)
            self_checked = 0
            if source:
                from ...selfextract.unpacker_source import fetch_unpacker

                unpacker, kind = fetch_unpacker(str(source), Path(tmp)), "executable"
            else:
                from ...selfextract.bundle import build_unpacker, self_checked_size

                unpacker, kind = build_unpacker(request.platform, _wheelhouse(request.options)), "python"
                self_checked = self_checked_size(unpacker)
            if request.seal_unpacker is not None and not is_windows(request.platform):
                # The signed manifest covers the unpacker's bytes the header checks before it runs it.
                request.seal_unpacker(_sha256_from(unpacker, self_checked))
            metadata = (request.staging / METADATA_FILE).read_text(encoding="utf-8")
            with open(part, "w+b") as out:
                write_self_extracting(
                    out,
                    platform=request.platform,
                    unpacker_path=unpacker,
                    unpacker_kind=kind,
                    metadata=metadata,
                    write_archive=lambda f: write_tar(request.staging, f),
                    unpacker_self_checked=self_checked,
                )
        part.chmod(0o755)
        os.replace(part, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def _sha256_from(path: Path, offset: int) -> str:
    """The sha256 of ``path``'s bytes from ``offset`` on (what the header checks the unpacker against)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def can_read(path: Path | None) -> bool:
    from ...selfextract.reader import read_layout

    return path is not None and path.is_file() and read_layout(path) is not None


def open_pack(path: Path | None, workdir: Path, files: PackFiles | None = None) -> Path:
    from ...archive import safe_extract
    from ...selfextract.reader import PayloadReader, read_layout

    """Extract the tar straight from the file (no copy) while its sha256 is checked (by a thread,
    or taken over from the header); ``verify`` makes a corrupt tar fail here, before the unpacker
    installs anything it extracted, packages taken straight from the file included."""
    assert path is not None
    layout = read_layout(path)
    assert layout is not None
    workdir.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as f:
        reader = PayloadReader(f, path, layout)
        try:
            safe_extract(reader, workdir, files)  # type: ignore[arg-type]  # only read() is used
        except InvalidPackError:
            reader.verify()  # a corrupt file explains a broken tar better than the tar error
            raise
        reader.verify()
    return workdir


def peek_metadata(path: Path) -> str | None:
    from ...selfextract.reader import read_layout

    """``pixi-pack.json`` as the header records it: no need to read the payload."""
    layout = read_layout(path)
    return None if layout is None else layout.metadata


@hookimpl
def pixi_pack_formats() -> list[PackFormat]:
    return [
        PackFormat(
            name="executable",
            write=write,
            default_output=default_output,
            can_read=can_read,
            open_pack=open_pack,
            reports_files=True,
            peek_metadata=peek_metadata,
            description="self-extracting environment.sh / environment.ps1 (--create-executable)",
            options=(
                FormatOption(
                    "pixi-unpack-source",
                    "Path or URL of a pixi-unpack executable to embed instead of the bundled one",
                    metavar="PATH|URL",
                ),
                FormatOption(
                    "unpacker-wheelhouse",
                    "Folder of wheels for the bundled pixi-unpack, for packing offline "
                    "(default: $PIXI_PACK_WHEELHOUSE)",
                    metavar="DIR",
                ),
            ),
            check=check,
        )
    ]
