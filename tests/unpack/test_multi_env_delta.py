"""Delta packs of several environments: ``pixi-pack -e default -e prod --since OLD`` and
``pixi-unpack DELTA --environment NAME`` / ``--all`` updating the installed environments in place.

The old pack holds the demo's ``default`` and ``prod``; in the new world libgreet 2.2 exists,
``prod`` takes it and ``default`` keeps 2.1: one package of one environment changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import damage_package, needs_linux64, run

from pixi_pack_ext.testing.world import ChannelServer, index_channel, write_lock

from .test_delta import _tree, add_libgreet_22

pytestmark = needs_linux64

BOTH = ("-e", "default", "-e", "prod", "-p", "linux-64")


@pytest.fixture(scope="module")
def old_pack(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi-old") / "v1.tar"
    run("pixi-pack", workspace, *BOTH, "-o", out)
    return out


@pytest.fixture(scope="module")
def new_workspace(
    channel_dir: Path, workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("multi-delta-world")
    channel = root / "channel"
    shutil.copytree(channel_dir, channel)
    add_libgreet_22(channel)
    index_channel(channel)
    with ChannelServer(channel) as server:
        folder = root / "ws"
        folder.mkdir()
        shutil.copy(workspace / "pixi.toml", folder / "pixi.toml")
        environments = {"default": ["hello-bin", "libgreet 2.1.*"], "prod": ["hello-bin", "activate-demo"]}
        write_lock(folder / "pixi.lock", server.url, environments, ["linux-64"])
        yield folder


@pytest.fixture(scope="module")
def delta(new_workspace: Path, old_pack: Path) -> Path:
    out = old_pack.parent / "delta.tar"
    run("pixi-pack", new_workspace, *BOTH, "--since", old_pack, "-o", out)
    return out


def _members(tar: Path) -> list[str]:
    with tarfile.open(tar) as archive:
        return sorted(m.name for m in archive.getmembers() if m.isfile())


def _read(tar: Path, name: str) -> str:
    with tarfile.open(tar) as archive:
        return archive.extractfile(name).read().decode()  # type: ignore[union-attr]


def _hello(prefix: Path) -> str:
    return subprocess.run([prefix / "bin/hello"], capture_output=True, text=True, check=True).stdout.strip()


def _libgreet(prefix: Path) -> str:
    return (prefix / "share/libgreet/platform.txt").read_text()


def _error_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    assert result.returncode != 0
    return [line for line in result.stderr.decode().splitlines() if line.strip()]


def test_the_delta_holds_only_what_changed_and_each_base(
    delta: Path, old_pack: Path, new_workspace: Path, tmp_path: Path
) -> None:
    packages = [n for n in _members(delta) if n.endswith((".conda", ".tar.bz2"))]
    assert packages == ["channel/linux-64/libgreet-2.2-h0_0.conda"]
    data = json.loads(_read(delta, "pixi-pack.json"))
    assert data["version"] == "2" and sorted(data["environments"]) == ["default", "prod"]
    prod, default = data["environments"]["prod"]["linux-64"], data["environments"]["default"]["linux-64"]
    assert prod["conda"] == packages and default["conda"] == []
    assert default["delta"]["base"] == default["delta"]["target"]
    # Each environment's base is its package set in OLD, as a delta of that environment alone says.
    single = tmp_path / "prod-delta.tar"
    run("pixi-pack", new_workspace, "-e", "prod", "-p", "linux-64", "--since", old_pack, "-o", single)
    assert prod["delta"] == json.loads(_read(single, "pixi-pack.json"))["delta"]
    assert "libgreet=2.2" in _read(delta, "environment-prod.yml")
    assert "libgreet=2.1" in _read(delta, "environment-default.yml")
    assert "files match the manifest" in run("pixi-pack", "verify", delta).stderr.decode()


def test_since_the_old_lock_or_folder_makes_the_same_delta(
    delta: Path, old_pack: Path, new_workspace: Path, workspace: Path, tmp_path: Path
) -> None:
    from_lock = tmp_path / "from-lock.tar"
    run("pixi-pack", new_workspace, *BOTH, "--since", workspace / "pixi.lock", "-o", from_lock)
    folder = tmp_path / "old-folder"
    run("pixi-pack", workspace, *BOTH, "--directory-only", "-o", folder)
    from_folder = tmp_path / "from-folder.tar"
    run("pixi-pack", new_workspace, *BOTH, "--since", folder, "-o", from_folder)
    assert from_lock.read_bytes() == delta.read_bytes() == from_folder.read_bytes()


def test_environment_updates_the_one_chosen(delta: Path, old_pack: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    run("pixi-unpack", old_pack, "--environment", "prod", "-o", site)
    env = site / "env"
    assert _libgreet(env) == "libgreet for linux-64\n"
    run("pixi-unpack", delta, "--environment", "prod", "-o", site)
    assert _libgreet(env) == "libgreet 2.2 for linux-64\n"
    assert _hello(env) == f"hello-bin prefix={env}"
    assert (env / "etc/conda/activate.d/activate-demo.sh").is_file()
    assert [p.name for p in (env / "conda-meta").glob("libgreet-*.json")] == ["libgreet-2.2-h0_0.json"]
    assert (site / "activate.sh").is_file()
    assert not [p.name for p in site.iterdir() if p.name.startswith(".")]

    before = _tree(site)
    again = run("pixi-unpack", delta, "--environment", "prod", "-o", site, check=False)
    assert _error_lines(again) == [f"error: this delta is already applied: '{env}' has its packages"]
    assert _tree(site) == before
    unchosen = run("pixi-unpack", delta, "-o", site, check=False)
    assert _error_lines(unchosen) == [
        "error: the pack holds the environments default, prod; choose one with --environment NAME, "
        "or install each with --all"
    ]
    assert _tree(site) == before


def test_all_updates_each_environment(delta: Path, old_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    run("pixi-unpack", old_pack, "--all", "-o", out)
    default_before = _tree(out / "default")
    result = run("pixi-unpack", delta, "--all", "-o", out)
    assert result.stderr.decode().strip() == f"unpacked the environment into {out / 'prod'}"
    assert _libgreet(out / "prod") == "libgreet 2.2 for linux-64\n"
    assert _tree(out / "default") == default_before  # its packages did not change
    assert sorted(p.name for p in out.iterdir()) == [
        "activate-default.sh",
        "activate-prod.sh",
        "default",
        "prod",
    ]
    for name in ("default", "prod"):
        assert _hello(out / name) == f"hello-bin prefix={out / name}"
    sourced = subprocess.run(
        ["bash", "-c", f". {out / 'activate-prod.sh'} && hello"], capture_output=True, text=True, check=True
    )
    assert sourced.stdout.strip() == f"hello-bin prefix={out / 'prod'}"

    before = _tree(out)
    again = run("pixi-unpack", delta, "--all", "-o", out, check=False)
    assert _error_lines(again) == [
        f"error: this delta is already applied: each environment in '{out}' has its packages"
    ]
    assert _tree(out) == before


def test_the_wrong_base_is_refused_saying_what_differs(delta: Path, old_pack: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    run("pixi-unpack", old_pack, "--environment", "default", "-o", site)  # default where prod belongs
    before = _tree(site)
    refused = run("pixi-unpack", delta, "--environment", "prod", "-o", site, check=False)
    assert _error_lines(refused) == [
        f"error: '{site / 'env'}' is not the environment 'prod' this delta was made for: "
        "it lacks activate-demo=0.3=h4616a5c_0"
    ]
    assert _tree(site) == before

    out = tmp_path / "all"  # --all: prod is checked before default is touched, and the other way round
    run("pixi-unpack", old_pack, "--all", "-o", out)
    shutil.rmtree(out / "prod")
    shutil.copytree(out / "default", out / "prod", symlinks=True)
    before = _tree(out)
    refused = run("pixi-unpack", delta, "--all", "-o", out, check=False)
    assert len(_error_lines(refused)) == 1 and "is not the environment 'prod'" in refused.stderr.decode()
    assert _tree(out) == before


def test_a_corrupt_package_changes_nothing(delta: Path, old_pack: Path, tmp_path: Path) -> None:
    damaged = damage_package(delta, tmp_path / "damaged.tar", "libgreet")
    out = tmp_path / "all"
    run("pixi-unpack", old_pack, "--all", "-o", out)
    before = _tree(out)
    failed = run("pixi-unpack", damaged, "--all", "-o", out, check=False)
    assert len(_error_lines(failed)) == 1 and "is corrupt" in failed.stderr.decode()
    assert _tree(out) == before


def test_a_failure_mid_update_rolls_back(delta: Path, old_pack: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    run("pixi-unpack", old_pack, "--environment", "prod", "-o", site)
    # A folder where libgreet 2.2 writes a file: rattler unlinks 2.1, links some files, then fails.
    blocker = site / "env/share/libgreet/platform.txt"
    blocker.unlink()
    blocker.mkdir()
    (blocker / "keep.txt").write_text("mine\n")
    before = _tree(site)
    failed = run("pixi-unpack", delta, "--environment", "prod", "-o", site, check=False)
    assert len(_error_lines(failed)) == 1 and "left as it was" in failed.stderr.decode()
    assert _tree(site) == before


def test_a_delta_is_never_installed_as_a_full_pack(delta: Path, tmp_path: Path) -> None:
    refused = run(
        "pixi-unpack",
        "-",
        "--environment",
        "prod",
        "-o",
        tmp_path / "o",
        input=delta.read_bytes(),
        check=False,
    )
    assert _error_lines(refused)[0].startswith("error: this is a delta pack")
    assert not (tmp_path / "o").exists()


def test_what_since_cannot_be_with_several_environments(
    new_workspace: Path, workspace: Path, old_pack: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one.tar"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", one)
    installed = tmp_path / "installed"
    run("pixi-unpack", one, "-o", installed)
    for old, reason in (
        (one, "it holds one environment"),
        (installed / "env", "it is one installed environment"),
    ):
        refused = run(
            "pixi-pack", new_workspace, *BOTH, "--since", old, "-o", tmp_path / "d.tar", check=False
        )
        assert _error_lines(refused) == [
            f"error: --since '{old}': {reason}; with several -e/-p pass an earlier pack of several "
            "environments or the pixi.lock it was made from"
        ]
    script = run("pixi-pack", new_workspace, *BOTH, "--since", old_pack, "--create-executable",
                 "-o", tmp_path / "d.sh", check=False)  # fmt: skip
    assert _error_lines(script) == [
        "error: a delta pack (--since) is written as a tar or a folder, not 'executable'; "
        "drop --since or the format option"
    ]
    same = run("pixi-pack", workspace, *BOTH, "--since", old_pack, "-o", tmp_path / "d.tar", check=False)
    assert _error_lines(same) == [
        f"error: nothing changed since '{old_pack}': each environment has the same packages"
    ]
    assert not (tmp_path / "d.tar").exists() and not (tmp_path / "d.sh").exists()


def test_an_environment_the_delta_does_not_change_is_left_alone(
    delta: Path, old_pack: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    run("pixi-unpack", old_pack, "--environment", "default", "-o", site)
    before = _tree(site)
    refused = run("pixi-unpack", delta, "--environment", "default", "-o", site, check=False)
    assert _error_lines(refused) == [
        f"error: this delta does not change environment 'default': '{site / 'env'}' has its packages"
    ]
    assert _tree(site) == before
