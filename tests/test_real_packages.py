"""Packages made elsewhere (rattler's public test data, see data/real-packages/README.md): indexed,
served on 127.0.0.1, locked with rattler, packed and unpacked like any channel's."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import host_platform, run

from pixi_pack_ext.testing.world import ChannelServer, index_channel, write_lock

REAL = Path(__file__).parent / "data" / "real-packages"
PACKAGES = sorted(p.name for p in REAL.iterdir() if p.name.endswith((".conda", ".tar.bz2")))
NAMES = ["clobber-with-symlink-a", "empty", "link-scripts", "test-package"]

pytestmark = pytest.mark.skipif(host_platform().startswith("win"), reason="the link script is a bash script")


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(the pack, the channel, the channel's URL) of an environment of all the real packages."""
    root = tmp_path_factory.mktemp("real")
    channel = root / "channel"
    (channel / "noarch").mkdir(parents=True)
    for name in PACKAGES:
        shutil.copy(REAL / name, channel / "noarch" / name)
    index_channel(channel)
    with ChannelServer(channel) as server:
        write_lock(root / "pixi.lock", server.url, {"default": NAMES}, [host_platform()])
        run("pixi-pack", root / "pixi.lock", "-o", root / "real.tar")
        yield root / "real.tar", channel, server.url


def test_the_pack_holds_the_real_packages_byte_for_byte(real_pack: tuple[Path, Path, str]) -> None:
    pack, _channel, _url = real_pack
    with tarfile.open(pack) as tar:
        packed = {
            Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name.startswith("channel/noarch/") and m.name.endswith((".conda", ".tar.bz2"))
        }
    assert sorted(packed) == PACKAGES
    for name, data in packed.items():
        assert data == (REAL / name).read_bytes(), name


def test_unpacked_they_install_as_rattler_installs_them(
    real_pack: tuple[Path, Path, str], tmp_path: Path
) -> None:
    pack, _channel, url = real_pack
    result = run("pixi-unpack", pack, "-o", tmp_path)
    prefix = tmp_path / "env"
    link = prefix / "lib" / "clobber.so"
    assert link.is_symlink() and link.read_text() == (prefix / "lib" / "clobber-2.txt").read_text()
    assert (prefix / "bin" / ".link-scripts-post-link.sh").is_file()
    assert not (prefix / "i-was-post-linked").exists()
    err = " ".join(result.stderr.decode().split())
    assert "not running the post-link scripts of link-scripts;" in err, err
    records = {
        json.loads(p.read_text())["name"]: json.loads(p.read_text())
        for p in (prefix / "conda-meta").glob("*.json")
    }
    assert sorted(records) == NAMES
    for name, record in records.items():
        assert record["url"] == f"{url}noarch/{record['fn']}" and record["channel"] == url, name


def test_their_post_link_script_runs_when_asked(real_pack: tuple[Path, Path, str], tmp_path: Path) -> None:
    pack, _channel, _url = real_pack
    result = run("pixi-unpack", pack, "-o", tmp_path, "--run-post-link-scripts")
    assert (tmp_path / "env" / "i-was-post-linked").is_file()
    assert "This is a post-link script that just ran for the recipe package." in result.stderr.decode()


def _files(prefix: Path) -> dict[str, bytes | str]:
    return {
        p.relative_to(prefix).as_posix(): str(p.readlink()) if p.is_symlink() else p.read_bytes()
        for p in sorted(prefix.rglob("*"))
        if (p.is_file() or p.is_symlink()) and not p.relative_to(prefix).as_posix().startswith("conda-meta")
    }


def test_an_installed_environment_of_them_is_repacked_without_network(
    real_pack: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """Installed by rattler (whose cache keeps extracted folders), its channel unreachable: every
    package, the conda-build ``.tar.bz2`` too, is rebuilt as a ``.conda`` that unpacks to the same files."""
    import asyncio

    import rattler

    pack, _channel, url = real_pack
    lock = rattler.LockFile.from_path(pack.parent / "pixi.lock").environment("default")
    assert lock is not None
    records = [p.repo_data_record() for p in next(iter(lock.packages_by_platform().values()))]
    prefix = tmp_path / "installed"
    asyncio.run(
        rattler.install(records, target_prefix=prefix, cache_dir=tmp_path / "cache", show_progress=False)
    )
    for path in (prefix / "conda-meta").glob("*.json"):  # the channel moved away
        path.write_text(path.read_text().replace(url, "http://127.0.0.1:9/gone/"))
    isolated = {
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "RATTLER_CACHE_DIR": "",
        "PIXI_CACHE_DIR": "",
        "CONDA_PKGS_DIRS": "",
    }
    repacked = tmp_path / "repacked.tar"
    result = run("pixi-pack", "--prefix", prefix, "-o", repacked, env={**isolated, "PIXI_PACK_RETRIES": "0"})
    assert "rebuilt 4 package(s)" in " ".join(result.stderr.decode().split())
    with tarfile.open(repacked) as tar:
        names = sorted(Path(m.name).name for m in tar.getmembers() if m.name.startswith("channel/noarch/"))
    assert "test-package-0.1-0.conda" in names and "test-package-0.1-0.tar.bz2" not in names
    trees = []
    for each in (pack, repacked):
        run("pixi-unpack", each, "-o", tmp_path / "out")
        trees.append(_files(tmp_path / "out" / "env"))
        shutil.rmtree(tmp_path / "out")
    assert trees[0] == trees[1] and "lib/clobber.so" in trees[0]
