"""Reading a base image: an OCI layout folder or an OCI archive (a tar of one), chosen for a platform.

Only the documents needed (index, manifest, config) are read up front, so the platform check runs
before anything is downloaded; layer blobs are copied into the new image later, each checked against
its digest on the way. ``PATH:REF`` picks the image whose ``org.opencontainers.image.ref.name`` (or
full image name) is ``REF`` when the layout holds several.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from .errors import BaseImageError
from .layout import IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, Descriptor, copy_verified
from .platforms import OciPlatform, platform_of

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
#: Layer media types a base may use, and how the OCI manifest of the new image names them.
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
MAX_DOCUMENT = 16 << 20


class LayoutSource(Protocol):
    """Read access to the files of an OCI layout, wherever it is stored."""

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...


class FolderSource:
    """An OCI layout folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(name)
        with open(path, "rb") as f:
            yield f


class ArchiveSource:
    """An OCI archive: a tar of a layout, read member by member without extracting it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with tarfile.open(path, mode="r:*") as tar:
                self._members = {
                    m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile() or m.isdir()
                }
        except tarfile.TarError as exc:
            raise BaseImageError(f"base image '{path}' is not a readable tar archive: {exc}") from None

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        member = self._members.get(name)
        if member is None or not member.isfile():
            raise FileNotFoundError(name)
        with tarfile.open(self.path, mode="r:*") as tar:
            source = tar.extractfile(member)
            assert source is not None
            yield source


@dataclass(frozen=True)
class BaseImage:
    """The chosen image of a base: its manifest's layers, its config, and where its blobs are."""

    spec: str
    source: LayoutSource
    layers: tuple[Descriptor, ...]
    config: dict[str, object]
    platform: OciPlatform

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs")
        ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        return [str(i) for i in ids] if isinstance(ids, list) else []

    def copy_layer(self, layer: Descriptor, dest: Path) -> None:
        """Copy one layer blob to ``dest``, refusing it if its digest does not match."""
        try:
            with self.source.open(_blob_name(layer.digest)) as f:
                copy_verified(f, dest, layer.digest, f"layer {layer.digest} of the base image")
        except FileNotFoundError:
            raise BaseImageError(f"base image '{self.spec}' lacks the blob of layer {layer.digest}") from None
        except ValueError as exc:
            raise BaseImageError(f"base image '{self.spec}': {exc}") from None


def _blob_name(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or not all(c in "0123456789abcdef" for c in hex_digest):
        raise BaseImageError(f"unsupported or malformed digest '{digest}' in the base image")
    return f"blobs/sha256/{hex_digest}"


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:REF`` (an existing path wins, so paths with colons still work)."""
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return path, None
    head, _, ref = spec.rpartition(":")
    return Path(head), ref or None


class _Reader:
    def __init__(self, spec: str, source: LayoutSource) -> None:
        self.spec = spec
        self.source = source

    def fail(self, message: str) -> BaseImageError:
        return BaseImageError(f"base image '{self.spec}': {message}")

    def document(self, name: str, digest: str | None = None) -> dict[str, object]:
        try:
            with self.source.open(name) as f:
                data = f.read(MAX_DOCUMENT + 1)
        except FileNotFoundError:
            raise self.fail(f"has no {name}") from None
        if digest is not None and f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise self.fail(f"{name} does not match its digest {digest}")
        try:
            value = json.loads(data)
        except ValueError:
            raise self.fail(f"{name} is not valid JSON") from None
        if not isinstance(value, dict):
            raise self.fail(f"{name} is not a JSON object")
        return value

    def blob(self, descriptor: dict[str, object]) -> dict[str, object]:
        digest = str(descriptor.get("digest", ""))
        return self.document(_blob_name(digest), digest)

    def descriptors(self, document: dict[str, object], key: str) -> list[dict[str, object]]:
        items = document.get(key)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self.fail(f"'{key}' is missing or malformed")
        return items

    def manifests(self, index: dict[str, object]) -> list[dict[str, object]]:
        """Every image manifest descriptor below ``index``, nested indexes flattened."""
        found: list[dict[str, object]] = []
        for descriptor in self.descriptors(index, "manifests"):
            media_type = descriptor.get("mediaType")
            if media_type in INDEX_TYPES:
                nested = self.manifests(self.blob(descriptor))
                annotations = descriptor.get("annotations")
                for item in nested:  # the outer descriptor's name applies to what it holds
                    if isinstance(annotations, dict) and "annotations" not in item:
                        item = {**item, "annotations": annotations}
                    found.append(item)
            elif media_type in MANIFEST_TYPES:
                found.append(descriptor)
        return found


def _names(descriptor: dict[str, object]) -> set[str]:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return set()
    return {str(annotations[k]) for k in (REF_NAME_ANNOTATION, IMAGE_NAME_ANNOTATION) if k in annotations}


def _open_source(path: Path, spec: str) -> LayoutSource:
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return ArchiveSource(path)
    raise BaseImageError(f"base image '{spec}' does not exist (give an OCI layout folder or an OCI archive)")


def open_base_image(spec: str, target: OciPlatform) -> BaseImage:
    """Read the base image ``spec`` and choose its image for ``target``; refuse other platforms."""
    path, ref = split_spec(spec)
    source = _open_source(path, spec)
    reader = _Reader(spec, source)
    try:
        index = reader.document("index.json")
    except BaseImageError:
        raise reader.fail(
            "is not an OCI image layout (no index.json); convert it first, e.g. with "
            "'skopeo copy docker-archive:IN oci-archive:OUT'"
        ) from None
    candidates = reader.manifests(index)
    if ref is not None:
        candidates = [d for d in candidates if ref in _names(d)]
        if not candidates:
            raise reader.fail(f"has no image named '{ref}'")
    if not candidates:
        raise reader.fail("holds no image manifest")
    chosen: list[tuple[dict[str, object], dict[str, object], OciPlatform]] = []
    seen: list[OciPlatform] = []
    for descriptor in candidates:
        declared = descriptor.get("platform")
        if isinstance(declared, dict) and not platform_of(declared).matches(target):
            seen.append(platform_of(declared))
            continue
        manifest = reader.blob(descriptor)
        config = reader.blob(_config_descriptor(reader, manifest))
        platform = platform_of(config)
        seen.append(platform)
        if platform.matches(target):
            chosen.append((manifest, config, platform))
    if not chosen:
        have = ", ".join(sorted({str(p) for p in seen}))
        raise reader.fail(
            f"is for {have}, but the target platform needs {target}; use a base image for {target}"
        )
    if len(chosen) > 1:
        raise reader.fail(f"holds {len(chosen)} images for {target}; name one as PATH:REF")
    manifest, config, platform = chosen[0]
    layers = tuple(_layer(reader, d) for d in reader.descriptors(manifest, "layers"))
    image = BaseImage(spec=spec, source=source, layers=layers, config=config, platform=platform)
    if len(image.diff_ids) != len(layers):
        raise reader.fail(
            f"its config lists {len(image.diff_ids)} layer diff_ids but its manifest {len(layers)} layers"
        )
    return image


def _config_descriptor(reader: _Reader, manifest: dict[str, object]) -> dict[str, object]:
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise reader.fail("its manifest has no config")
    return config


def _layer(reader: _Reader, descriptor: dict[str, object]) -> Descriptor:
    media_type = str(descriptor.get("mediaType", ""))
    if media_type not in LAYER_TYPES:
        raise reader.fail(f"has a layer of unsupported media type '{media_type}'")
    size = descriptor.get("size")
    digest = str(descriptor.get("digest", ""))
    _blob_name(digest)
    if not isinstance(size, int) or size < 0:
        raise reader.fail(f"layer {digest} has no valid size")
    return Descriptor(LAYER_TYPES[media_type], digest, size)
