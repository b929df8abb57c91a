"""The plugin as a user meets it: installed next to pixi-pack-ext, found by its entry point, and
packing a lock whose packages live on a Unix domain socket.

The world is made here, not mocked: a real package built with rattler-build, a real lock solved by
rattler, a real HTTP server on a socket, and the real ``pixi-pack`` console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer, build_channel, write_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix domain sockets are POSIX only")

RECIPE = """\
package:
  name: sock-demo
  version: "1.0"
build:
  noarch: generic
  script:
    - mkdir -p $PREFIX/share/sock-demo
    - echo "served over a socket" > $PREFIX/share/sock-demo/message.txt
"""


def pixi_pack(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "pixi-pack"
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sock-world")
    (root / "recipes").mkdir()
    (root / "recipes" / "sock-demo.yaml").write_text(RECIPE)
    build_channel(root / "recipes", root / "channel")
    return root / "channel"


@pytest.fixture(scope="module")
def locked(channel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace locked against the channel on TCP, and the URL it was locked against."""
    workspace = tmp_path_factory.mktemp("sock-ws")
    (workspace / "pixi.toml").write_text(
        '[workspace]\nname = "sock"\nchannels = []\nplatforms = ["linux-64"]\n\n'
        '[dependencies]\nsock-demo = "*"\n'
    )
    with ChannelServer(channel) as server:
        write_lock(workspace / "pixi.lock", server.url, {"default": ["sock-demo"]}, ["linux-64"])
        return workspace, server.url


def test_packs_a_lock_served_on_a_unix_socket(
    channel: Path, locked: tuple[Path, str], tmp_path: Path
) -> None:
    from pixi_pack_unix_socket.testing import UnixChannelServer

    workspace, locked_url = locked
    (package,) = (channel / "noarch").glob("sock-demo-1.0-*.conda")
    with UnixChannelServer(channel) as server:
        moved = relocate_workspace(workspace, tmp_path / "ws", locked_url, server.url)
        assert "http+unix://%2F" in (moved / "pixi.lock").read_text()
        result = pixi_pack(moved, "-p", "linux-64", "-o", tmp_path / "env.tar")
        assert result.returncode == 0, result.stderr
        assert server.requests == [f"/noarch/{package.name}"]
    with tarfile.open(tmp_path / "env.tar") as tar:
        packed = tar.extractfile(f"channel/noarch/{package.name}").read()  # type: ignore[union-attr]
    assert packed == package.read_bytes()


def test_a_missing_socket_is_one_clear_error(locked: tuple[Path, str], tmp_path: Path) -> None:
    workspace, locked_url = locked
    url = "http+unix://%2Fnowhere%2Fchannel.sock/"
    moved = relocate_workspace(workspace, tmp_path / "ws", locked_url, url)
    result = pixi_pack(moved, "-p", "linux-64", "-o", tmp_path / "env.tar")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: could not download {url}noarch/sock-demo-1.0-")
    assert line.endswith("from socket /nowhere/channel.sock: ConnectError")
    assert not (tmp_path / "env.tar").exists()
