"""The test world: a real channel built from recipes, served on 127.0.0.1, and locked workspaces.

Session fixtures build the channel once (about a second); tests that need a changed world copy or
extend it in their own tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixi_pack_ext.plugins import reset_plugin_manager
from pixi_pack_ext.testing.world import ChannelServer, build_channel, lock_workspace

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo"
BIN = Path(sys.executable).parent


def cli(name: str) -> str:
    """The path of one of our console scripts in the running environment."""
    path = BIN / name
    return str(path) if path.exists() else name


def run(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command (our console scripts by bare name) and return its completed process."""
    argv = [cli(str(args[0])) if str(args[0]).startswith("pixi-") else str(args[0]), *map(str, args[1:])]
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    result = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{argv} exited {result.returncode}\nstdout:\n{result.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr:\n{result.stderr.decode(errors='replace')[-3000:]}"
        )
    return result


def pack_argv(workspace: os.PathLike[str], out: os.PathLike[str] | str, *extra: object) -> list[str]:
    """The command line that packs the workspace's ``prod`` environment for linux-64 into ``out``."""
    return [
        cli("pixi-pack"),
        str(workspace),
        "-e",
        "prod",
        "-p",
        "linux-64",
        "-o",
        str(out),
        *map(str, extra),
    ]


def pack_prod(
    workspace: os.PathLike[str],
    out: os.PathLike[str] | str,
    *extra: object,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``pack_argv`` (``extra``: more options) and return the completed process."""
    return run(*pack_argv(workspace, out, *extra), check=check, env=env, timeout=timeout)


def copy_workspace(workspace: Path, target: Path) -> Path:
    """``target``, a new folder holding a copy of ``workspace``'s pixi.toml and pixi.lock."""
    target.mkdir()
    for name in ("pixi.toml", "pixi.lock"):
        shutil.copy(workspace / name, target / name)
    return target


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(scope="session")
def channel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo channel (noarch, linux-64, win-64, osx-arm64; .conda and .tar.bz2), built once."""
    channel = tmp_path_factory.mktemp("world") / "channel"
    build_channel(DEMO / "recipes", channel)
    return channel


@pytest.fixture(scope="session")
def channel_server(channel_dir: Path) -> Iterator[ChannelServer]:
    with ChannelServer(channel_dir) as server:
        yield server


def make_workspace(target: Path, channel_url: str, version: int = 7) -> Path:
    """A copy of the demo workspace locked against ``channel_url``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO / "pixi.toml", target / "pixi.toml")
    lock_workspace(target, channel_url, version=version)
    return target


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, channel_server: ChannelServer) -> Path:
    """The demo workspace with a v7 pixi.lock pointing at the session channel server."""
    return make_workspace(tmp_path_factory.mktemp("ws7"), channel_server.url)


@pytest.fixture(scope="session")
def prod_tar(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pack of the demo workspace's prod environment, shared by tests that only read it."""
    out = tmp_path_factory.mktemp("prod-pack") / "environment.tar"
    pack_prod(workspace, out)
    return out


def damage_package(pack: Path, out: Path, name_part: str) -> Path:
    """A copy of the tar ``pack`` at ``out`` with one byte flipped in the middle of the first
    ``.conda`` member whose name contains ``name_part``."""
    with tarfile.open(pack) as archive:
        member = next(m for m in archive.getmembers() if name_part in m.name and m.name.endswith(".conda"))
    data = bytearray(pack.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    out.write_bytes(data)
    return out


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system of its own (needs the right to mount; skipped without it)."""
    mount_point = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip() or 'not permitted'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="session")
def workspace_v6(tmp_path_factory: pytest.TempPathFactory, channel_server: ChannelServer) -> Path:
    """The same workspace with a lock written in format v6."""
    return make_workspace(tmp_path_factory.mktemp("ws6"), channel_server.url, version=6)


def gone_pid() -> int:
    """The id of a process that has ended."""
    code = "import os; print(os.getpid())"
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def host_platform() -> str:
    import rattler

    return str(rattler.Subdir.current())


needs_linux64 = pytest.mark.skipif(
    host_platform() != "linux-64", reason="the fixture binaries are built for linux-64"
)


@pytest.fixture(scope="session")
def py_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A channel with a host-python ``python`` package and real wheels, served (see pypi_world.py)."""
    from pypi_world import python_world

    with python_world(tmp_path_factory.mktemp("pyworld")) as world:
        yield world
