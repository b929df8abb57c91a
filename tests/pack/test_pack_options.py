"""The pack side of the core as a user meets it: locks v6/v7, platforms, cache, checksums, reproducibility."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import host_platform, make_workspace, needs_linux64, pack_prod, run

from pixi_pack_ext.testing.python import sha256_of
from pixi_pack_ext.testing.world import ChannelServer


def members(pack: Path) -> list[str]:
    with tarfile.open(pack) as tar:
        return sorted(tar.getnames())


def test_v6_and_v7_locks_give_the_same_pack(workspace: Path, workspace_v6: Path, tmp_path: Path) -> None:
    assert "version: 6" in (workspace_v6 / "pixi.lock").read_text()
    assert "version: 7" in (workspace / "pixi.lock").read_text()
    a, b = tmp_path / "v7.tar", tmp_path / "v6.tar"
    pack_prod(workspace, a)
    pack_prod(workspace_v6 / "pixi.toml", b)
    assert sha256_of(a) == sha256_of(b)


def test_two_packs_are_byte_identical_with_and_without_cache(workspace: Path, tmp_path: Path) -> None:
    first, second, cached = tmp_path / "1.tar", tmp_path / "2.tar", tmp_path / "3.tar"
    pack_prod(workspace, first)
    pack_prod(workspace, second)
    pack_prod(workspace, cached, "--use-cache", tmp_path / "cache")
    assert sha256_of(first) == sha256_of(second) == sha256_of(cached)


@pytest.mark.parametrize("platform", ["win-64", "osx-arm64", "linux-64"])
def test_cross_platform_packs(workspace: Path, tmp_path: Path, platform: str) -> None:
    pack = tmp_path / f"{platform}.tar"
    run("pixi-pack", workspace, "-p", platform, "-o", pack)
    names = members(pack)
    assert f"channel/{platform}/repodata.json" in names
    assert "channel/noarch/repodata.json" in names
    assert any(re.fullmatch(rf"channel/{platform}/hello-bin-1\.0-.*\.conda", n) for n in names)
    with tarfile.open(pack) as tar:
        assert f'"platform": "{platform}"' in tar.extractfile("pixi-pack.json").read().decode()  # type: ignore[union-attr]


def test_default_output_is_environment_tar_in_cwd(workspace: Path, tmp_path: Path) -> None:
    run("pixi-pack", workspace, "-p", "linux-64", cwd=tmp_path)
    assert (tmp_path / "environment.tar").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["environment.tar"]


def test_unknown_environment_lists_the_known_ones(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "-e", "nope", "-o", tmp_path / "x.tar", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "environment 'nope'" in err and "default, prod" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_platform_lists_the_locked_ones(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "-p", "linux-ppc64le", "-o", tmp_path / "x.tar", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "linux-ppc64le" in err and "linux-64, osx-arm64, win-64" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_and_malformed_lock(tmp_path: Path) -> None:
    result = run("pixi-pack", tmp_path / "missing", check=False)
    assert result.returncode != 0 and "does not exist" in result.stderr.decode()
    (tmp_path / "pixi.toml").write_text("[workspace]\n")
    result = run("pixi-pack", tmp_path, check=False)
    assert result.returncode != 0 and "pixi lock" in result.stderr.decode()
    (tmp_path / "pixi.lock").write_text("version: 7\nenvironments: [oops\n")
    result = run("pixi-pack", tmp_path, "-o", tmp_path / "out.tar", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "not a readable pixi lock file" in err and "Traceback" not in err
    assert not (tmp_path / "out.tar").exists()


def test_a_lock_newer_than_we_read_says_to_update(workspace: Path, tmp_path: Path) -> None:
    """A real lock with its version raised past what rattler reads: the error names both versions
    and the fix (regenerating with pixi would write the same version)."""
    text = (workspace / "pixi.lock").read_text()
    assert text.startswith("version: 7\n")
    (tmp_path / "pixi.lock").write_text(text.replace("version: 7\n", "version: 99\n", 1))
    result = run("pixi-pack", tmp_path / "pixi.lock", "-o", tmp_path / "out.tar", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "pixi lock format version 99" in err and "versions 1 to 7" in err, err
    assert "update pixi-pack-ext" in err, err
    assert not (tmp_path / "out.tar").exists()


def test_output_to_stdout_round_trips_through_stdin(workspace: Path, tmp_path: Path) -> None:
    packed = run("pixi-pack", workspace, "-e", "prod", "-o", "-")
    assert packed.stdout[:512].find(b"pixi-pack-manifest.json") >= 0  # the manifest leads
    file_pack = tmp_path / "file.tar"
    run("pixi-pack", workspace, "-e", "prod", "-o", file_pack)
    assert packed.stdout == file_pack.read_bytes()
    if host_platform() == "linux-64":
        out = tmp_path / "out"
        run("pixi-unpack", "-", "-o", out, input=packed.stdout)
        assert (out / "env" / "bin" / "hello").is_file()
        assert (out / "activate.sh").is_file()


def test_cache_hit_needs_no_server_and_corrupt_entry_is_refetched(channel_dir: Path, tmp_path: Path) -> None:
    with ChannelServer(channel_dir) as server:
        ws = make_workspace(tmp_path / "ws", server.url)
        cache = tmp_path / "cache"
        pack_prod(ws, tmp_path / "cold.tar", "--use-cache", cache)
        assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
        cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.conda"))
        assert any(c.startswith("linux-64/hello-bin-") for c in cached)
        before = server.log.count()

        pack_prod(ws, tmp_path / "warm.tar", "--use-cache", cache)
        assert server.log.count() == before  # every package came from the cache

        victim = next(cache.glob("linux-64/hello-bin-*.conda"))
        victim.write_bytes(b"corrupted" + victim.read_bytes()[9:])
        pack_prod(ws, tmp_path / "healed.tar", "--use-cache", cache)
        assert server.log.count() == before + 1  # only the corrupt entry was fetched again
        assert sha256_of(tmp_path / "healed.tar") == sha256_of(tmp_path / "cold.tar")
        assert not list(cache.rglob("*.part"))


def test_checksum_mismatch_fails_and_names_package_url_and_hashes(channel_dir: Path, tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(channel_dir, channel)
    with ChannelServer(channel) as server:
        ws = make_workspace(tmp_path / "ws", server.url)
        victim = next(channel.glob("linux-64/libgreet-*.conda"))
        good = sha256_of(victim)
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size: the hash, not the size bound, must catch it
        victim.write_bytes(bytes(data))
        out = tmp_path / "out"
        out.mkdir()
        result = run("pixi-pack", ws, "-p", "linux-64", "-o", out / "environment.tar", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "libgreet=2.1=" in err and victim.name in err and good in err and sha256_of(victim) in err
    assert list(out.iterdir()) == []  # nothing half-written, no staging folder left


@needs_linux64
def test_unpack_refuses_a_pack_for_another_platform(workspace: Path, tmp_path: Path) -> None:
    pack = tmp_path / "win.tar"
    run("pixi-pack", workspace, "-p", "win-64", "-o", pack)
    out = tmp_path / "out"
    result = run("pixi-unpack", pack, "-o", out, check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "win-64" in err and "linux-64" in err
    assert not out.exists()


@needs_linux64
def test_existing_env_needs_force(workspace: Path, tmp_path: Path) -> None:
    pack = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-o", pack)
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "keep.txt").write_text("mine")
    result = run("pixi-unpack", pack, "-o", out, check=False)
    assert result.returncode != 0 and "--force" in result.stderr.decode()
    assert (out / "env" / "keep.txt").read_text() == "mine"
    run("pixi-unpack", pack, "-o", out, "--force")
    assert not (out / "env" / "keep.txt").exists() and (out / "env" / "bin" / "hello").is_file()


@needs_linux64
@pytest.mark.parametrize(
    ("shell", "name", "needle"),
    [
        ("bash", "activate.sh", "export CONDA_PREFIX="),
        ("zsh", "activate.zsh", "export CONDA_PREFIX="),
        ("fish", "activate.fish", "set -gx CONDA_PREFIX"),
        ("xonsh", "activate.xsh", "CONDA_PREFIX"),
        ("powershell", "activate.ps1", "CONDA_PREFIX"),
        ("cmd", "activate.bat", "CONDA_PREFIX="),
        ("nushell", "activate.nu", "$env.CONDA_PREFIX"),
    ],
)
def test_activation_script_for_each_shell(
    workspace: Path, tmp_path: Path, shell: str, name: str, needle: str
) -> None:
    pack = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-o", pack)
    out = tmp_path / "out"
    run("pixi-unpack", pack, "-o", out, "-e", "myenv", "-s", shell)
    script = (out / name).read_text()
    assert needle in script and str(out / "myenv") in script
