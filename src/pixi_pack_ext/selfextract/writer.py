"""Self-extracting packs: a shell or PowerShell header followed by the pack's tar and the unpacker.

The payload is stored as raw bytes at offsets the header records (no base64, nothing held in
memory), so a pack of any size is written, verified and unpacked in constant memory:

``environment.sh``:  header (padded to a multiple of 4096) | tar | unpacker
``environment.ps1``: header ending in ``<#`` | tar | CRLF | unpacker | CRLF ``#>`` CRLF

The bundled unpacker is a zipapp, and a zip is read from its end: ending ``environment.sh``, it is
imported in place, nothing copied. Packs from before the split of the sha256 (below) put the
unpacker first; the offsets say where each part is.

PowerShell parses a whole script before running it, so its payload sits inside one block comment
and is escaped just enough that ``#>`` never occurs in it: a ``#`` followed by ``>`` or ``~`` is
stored as ``#~`` (see ``escape``).

Each part has its own sha256 of its stored bytes: the header checks the unpacker before it runs it,
and the unpacker checks the tar (``PayloadReader``) before anything is installed. Packs from before
the split carry one sha256 over both parts, which is still read.

The tar has two: ``ARCHIVE_SHA256`` of all its bytes, which the shell checks when the unpacker is an
executable (``--pixi-unpack-source``), and ``ARCHIVE_SKELETON_SHA256`` of the tar with the bodies of
its conda packages left out (``skeleton_sha256``), which the bundled unpacker checks. Each package is
checked against the sha256 of the pack's ``repodata.json`` as it is extracted, and the skeleton
covers that file, every tar header (so every body's place and size) and every other file: the whole
tar is still checked, but no package byte is hashed twice. Readers from before the skeleton check
the whole tar, which is still written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import re
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

from ..archive import BoundedTarInfo
from ..errors import InvalidPackError, UnsafeArchiveError
from ..metadata import is_package_member

BLOCK = 4096
CHUNK = 1 << 20
#: Bytes hashed per call by the checking thread: few enough calls that waiting for the GIL between
#: them (the main thread imports and extracts meanwhile) costs little, small enough to keep RSS low.
HASH_CHUNK = 32 << 20
MARKER = b"pixi-pack-ext self-extracting"
#: The end of the PowerShell payload comment (the payload is escaped so that it never holds ``#>``).
PS1_TRAILER = b"\r\n#>\r\n"
PS1_SEPARATOR = b"\r\n"
_FIELDS = (
    "HEADER_SIZE",
    "UNPACKER_OFFSET",
    "UNPACKER_SIZE",
    "UNPACKER_CHECK_OFFSET",
    "ARCHIVE_OFFSET",
    "ARCHIVE_SIZE",
    "FILE_SIZE",
)
#: Where the manifest and its signature (the tar's first two members) lie in the file, for the
#: shell to check the signature with ssh-keygen before it runs the unpacker (0: none; ``.sh`` only).
_SEAL_FIELDS = ("MANIFEST_OFFSET", "MANIFEST_SIZE", "SIGNATURE_OFFSET", "SIGNATURE_SIZE")
#: Fields a pack from before they existed lacks, and what they were then.
_DEFAULTS = {"UNPACKER_CHECK_OFFSET": "UNPACKER_OFFSET"}
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
    #: Where the bytes ``unpacker_sha256`` covers start. The bundled zipapp begins with its compiled
    #: libraries, which it checks itself against sha256s it carries (in the covered part) while it
    #: copies them out; the header checks the rest before it runs any of it.
    unpacker_check_offset: int
    #: sha256 of the unpacker's stored bytes from ``unpacker_check_offset`` on; None in a pack from
    #: before the split.
    unpacker_sha256: str | None
    #: sha256 of the stored bytes from ``archive_check_offset`` to the end of the tar.
    archive_sha256: str
    unpacker: str  # "python" (the bundled pixi-unpack) or "executable" (--pixi-unpack-source)
    platform: str
    metadata: str | None
    #: ``skeleton_sha256`` of the tar; None in an escaped pack (``.ps1``) and in packs from before it.
    archive_skeleton_sha256: str | None = None

    @property
    def escaped(self) -> bool:
        return self.script == "ps1"

    @property
    def archive_check_offset(self) -> int:
        """Where the bytes ``archive_sha256`` covers start: the tar, or the whole payload for a pack
        from before the split."""
        return self.archive_offset if self.unpacker_sha256 is not None else self.header_size


# -- the PowerShell escape ------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """Store ``#`` as ``#~`` where it precedes ``>`` or ``~`` (C-speed replaces, order matters)."""
    return data.replace(b"#~", b"#~~").replace(b"#>", b"#~>")


def unescape(data: bytes) -> bytes:
    return data.replace(b"#~", b"#")


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
    *, sizes: dict[str, int], sha256: tuple[str, str, str], unpacker: str, platform: str, metadata: str
) -> dict[str, str]:
    values = {name: str(sizes[name]) for name in _FIELDS}
    values.update({name: str(sizes.get(name, 0)) for name in _SEAL_FIELDS})
    values.update(
        UNPACKER_SHA256=sha256[0],
        ARCHIVE_SHA256=sha256[1],
        ARCHIVE_SKELETON_SHA256=sha256[2],
        UNPACKER_KIND=unpacker,
        PLATFORM=platform,
        METADATA=metadata,
    )
    return values


def _reserved_header_size(script: str, platform: str, unpacker: str, metadata: str) -> int:
    """Room for the header with the widest values it can hold, rounded up to a whole block."""
    widest = {name: 10**19 for name in (*_FIELDS, *_SEAL_FIELDS)}
    text = render_header(
        script,
        _header_values(
            sizes=widest, sha256=("0" * 64,) * 3, unpacker=unpacker, platform=platform, metadata=metadata
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
    metadata = metadata.strip().replace("\n", " ")
    header_size = _reserved_header_size(script, platform, unpacker_kind, metadata)
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


def header_is_ours(path: Path, layout: Layout) -> bool:
    """Whether the header of ``path`` is, byte for byte, the one this version writes for the values
    it records. The header is shell code that no signature covers (it records the sha256s the
    signature is checked with), so a checked pack's header must be this tool's own: the values are
    read back, checked to be plain numbers, sha256s and names, and the header written again."""
    with open(path, "rb") as f:
        head = f.read(layout.header_size)
    values: dict[str, str] = {}
    for match in _VALUE.finditer(head):
        values.setdefault(
            match.group(1).decode("ascii", "replace"), match.group(2).decode("ascii", "replace")
        )
    metadata = _METADATA.search(head)
    try:
        sizes = {}
        for name in (*_FIELDS, *_SEAL_FIELDS):
            text = values[name]
            if not (text.isascii() and text.isdigit()):
                return False
            sizes[name] = int(text)
        sha256 = (values["UNPACKER_SHA256"], values["ARCHIVE_SHA256"], values["ARCHIVE_SKELETON_SHA256"])
        unpacker, platform = values["UNPACKER"], values["PLATFORM"]
    except KeyError:
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
        for name, default in _DEFAULTS.items():
            values.setdefault(name, values[default])
        numbers = {name: int(values[name]) for name in _FIELDS}
        unpacker, platform = values["UNPACKER"], values["PLATFORM"]
        split = "ARCHIVE_SHA256" in values
        archive_sha256 = values["ARCHIVE_SHA256"] if split else values["SHA256"]
        unpacker_sha256 = values["UNPACKER_SHA256"] if split else None
        skeleton = values.get("ARCHIVE_SKELETON_SHA256") if script == "sh" else None
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
        unpacker_check_offset=numbers["UNPACKER_CHECK_OFFSET"],
        unpacker_sha256=unpacker_sha256,
        archive_sha256=archive_sha256,
        unpacker=unpacker,
        platform=platform,
        metadata=metadata.group(1).decode("utf-8", "replace") if metadata else None,
        archive_skeleton_sha256=skeleton or None,
    )
    parts = sorted(
        [(layout.unpacker_offset, layout.unpacker_size), (layout.archive_offset, layout.archive_size)]
    )
    unpacker_end = layout.unpacker_offset + layout.unpacker_size
    if not (
        layout.header_size <= parts[0][0]
        and parts[0][0] + parts[0][1] <= parts[1][0]
        and parts[1][0] + parts[1][1] <= layout.file_size
        and layout.unpacker_offset <= layout.unpacker_check_offset <= unpacker_end
    ):
        raise InvalidPackError(f"'{path}' has a damaged self-extracting header (offsets overlap)")
    return layout


def region_sha256(f: IO[bytes], offset: int, size: int) -> str | None:
    """The sha256 of ``size`` bytes at ``offset`` of ``f``, or None when the file ends first.

    The file is mapped a window at a time: each window is hashed in one call without the GIL and
    without copying the bytes out of the page cache.
    """
    if os.fstat(f.fileno()).st_size < offset + size:
        return None
    hasher = hashlib.sha256()
    try:
        _hash_mapped(f, offset, size, hasher)
    except OSError:  # a file that cannot be mapped is read
        hasher = hashlib.sha256()
        _hash_read(f, offset, size, hasher)
    return hasher.hexdigest()


def skeleton_sha256(f: IO[bytes], offset: int, size: int) -> str | None:
    """The sha256 of the tar at ``offset`` of ``f`` (``size`` bytes) less its conda packages' bodies,
    or None when the file ends first.

    Everything else is hashed in order: each header, each other file's body, the padding and the
    end-of-archive blocks. The headers say where the bodies are, so a tar whose skeleton matches has
    its packages at the same places with the same sizes, and only their bytes can differ: the
    unpacker checks those against the (covered) ``repodata.json``.
    """
    if os.fstat(f.fileno()).st_size < offset + size:
        return None
    hasher = hashlib.sha256()
    position = offset
    for start, length in _package_bodies(f, offset, size):
        _hash_read(f, position, start - position, hasher)
        position = start + length
    _hash_read(f, position, offset + size - position, hasher)
    return hasher.hexdigest()


def _package_bodies(f: IO[bytes], offset: int, size: int) -> list[tuple[int, int]]:
    """(file offset, size) of each conda package's body in the tar, in order.

    A damaged tar yields the bodies before the damage: the rest is hashed, and the digest differs
    from the one the sound tar had.
    """
    bodies: list[tuple[int, int]] = []
    end, last = offset + size, offset
    f.seek(offset)
    try:
        with tarfile.open(fileobj=f, mode="r:", tarinfo=BoundedTarInfo) as tar:  # offsets count from 0 of f
            for member in tar:
                start = member.offset_data
                if member.size <= 0 or start < last or start + member.size > end:
                    continue
                if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and is_package_member(member.name):
                    bodies.append((start, member.size))
                    last = start + member.size
    except (tarfile.TarError, UnsafeArchiveError, OSError):
        pass
    return bodies


def _hash_mapped(f: IO[bytes], offset: int, size: int, hasher: hashlib._Hash) -> None:
    start, end = offset - offset % mmap.ALLOCATIONGRANULARITY, offset + size
    while start < end:
        length = min(end - start, HASH_CHUNK)
        with (
            mmap.mmap(f.fileno(), length, offset=start, access=mmap.ACCESS_READ) as window,
            memoryview(window)[max(offset - start, 0) :] as view,
        ):
            hasher.update(view)
        start += length


def _hash_read(f: IO[bytes], offset: int, size: int, hasher: hashlib._Hash) -> None:
    f.seek(offset)
    while size > 0:
        block = f.read(min(size, HASH_CHUNK))
        if not block:
            break
        hasher.update(block)
        size -= len(block)


class FileDigest:
    """A digest of ``path`` (``digest(file)``: a hex string, or None when the file is too short),
    computed by a thread.

    Reads and hashlib release the GIL, so the hash takes the other core while the main thread
    extracts; ``hexdigest`` waits for it.
    """

    def __init__(self, path: Path, digest: Callable[[IO[bytes]], str | None]) -> None:
        self.path, self._digest = path, digest
        self._result: list[str | None] = []
        self._thread = threading.Thread(target=self._run, name="pixi-pack-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "rb") as f:  # unreadable: see hexdigest
            self._result.append(self._digest(f))

    def hexdigest(self) -> str:
        """The digest, or InvalidPackError when the file could not be read to the part's end."""
        self._thread.join()
        if not self._result:
            raise InvalidPackError(f"cannot read '{self.path}' to check its sha256")
        digest = self._result[0]
        if digest is None:
            raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
        return digest


class PayloadReader:
    """The pack's tar inside a self-extracting file, checked against its sha256 before it is used.

    ``environment.sh`` stores the tar as it is: the reader is a window on the file in the file's own
    positions, so tarfile reads it with random access and ``safe_extract`` copies the members'
    bytes with ``copy_file_range`` from ``fileno()``, while a ``FileDigest`` thread hashes its
    skeleton (or, in a pack from before the skeleton, the whole tar) on the other core.
    ``environment.ps1`` escapes the tar: it is read in order, unescaped and hashed on the way.
    Either way ``verify`` must pass before anything is installed.
    """

    def __init__(self, file: IO[bytes], path: Path, layout: Layout) -> None:
        self.path, self.layout = path, layout
        self._file = file
        self._end = layout.archive_offset + layout.archive_size
        self._check: FileDigest | None = None
        self._expected, self._what = layout.archive_sha256, "archive sha256"
        self._hasher = hashlib.sha256()
        if not layout.escaped:
            if layout.archive_skeleton_sha256 is not None:  # the tar's skeleton, as it was written
                self._expected, self._what = layout.archive_skeleton_sha256, "archive skeleton sha256"
                tar = (layout.archive_offset, layout.archive_size)
                self._check = FileDigest(path, lambda f: skeleton_sha256(f, *tar))
            else:  # the whole tar, and in a pack from before the split the unpacker too
                checked = (layout.archive_check_offset, self._end - layout.archive_check_offset)
                self._check = FileDigest(path, lambda f: region_sha256(f, *checked))
            self._file.seek(layout.archive_offset)
            return
        self._file.seek(layout.archive_check_offset)
        before = layout.archive_offset - layout.archive_check_offset
        while before > 0:  # a pack from before the split: the unpacker is covered by the hash too
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

    # -- random access (environment.sh) ----------------------------------------------------------

    @property
    def name(self) -> str:
        """The file's path: with ``fileno()`` and the file's own positions, where a member's bytes
        lie (``safe_extract`` tells the unpacker, which reads packages straight from there)."""
        return str(self.path)

    def seekable(self) -> bool:
        return not self.layout.escaped

    def fileno(self) -> int:
        if self.layout.escaped:
            raise io.UnsupportedOperation("an escaped payload has no file descriptor to copy from")
        return self._file.fileno()

    def tell(self) -> int:
        if self.layout.escaped:
            raise io.UnsupportedOperation("an escaped payload is read in order")
        return self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move within the file; positions are the file's (the tar starts at ``archive_offset``)."""
        if self.layout.escaped:
            raise io.UnsupportedOperation("an escaped payload is read in order")
        if whence == io.SEEK_END:
            return self._file.seek(self._end + offset)
        return self._file.seek(offset, whence)

    # -- reading ---------------------------------------------------------------------------------

    def _fill(self, wanted: int) -> None:
        while len(self._pending) < wanted and (self._left > 0 or self._carry):
            stored = self._file.read(min(CHUNK, self._left)) if self._left > 0 else b""
            if self._left > 0 and not stored:
                raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
            self._left -= len(stored)
            self._hasher.update(stored)
            data = self._carry + stored
            self._carry = b"#" if data.endswith(b"#") and self._left > 0 else b""
            self._pending += unescape(data[: len(data) - len(self._carry)])

    def read(self, size: int = -1) -> bytes:
        wanted = CHUNK if size is None or size < 0 else size
        if not self.layout.escaped:
            return self._file.read(max(0, min(wanted, self._end - self._file.tell())))
        self._fill(wanted)
        data = bytes(self._pending[:wanted])
        del self._pending[:wanted]
        return data

    def verify(self) -> None:
        """Refuse the file unless the tar's stored bytes have the sha256 (or skeleton sha256, see
        ``skeleton_sha256``) its header records."""
        if self._check is not None:
            actual = self._check.hexdigest()
        else:
            while self._left > 0:
                stored = self._file.read(min(CHUNK, self._left))
                if not stored:
                    raise InvalidPackError(f"'{self.path}' ends early: it is truncated; copy it again")
                self._left -= len(stored)
                self._hasher.update(stored)
            actual = self._hasher.hexdigest()
        if actual != self._expected:
            raise InvalidPackError(
                f"'{self.path}' is corrupt ({self._what} {actual}, expected {self._expected}); "
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
