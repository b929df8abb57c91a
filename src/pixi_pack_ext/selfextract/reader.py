"""Reading a self-extracting pack: the layout its header records, the tar as a file checked against
its sha256 (``PayloadReader``) and the embedded unpacker (format: ``layout``)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..archive import BoundedTarInfo
from ..errors import InvalidPackError, UnsafeArchiveError
from ..metadata import is_package_member
from .layout import BLOCK, CHUNK, FIELDS, MARKER, METADATA_LINE, VALUE_LINE, Layout, unescape

#: Bytes hashed per call by the checking thread: few enough calls that waiting for the GIL between
#: them (the main thread imports and extracts meanwhile) costs little, small enough to keep RSS low.
HASH_CHUNK = 32 << 20
#: Fields a pack from before they existed lacks, and what they were then.
_DEFAULTS = {"UNPACKER_CHECK_OFFSET": "UNPACKER_OFFSET"}
#: Where the layout lines live: well inside the first block of either header.
_HEAD = 2 * BLOCK


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
    values = {m.group(1).decode(): m.group(2).decode() for m in VALUE_LINE.finditer(head)}
    try:
        for name, default in _DEFAULTS.items():
            values.setdefault(name, values[default])
        numbers = {name: int(values[name]) for name in FIELDS}
        unpacker, platform = values["UNPACKER"], values["PLATFORM"]
        split = "ARCHIVE_SHA256" in values
        archive_sha256 = values["ARCHIVE_SHA256"] if split else values["SHA256"]
        unpacker_sha256 = values["UNPACKER_SHA256"] if split else None
        skeleton = values.get("ARCHIVE_SKELETON_SHA256") if script == "sh" else None
    except (KeyError, ValueError):
        raise InvalidPackError(f"'{path}' has a damaged self-extracting header") from None
    metadata = METADATA_LINE.search(head)
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
