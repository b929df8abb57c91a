"""The oci format's settings: declared for ``pixi-pack``'s CLI and parsed into ``ImageOptions``."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from pixi_pack_ext.errors import UsageError
from pixi_pack_ext.hookspecs import FormatOption

from .media_types import COMPRESSIONS

DEFAULT_PREFIX = PurePosixPath("/app/env")
ENTRYPOINT_PATH = PurePosixPath("/entrypoint.sh")

FORMAT_OPTIONS: tuple[FormatOption, ...] = (
    FormatOption("base-image", "OCI layout folder or OCI archive to build on ([PATH]:REF picks one)", "PATH"),
    FormatOption(
        "image-prefix", f"Where the environment lives in the image (default {DEFAULT_PREFIX})", "PATH"
    ),
    FormatOption("entrypoint", "Command the image runs in the activated environment", "CMD"),
    FormatOption("compression", f"Layer compression: {', '.join(COMPRESSIONS)} (default gzip)", "KIND"),
    FormatOption("image-name", "Name the image loads as, e.g. myapp:1.0", "NAME"),
)

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(
    rf"^(?:(?P<domain>[A-Za-z0-9.-]+(?::[0-9]+)?)/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)


@dataclass(frozen=True)
class ImageName:
    """An image reference: as Docker normalises it (``docker.io/library/x:latest``) and its tag."""

    full: str
    tag: str


def parse_image_name(value: str) -> ImageName:
    match = _NAME.match(value)
    if match is None:
        raise UsageError(f"image name '{value}' is not a valid image reference (e.g. myapp:1.0)")
    domain, path, tag = match.group("domain"), match.group("path"), match.group("tag") or "latest"
    if domain is not None and "." not in domain and ":" not in domain and domain != "localhost":
        domain, path = None, f"{domain}/{path}"  # 'user/app': the first part is a path, not a host
    if domain is None:
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return ImageName(full=f"{domain}/{path}:{tag}", tag=tag)


@dataclass(frozen=True)
class ImageOptions:
    """What the image should hold and how its layers are written."""

    base_image: str | None = None
    prefix: PurePosixPath = DEFAULT_PREFIX
    entrypoint: tuple[str, ...] = ()
    compression: str = "gzip"
    image_name: ImageName | None = None


def _prefix(value: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/") or "\\" in value:
        raise UsageError(f"--image-prefix must be an absolute path below / like /app/env, not '{value}'")
    return path


def parse_options(values: Mapping[str, object]) -> ImageOptions:
    """Check and convert the values ``pixi-pack`` collected (strings, or paths from Python callers)."""
    known = {option.key for option in FORMAT_OPTIONS}
    unknown = sorted(set(values) - known - {"pixi_unpack_source"})
    if unknown:
        raise UsageError(f"the oci format has no option '{unknown[0].replace('_', '-')}'")
    text = {key: str(value) for key, value in values.items() if value is not None and key in known}
    compression = text.get("compression", "gzip").lower()
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression '{compression}'; choose one of {', '.join(COMPRESSIONS)}")
    entrypoint: tuple[str, ...] = ()
    if "entrypoint" in text:
        try:
            entrypoint = tuple(shlex.split(text["entrypoint"]))
        except ValueError as exc:
            raise UsageError(
                f"--entrypoint '{text['entrypoint']}' cannot be split into words: {exc}"
            ) from None
        if not entrypoint:
            raise UsageError("--entrypoint is empty; give the command the image should run")
    return ImageOptions(
        base_image=text.get("base_image") or None,
        prefix=_prefix(text["image_prefix"]) if "image_prefix" in text else DEFAULT_PREFIX,
        entrypoint=entrypoint,
        compression=compression,
        image_name=parse_image_name(text["image_name"]) if "image_name" in text else None,
    )
