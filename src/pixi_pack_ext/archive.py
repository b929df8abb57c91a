"""Deterministic tar writing and safe tar reading, shared by every tar-based format.

Writing: entries sorted, fixed mtime/owner/mode, so the same pack folder gives identical bytes.
Reading: streamed (constant memory, stdin works), and anything that could write outside the
destination (absolute paths, ``..``, links, devices, duplicates) is refused, not skipped.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import UnsafeArchiveError

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


def write_tar(root: Path, fileobj: IO[bytes]) -> None:
    """Write the folder ``root`` as an uncompressed, deterministic tar stream to ``fileobj``."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_CHUNK) as tar:
        for path in walk_sorted(root):
            name = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                tar.addfile(_tarinfo(name, directory=True))
            elif stat.S_ISREG(st.st_mode):
                info = _tarinfo(name, size=st.st_size, executable=bool(st.st_mode & 0o100))
                with open(path, "rb") as f:
                    tar.addfile(info, f)


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing archive member '{name}': absolute path")
    if ".." in path.parts or "\\" in name:
        raise UnsafeArchiveError(f"refusing archive member '{name}': it points outside the destination")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"refusing archive member '{name}': packs hold no links")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"refusing archive member '{name}': not a regular file or folder")
    normalized = path.as_posix().rstrip("/")
    if normalized in ("", "."):
        return PurePosixPath(".")
    if normalized in seen and not member.isdir():
        raise UnsafeArchiveError(f"refusing archive member '{name}': it appears twice in the archive")
    seen.add(normalized)
    return PurePosixPath(normalized)


def safe_extract(fileobj: IO[bytes], dest: Path) -> None:
    """Extract a tar stream into ``dest`` (which must exist), refusing anything unsafe.

    Members are read one at a time; memory stays constant however many entries or bytes the
    archive has. On refusal the caller removes ``dest``.
    """
    seen: set[str] = set()
    dest = dest.resolve()
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*", bufsize=COPY_CHUNK) as tar:
            for member in tar:
                relative = _check_member(member, seen)
                target = dest.joinpath(*relative.parts)
                # Each parent must be a real folder inside dest (no earlier entry can be a link: none are allowed).
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    with open(target, "xb") as out:
                        shutil.copyfileobj(source, out, COPY_CHUNK)
                    if member.mode & 0o100:
                        target.chmod(0o755)
                tar.members.clear()  # stream mode still records members; keep memory flat
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"the pack is not a readable tar archive: {exc}") from None
    except FileExistsError as exc:
        raise UnsafeArchiveError(f"refusing archive member '{exc.filename}': it appears twice") from None
