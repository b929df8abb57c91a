"""A full disk while packing or unpacking (a real 1 MiB tmpfs): one clear line, a non-zero exit,
nothing half-written on the full disk, and a verified cache elsewhere that a re-run uses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import host_platform, run

from pixi_pack_ext.testing.world import ChannelServer, build_channel, lock_workspace

from .conftest import assert_cache_is_verified, error_line

#: Incompressible payloads: bigger than the disk, and half of it (fits, but not twice).
SIZES = {"bulky": 1536 * 1024, "medium": 640 * 1024}


def _recipe(name: str, size: int) -> str:
    return (
        f'package:\n  name: {name}\n  version: "1.0"\n'
        "build:\n  noarch: generic\n  script:\n"
        f"    - mkdir -p $PREFIX/share/{name}\n"
        f"    - head -c {size} /dev/urandom > $PREFIX/share/{name}/payload.bin\n"
    )


@pytest.fixture(scope="module")
def big_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ChannelServer]]:
    root = tmp_path_factory.mktemp("big-world")
    for name, size in SIZES.items():
        (root / "recipes" / name).mkdir(parents=True)
        (root / "recipes" / name / "recipe.yaml").write_text(_recipe(name, size))
    build_channel(root / "recipes", root / "channel")
    workspace = root / "ws"
    workspace.mkdir()
    (workspace / "pixi.toml").write_text(
        '[workspace]\nname = "big"\nplatforms = ["linux-64"]\n\n'
        '[feature.bulky.dependencies]\nbulky = "*"\n[feature.medium.dependencies]\nmedium = "*"\n\n'
        '[environments]\nbulky = ["bulky"]\nmedium = ["medium"]\n'
    )
    with ChannelServer(root / "channel") as server:
        lock_workspace(workspace, server.url)
        yield workspace, server


def _pack(
    workspace: Path, env: str, out: Path, *extra: object, check: bool = False
) -> subprocess.CompletedProcess[bytes]:
    return run("pixi-pack", workspace, "-e", env, "-p", "linux-64", "-o", out, *extra, check=check)


@pytest.mark.parametrize("env", ["bulky", "medium"], ids=["while downloading", "while writing the tar"])
def test_full_disk_while_packing(env: str, big_world: tuple[Path, ChannelServer], small_disk: Path) -> None:
    workspace, _ = big_world
    line = error_line(_pack(workspace, env, small_disk / "environment.tar"))
    assert "No space left on device" in line, line
    assert list(small_disk.iterdir()) == [], "the full disk kept a partial pack or staging folder"


def test_full_disk_keeps_the_cache_verified_and_a_rerun_uses_it(
    big_world: tuple[Path, ChannelServer], small_disk: Path, tmp_path: Path
) -> None:
    workspace, server = big_world
    cache = tmp_path / "cache"
    error_line(_pack(workspace, "bulky", small_disk / "environment.tar", "--use-cache", cache))
    assert list(small_disk.iterdir()) == []
    hashes = _hashes(workspace, "bulky")
    assert assert_cache_is_verified(cache, hashes) == set(hashes)
    downloads = server.log.count(".conda")
    _pack(workspace, "bulky", tmp_path / "environment.tar", "--use-cache", cache, check=True)
    assert server.log.count(".conda") == downloads, "the re-run downloaded again what the cache held"


def test_full_disk_while_unpacking(
    big_world: tuple[Path, ChannelServer], small_disk: Path, tmp_path: Path
) -> None:
    if host_platform() != "linux-64":
        pytest.skip("the packs are made for linux-64")
    workspace, _ = big_world
    pack = tmp_path / "environment.tar"
    _pack(workspace, "bulky", pack, check=True)
    line = error_line(run("pixi-unpack", pack, "-o", small_disk / "out", check=False))
    assert "No space left on device" in line, line
    assert list(small_disk.iterdir()) == [], "the full disk kept a half-made environment"


def _hashes(workspace: Path, environment: str) -> dict[str, str]:
    import rattler

    env = rattler.LockFile.from_path(workspace / "pixi.lock").environment(environment)
    assert env is not None
    return {
        f"{r.subdir}/{r.file_name}": r.sha256.hex()
        for platform, packages in env.packages_by_platform().items()
        for r in (p.repo_data_record() for p in packages)  # type: ignore[union-attr]
        if platform.name == "linux-64"
    }
