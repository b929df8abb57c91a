"""Build the image: base layers, the environment layer, the entrypoint layer, config, manifest, archive.

Everything is made in a work folder next to the pack's staging folder and the archive is written to
a temporary name beside the output, then renamed: a failure leaves nothing at the output path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pixi_pack_ext.format_toolkit import write_tar

from .base import BaseImage, open_base_image
from .config import build_epoch, image_config
from .environment import entrypoint_script, install
from .layer import write_layer
from .layout import (
    CONFIG_MEDIA_TYPE,
    IMAGE_NAME_ANNOTATION,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    Descriptor,
    Layout,
)
from .options import ENTRYPOINT_PATH, ImageOptions
from .platforms import OciPlatform, oci_platform

log = logging.getLogger(__name__)


def build_layout(
    pack_dir: Path, platform: str, options: ImageOptions, workdir: Path
) -> tuple[Layout, Descriptor]:
    """Write the image as an OCI layout in ``workdir/layout``; returns it and the manifest's descriptor."""
    target = oci_platform(platform)
    base = open_base_image(options.base_image, target) if options.base_image else None
    if base is None:
        log.warning(
            "no --base-image: the image holds only the environment, and its entrypoint needs a /bin/sh "
            "(and the C library the packages link to) from an image it is layered on"
        )
    epoch = build_epoch()
    layout = Layout(workdir / "layout")
    layers: list[Descriptor] = []
    diff_ids: list[str] = []
    if base is not None:
        for layer in base.layers:
            base.copy_layer(layer, layout.blob_path(layer.digest))
            layers.append(layer)
        diff_ids.extend(base.diff_ids)

    staged = workdir / "env"
    manifest_activation = install(pack_dir, platform, staged, options.prefix, workdir / "cache")
    layer, diff_id = write_layer(layout, [(str(options.prefix), staged)], options.compression, epoch)
    layers.append(layer)
    diff_ids.append(diff_id)

    script = workdir / "entrypoint.sh"
    script.write_text(
        entrypoint_script(staged, options.prefix, platform, manifest_activation), encoding="utf-8"
    )
    script.chmod(0o755)
    layer, diff_id = write_layer(layout, [(str(ENTRYPOINT_PATH), script)], options.compression, epoch)
    layers.append(layer)
    diff_ids.append(diff_id)

    config = image_config(
        base.config if base else None,
        target,
        diff_ids,
        len(base.layers) if base else 0,
        options,
        epoch,
    )
    config_descriptor = layout.add_json(config, CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_descriptor.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    manifest_descriptor = _manifest_descriptor(
        layout.add_json(manifest, MANIFEST_MEDIA_TYPE), target, options
    )
    layout.write_index(
        manifest_descriptor,
        config_descriptor,
        layers,
        [options.image_name.full] if options.image_name else [],
    )
    return layout, manifest_descriptor


def _manifest_descriptor(descriptor: Descriptor, target: OciPlatform, options: ImageOptions) -> Descriptor:
    """The index entry: the platform, and the full image name where one was given.

    podman and skopeo read ``ref.name`` as the image reference (a bare tag would load as
    ``localhost/TAG``), containerd and Docker read ``io.containerd.image.name``; umoci takes the full
    name as its tag. Without a name the image loads untagged.
    """
    annotations = {}
    if options.image_name:
        annotations = {
            REF_NAME_ANNOTATION: options.image_name.full,
            IMAGE_NAME_ANNOTATION: options.image_name.full,
        }
    return Descriptor(
        descriptor.media_type, descriptor.digest, descriptor.size, annotations, target.to_json()
    )


def check_base(options: ImageOptions, platform: str) -> BaseImage | None:
    """Read the base image and check its platform (before any package is downloaded)."""
    if options.base_image is None:
        return None
    return open_base_image(options.base_image, oci_platform(platform))


def write_image(pack_dir: Path, output: Path | None, platform: str, options: ImageOptions) -> str:
    """Write the OCI archive to ``output`` (standard output for None); returns the manifest digest."""
    workdir = Path(tempfile.mkdtemp(prefix=".pixi-pack-oci-", dir=pack_dir.parent))
    part: Path | None = None
    try:
        layout, manifest = build_layout(pack_dir, platform, options, workdir)
        if output is None:
            write_tar(layout.root, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            part = output.with_name(f".{output.name}.part")
            with open(part, "wb") as f:
                write_tar(layout.root, f)
            os.replace(part, output)
        log.info("image %s for %s written", manifest.digest, platform)
        return manifest.digest
    finally:
        if part is not None:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        shutil.rmtree(workdir, ignore_errors=True)
