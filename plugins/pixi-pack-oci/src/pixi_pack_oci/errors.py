"""Errors of the OCI format; all are ``PixiPackError``s, so the CLI prints them as one line."""

from __future__ import annotations

from pixi_pack_ext.errors import PackError, UsageError


class OciError(PackError):
    """Building the image failed."""


class UnsupportedPlatformError(UsageError):
    """The target platform has no OCI equivalent (images are Linux only here)."""


class BaseImageError(OciError):
    """The base image is missing, malformed, corrupt or for another platform."""
