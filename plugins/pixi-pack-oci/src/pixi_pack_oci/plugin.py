"""The ``oci`` output format, registered through the ``pixi_pack_formats`` hook.

The image code (which installs the environment with pixi-pack-ext's unpacker) is imported when the
format is used, so having the plugin installed costs other packs nothing.
"""

from __future__ import annotations

from pixi_pack_ext.hookspecs import PackFormat, WriteRequest, hookimpl

from .options import FORMAT_OPTIONS, parse_options
from .platforms import oci_platform


def check(platform: str, options: dict[str, object]) -> None:
    """Refuse a non-Linux target, bad settings and a base image of another platform, before downloads."""
    from .image import check_base

    oci_platform(platform)
    check_base(parse_options(options), platform)


def write(request: WriteRequest) -> None:
    from .image import write_image

    write_image(request.staging, request.output, request.platform, parse_options(request.options))


@hookimpl
def pixi_pack_formats() -> list[PackFormat]:
    return [
        PackFormat(
            name="oci",
            write=write,
            default_output=lambda platform: "image.tar",
            description="an OCI image archive (docker/podman load, skopeo, umoci) running the environment",
            streams=True,
            options=FORMAT_OPTIONS,
            check=check,
        )
    ]
