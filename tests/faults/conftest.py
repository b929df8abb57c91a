"""Fault fixtures: the demo channel behind a misbehaving server, and what a user checks afterwards."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rattler
from conftest import cli, host_platform, pack_argv, pack_prod
from pack_checks import package_paths

from pixi_pack_ext.testing.faulty_server import FaultyServer, Hold
from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.python import sha256_of
from pixi_pack_ext.testing.world import ChannelServer

#: Small limits so that a fault ends in a second, not a minute.
FAST = {"PIXI_PACK_RETRIES": "1", "PIXI_PACK_READ_TIMEOUT": "0.5"}
#: The environment of a pack started in the background (``run`` adds NO_COLOR and COLUMNS likewise).
ENV = {**os.environ, **FAST, "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def faulty(channel_dir: Path) -> Iterator[FaultyServer]:
    with FaultyServer(channel_dir) as server:
        yield server


@pytest.fixture
def moved(workspace: Path, channel_server: ChannelServer, tmp_path: Path) -> Callable[[str], Path]:
    """``moved(url)``: a copy of the demo workspace whose lock points at ``url``."""

    def move(url: str, name: str = "ws") -> Path:
        return relocate_workspace(workspace, tmp_path / name, channel_server.url, url)

    return move


def pack(
    workspace: Path, out: Path, *extra: object, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    return pack_prod(workspace, out, *extra, env={**FAST, **(env or {})}, check=check)


def start_pack(
    workspace: Path, out: Path, *extra: object, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """``pack`` started in the background (``popen``: where its output goes), for a test to stop or race."""
    return subprocess.Popen(pack_argv(workspace, out, *extra), env={**ENV, **(env or {})}, **popen)


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one red line of a failed run (and proof there was no traceback)."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Half-written things a failed run could leave: staging folders, ``.part`` files."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.startswith((".pixi-pack-", ".pixi-unpack-")) or p.name.endswith(".part")
    )


def lock_hashes(workspace: Path) -> dict[str, str]:
    """``<subdir>/<file>`` -> sha256 of every conda package the lock's prod environment holds."""
    lock = rattler.LockFile.from_path(workspace / "pixi.lock")
    env = lock.environment("prod")
    assert env is not None
    hashes = {}
    for platform, packages in env.packages_by_platform().items():
        if platform.name != "linux-64":
            continue
        for package in packages:
            record = package.repo_data_record()  # type: ignore[union-attr]
            hashes[f"{record.subdir}/{record.file_name}"] = record.sha256.hex()
    return hashes


def hold_hello_bin(
    faulty: FaultyServer, moved: Callable[[str], Path], channel_dir: Path
) -> tuple[str, Path, dict[str, str]]:
    """Make the faulty server hold the linux-64 hello-bin download open; returns its path, a
    workspace locked against that server, and the lock's package hashes."""
    held = next(p for p in package_paths(channel_dir) if p.startswith("/linux-64/hello-bin-"))
    faulty.add_faults(held, Hold())
    workspace = moved(faulty.url)
    return held, workspace, lock_hashes(workspace)


def assert_cache_is_verified(cache: Path, hashes: dict[str, str]) -> set[str]:
    """Every package file in the cache has its record's sha256; returns which ones are there."""
    present = set()
    for path in cache.rglob("*"):
        if path.is_file() and path.name.endswith((".conda", ".tar.bz2")):
            key = path.relative_to(cache).as_posix()
            assert key in hashes, key
            assert sha256_of(path) == hashes[key], f"{key} in the cache is wrong"
            present.add(key)
    assert not [p for p in cache.rglob("*.part")], "a partial download was left in the cache"
    return present


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds; False if ``timeout`` passes first (a bound, not a check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def demo_pack(workspace: Path, tmp_path: Path) -> Path:
    if host_platform() != "linux-64":
        pytest.skip("the demo environment installs on linux-64 only")
    target = tmp_path / "demo.tar"
    pack(workspace, target)
    return target


def unpack_half_a_pack(pack_file: Path, out: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """``pixi-unpack -`` given the first half of ``pack_file`` on stdin, once it is extracting
    it: it waits for the rest, as stdin stays open (the caller closes it)."""
    process = subprocess.Popen([cli("pixi-unpack"), "-", "-o", out], stdin=subprocess.PIPE, env=ENV, **popen)
    assert process.stdin is not None
    data = pack_file.read_bytes()
    process.stdin.write(data[: len(data) // 2])
    process.stdin.flush()
    assert wait_until(lambda: any(out.glob(".pixi-unpack-*/pack/*")))  # the manifest, then channel/
    return process
