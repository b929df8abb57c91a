"""The oci format's test world: the demo channel served on 127.0.0.1, a locked workspace, the tools
(skopeo, umoci, busybox-static; installed with apt when missing and running as root) and a tiny
busybox base image built with umoci, for amd64 and for arm64.

Test modules import these fixtures by name. There is deliberately no ``conftest.py`` here: the root
suite imports helpers with ``from conftest import ...``, and a second top-level ``conftest`` module
would shadow its one when both folders are collected together.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_helpers import DEMO, make_base_image, shared_libraries

from pixi_pack_ext.plugins import reset_plugin_manager
from pixi_pack_ext.testing.world import ChannelServer, build_channel, lock_workspace

TOOLS = {"skopeo": "skopeo", "umoci": "umoci", "busybox": "busybox-static"}


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def _busybox() -> Path | None:
    found = shutil.which("busybox") or ("/bin/busybox" if Path("/bin/busybox").exists() else None)
    return Path(found) if found else None


@pytest.fixture(scope="session")
def oci_tools() -> None:
    """skopeo, umoci and a static busybox, installed from Debian's packages when missing."""
    missing = [
        pkg
        for tool, pkg in TOOLS.items()
        if (_busybox() if tool == "busybox" else shutil.which(tool)) is None
    ]
    if missing and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing], capture_output=True, env=env, timeout=600
        )
        missing = [
            pkg
            for tool, pkg in TOOLS.items()
            if (_busybox() if tool == "busybox" else shutil.which(tool)) is None
        ]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages; install them or run as root with apt)")


@pytest.fixture(scope="session")
def channel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChannelServer]:
    channel = tmp_path_factory.mktemp("oci-world") / "channel"
    build_channel(DEMO / "recipes", channel)
    with ChannelServer(channel) as server:
        yield server


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, channel_server: ChannelServer) -> Path:
    """The demo workspace (envs default and prod; linux-64, win-64, osx-arm64) locked against the server."""
    target = tmp_path_factory.mktemp("oci-ws")
    shutil.copy(DEMO / "pixi.toml", target / "pixi.toml")
    lock_workspace(target, channel_server.url)
    return target


@pytest.fixture(scope="session")
def base_layout(tmp_path_factory: pytest.TempPathFactory, oci_tools: None, workspace: Path) -> Path:
    """An OCI layout with two images of a busybox base: tag 'amd64' and tag 'arm64' (same files).

    The rootfs holds a static busybox as /bin/busybox and /bin/sh, plus the loader and C library the
    demo's compiled ``hello`` needs (copied from this machine, as a distribution's base image has them).
    """
    work = tmp_path_factory.mktemp("oci-base")
    busybox = _busybox()
    assert busybox is not None
    files = {"/bin/busybox": busybox.resolve()}
    for library in shared_libraries(busybox) + shared_libraries(Path("/bin/true")):
        files[str(library)] = library.resolve()
    layout = work / "layout"
    make_base_image(layout, work, files, "amd64", "amd64")
    make_base_image(layout, work, files, "arm64", "arm64")
    return layout
