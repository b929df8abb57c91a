"""Deterministic tar writing and safe tar reading, shared by every tar-based format.

Writing: entries sorted, fixed mtime/owner/mode, so the same pack folder gives identical bytes.
Reading: streamed (constant memory, stdin works), and anything that could write outside the
destination (absolute paths, ``..``, links, devices, duplicates) is refused, not skipped.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import UnsafeArchiveError
from .metadata import SEAL_FILES

if TYPE_CHECKING:
    from .hookspecs import PackFiles

#: The fixed modification time of every entry (the one Rust's tar crate uses for deterministic mode).
DETERMINISTIC_MTIME = 1153704088
COPY_CHUNK = 1 << 20


def _tarinfo(
    name: str, *, size: int = 0, directory: bool = False, executable: bool = False
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = DETERMINISTIC_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o755 if executable else 0o644
    return info


def walk_sorted(root: Path) -> list[Path]:
    """Every path below ``root`` in a stable order (parents before children, names sorted)."""
    result: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        result.extend(base / d for d in dirnames)
        result.extend(base / f for f in sorted(filenames))
    return sorted(result, key=lambda p: p.relative_to(root).parts)


def pack_order(root: Path) -> list[Path]:
    """``walk_sorted``, but the manifest and its signature first: a reader of the tar checks the
    signature before it writes any other member."""
    first = [root / name for name in SEAL_FILES if (root / name).is_file()]
    return first + [p for p in walk_sorted(root) if p not in first]


#: Files up to this size are read into the output buffer; bigger ones are copied by the kernel.
SMALL_FILE = 1 << 16


class _TarOut:
    """The output of ``write_tar``: small writes gathered in a buffer, file bodies copied by the
    kernel (``copy_file_range``, else ``sendfile``) when the output has a file descriptor, else
    through Python. Counts the bytes written, for the end-of-archive padding."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.fileobj = fileobj
        self.offset = 0
        self._buffer = bytearray()
        self._fd: int | None = None
        try:
            fileobj.flush()
            self._fd = fileobj.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        # copy_file_range needs both ends to be regular files; sendfile takes any output on Linux.
        self._copy_file_range = hasattr(os, "copy_file_range")
        self._sendfile = hasattr(os, "sendfile") and sys.platform == "linux"

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.offset += len(data)
        if len(self._buffer) >= COPY_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        if self._fd is None:
            self.fileobj.write(self._buffer)
        else:
            with memoryview(self._buffer) as view:
                done = 0
                while done < len(view):
                    done += os.write(self._fd, view[done:])
        self._buffer.clear()

    def copy_from(self, source: IO[bytes], size: int) -> None:
        """Copy exactly ``size`` bytes of ``source`` (a file opened at its start)."""
        copied = 0
        if self._fd is not None and size > SMALL_FILE:
            self.flush()
            copied = self._kernel_copy(source.fileno(), size)
            self.offset += copied
            if copied < size:
                source.seek(copied)
        while copied < size:
            chunk = source.read(min(COPY_CHUNK, size - copied))
            if not chunk:
                raise OSError(f"{getattr(source, 'name', 'a file')} shrank while it was being packed")
            self.write(chunk)
            copied += len(chunk)

    def _kernel_copy(self, src: int, size: int) -> int:
        assert self._fd is not None
        copied = 0
        while copied < size:
            n = 0
            if self._copy_file_range:
                try:
                    n = os.copy_file_range(src, self._fd, size - copied)
                except OSError:
                    self._copy_file_range = False
                    continue
            elif self._sendfile:
                try:
                    n = os.sendfile(self._fd, src, None, size - copied)
                except OSError:
                    self._sendfile = False
                    continue
            else:
                break
            if n == 0:
                break
            copied += n
        return copied


def write_tar(root: Path, fileobj: IO[bytes]) -> None:
    """Write the folder ``root`` as an uncompressed, deterministic tar stream to ``fileobj``.

    Entries are in ``pack_order``. The bytes are those of ``tarfile`` in PAX format (stream mode): each header, the body padded
    to 512 bytes, two zero blocks, and zeros up to a multiple of 20 blocks. The bodies are copied
    by the kernel where it can (the pack's packages go from the page cache straight to the output).
    """
    out = _TarOut(fileobj)
    for path in pack_order(root):
        name = path.relative_to(root).as_posix()
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            out.write(
                _tarinfo(name, directory=True).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
            )
        elif stat.S_ISREG(st.st_mode):
            info = _tarinfo(name, size=st.st_size, executable=bool(st.st_mode & 0o100))
            out.write(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
            with open(path, "rb") as f:
                out.copy_from(f, st.st_size)
            remainder = st.st_size % tarfile.BLOCKSIZE
            if remainder:
                out.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
    out.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
    remainder = out.offset % tarfile.RECORDSIZE
    if remainder:
        out.write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
    out.flush()


#: tarfile's read buffer: big enough for fast copies, small enough that reading each 512-byte
#: header (tarfile slices its buffer every time) stays cheap for packs of many small files.
READ_BUFFER = 1 << 16
#: The longest PAX or GNU long-name header accepted; real ones hold a path or two. tarfile would
#: otherwise read whatever size such a header declares into memory.
MAX_HEADER_SIZE = 1 << 20
_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized extended headers before tarfile reads them into memory,
    and an archive that ends without its end-of-archive marker or has a damaged header after the
    first member: tarfile would silently stop there and hand over what it had read so far."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(archive)
        except tarfile.EOFHeaderError:
            raise  # a zero block: the end-of-archive marker, a clean end
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            if archive.offset == 0:
                raise  # not a tar at all: tarfile says so (and tries other formats)
            raise UnsafeArchiveError(
                "the pack is cut short: it ends before the tar's end-of-archive marker"
            ) from None
        except tarfile.InvalidHeaderError as exc:
            if archive.offset == 0:
                raise
            raise UnsafeArchiveError(
                f"the pack is damaged: the tar header at byte {archive.offset} is not valid ({exc})"
            ) from None

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_SIZE:
            raise UnsafeArchiveError(
                f"refusing archive: an extended header declares {self.size} bytes "
                f"(at most {MAX_HEADER_SIZE} are accepted)"
            )
        return super()._proc_member(tarfile)  # type: ignore[misc]


def _check_member(member: tarfile.TarInfo) -> str:
    """The member's normalized relative path ("" for the root folder), or a refusal saying why."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing archive member '{name}': absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or "\\" in name:
        raise UnsafeArchiveError(f"refusing archive member '{name}': it points outside the destination")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"refusing archive member '{name}': packs hold no links")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"refusing archive member '{name}': not a regular file or folder")
    if member.issparse():
        raise UnsafeArchiveError(f"refusing archive member '{name}': packs hold no sparse files")
    if not parts and not member.isdir():
        raise UnsafeArchiveError(f"refusing archive member '{name}': a file needs a name")
    return "/".join(parts)


def _seekable(fileobj: IO[bytes]) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _plain_fd(tar: tarfile.TarFile, fileobj: IO[bytes]) -> int | None:
    """The descriptor to copy member data from with ``copy_file_range``: an uncompressed tar file
    read with random access (members' data then lie in it as they are), on Linux; else None."""
    if not hasattr(os, "copy_file_range") or tar.fileobj is not fileobj or sys.platform != "linux":
        return None
    try:
        fd = fileobj.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def _copy_file_range(src: int, dest: int, count: int, offset: int) -> int:
    return os.copy_file_range(src, dest, count, offset)


def _sendfile(src: int, dest: int, count: int, offset: int) -> int:
    return os.sendfile(dest, src, offset, count)


#: The kernel's ways to copy a file's range, best first: between regular files, then to any
#: descriptor (a pipe; Linux only, where sendfile takes any output).
_KERNEL_COPIES = [
    *([_copy_file_range] if hasattr(os, "copy_file_range") else []),
    *([_sendfile] if sys.platform == "linux" else []),
]


def copy_range(src: int, offset: int, size: int, dest: int) -> None:
    """Copy ``size`` bytes at ``offset`` of the file ``src`` to ``dest`` (a file or a pipe) inside
    the kernel where it can, else through Python. A source that ends early raises
    ``tarfile.ReadError``; a pipe whose reader left raises ``BrokenPipeError``."""
    ways = list(_KERNEL_COPIES)
    done = 0
    while done < size:
        n: int | None = None
        while ways and n is None:
            try:
                n = ways[0](src, dest, size - done, offset + done)
            except BrokenPipeError:
                raise
            except OSError:  # not between these two descriptors: the next way
                ways.pop(0)
        if n is None:
            chunk = os.pread(src, min(COPY_CHUNK, size - done), offset + done)
            n = os.write(dest, chunk) if chunk else 0
        if n == 0:
            raise tarfile.ReadError("unexpected end of data")
        done += n


#: How many created folders ``safe_extract`` remembers (to skip re-creating them) before forgetting.
MADE_FOLDERS_LIMIT = 4096


def _at_or_below(relative: str, files: set[str]) -> bool:
    """Whether ``relative`` is one of ``files`` or lies below one (a look-up per folder level)."""
    while relative:
        if relative in files:
            return True
        relative = relative.rpartition("/")[0]
    return False


def safe_extract(fileobj: IO[bytes], dest: Path, files: PackFiles | None = None) -> None:
    """Extract a tar stream into ``dest`` (created if needed), refusing anything unsafe.

    ``files.file_ready(name, path)`` is called for every file once it is complete on disk, so a
    caller can start working on early files while later ones are still being read; when the tar
    is a plain file read with random access, ``files.file_located`` first tells where a file's
    bytes lie in it, and a listener that answers True takes the file over: it is not written.

    Members are read one at a time and nothing is kept per member, so memory stays flat however
    many entries or bytes the archive has; no header can make tarfile buffer more than
    ``MAX_HEADER_SIZE``. Duplicates are caught by the file system itself: files are created
    exclusively, and a folder cannot replace a file. On refusal the caller removes ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = str(dest.resolve())
    # Folders known to exist; no entry can be a link (none are allowed), so each is a real folder.
    made: set[str] = {""}
    # A file is read with random access, its members' data copied by the kernel; a pipe is streamed.
    mode = "r:*" if _seekable(fileobj) else "r|*"
    try:
        with tarfile.open(fileobj=fileobj, mode=mode, bufsize=READ_BUFFER, tarinfo=BoundedTarInfo) as tar:
            raw_fd = _plain_fd(tar, fileobj)
            name = getattr(fileobj, "name", None)
            source_path = Path(name) if raw_fd is not None and isinstance(name, str) else None
            taken: set[str] = set()  # files the listener reads from the tar itself
            starting = getattr(files, "file_starting", None)
            folder_starting = getattr(files, "folder_starting", None)
            for member in tar:
                relative = _check_member(member)
                if starting is not None and not member.isdir():
                    starting(relative, member.size)
                elif folder_starting is not None and member.isdir():
                    folder_starting(relative)
                target = os.path.join(root, relative)
                folder = relative if member.isdir() else relative.rpartition("/")[0]
                try:
                    if folder not in made:
                        os.makedirs(os.path.join(root, folder), exist_ok=True)
                        if len(made) > MADE_FOLDERS_LIMIT:
                            made.clear()
                        made.add(folder)
                    if taken and _at_or_below(relative, taken):
                        raise FileExistsError(target)  # a second entry at, or below, a taken file
                    if (
                        not member.isdir()
                        and files is not None
                        and source_path is not None
                        and member.size
                        and files.file_located(
                            relative, Path(target), source_path, member.offset_data, member.size
                        )
                    ):
                        taken.add(relative)
                    elif not member.isdir():
                        with open(target, "xb") as out:
                            if member.size and raw_fd is not None:
                                copy_range(raw_fd, member.offset_data, member.size, out.fileno())
                            elif member.size:
                                source = tar.extractfile(member)
                                assert source is not None
                                shutil.copyfileobj(source, out, COPY_CHUNK)
                        if member.mode & 0o100:
                            os.chmod(target, 0o755)
                        if files is not None:
                            files.file_ready(relative, Path(target))
                except (FileExistsError, NotADirectoryError):
                    raise UnsafeArchiveError(
                        f"refusing archive member '{member.name}': it appears twice in the archive"
                    ) from None
                tar.members.clear()  # stream mode still records members; keep memory flat
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"the pack is not a readable tar archive: {exc}") from None
