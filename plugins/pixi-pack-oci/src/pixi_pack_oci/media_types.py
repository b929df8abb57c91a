"""The layer media types by compression: what ``--compression`` accepts, without loading the
layer writer (every pixi-pack run loads the plugin to learn its options)."""

from __future__ import annotations

COMPRESSIONS: dict[str, str] = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
