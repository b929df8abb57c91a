"""Self-extracting packs: a shell or PowerShell header followed by the unpacker and the pack's tar.

The payload is stored as raw bytes at offsets the header records (no base64, nothing held in
memory), so a pack of any size is written, verified and unpacked in constant memory:

``environment.sh``:  header (padded to a multiple of 4096) | unpacker | tar
``environment.ps1``: header ending in ``<#`` | unpacker | CRLF | tar | CRLF ``#>`` CRLF

PowerShell parses a whole script before running it, so its payload sits inside one block comment
and is escaped just enough that ``#>`` never occurs in it: a ``#`` followed by ``>`` or ``~`` is
stored as ``#~`` (see ``escape``). The recorded sha256 covers the stored bytes from the end of the
header to the end of the tar; the header checks it before anything runs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

from .errors import InvalidPackError

BLOCK = 4096
CHUNK = 1 << 20
MARKER = b"pixi-pack-ext self-extracting"
#: The end of the PowerShell payload comment (the payload is escaped so that it never holds ``#>``).
PS1_TRAILER = b"\r\n#>\r\n"
PS1_SEPARATOR = b"\r\n"
_FIELDS = (
    "HEADER_SIZE",
    "UNPACKER_OFFSET",
    "UNPACKER_SIZE",
    "ARCHIVE_OFFSET",
    "ARCHIVE_SIZE",
    "FILE_SIZE",
)
_VALUE = re.compile(rb"^\$?PIXI_PACK_([A-Z0-9_]+) ?= ?'?([^'\s]*)'?\r?$", re.MULTILINE)
_METADATA = re.compile(rb"^# pixi-pack\.json: (\{.*\})\r?$", re.MULTILINE)
#: Where the layout lines live: well inside the first block of either header.
_HEAD = 2 * BLOCK


def is_windows(platform: str) -> bool:
    return platform.startswith("win")


@dataclass(frozen=True)
class Layout:
    """Where the parts of a self-extracting pack are, as its header records them."""

    script: str  # "sh" or "ps1"
    header_size: int
    unpacker_offset: int
    unpacker_size: int
    archive_offset: int
    archive_size: int
    file_size: int
    sha256: str
    unpacker: str  # "python" (the bundled pixi-unpack) or "executable" (--pixi-unpack-source)
    platform: str
    metadata: str | None

    @property
    def escaped(self) -> bool:
        return self.script == "ps1"


# -- the PowerShell escape ------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """Store ``#`` as ``#~`` where it precedes ``>`` or ``~`` (C-speed replaces, order matters)."""
    return data.replace(b"#~", b"#~~").replace(b"#>", b"#~>")


def unescape(data: bytes) -> bytes:
    return data.replace(b"#~", b"#")


class _Escaper:
    """Streaming ``escape``: a trailing ``#`` waits for the next chunk to see what follows it."""

    def __init__(self, out: IO[bytes], hasher: hashlib._Hash) -> None:
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


class _Plain(_Escaper):
    def write(self, data: bytes) -> None:
        self._emit(data)


# -- writing --------------------------------------------------------------------------------------


def _template(script: str) -> str:
    return (resources.files("pixi_pack_ext.builtin.formats") / f"executable_header.{script}").read_text(
        encoding="utf-8"
    )


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
    *, sizes: dict[str, int], sha256: str, unpacker: str, platform: str, metadata: str
) -> dict[str, str]:
    values = {name: str(sizes[name]) for name in _FIELDS}
    values.update(SHA256=sha256, UNPACKER_KIND=unpacker, PLATFORM=platform, METADATA=metadata)
    return values


def _reserved_header_size(script: str, platform: str, unpacker: str, metadata: str) -> int:
    """Room for the header with the widest values it can hold, rounded up to a whole block."""
    widest = {name: 10**19 for name in _FIELDS}
    text = render_header(
        script,
        _header_values(
            sizes=widest, sha256="0" * 64, unpacker=unpacker, platform=platform, metadata=metadata
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
) -> Layout:
    """Write a complete self-extracting pack into the seekable ``out`` and return its layout.

    ``write_archive(fileobj)`` streams the pack's tar; it is stored (and hashed) as it comes, then
    the header is written over the room reserved for it at the start.
    """
    script = "ps1" if is_windows(platform) else "sh"
    metadata = metadata.strip().replace("\n", " ")
    header_size = _reserved_header_size(script, platform, unpacker_kind, metadata)
    out.seek(header_size)
    hasher = hashlib.sha256()
    stream_class = _Escaper if script == "ps1" else _Plain

    unpacker_stream = stream_class(out, hasher)
    with open(unpacker_path, "rb") as f:
        while block := f.read(CHUNK):
            unpacker_stream.write(block)
    unpacker_stream.close()
    unpacker_size = unpacker_stream.written
    archive_offset = header_size + unpacker_size
    if script == "ps1":
        out.write(PS1_SEPARATOR)
        hasher.update(PS1_SEPARATOR)
        archive_offset += len(PS1_SEPARATOR)

    archive_stream = stream_class(out, hasher)
    write_archive(archive_stream)  # type: ignore[arg-type]  # only write() is used
    archive_stream.close()
    archive_size = archive_stream.written
    file_size = archive_offset + archive_size
    if script == "ps1":
        out.write(PS1_TRAILER)
        file_size += len(PS1_TRAILER)

    sizes = {
        "HEADER_SIZE": header_size,
        "UNPACKER_OFFSET": header_size,
        "UNPACKER_SIZE": unpacker_size,
        "ARCHIVE_OFFSET": archive_offset,
        "ARCHIVE_SIZE": archive_size,
        "FILE_SIZE": file_size,
    }
    sha256 = hasher.hexdigest()
    header = render_header(
        script,
        _header_values(
            sizes=sizes, sha256=sha256, unpacker=unpacker_kind, platform=platform, metadata=metadata
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
        unpacker_offset=header_size,
        unpacker_size=unpacker_size,
        archive_offset=archive_offset,
        archive_size=archive_size,
        file_size=file_size,
        sha256=sha256,
        unpacker=unpacker_kind,
        platform=platform,
        metadata=metadata,
    )


# -- reading --------------------------------------------------------------------------------------


def read_layout(path: Path) -> Layout | None:
    """The layout a self-extracting pack's header records, or None when ``path`` is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError:
        return None
    if head.startswith(b"#!/bin/sh\n# " + MARKER):
        script = "sh"
    elif head.startswith(b"# " + MARKER):
        script = "ps1"
    else:
        return None
    values = {m.group(1).decode(): m.group(2).decode() for m in _VALUE.finditer(head)}
    try:
        numbers = {name: int(values[name]) for name in _FIELDS}
        sha256, unpacker, platform = values["SHA256"], values["UNPACKER"], values["PLATFORM"]
    except (KeyError, ValueError):
        raise InvalidPackError(f"'{path}' has a damaged self-extracting header") from None
    metadata = _METADATA.search(head)
    layout = Layout(
        script=script,
        header_size=numbers["HEADER_SIZE"],
        unpacker_offset=numbers["UNPACKER_OFFSET"],
        unpacker_size=numbers["UNPACKER_SIZE"],
        archive_offset=numbers["ARCHIVE_OFFSET"],
        archive_size=numbers["ARCHIVE_SIZE"],
        file_size=numbers["FILE_SIZE"],
        sha256=sha256,
        unpacker=unpacker,
        platform=platform,
        metadata=metadata.group(1).decode("utf-8", "replace") if metadata else None,
    )
    if not (
        layout.header_size <= layout.unpacker_offset
        and layout.unpacker_offset + layout.unpacker_size <= layout.archive_offset
        and layout.archive_offset + layout.archive_size <= layout.file_size
    ):
        raise InvalidPackError(f"'{path}' has a damaged self-extracting header (offsets overlap)")
    return layout


class PayloadReader:
    """The pack's tar read from a self-extracting file: bounded, unescaped, and hashed on the way.

    The hash covers the stored bytes from the end of the header to the end of the tar; ``verify``
    reads whatever the tar reader left unread and compares, before anything is installed.
    """

    def __init__(self, file: IO[bytes], path: Path, layout: Layout) -> None:
        self.path, self.layout = path, layout
        self._file = file
        self._hasher = hashlib.sha256()
        self._file.seek(layout.header_size)
        before = layout.archive_offset - layout.header_size
        while before > 0:  # the unpacker (and separator) are covered by the hash too
            block = self._file.read(min(CHUNK, before))
            if not block:
                break
            self._hasher.update(block)
            before -= len(block)
        self._left = layout.archive_size
        # Unescaped bytes not yet handed out; a bytearray, whose front is dropped without moving the
        # rest (slicing a bytes object copied the whole remainder on every small read).
        self._pending = bytearray()
        self._carry = b""  # a stored trailing '#' waiting for the next stored byte

    def _fill(self, wanted: int) -> None:
        while len(self._pending) < wanted and (self._left > 0 or self._carry):
            stored = self._file.read(min(CHUNK, self._left)) if self._left > 0 else b""
            if self._left > 0 and not stored:
                raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
            self._left -= len(stored)
            self._hasher.update(stored)
            if not self.layout.escaped:
                self._pending += stored
                continue
            data = self._carry + stored
            self._carry = b"#" if data.endswith(b"#") and self._left > 0 else b""
            self._pending += unescape(data[: len(data) - len(self._carry)])

    def read(self, size: int = -1) -> bytes:
        wanted = CHUNK if size is None or size < 0 else size
        if not self.layout.escaped and not self._pending:
            # Stored as it is (environment.sh): hand out the file's bytes without buffering them.
            if self._left <= 0:
                return b""
            stored = self._file.read(min(wanted, self._left))
            if not stored:
                raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
            self._left -= len(stored)
            self._hasher.update(stored)
            return stored
        self._fill(wanted)
        data = bytes(self._pending[:wanted])
        del self._pending[:wanted]
        return data

    def verify(self) -> None:
        """Hash the rest of the stored tar and refuse the file if the sha256 differs."""
        while self._left > 0:
            stored = self._file.read(min(CHUNK, self._left))
            if not stored:
                raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
            self._left -= len(stored)
            self._hasher.update(stored)
        actual = self._hasher.hexdigest()
        if actual != self.layout.sha256:
            raise InvalidPackError(
                f"'{self.path}' is corrupt (payload sha256 {actual}, expected {self.layout.sha256}); "
                "nothing was installed"
            )


def copy_unpacker(path: Path, layout: Layout, target: Path) -> None:
    """Write the embedded unpacker of ``path`` to ``target`` (unescaped)."""
    with open(path, "rb") as f, open(target, "wb") as out:
        f.seek(layout.unpacker_offset)
        left, carry = layout.unpacker_size, b""
        while left > 0:
            stored = f.read(min(CHUNK, left))
            if not stored:
                raise InvalidPackError(f"'{path}' ends early: it is truncated; copy it again")
            left -= len(stored)
            if not layout.escaped:
                out.write(stored)
                continue
            data = carry + stored
            carry = b"#" if data.endswith(b"#") and left > 0 else b""
            out.write(unescape(data[: len(data) - len(carry)]))
    if not layout.escaped:
        target.chmod(0o755)
