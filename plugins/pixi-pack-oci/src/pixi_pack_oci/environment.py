"""The environment inside the image: installed for the target platform at pack time, made reproducible.

rattler installs the pack's verified channel into a staging folder while patching the in-image
prefix (``/app/env``) into every file, for any target platform, and the pack's wheels follow. Then
what would differ between two runs is removed: the staging paths rattler notes in ``conda-meta`` and
its ``CACHEDIR.TAG``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from pixi_pack_ext.format_toolkit import (
    CHANNEL_DIR,
    ManifestActivation,
    activation_script,
    install_activation_scripts,
    install_records,
    verify_channel,
)

from .errors import OciError
from .wheels import install_wheels

#: How packages are named in the image's ``conda-meta`` records: the pack's channel, at a fixed place.
CHANNEL_URL = "file:///pixi-pack/channel/"


def install(
    pack_dir: Path, platform: str, staged: Path, prefix: PurePosixPath, cache_dir: Path
) -> ManifestActivation | None:
    """Verify the pack's channel and install it into ``staged`` as if it lived at ``prefix``, with the
    manifest's activation scripts; returns the manifest's activation for the entrypoint."""
    install_records(
        verify_channel(pack_dir),
        staged,
        cache_dir,
        platform,
        alternative_target_prefix=str(prefix),
        failed=lambda exc: OciError(f"installing the environment for {platform} failed: {exc}"),
    )
    channel_url = (pack_dir / CHANNEL_DIR).resolve().as_uri() + "/"
    _normalize_records(staged / "conda-meta", channel_url)
    _relink_absolute_links(staged, prefix)
    install_wheels(pack_dir, staged, prefix, platform)
    return install_activation_scripts(pack_dir, staged)


def _normalize_records(conda_meta: Path, channel_url: str) -> None:
    """Drop staging paths from ``conda-meta/*.json`` and name the channel by a fixed URL."""
    for record_path in sorted(conda_meta.glob("*.json")):
        data = json.loads(record_path.read_text(encoding="utf-8"))
        for key in ("extracted_package_dir", "package_tarball_full_path"):
            data.pop(key, None)
        if isinstance(data.get("link"), dict):
            data["link"].pop("source", None)
        for key in ("url", "channel"):
            if isinstance(data.get(key), str):
                data[key] = data[key].replace(channel_url, CHANNEL_URL)
        record_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _relink_absolute_links(staged: Path, prefix: PurePosixPath) -> None:
    """Symbolic links that point into the staging folder point into the in-image prefix instead."""
    root = str(staged)
    for dirpath, dirnames, filenames in os.walk(staged):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            if path.is_symlink():
                target = os.readlink(path)
                if target == root or target.startswith(root + "/"):
                    path.unlink()
                    path.symlink_to(str(prefix) + target[len(root) :])


def entrypoint_script(
    staged: Path, prefix: PurePosixPath, platform: str, manifest: ManifestActivation | None = None
) -> str:
    """A POSIX shell script that activates the environment like ``pixi shell-hook`` (the packages'
    activation, then the manifest's), then runs "$@"; every value in it is quoted for the shell."""
    activation = activation_script(staged, "bash", platform, manifest, target_prefix=prefix)
    shown = " ".join(str(prefix).splitlines())  # a comment line stays one line
    return (
        "#!/bin/sh\n"
        f"# Activates the pixi environment at {shown}, then runs the given command in it.\n"
        f"{activation.rstrip()}\n"
        'exec "$@"\n'
    )
