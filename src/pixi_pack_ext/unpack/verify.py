"""``pixi-pack verify`` and ``pixi-pack sbom``: read a pack (tar, self-extracting script or folder)
without installing it.

``verify`` streams every member once, in order: the manifest and its signature are checked first,
then each file's size and sha256 (packages included) against the manifest; nothing is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..archive import BoundedTarInfo, _check_member
from ..errors import InvalidPackError, UnsafeArchiveError, UsageError
from ..manifest import MANIFEST_FILE, SIGNATURE_FILE, sha256_file
from ..sshsig import PublicKey
from .trust import TrustGate

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Verified:
    """What ``verify_pack`` found: how many files matched, and who signed (None: unsigned)."""

    files: int
    signer: str | None
    trusted: PublicKey | None
    has_manifest: bool


class _Window:
    """``size`` bytes of ``f`` from ``offset`` on, read in order (a self-extracting script's tar)."""

    def __init__(self, f: IO[bytes], offset: int, size: int) -> None:
        self._f, self._left = f, size
        f.seek(offset)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


@contextlib.contextmanager
def _tar_stream(pack: Path) -> Iterator[IO[bytes]]:
    """The pack's tar as a file object: the file itself, or a self-extracting script's payload."""
    from ..selfextract.reader import read_layout

    layout = read_layout(pack)
    with open(pack, "rb") as f:
        if layout is None:
            yield f
        else:
            if layout.escaped:
                raise UsageError(f"'{pack}' is a PowerShell pack; pixi-pack verify reads .sh and tar packs")
            yield _Window(f, layout.archive_offset, layout.archive_size)  # type: ignore[misc]


def _check_unpacker(pack: Path, expected: str | None) -> None:
    """A self-extracting script's unpacker has the sha256 its header and the (signed) manifest record."""
    from ..selfextract.reader import read_layout, region_sha256
    from ..selfextract.writer import header_is_ours

    layout = read_layout(pack) if pack.is_file() else None
    if layout is None:
        return
    if expected is None:
        raise InvalidPackError(
            f"{MANIFEST_FILE} of '{pack}' does not cover its unpacker (no unpacker-sha256)"
        )
    if not header_is_ours(pack, layout):
        raise InvalidPackError(
            f"the self-extracting header of '{pack}' is not the one this pixi-pack writes for the values "
            "it records: its shell code was changed (or it was made by another version; verify it with that one)"
        )
    end = layout.unpacker_offset + layout.unpacker_size
    with open(pack, "rb") as f:
        actual = region_sha256(f, layout.unpacker_check_offset, end - layout.unpacker_check_offset)
    if actual != expected or layout.unpacker_sha256 != expected:
        raise InvalidPackError(
            f"the unpacker in '{pack}' (sha256 {actual}) is not the one {MANIFEST_FILE} lists ({expected})"
        )


def _members(pack: Path) -> Iterator[tuple[str, int, IO[bytes] | Path | None]]:
    """(name, size, content) of every file of the pack, in the order a reader meets them; a folder
    has no content (None)."""
    if pack.is_dir():
        from ..archive import pack_order

        for path in pack_order(pack):
            name = path.relative_to(pack).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise InvalidPackError(f"the pack's '{name}' is not a regular file")
            yield (name, path.stat().st_size, path) if path.is_file() else (name, 0, None)
        return
    with _tar_stream(pack) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
                for member in tar:
                    name = _check_member(member)
                    if member.isfile():
                        source = tar.extractfile(member)
                        assert source is not None
                        yield name, member.size, source
                    elif member.isdir():
                        yield name, 0, None
                    tar.members.clear()
        except tarfile.TarError as exc:
            raise UnsafeArchiveError(f"'{pack}' is not a readable pack: {exc}") from None


def _sha256(content: IO[bytes] | Path) -> str:
    if isinstance(content, Path):
        return sha256_file(content)
    hasher = hashlib.sha256()
    while chunk := content.read(_CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


def verify_pack(pack: Path, trusted: list[PublicKey]) -> Verified:
    """Check ``pack`` against its manifest (and, given ``trusted`` keys, its signature)."""
    if not pack.exists():
        raise UsageError(f"pack '{pack}' does not exist")
    gate = TrustGate(trusted)
    count = 0
    for name, size, content in _members(pack):
        if content is None:
            gate.folder(name)
            continue
        gate.starting(name, size)
        if name in (MANIFEST_FILE, SIGNATURE_FILE) and not gate.enforcing:
            data = content.read_bytes() if isinstance(content, Path) else content.read(size)
            if name == MANIFEST_FILE:
                gate.manifest_data(data)
            else:
                gate.signature_data(data)
            continue
        gate.digest(name, _sha256(content))
        count += 1
    if gate.manifest is None:
        if trusted:
            raise InvalidPackError(f"'{pack}' has no {MANIFEST_FILE}: it is not signed")
        raise InvalidPackError(f"'{pack}' has no {MANIFEST_FILE}; it was made before packs carried one")
    gate.finish(pack if pack.is_dir() else Path("."), taken=())
    _check_unpacker(pack, gate.manifest.unpacker_sha256)
    return Verified(files=count, signer=gate.signer, trusted=gate.signed_by, has_manifest=True)


def read_member(pack: Path, wanted: str) -> bytes | None:
    """One file of a pack (tar, self-extracting script or folder), or None when it has none."""
    if not pack.exists():
        raise UsageError(f"pack '{pack}' does not exist")
    for name, size, content in _members(pack):
        if name == wanted:
            return content.read_bytes() if isinstance(content, Path) else content.read(size)
    return None
