"""How far a package archive may expand, checked before anything extracts it.

A few hundred bytes of bzip2 or zstd can expand to gigabytes: rattler's extractor would write them
all (into RAM, when the package is staged there) and cannot be stopped halfway. So each archive is
bounded first, in time linear in its size, in bounded memory and stopping as soon as it is asked:

- the budget is what the package declares: the ``size_in_bytes`` of every file its
  ``info/paths.json`` lists, plus room for tar headers (``HEADER_ROOM`` per entry and ``SLACK``);
  a package that does not declare every size (old ones) gets ``UNSIZED_RATIO`` times its archive
  size instead (at least ``UNSIZED_FLOOR``). ``info/`` gets ``INFO_FLOOR`` plus ``INFO_RATIO`` times
  its compressed size;
- ``.conda``: the inner ``.tar.zst`` members are bounded without decompressing them. Every zstd
  block header says how much it yields: a raw or RLE block its exact size, a compressed block at
  most 128 KiB (the format's limit, enforced by every decoder). Walking the block headers gives an
  upper bound within 128 KiB of the truth for real packages, and refuses a bomb at its headers.
  A pkg archive bounded by ``PLAIN_RATIO`` times its size needs no paths.json (real packages);
  beyond that, paths.json is read (by rattler, from the info archive already bounded);
- ``.tar.bz2``: bzip2 says nothing ahead, so the archive is decompressed here in bounded steps
  (``max_length``) while its tar headers are read: a member whose declared size would pass the
  budget is refused at its header, before its data is decompressed, and every decompressed byte
  (extended headers included) counts against the budget too. The member list it reads is the
  package guard's listing, so this costs no extra pass.

The result is the package's upper bound (for the RAM staging decision) and, for ``.tar.bz2``, its
member names. Refusals name the package, the declared and the found sizes.
"""

from __future__ import annotations

import bz2
import concurrent.futures
import os
import struct
import tarfile
import threading
import zipfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

from rattler.package import PathsJson

from ..archive import MAX_HEADER_SIZE, BoundedTarInfo
from ..errors import UnsafeArchiveError

#: Bytes allowed beyond the declared file sizes, for the tar stream's own end and padding.
SLACK = 1 << 20
#: Tar bytes per declared path that are not file data: its header, an extended header, padding,
#: and the folder entries a package's archive may hold besides its files.
HEADER_ROOM = 4 << 10
#: A ``.conda`` whose pkg archive cannot expand beyond this many times its size (plus ``SLACK``)
#: is accepted without reading its paths.json: bounded all the same, at no extra cost.
PLAIN_RATIO = 8
#: Expansion allowed to a package that does not declare the size of every file.
UNSIZED_RATIO = 200
UNSIZED_FLOOR = 32 << 20
#: Expansion allowed to the ``info/`` part (paths.json, recipe, tests, licenses).
INFO_RATIO = 200
INFO_FLOOR = 64 << 20
#: Largest zstd block output (the format's ``Block_Maximum_Size``).
ZSTD_BLOCK_MAX = 128 << 10
#: Decompressed bytes asked for at a time (``.tar.bz2``): the memory held per package.
STEP = 1 << 20
READ_CHUNK = 1 << 16
#: Archives up to this size are read into memory at once for the check.
SMALL = 1 << 20

_ZSTD_MAGIC = 0xFD2FB528


class Stopped(Exception):
    """The unpack is ending: the check stopped where it was."""


@dataclass
class Bounds:
    """What the check found: the most bytes the package can extract to, and (``.tar.bz2``) the
    names of its members (no folders)."""

    expanded: int
    members: list[str] | None = None
    declared: dict[str, int] = field(default_factory=dict)


class _Range:
    """A seekable, read-only view of ``size`` bytes at ``offset`` of a file (a package inside a pack);
    a small one is read at once (the many small reads of a check then cost nothing)."""

    def __init__(self, path: Path, offset: int = 0, size: int | None = None) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._start = offset
        self._size = size if size is not None else os.fstat(self._file.fileno()).st_size - offset
        self._pos = 0
        self._data: bytes | None = None
        if self._size <= SMALL:
            self._data = os.pread(self._file.fileno(), self._size, offset)
            self._size = len(self._data)

    @property
    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = self.pread(n, self._pos)
        self._pos += len(data)
        return data

    def pread(self, n: int, at: int) -> bytes:
        n = max(0, min(n, self._size - at))
        if not n:
            return b""
        if self._data is not None:
            return self._data[at : at + n]
        return os.pread(self._file.fileno(), n, self._start + at)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


def bound_package(
    path: Path,
    name: str,
    *,
    offset: int = 0,
    size: int | None = None,
    stop: threading.Event | None = None,
    scratch: Path | None = None,
) -> Bounds:
    """Check the package archive ``path`` (or its ``size`` bytes at ``offset``) against what it
    declares; raise ``UnsafeArchiveError`` naming ``name`` when it would expand beyond that.

    ``scratch`` is a folder for a small temporary file, needed for a ``.conda`` that is not a file
    of its own (its ``paths.json`` is read by rattler)."""
    source = _Range(path, offset, size)
    try:
        if name.endswith(".conda"):
            return _bound_conda(source, path if size is None else None, name, scratch, stop)
        if name.endswith(".tar.bz2"):
            return _TarBz2Check(source, name, stop).run()
        raise UnsafeArchiveError(f"refusing package {name}: not a .conda or .tar.bz2 archive")
    except Stopped:
        raise
    except UnsafeArchiveError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError, struct.error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeArchiveError(
            f"refusing package {name}: it is not a readable package archive ({first})"
        ) from None
    finally:
        source.close()


def _budget(paths_json: bytes | str | None, archive_size: int) -> tuple[int, dict[str, int]]:
    """The bytes the package's files may take, from its paths.json (None: none could be read)."""
    unsized = max(UNSIZED_FLOOR, UNSIZED_RATIO * archive_size)
    if paths_json is None:
        return unsized, {}
    text = paths_json.decode("utf-8", "replace") if isinstance(paths_json, bytes) else paths_json
    try:
        entries = PathsJson.from_str(text).paths
    except Exception:  # unreadable: the guard refuses it later; bound it as an old package
        return unsized, {}
    declared: dict[str, int] = {}
    total, missing = 0, False
    for entry in entries:
        size = entry.size_in_bytes
        if size is None:
            missing = True
            continue
        declared[str(entry.relative_path)] = size
        total += size
    budget = total + HEADER_ROOM * len(entries) + SLACK
    return (budget + unsized if missing else budget), declared


def _info_budget(compressed: int) -> int:
    return INFO_FLOOR + INFO_RATIO * compressed


def _refuse(name: str, what: str, found: int, allowed: int) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"refusing package {name}: {what} expands to at least {found} bytes, more than the "
        f"{allowed} its paths.json declares room for (a decompression bomb?)"
    )


# -- .conda -------------------------------------------------------------------------------------------


def _bound_conda(
    source: _Range, whole_file: Path | None, name: str, scratch: Path | None, stop: threading.Event | None
) -> Bounds:
    archive = zipfile.ZipFile(source)  # type: ignore[arg-type]  # reads the central directory only
    inner = {}
    for info in archive.infolist():
        for section in ("info", "pkg"):
            if info.filename.startswith(f"{section}-") and info.filename.endswith(".tar.zst"):
                if info.compress_type != zipfile.ZIP_STORED:
                    raise UnsafeArchiveError(
                        f"refusing package {name}: its {info.filename} is compressed twice "
                        "(a .conda stores its inner archives as they are)"
                    )
                inner[section] = info
    if set(inner) != {"info", "pkg"}:
        raise UnsafeArchiveError(f"refusing package {name}: it lacks an info or pkg archive")
    _check_zip_layout(archive, name)
    info_at, info_size = _data_range(source, inner["info"])
    info_bound = _zstd_bound(source, info_at, info_size, name, _info_budget(info_size), stop)
    info_allowed = _info_budget(info_size)
    if info_bound > info_allowed:
        raise UnsafeArchiveError(
            f"refusing package {name}: its info/ part expands to up to {info_bound} bytes from "
            f"{info_size} (more than {info_allowed} are refused: a decompression bomb?)"
        )
    pkg_at, pkg_size = _data_range(source, inner["pkg"])
    # Most packages expand to a few times their size: bounded as they are, without reading
    # paths.json (an extra read of the info archive, for every package)
    plain = SLACK + PLAIN_RATIO * pkg_size
    pkg_bound = _zstd_bound(source, pkg_at, pkg_size, name, plain, stop)
    if pkg_bound <= plain:
        return Bounds(info_bound + pkg_bound)
    paths_json = _conda_paths_json(source, whole_file, inner["info"], info_at, info_size, scratch)
    budget, declared = _budget(paths_json, source.size)
    pkg_bound = _zstd_bound(source, pkg_at, pkg_size, name, budget, stop)
    if pkg_bound > budget:
        raise _refuse(name, "its pkg archive", pkg_bound, budget)
    return Bounds(info_bound + pkg_bound, None, declared)


def _check_zip_layout(archive: zipfile.ZipFile, name: str) -> None:
    """The entries a reader that streams the zip (rattler, reading a package from a pipe) meets
    are exactly those of the central directory this check reads: back to back from the start, each
    local header with the central directory's sizes and no data descriptor, nothing hidden
    between them or before the central directory."""
    source = archive.fp
    pos = 0
    for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
        header = source.pread(30, info.header_offset)  # type: ignore[union-attr]
        if info.header_offset != pos or len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise UnsafeArchiveError(f"refusing package {name}: its zip entries do not follow each other")
        flags, _, _, _, _, compressed, uncompressed, name_length, extra_length = struct.unpack(
            "<HHHHLLLHH", header[6:30]
        )
        if 0xFFFFFFFF in (compressed, uncompressed):  # zip64: the sizes are in an extra field
            extra = source.pread(extra_length, info.header_offset + 30 + name_length)  # type: ignore[union-attr]
            uncompressed, compressed = _zip64_sizes(extra, uncompressed, compressed)
        if flags & 0x08 or (compressed, uncompressed) != (info.compress_size, info.file_size):
            raise UnsafeArchiveError(
                f"refusing package {name}: the local header of {info.filename} disagrees with its "
                "central directory"
            )
        pos = info.header_offset + 30 + name_length + extra_length + info.compress_size
    if pos != archive.start_dir:
        raise UnsafeArchiveError(f"refusing package {name}: it holds bytes no zip entry accounts for")


def _zip64_sizes(extra: bytes, uncompressed: int, compressed: int) -> tuple[int, int]:
    """The sizes a local header's zip64 extra field holds for the fields it marks 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack("<HH", extra[pos : pos + 4])
        if kind == 1:
            values = extra[pos + 4 : pos + 4 + length]
            at = 0
            if uncompressed == 0xFFFFFFFF and at + 8 <= len(values):
                (uncompressed,) = struct.unpack("<Q", values[at : at + 8])
                at += 8
            if compressed == 0xFFFFFFFF and at + 8 <= len(values):
                (compressed,) = struct.unpack("<Q", values[at : at + 8])
            break
        pos += 4 + length
    return uncompressed, compressed


def _data_range(source: _Range, info: zipfile.ZipInfo) -> tuple[int, int]:
    """Where a stored zip member's bytes are: after its local header (whose own lengths count)."""
    header = source.pread(30, info.header_offset)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise UnsafeArchiveError(f"refusing a .conda whose {info.filename} has no valid zip header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    if start + info.compress_size > source.size:
        raise EOFError(f"{info.filename} runs past the end of the archive")
    return start, info.compress_size


def _zstd_bound(
    source: _Range,
    at: int,
    size: int,
    name: str,
    limit: int | None = None,
    stop: threading.Event | None = None,
) -> int:
    """The most bytes the zstd frames in ``size`` bytes at ``at`` decompress to, from their block
    headers alone (stops early once past ``limit``)."""
    end, pos, total, blocks = at + size, at, 0, 0
    while pos < end:
        magic = source.pread(4, pos)
        if len(magic) < 4:
            raise EOFError("a zstd frame is cut short")
        (value,) = struct.unpack("<I", magic)
        if value & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: no output
            (length,) = struct.unpack("<I", source.pread(4, pos + 4))
            pos += 8 + length
            continue
        if value != _ZSTD_MAGIC:
            raise ValueError("not a zstd frame")
        descriptor = source.pread(1, pos + 4)[0]
        fcs_flag, single, checksum, dict_flag = (
            descriptor >> 6,
            descriptor >> 5 & 1,
            descriptor >> 2 & 1,
            descriptor & 3,
        )
        pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
        while True:
            raw = source.pread(3, pos)
            if len(raw) < 3:
                raise EOFError("a zstd block is cut short")
            header = raw[0] | raw[1] << 8 | raw[2] << 16
            last, kind, block = header & 1, header >> 1 & 3, header >> 3
            if kind == 0:  # raw
                total, pos = total + block, pos + 3 + block
            elif kind == 1:  # RLE: one byte, repeated
                total, pos = total + block, pos + 4
            elif kind == 2:
                total, pos = total + ZSTD_BLOCK_MAX, pos + 3 + block
            else:
                raise ValueError("a reserved zstd block type")
            if limit is not None and total > limit:
                return total
            blocks += 1
            if stop is not None and blocks % 4096 == 0 and stop.is_set():
                raise Stopped
            if last:
                break
        pos += 4 if checksum else 0
    if pos != end:
        raise EOFError("the zstd frames do not fill their archive member")
    return total


def _conda_paths_json(
    source: _Range, whole_file: Path | None, info: zipfile.ZipInfo, at: int, size: int, scratch: Path | None
) -> str | None:
    """The package's paths.json (None when it has none), read by rattler from the info archive
    alone: a package inside a pack gets a zip of its own holding just that, in ``scratch``."""

    from rattler.package_streaming import PackageArchive

    temporary: Path | None = None
    target = whole_file
    if target is None:
        if scratch is None:
            return None
        scratch.mkdir(parents=True, exist_ok=True)
        temporary = scratch / f"info-{os.getpid()}-{threading.get_ident()}.conda"
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as out:
            out.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
            with out.open(zipfile.ZipInfo(info.filename), "w") as member:
                done = 0
                while done < size:
                    chunk = source.pread(min(READ_CHUNK * 16, size - done), at + done)
                    if not chunk:
                        raise EOFError("the info archive is cut short")
                    member.write(chunk)
                    done += len(chunk)
            out.writestr("pkg-empty.tar.zst", b"")
        target = temporary

    async def read() -> bytes | None:
        archive = await PackageArchive.from_path(target)
        return await archive.read_file("info/paths.json")

    try:
        data = _run(read)
    except Exception:  # no paths.json, or an info archive rattler cannot read
        return None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return None if data is None else data.decode("utf-8", "replace")


def _run(read: Callable[[], Coroutine[object, object, bytes | None]]) -> bytes | None:
    """Run ``read()`` to its end from sync code, also when called on a running event loop (a
    small package is bounded there; only a suspicious one needs its paths.json read)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(read())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


# -- .tar.bz2 -----------------------------------------------------------------------------------------


class _Bz2Reader:
    """The decompressed bytes of a bzip2 stream, in steps of at most ``STEP``; every byte is
    counted against ``limit`` (which the caller raises once it knows the package's budget)."""

    def __init__(self, source: _Range, stop: threading.Event | None, on_limit: object) -> None:
        self._source = source
        self._stop = stop
        self._decompressor = bz2.BZ2Decompressor()
        self._pending = b""
        self._pos = 0
        self.produced = 0
        self.limit = 0
        self._on_limit = on_limit

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._pending):
            self._fill(max(n, READ_CHUNK) if n > 0 else STEP)
        end = len(self._pending) if n < 0 else self._pos + n
        data = self._pending[self._pos : end]
        self._pos += len(data)
        return data

    def _fill(self, want: int) -> None:
        self._pending, self._pos = b"", 0
        while not self._pending:
            if self._stop is not None and self._stop.is_set():
                raise Stopped
            if self._decompressor.eof:
                if not self._decompressor.unused_data and not self._source.read(1):
                    return  # the end
                raise ValueError("bytes follow the end of the bzip2 stream")
            data = b"" if not self._decompressor.needs_input else self._source.read(READ_CHUNK)
            if not data and self._decompressor.needs_input:
                raise EOFError("the bzip2 stream is cut short")
            self._pending = self._decompressor.decompress(data, max_length=min(want, STEP))
            self.produced += len(self._pending)
            if self.produced > self.limit:
                self._on_limit(self.produced)  # type: ignore[operator]


class _TarBz2Check:
    """Read a ``.tar.bz2``'s tar headers as it decompresses, against its budget."""

    def __init__(self, source: _Range, name: str, stop: threading.Event | None) -> None:
        self.source = source
        self.name = name
        self.info_allowed = _info_budget(source.size)
        self.budget, self.declared = _budget(None, source.size)  # until paths.json is read
        self.reader = _Bz2Reader(source, stop, self._too_much)
        self.reader.limit = self.info_allowed + self.budget
        self.info_bytes = 0
        self.pkg_bytes = 0

    def _too_much(self, produced: int) -> None:
        raise _refuse(self.name, "its archive", produced, self.reader.limit)

    def run(self) -> Bounds:
        members: list[str] = []
        with tarfile.open(
            fileobj=self.reader,
            mode="r|",
            bufsize=READ_CHUNK,
            tarinfo=BoundedTarInfo,  # type: ignore[arg-type]
        ) as archive:
            for member in archive:
                if member.isdir():
                    archive.members.clear()
                    continue
                if member.issparse() or member.type == tarfile.GNUTYPE_SPARSE:
                    raise UnsafeArchiveError(
                        f"refusing package {self.name}: its member '{member.name}' is sparse"
                    )
                members.append(member.name)
                self._count(member)
                if member.name == "info/paths.json" and member.isfile():
                    self._read_paths_json(archive, member)
                archive.members.clear()  # stream mode records members: keep memory flat
        return Bounds(self.info_bytes + self.pkg_bytes, members, self.declared)

    def _count(self, member: tarfile.TarInfo) -> None:
        size = member.size if member.isfile() else 0
        if member.name.startswith("info/"):
            self.info_bytes += size
            if self.info_bytes > self.info_allowed:
                raise UnsafeArchiveError(
                    f"refusing package {self.name}: its info/ files declare {self.info_bytes} bytes "
                    f"from a {self.source.size}-byte archive (more than {self.info_allowed} are "
                    "refused: a decompression bomb?)"
                )
        else:
            self.pkg_bytes += size
            if self.pkg_bytes > self.budget:
                raise _refuse(
                    self.name, f"its member '{member.name}' and those before it", self.pkg_bytes, self.budget
                )

    def _read_paths_json(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        handle = archive.extractfile(member)
        assert handle is not None
        text = handle.read(MAX_HEADER_SIZE * 64 + 1)  # within the info budget already counted
        self.budget, self.declared = _budget(text, self.source.size)
        self.reader.limit = self.info_allowed + self.budget
        if self.pkg_bytes > self.budget:
            raise _refuse(self.name, "its files before info/paths.json", self.pkg_bytes, self.budget)
