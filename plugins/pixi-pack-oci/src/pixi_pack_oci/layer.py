"""Deterministic, compressed layer blobs: sorted entries, fixed owner/mtime/modes, reproducible gzip.

A layer is described as pairs (path in the image, path on this machine); folders are walked. Entries
come out sorted with their parent folders first, owned by root, with one fixed mtime and modes
normalised to 0755/0644, so the same files give the same ``diff_id`` and the same digest. The tar
stream is hashed for the ``diff_id`` on its way into the compressor, and the compressed bytes for
the digest on their way to disk: the files are read once.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from .layout import Descriptor, HashingWriter, Layout
from .media_types import COMPRESSIONS

GZIP_LEVEL = 6
ZSTD_LEVEL = 9
COPY_CHUNK = 1 << 20


def _entries(contents: Sequence[tuple[str, Path]]) -> Iterator[tuple[PurePosixPath, Path | None]]:
    """Every (image path, source) of the layer; ``None`` sources are the implied parent folders."""
    seen: dict[PurePosixPath, Path | None] = {}
    for image_path, source in contents:
        target = PurePosixPath(image_path.strip("/"))
        for parent in reversed(target.parents[:-1]):
            seen.setdefault(parent, None)
        seen[target] = source
        if source.is_dir() and not source.is_symlink():
            for dirpath, dirnames, filenames in os.walk(source):
                base = PurePosixPath(target, Path(dirpath).relative_to(source).as_posix())
                for name in (*dirnames, *filenames):
                    seen[PurePosixPath(base, name)] = Path(dirpath, name)
    for path in sorted(seen, key=lambda p: p.parts):
        yield path, seen[path]


def _tarinfo(name: PurePosixPath, source: Path | None, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.as_posix())
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    st = source.lstat() if source is not None else None
    if st is None or stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = os.readlink(source)  # type: ignore[arg-type]
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    else:
        raise OSError(f"cannot put '{source}' into an image layer: not a file, folder or link")
    return info


def write_tar(contents: Sequence[tuple[str, Path]], sink: IO[bytes] | HashingWriter, mtime: int) -> None:
    """Write the layer's uncompressed tar stream to ``sink``."""
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=COPY_CHUNK) as tar:  # type: ignore[call-overload]
        for name, source in _entries(contents):
            info = _tarinfo(name, source, mtime)
            if info.isreg():
                with open(source, "rb") as f:  # type: ignore[arg-type]
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


@contextlib.contextmanager
def _compressor(kind: str, sink: HashingWriter) -> Iterator[IO[bytes] | HashingWriter]:
    if kind == "gzip":
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=0) as gz:  # type: ignore[arg-type]
            yield gz
    elif kind == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        with compressor.stream_writer(sink, closefd=False) as zst:  # type: ignore[arg-type]
            yield zst
    else:
        yield sink


def write_layer(
    layout: Layout, contents: Sequence[tuple[str, Path]], compression: str, mtime: int
) -> tuple[Descriptor, str]:
    """Write one layer blob into ``layout``; returns its descriptor and its ``diff_id``."""
    part = layout.new_blob()
    try:
        with open(part, "wb") as out:
            compressed = HashingWriter(out)
            with _compressor(compression, compressed) as stream:
                uncompressed = HashingWriter(stream)
                write_tar(contents, uncompressed, mtime)
        layout.commit_blob(part, compressed.digest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return Descriptor(COMPRESSIONS[compression], compressed.digest, compressed.size), uncompressed.digest
