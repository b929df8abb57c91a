"""The python test world: a channel with a host-python ``python`` package, real wheels, one server.

Served tree: ``channel/`` (indexed conda channel) and ``wheels/`` (wheels built with pip). Each test
writes its own pixi.lock against it (``lock``), choosing the conda specs and PyPI entries it needs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pixi_pack_ext.testing.python import (
    HostPython,
    build_host_python_package,
    build_package,
    build_wheels,
    sha256_of,
    write_project,
)
from pixi_pack_ext.testing.world import ChannelServer, PypiEntry, index_channel, write_lock

PLATFORM = "linux-64"

needs_host_python = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the test python package links to this machine's interpreter with a POSIX layout",
)

GREET_CODE = """
import sys


def main() -> None:
    print(f"greet prefix={sys.prefix}")
"""


@dataclass
class PythonWorld:
    """What the tests use: the served root, the channel URL, and the wheels by distribution name."""

    root: Path
    server: ChannelServer
    wheels: dict[str, Path]
    python: HostPython

    @property
    def channel_url(self) -> str:
        return f"{self.server.url}channel/"

    def wheel_url(self, name: str) -> str:
        return f"{self.server.url}wheels/{self.wheels[name].name}"

    def entry(self, name: str, *, location: str | None = None, sha256: str | None = "auto") -> PypiEntry:
        """A lock entry for one of the world's wheels (by URL unless ``location`` says otherwise)."""
        wheel = self.wheels[name]
        digest = sha256_of(wheel) if sha256 == "auto" else sha256
        version = wheel.name.split("-")[1]
        return PypiEntry(name, version, location or self.wheel_url(name), digest)

    def lock(
        self,
        workspace: Path,
        specs: Sequence[str] = ("python",),
        pypi: Sequence[PypiEntry] = (),
    ) -> Path:
        """A workspace (pixi.toml + pixi.lock) for ``linux-64`` with ``specs`` and ``pypi`` entries."""
        workspace.mkdir(parents=True, exist_ok=True)
        deps = "\n".join(f'{s.split()[0]} = "*"' for s in specs)
        (workspace / "pixi.toml").write_text(
            f'[workspace]\nname = "pyworld"\nchannels = ["{self.channel_url}"]\n'
            f'platforms = ["{PLATFORM}"]\n\n[dependencies]\n{deps}\n'
        )
        write_lock(
            workspace / "pixi.lock",
            self.channel_url,
            {"default": list(specs)},
            [PLATFORM],
            {"default": list(pypi)},
        )
        return workspace


@contextlib.contextmanager
def python_world(root: Path) -> Iterator[PythonWorld]:
    """Build the channel and the wheels under ``root`` and serve them for the block."""
    channel = root / "channel"
    build_host_python_package(channel / PLATFORM, PLATFORM)
    build_package(channel / "noarch", "pip", "24.0")  # a stand-in: environment.yml only needs the name
    build_package(channel / PLATFORM, "tool", "1.0", PLATFORM, depends=["python >=3"])
    build_package(channel / PLATFORM, "tool-user", "1.0", PLATFORM, depends=["tool <2"])
    index_channel(channel)
    projects = root / "projects"
    built = build_wheels(
        [
            write_project(projects, "greet-cli", code=GREET_CODE, scripts={"greet": "greet_cli:main"}),
            write_project(projects, "greet-two", code="VALUE = 2"),
            write_project(projects, "greet-local", code="VALUE = 'local'"),
        ],
        root / "wheels",
    )
    wheels = {w.name.split("-")[0].replace("_", "-"): w for w in built}
    with ChannelServer(root) as server:
        yield PythonWorld(root, server, wheels, HostPython.current())
