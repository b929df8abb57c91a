"""Target platforms: conda subdirs map to OCI platforms, an arm64 image is built from a noarch-only
environment on this machine, and the names images load as are normalised like Docker does."""

# ruff: noqa: F811  (fixtures are imported from oci_world and requested as parameters)
from __future__ import annotations

import json
from pathlib import Path

import pytest
from oci_helpers import run
from oci_world import _fresh_plugins, base_layout, channel_server, oci_tools, workspace  # noqa: F401
from pixi_pack_oci.errors import UnsupportedPlatformError
from pixi_pack_oci.options import parse_image_name
from pixi_pack_oci.platforms import OciPlatform, oci_platform

from pixi_pack_ext.errors import UsageError
from pixi_pack_ext.testing.world import ChannelServer, lock_workspace

NOARCH_ONLY = """\
[workspace]
name = "data"
channels = ["{url}"]
platforms = ["linux-aarch64"]

[dependencies]
greeting-data = "*"
activate-demo = "*"
"""


@pytest.mark.parametrize(
    ("subdir", "expected"),
    [
        ("linux-64", OciPlatform("linux", "amd64")),
        ("linux-aarch64", OciPlatform("linux", "arm64")),
        ("linux-ppc64le", OciPlatform("linux", "ppc64le")),
        ("linux-armv7l", OciPlatform("linux", "arm", "v7")),
    ],
)
def test_linux_platforms_map_to_oci(subdir: str, expected: OciPlatform) -> None:
    assert oci_platform(subdir) == expected


@pytest.mark.parametrize("subdir", ["win-64", "osx-arm64", "noarch"])
def test_other_platforms_are_refused(subdir: str) -> None:
    with pytest.raises(UnsupportedPlatformError, match=f"'{subdir}' is not a Linux platform"):
        oci_platform(subdir)


def test_arm64_variants_match() -> None:
    assert OciPlatform("linux", "arm64", "v8").matches(OciPlatform("linux", "arm64"))
    assert not OciPlatform("linux", "arm", "v6").matches(OciPlatform("linux", "arm", "v7"))


@pytest.mark.parametrize(
    ("name", "full", "tag"),
    [
        ("app", "docker.io/library/app:latest", "latest"),
        ("demo/tools:1.0", "docker.io/demo/tools:1.0", "1.0"),
        ("localhost:5000/app:v2", "localhost:5000/app:v2", "v2"),
        ("ghcr.io/org/app", "ghcr.io/org/app:latest", "latest"),
    ],
)
def test_image_names_are_normalised(name: str, full: str, tag: str) -> None:
    parsed = parse_image_name(name)
    assert (parsed.full, parsed.tag) == (full, tag)


def test_bad_image_name_is_refused() -> None:
    with pytest.raises(UsageError, match="not a valid image reference"):
        parse_image_name("Bad Name")


def test_arm64_image_of_a_noarch_environment(
    channel_server: ChannelServer, base_layout: Path, tmp_path: Path
) -> None:
    (tmp_path / "pixi.toml").write_text(NOARCH_ONLY.format(url=channel_server.url))
    lock_workspace(tmp_path, channel_server.url)
    output = tmp_path / "arm.tar"
    run(
        "pixi-pack", tmp_path, "-p", "linux-aarch64", "--format", "oci", "-o", output,
        "--base-image", f"{base_layout}:arm64",
    )  # fmt: skip
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{output}").stdout)
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    assert len(info["Layers"]) == 3
