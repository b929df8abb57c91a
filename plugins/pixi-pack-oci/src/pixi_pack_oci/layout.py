"""Writing an OCI image layout: content-addressed blobs, descriptors, ``index.json``, ``oci-layout``.

JSON documents are written compactly with a fixed key order, so the same content gives the same
digests. A ``manifest.json`` in ``docker save``'s shape sits next to ``index.json`` so that Docker
versions without OCI-archive support load the image too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
#: The annotation Docker and containerd read the full image name from.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
COPY_CHUNK = 1 << 20


def canonical_json(data: object) -> bytes:
    """Compact JSON with the keys in the order the dicts were built: stable bytes for stable input."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    """What an OCI document says about a blob: media type, digest and size (and optional extras)."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            data["platform"] = self.platform
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        return data


class HashingWriter:
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: IO[bytes] | HashingWriter | None = None) -> None:
        self._sink = sink
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return f"sha256:{self._sha.hexdigest()}"


class Layout:
    """An OCI image layout folder being written: ``blobs/sha256/<hex>`` plus the index files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")

    def new_blob(self) -> Path:
        """A temporary file in the layout for a blob whose digest is not known yet."""
        handle, name = tempfile.mkstemp(prefix=".blob-", suffix=".part", dir=self.root)
        os.close(handle)
        return Path(name)

    def commit_blob(self, part: Path, digest: str) -> None:
        """Move a finished temporary blob to its content address."""
        os.replace(part, self.blob_path(digest))

    def add_bytes(self, data: bytes, media_type: str) -> Descriptor:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        self.blob_path(digest).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def add_json(self, data: object, media_type: str) -> Descriptor:
        return self.add_bytes(canonical_json(data), media_type)

    def write_index(
        self, manifest: Descriptor, config: Descriptor, layers: list[Descriptor], repo_tags: list[str]
    ) -> None:
        """``index.json`` and ``oci-layout`` (OCI), and ``manifest.json`` (``docker load`` of old)."""
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [manifest.to_json()],
        }
        (self.root / "index.json").write_bytes(canonical_json(index))
        (self.root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        docker = [
            {
                "Config": f"blobs/sha256/{config.hex}",
                "RepoTags": repo_tags,
                "Layers": [f"blobs/sha256/{layer.hex}" for layer in layers],
            }
        ]
        (self.root / "manifest.json").write_bytes(canonical_json(docker))


def copy_verified(source: IO[bytes], dest: Path, digest: str, what: str) -> int:
    """Copy ``source`` to ``dest`` checking its sha256 against ``digest``; returns the size.

    Raises ``ValueError`` naming ``what`` on a mismatch (the caller turns it into its own error).
    """
    writer = HashingWriter()
    with open(dest, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            writer.write(chunk)
            out.write(chunk)
    if writer.digest != digest:
        dest.unlink()
        raise ValueError(f"{what} is corrupt: expected {digest}, got {writer.digest}")
    return writer.size
