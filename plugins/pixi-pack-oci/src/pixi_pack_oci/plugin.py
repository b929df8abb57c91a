"""The ``oci`` output format, registered through the ``pixi_pack_formats`` hook."""

from __future__ import annotations

from pixi_pack_ext.hookspecs import PackFormat, WriteRequest, hookimpl

from .image import check_base, write_image
from .options import FORMAT_OPTIONS, parse_options
from .platforms import oci_platform


def check(platform: str, options: dict[str, object]) -> None:
    """Refuse a non-Linux target, bad settings and a base image of another platform, before downloads."""
    oci_platform(platform)
    check_base(parse_options(options), platform)


def write(request: WriteRequest) -> None:
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
