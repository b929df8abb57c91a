"""Before installing, pixi-unpack compares the virtual packages the environment needs (from its
records' depends and the lock's platform) with this machine's: an unmet one is refused with a line
naming it and both versions, unless --ignore-virtual-packages."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import host_platform, run

from pixi_pack_ext.testing.world import ChannelServer, build_channel, write_lock
from pixi_pack_ext.unpack.virtual_packages import host_virtual_packages

from .hostile import error_line, snapshot

pytestmark = pytest.mark.skipif(host_platform() != "linux-64", reason="the checks compare against glibc")

RECIPES = {
    "needs-glibc": "__glibc >=99",
    "needs-cuda": "__cuda >=12",
    "plain": None,
}
#: What the lock was solved for: newer than any real glibc, and a CUDA driver.
LOCK_VIRTUAL_PACKAGES = ["__glibc=99", "__cuda=12.0"]


def _recipe(name: str, requirement: str | None) -> str:
    run_requirements = f"requirements:\n  run:\n    - {requirement}\n" if requirement else ""
    return (
        f'package:\n  name: {name}\n  version: "1.0"\n'
        "build:\n  noarch: generic\n  script:\n"
        f"    - mkdir -p $PREFIX/share/{name} && echo ok > $PREFIX/share/{name}/ok.txt\n"
        f"{run_requirements}"
    )


@pytest.fixture(scope="module")
def env_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A channel of packages needing virtual packages, and workspaces locked (v7 and v6) against it."""
    root = tmp_path_factory.mktemp("env-world")
    recipes = root / "recipes"
    for name, requirement in RECIPES.items():
        (recipes / name).mkdir(parents=True)
        (recipes / name / "recipe.yaml").write_text(_recipe(name, requirement))
    build_channel(recipes, root / "channel")
    environments = {name.removeprefix("needs-"): [name] for name in RECIPES}
    with ChannelServer(root / "channel") as server:
        workspaces = {}
        for version in (6, 7):
            workspace = root / f"ws{version}"
            workspace.mkdir()
            (workspace / "pixi.toml").write_text('[workspace]\nname = "env"\nplatforms = ["linux-64"]\n')
            write_lock(
                workspace / "pixi.lock",
                server.url,
                environments,
                ["linux-64"],
                version=version,
                virtual_packages={"linux-64": LOCK_VIRTUAL_PACKAGES},
            )
            workspaces[f"v{version}"] = workspace
        packs = {}
        for version, workspace in workspaces.items():
            for environment in environments:
                pack = root / f"{environment}-{version}.tar"
                run("pixi-pack", workspace, "-e", environment, "-p", "linux-64", "-o", pack)
                packs[f"{environment}-{version}"] = pack
    yield packs


def _host_version(name: str) -> str:
    return str(host_virtual_packages()[name].version)


def _unpack(pack: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run("pixi-unpack", pack, "-o", tmp_path / "out", *extra, env=env, check=False)


def test_record_needing_a_newer_glibc_is_refused(env_world: dict[str, Path], tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    result = _unpack(env_world["glibc-v6"], tmp_path)
    line = error_line(result)
    assert "needs __glibc >=99 (package 'needs-glibc')" in line, line
    assert f"this machine has __glibc {_host_version('__glibc')}" in line, line
    assert "--ignore-virtual-packages" in line and "CONDA_OVERRIDE_GLIBC" in line
    assert snapshot(tmp_path) == before


def test_ignore_virtual_packages_installs_anyway(env_world: dict[str, Path], tmp_path: Path) -> None:
    run("pixi-unpack", env_world["glibc-v6"], "-o", tmp_path / "out", "--ignore-virtual-packages")
    assert (tmp_path / "out" / "env" / "share" / "needs-glibc" / "ok.txt").read_text() == "ok\n"


def test_conda_override_corrects_the_detection(env_world: dict[str, Path], tmp_path: Path) -> None:
    run("pixi-unpack", env_world["glibc-v6"], "-o", tmp_path / "out", env={"CONDA_OVERRIDE_GLIBC": "99.1"})
    assert (tmp_path / "out" / "env" / "share" / "needs-glibc" / "ok.txt").is_file()


def test_missing_cuda_is_named(env_world: dict[str, Path], tmp_path: Path) -> None:
    result = _unpack(env_world["cuda-v6"], tmp_path, env={"CONDA_OVERRIDE_CUDA": ""})
    line = error_line(result)
    assert "needs __cuda >=12 (package 'needs-cuda') but this machine has no __cuda" in line, line
    assert not (tmp_path / "out").exists()


def test_old_cuda_names_both_versions(env_world: dict[str, Path], tmp_path: Path) -> None:
    result = _unpack(env_world["cuda-v6"], tmp_path, env={"CONDA_OVERRIDE_CUDA": "11.8"})
    assert "needs __cuda >=12 (package 'needs-cuda') but this machine has __cuda 11.8" in error_line(result)
    run("pixi-unpack", env_world["cuda-v6"], "-o", tmp_path / "ok", env={"CONDA_OVERRIDE_CUDA": "12.4"})


def test_lock_virtual_packages_travel_in_the_pack(env_world: dict[str, Path], tmp_path: Path) -> None:
    """The lock's platform virtual packages are an optional extra field of format "1"."""
    with tarfile.open(env_world["plain-v7"]) as tar:
        metadata = json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]
    assert metadata["version"] == "1" and metadata["platform"] == "linux-64"
    assert metadata["virtual-packages"] == LOCK_VIRTUAL_PACKAGES
    with tarfile.open(env_world["plain-v6"]) as tar:  # v6 locks have none: the field is left out
        assert "virtual-packages" not in json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]


def test_lock_virtual_packages_are_checked(env_world: dict[str, Path], tmp_path: Path) -> None:
    """``plain`` needs nothing itself, but the lock was solved for glibc 99 and CUDA 12."""
    result = _unpack(env_world["plain-v7"], tmp_path)
    line = error_line(result)
    assert "needs __glibc >=99 (the lock)" in line, line
    assert f"this machine has __glibc {_host_version('__glibc')}" in line
    assert not (tmp_path / "out").exists()
    overrides = {"CONDA_OVERRIDE_GLIBC": "99", "CONDA_OVERRIDE_CUDA": "12.0"}
    run("pixi-unpack", env_world["plain-v7"], "-o", tmp_path / "ok", env=overrides)
    run("pixi-unpack", env_world["plain-v7"], "-o", tmp_path / "ignored", "--ignore-virtual-packages")
