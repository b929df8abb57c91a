"""``pixi-pack-manifest.json`` and its signature: every file of a pack with its size and sha256.

The manifest and its sshsig (``pixi-pack-manifest.json.sig``) are the first two members of a tar
pack, so a reader checks the signature before it writes anything else. Both are optional files
other readers (pixi-pack's Rust pixi-unpack, older versions) ignore. The manifest is sorted JSON
with fixed spacing, so the same pack folder gives the same bytes, and an Ed25519 signature of
the same bytes is the same too.

A self-extracting pack also records the sha256 its header checks the embedded unpacker against
(``unpacker-sha256``), so the signed manifest covers the code that runs first.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidPackError
from .metadata import MANIFEST_FILE, SEAL_FILES, SIGNATURE_FILE, compact_json

__all__ = ["MANIFEST_FILE", "SEAL_FILES", "SIGNATURE_FILE", "FileEntry", "Manifest"]
MANIFEST_VERSION = 1
#: The largest manifest read (a pack of 100,000 files has one of about 20 MiB).
MAX_MANIFEST_SIZE = 64 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass
class Manifest:
    files: dict[str, FileEntry] = field(default_factory=dict)
    #: The sha256 the self-extracting header checks its unpacker against (None: not a .sh pack).
    unpacker_sha256: str | None = None

    def to_bytes(self) -> bytes:
        data: dict[str, object] = {
            "version": MANIFEST_VERSION,
            "files": {name: {"size": e.size, "sha256": e.sha256} for name, e in sorted(self.files.items())},
        }
        if self.unpacker_sha256 is not None:
            data["unpacker-sha256"] = self.unpacker_sha256
        return (compact_json(data) + "\n").encode("utf-8")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def build_manifest(root: Path, known_sha256: dict[str, str] | None = None) -> Manifest:
    """The manifest of the pack folder ``root``: every file but the manifest and its signature.

    ``known_sha256`` maps pack paths to sha256s already checked (the packages the fetcher verified
    against the lock), so their bytes are not hashed again."""
    from .archive import walk_sorted

    known = known_sha256 or {}
    files: dict[str, FileEntry] = {}
    for path in walk_sorted(root):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        if name in SEAL_FILES:
            continue
        files[name] = FileEntry(size=path.stat().st_size, sha256=known.get(name) or sha256_file(path))
    return Manifest(files=files)


def check_pack_path(name: object) -> str:
    """A manifest path must be a plain relative path inside the pack (no ``..``, absolute or ``\\``)."""
    if not isinstance(name, str) or not name:
        raise InvalidPackError(f"{MANIFEST_FILE} lists a file with no name")
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or (len(name) > 1 and name[1] == ":")
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise InvalidPackError(f"{MANIFEST_FILE} lists '{name}', a path outside the pack; refusing the pack")
    if name in SEAL_FILES:
        raise InvalidPackError(f"{MANIFEST_FILE} lists itself or its signature ('{name}')")
    return name


def parse_manifest(data: bytes) -> Manifest:
    """Parse an (untrusted) manifest; anything malformed is an ``InvalidPackError`` naming it."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise InvalidPackError(f"{MANIFEST_FILE} is {len(data)} bytes; at most {MAX_MANIFEST_SIZE} are read")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidPackError(f"{MANIFEST_FILE} is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        raise InvalidPackError(
            f"{MANIFEST_FILE} is not a version {MANIFEST_VERSION} manifest; unpack the pack with the "
            "tool version that made it"
        )
    listed = doc.get("files")
    if not isinstance(listed, dict):
        raise InvalidPackError(f"{MANIFEST_FILE} has no 'files' table")
    files: dict[str, FileEntry] = {}
    for name, entry in listed.items():
        check_pack_path(name)
        size = entry.get("size") if isinstance(entry, dict) else None
        sha256 = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidPackError(f"{MANIFEST_FILE} has no valid size for '{name}'")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise InvalidPackError(f"{MANIFEST_FILE} has no valid sha256 for '{name}'")
        files[name] = FileEntry(size=size, sha256=sha256)
    unpacker = doc.get("unpacker-sha256")
    if unpacker is not None and (not isinstance(unpacker, str) or not _SHA256.match(unpacker)):
        raise InvalidPackError(f"{MANIFEST_FILE} has an invalid 'unpacker-sha256'")
    return Manifest(files=files, unpacker_sha256=unpacker)


def seal(root: Path, key: object | None, manifest: Manifest) -> None:
    """Write ``manifest`` into the pack folder ``root`` and, given a private key, its signature."""
    from .sshsig import sign

    data = manifest.to_bytes()
    (root / MANIFEST_FILE).write_bytes(data)
    signature = root / SIGNATURE_FILE
    if key is not None:
        signature.write_text(sign(data, key), encoding="ascii")
    else:
        signature.unlink(missing_ok=True)
