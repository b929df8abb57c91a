"""Writing a self-extracting pack: the header over the room reserved for it, then the tar and the
unpacker as raw bytes (escaped for PowerShell), each hashed as it is written (format: ``layout``)."""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import IO

from ..archive import BoundedTarInfo
from ..environments import environment_names, header_metadata
from .layout import (
    BLOCK,
    CHUNK,
    FIELDS,
    METADATA_LINE,
    PS1_SEPARATOR,
    PS1_TRAILER,
    VALUE_LINE,
    Layout,
    escape,
    is_windows,
)
from .reader import skeleton_sha256

#: Where the manifest and its signature (the tar's first two members) lie in the file, for the
#: shell to check the signature with ssh-keygen before it runs the unpacker (0: none; ``.sh`` only).
_SEAL_FIELDS = ("MANIFEST_OFFSET", "MANIFEST_SIZE", "SIGNATURE_OFFSET", "SIGNATURE_SIZE")


class _Escaper:
    """Streaming ``escape``: a trailing ``#`` waits for the next chunk to see what follows it."""

    def __init__(self, out: IO[bytes], hasher: hashlib._Hash | _Skipping) -> None:
        self.out, self.hasher, self.pending, self.written = out, hasher, b"", 0

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        self.hasher.update(data)
        self.written += len(data)

    def write(self, data: bytes) -> None:
        data = self.pending + data
        keep = 1 if data.endswith(b"#") else 0
        self.pending = data[len(data) - keep :]
        self._emit(escape(data[: len(data) - keep]))

    def close(self) -> None:
        self._emit(self.pending)
        self.pending = b""


class _Skipping:
    """A hasher that leaves out the first ``skip`` bytes it is given."""

    def __init__(self, hasher: hashlib._Hash, skip: int) -> None:
        self.hasher, self.skip = hasher, skip

    def update(self, data: bytes) -> None:
        if self.skip >= len(data):
            self.skip -= len(data)
            return
        self.hasher.update(memoryview(data)[self.skip :])
        self.skip = 0


class _Plain(_Escaper):
    def write(self, data: bytes) -> None:
        self._emit(data)


# -- writing --------------------------------------------------------------------------------------


def _template(script: str) -> str:
    return (resources.files("pixi_pack_ext.selfextract") / f"header.{script}").read_text(encoding="utf-8")


def render_header(script: str, values: dict[str, str]) -> bytes:
    text = _template(script)
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    missing = sorted(set(re.findall(r"@([A-Z_0-9]+)@", text)))
    if missing:
        raise ValueError(f"header placeholders left unfilled: {missing}")
    data = text.encode("ascii")
    if script == "ps1":
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def _header_values(
    *,
    sizes: dict[str, int],
    sha256: tuple[str, str, str],
    unpacker: str,
    platform: str,
    metadata: str,
    environments: str = "",
) -> dict[str, str]:
    values = {name: str(sizes[name]) for name in FIELDS}
    values.update({name: str(sizes.get(name, 0)) for name in _SEAL_FIELDS})
    values.update(
        UNPACKER_SHA256=sha256[0],
        ARCHIVE_SHA256=sha256[1],
        ARCHIVE_SKELETON_SHA256=sha256[2],
        UNPACKER_KIND=unpacker,
        PLATFORM=platform,
        METADATA=metadata,
        ENVIRONMENTS=environments,
    )
    return values


def _reserved_header_size(script: str, platform: str, unpacker: str, metadata: str, environments: str) -> int:
    """Room for the header with the widest values it can hold, rounded up to a whole block."""
    widest = {name: 10**19 for name in (*FIELDS, *_SEAL_FIELDS)}
    text = render_header(
        script,
        _header_values(
            sizes=widest,
            sha256=("0" * 64,) * 3,
            unpacker=unpacker,
            platform=platform,
            metadata=metadata,
            environments=environments,
        ),
    )
    return (len(text) + len(b"<#\r\n") + BLOCK) // BLOCK * BLOCK


def write_self_extracting(
    out: IO[bytes],
    *,
    platform: str,
    unpacker_path: Path,
    unpacker_kind: str,
    metadata: str,
    write_archive: Callable[[IO[bytes]], None],
    unpacker_self_checked: int = 0,
) -> Layout:
    """Write a complete self-extracting pack into the seekable ``out`` and return its layout.

    ``write_archive(fileobj)`` streams the pack's tar; it is stored (and hashed) as it comes, then
    the header is written over the room reserved for it at the start. The unpacker's first
    ``unpacker_self_checked`` bytes are left out of its sha256: it checks them itself (see
    ``Layout.unpacker_check_offset``); PowerShell's copy, escaped, is checked whole.
    """
    script = "ps1" if is_windows(platform) else "sh"
    metadata = header_metadata(metadata)
    environments = ",".join(environment_names(metadata))
    header_size = _reserved_header_size(script, platform, unpacker_kind, metadata, environments)
    out.seek(header_size)
    unpacker_hasher, archive_hasher = hashlib.sha256(), hashlib.sha256()
    stream_class = _Escaper if script == "ps1" else _Plain

    # The tar first, at a block boundary (the shell copies it with dd); the unpacker last, so that
    # the bundled zipapp ends the file and Python imports it in place (a zip is read from its end).
    archive_offset = header_size
    archive_stream = stream_class(out, archive_hasher)
    write_archive(archive_stream)  # type: ignore[arg-type]  # only write() is used
    archive_stream.close()
    archive_size = archive_stream.written
    skeleton = ""
    seal_places: dict[str, int] = {}
    if script == "sh":
        out.flush()
        skeleton = skeleton_sha256(out, archive_offset, archive_size) or ""
        seal_places = _seal_places(out, archive_offset)
        out.seek(archive_offset + archive_size)
    unpacker_offset = archive_offset + archive_size
    if script == "ps1":
        out.write(PS1_SEPARATOR)
        unpacker_offset += len(PS1_SEPARATOR)

    self_checked = 0 if script == "ps1" else unpacker_self_checked
    unpacker_stream = stream_class(out, _Skipping(unpacker_hasher, self_checked))
    with open(unpacker_path, "rb") as f:
        while block := f.read(CHUNK):
            unpacker_stream.write(block)
    unpacker_stream.close()
    unpacker_size = unpacker_stream.written
    file_size = unpacker_offset + unpacker_size
    if script == "ps1":
        out.write(PS1_TRAILER)
        file_size += len(PS1_TRAILER)

    sizes = {
        "HEADER_SIZE": header_size,
        "UNPACKER_OFFSET": unpacker_offset,
        "UNPACKER_SIZE": unpacker_size,
        "UNPACKER_CHECK_OFFSET": unpacker_offset + self_checked,
        "ARCHIVE_OFFSET": archive_offset,
        "ARCHIVE_SIZE": archive_size,
        "FILE_SIZE": file_size,
        **seal_places,
    }
    sha256 = (unpacker_hasher.hexdigest(), archive_hasher.hexdigest(), skeleton)
    header = render_header(
        script,
        _header_values(
            sizes=sizes,
            sha256=sha256,
            unpacker=unpacker_kind,
            platform=platform,
            metadata=metadata,
            environments=environments,
        ),
    )
    newline = b"\r\n" if script == "ps1" else b"\n"
    opener = b"<#\r\n" if script == "ps1" else b""
    padding = header_size - len(header) - len(opener)
    assert padding >= 0, "the reserved header room is too small"
    out.seek(0)
    # Blank lines after the last command: the shell never reads them, PowerShell skips them.
    out.write(header + b" " * (padding % len(newline)) + newline * (padding // len(newline)) + opener)
    return Layout(
        script=script,
        header_size=header_size,
        unpacker_offset=unpacker_offset,
        unpacker_size=unpacker_size,
        archive_offset=archive_offset,
        archive_size=archive_size,
        file_size=file_size,
        unpacker_check_offset=unpacker_offset + self_checked,
        unpacker_sha256=sha256[0],
        archive_sha256=sha256[1],
        unpacker=unpacker_kind,
        platform=platform,
        metadata=metadata,
        archive_skeleton_sha256=skeleton or None,
    )


def _padded_header(script: str, header: bytes, header_size: int) -> bytes:
    """``header`` filled to ``header_size`` as ``write_self_extracting`` writes it."""
    newline = b"\r\n" if script == "ps1" else b"\n"
    opener = b"<#\r\n" if script == "ps1" else b""
    padding = header_size - len(header) - len(opener)
    if padding < 0:
        return b""
    return header + b" " * (padding % len(newline)) + newline * (padding // len(newline)) + opener


_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLATFORM = re.compile(r"[a-z0-9]+-[a-z0-9_]+")
_ENVIRONMENT_LIST = re.compile(r"[a-z0-9,-]*")


def header_is_ours(path: Path, layout: Layout) -> bool:
    """Whether the header of ``path`` is, byte for byte, the one this version writes for the values
    it records. The header is shell code that no signature covers (it records the sha256s the
    signature is checked with), so a checked pack's header must be this tool's own: the values are
    read back, checked to be plain numbers, sha256s and names, and the header written again."""
    with open(path, "rb") as f:
        head = f.read(layout.header_size)
    values: dict[str, str] = {}
    for match in VALUE_LINE.finditer(head):
        values.setdefault(
            match.group(1).decode("ascii", "replace"), match.group(2).decode("ascii", "replace")
        )
    metadata = METADATA_LINE.search(head)
    try:
        sizes = {}
        for name in (*FIELDS, *_SEAL_FIELDS):
            text = values[name]
            if not (text.isascii() and text.isdigit()):
                return False
            sizes[name] = int(text)
        sha256 = (values["UNPACKER_SHA256"], values["ARCHIVE_SHA256"], values["ARCHIVE_SKELETON_SHA256"])
        unpacker, platform = values["UNPACKER"], values["PLATFORM"]
        environments = values.get("ENVIRONMENTS", "")
    except KeyError:
        return False
    if not _ENVIRONMENT_LIST.fullmatch(environments):
        return False
    if not all(_HEX64.fullmatch(v) for v in sha256[:2]) or not (
        sha256[2] == "" or _HEX64.fullmatch(sha256[2])
    ):
        return False
    if unpacker not in ("python", "executable") or not _PLATFORM.fullmatch(platform) or metadata is None:
        return False
    try:
        header = render_header(
            layout.script,
            _header_values(
                sizes=sizes,
                sha256=sha256,
                unpacker=unpacker,
                platform=platform,
                metadata=metadata.group(1).decode("ascii"),
                environments=environments,
            ),
        )
    except (UnicodeError, ValueError):
        return False
    return _padded_header(layout.script, header, layout.header_size) == head


def _seal_places(f: IO[bytes], archive_offset: int) -> dict[str, int]:
    """Where the manifest and its signature lie in ``f`` when they are the tar's first members."""
    from ..manifest import MANIFEST_FILE, SIGNATURE_FILE

    places: dict[str, int] = {}
    f.seek(archive_offset)
    with tarfile.open(fileobj=f, mode="r:", tarinfo=BoundedTarInfo) as tar:  # offsets count from 0 of f
        for field, name in (("MANIFEST", MANIFEST_FILE), ("SIGNATURE", SIGNATURE_FILE)):
            member = tar.next()
            if member is None or member.name != name or not member.isfile():
                break
            places[f"{field}_OFFSET"], places[f"{field}_SIZE"] = member.offset_data, member.size
    return places
