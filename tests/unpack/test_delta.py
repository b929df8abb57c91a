"""Delta packs end to end: ``pixi-pack --since OLD`` and ``pixi-unpack DELTA`` updating an environment.

The new world is the demo channel plus libgreet 2.2 (a changed library) and hello-new (a new
program); the new ``prod`` environment drops activate-demo. The base is the demo's prod pack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import gone_pid, needs_linux64, pack_prod, run
from pypi_world import PythonWorld, needs_host_python

from pixi_pack_ext.testing.world import ChannelServer, index_channel, write_lock

pytestmark = needs_linux64


def _assemble(
    channel: Path, name: str, version: str, platform: str, files: dict[str, str], depends: list[str]
) -> None:
    from rattler_build import assemble_package

    staging = channel / f".files-{name}"
    for relative, text in files.items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative.startswith("bin/"):
            path.chmod(0o755)
    assemble_package(
        name=name,
        version=version,
        target_platform="linux-64",
        build_string="h0_0",
        output_dir=channel / platform,
        files_dir=staging,
        depends=depends,
        noarch="generic" if platform == "noarch" else None,
    )
    shutil.rmtree(staging)


def add_libgreet_22(channel: Path) -> None:
    """The changed package of the delta worlds: libgreet 2.1 -> 2.2 (linux-64)."""
    _assemble(
        channel,
        "libgreet",
        "2.2",
        "linux-64",
        {"share/libgreet/platform.txt": "libgreet 2.2 for linux-64\n"},
        ["greeting-data >=1.0"],
    )


@pytest.fixture(scope="module")
def new_server(channel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChannelServer]:
    channel = tmp_path_factory.mktemp("delta-world") / "channel"
    shutil.copytree(channel_dir, channel)
    add_libgreet_22(channel)
    _assemble(
        channel,
        "hello-new",
        "1.0",
        "noarch",
        {"bin/hello-new": "#!/bin/sh\necho hello-new 1.0\n"},
        ["hello-bin"],
    )
    index_channel(channel)
    with ChannelServer(channel) as server:
        yield server


@pytest.fixture(scope="module")
def new_workspace(
    new_server: ChannelServer, workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("ws-new")
    shutil.copy(workspace / "pixi.toml", folder / "pixi.toml")
    write_lock(folder / "pixi.lock", new_server.url, {"prod": ["hello-bin", "hello-new"]}, ["linux-64"])
    return folder


@pytest.fixture(scope="module")
def delta_tar(new_workspace: Path, prod_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("delta") / "delta.tar"
    pack_prod(new_workspace, out, "--since", prod_tar)
    return out


def _tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its content hash (files), target (links) or mode (folders)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest() + f" {path.stat().st_mode:o}"
    return found


def _unpacked_base(prod_tar: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    run("pixi-unpack", prod_tar, "-o", out)
    return out


def _names(tar: Path) -> list[str]:
    with tarfile.open(tar) as archive:
        return sorted(m.name for m in archive.getmembers() if m.isfile())


def test_delta_holds_only_what_changed(delta_tar: Path, prod_tar: Path) -> None:
    names = _names(delta_tar)
    packages = [n for n in names if n.endswith((".conda", ".tar.bz2"))]
    assert sorted(Path(n).name.split("-h0_0")[0] for n in packages) == ["hello-new-1.0", "libgreet-2.2"]
    assert delta_tar.stat().st_size < prod_tar.stat().st_size
    with tarfile.open(delta_tar) as archive:
        yml = archive.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    assert "hello-bin=1.0" in yml and "hello-new=1.0" in yml and "activate-demo" not in yml


def test_delta_updates_the_environment(delta_tar: Path, prod_tar: Path, tmp_path: Path) -> None:
    out = _unpacked_base(prod_tar, tmp_path)
    env = out / "env"
    assert (env / "etc/conda/activate.d/activate-demo.sh").is_file()
    run("pixi-unpack", delta_tar, "-o", out)
    assert subprocess.run([env / "bin/hello-new"], capture_output=True, text=True).stdout == "hello-new 1.0\n"
    assert subprocess.run([env / "bin/hello"], capture_output=True, text=True).stdout.strip() == (
        f"hello-bin prefix={env}"
    )
    assert (env / "share/libgreet/platform.txt").read_text() == "libgreet 2.2 for linux-64\n"
    assert not (env / "etc/conda/activate.d/activate-demo.sh").exists()
    assert not list((env / "conda-meta").glob("activate-demo-*.json"))
    assert [p.name for p in (env / "conda-meta").glob("libgreet-*.json")] == ["libgreet-2.2-h0_0.json"]
    assert (out / "activate.sh").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_delta_applied_twice_is_refused(delta_tar: Path, prod_tar: Path, tmp_path: Path) -> None:
    out = _unpacked_base(prod_tar, tmp_path)
    run("pixi-unpack", delta_tar, "-o", out)
    before = _tree(out)
    again = run("pixi-unpack", delta_tar, "-o", out, check=False)
    assert again.returncode != 0
    assert "already applied" in again.stderr.decode()
    assert "Traceback" not in again.stderr.decode()
    assert _tree(out) == before


def test_delta_on_the_wrong_base_is_refused(delta_tar: Path, workspace: Path, tmp_path: Path) -> None:
    default_pack = tmp_path / "default.tar"
    run("pixi-pack", workspace, "-e", "default", "-p", "linux-64", "-o", default_pack)
    out = tmp_path / "out"
    run("pixi-unpack", default_pack, "-o", out)
    before = _tree(out)
    refused = run("pixi-unpack", delta_tar, "-o", out, check=False)
    message = refused.stderr.decode()
    assert refused.returncode != 0
    assert "is not the environment this delta was made for" in message
    assert "lacks activate-demo=0.3" in message
    assert _tree(out) == before


def test_delta_into_no_environment_is_refused(delta_tar: Path, tmp_path: Path) -> None:
    refused = run("pixi-unpack", delta_tar, "-o", tmp_path / "nothing", check=False)
    assert refused.returncode != 0
    assert "a delta pack only updates one" in refused.stderr.decode()
    assert not (tmp_path / "nothing").exists()


def test_a_failure_mid_update_leaves_the_environment_as_it_was(
    delta_tar: Path, prod_tar: Path, tmp_path: Path
) -> None:
    out = _unpacked_base(prod_tar, tmp_path)
    env = out / "env"
    # A file where hello-new's bin/hello-new goes, as a folder: rattler unlinks the old packages,
    # links some new files and then fails.
    (env / "bin" / "hello-new").mkdir()
    (env / "bin" / "hello-new" / "keep.txt").write_text("mine\n")
    before = _tree(out)
    failed = run("pixi-unpack", delta_tar, "-o", out, check=False)
    assert failed.returncode != 0
    assert "left as it was" in failed.stderr.decode()
    assert "Traceback" not in failed.stderr.decode()
    assert _tree(out) == before
    assert subprocess.run([env / "bin/hello"], capture_output=True, text=True).stdout.strip() == (
        f"hello-bin prefix={env}"
    )


def test_a_corrupt_package_in_the_delta_changes_nothing(
    delta_tar: Path, prod_tar: Path, tmp_path: Path
) -> None:
    from conftest import damage_package

    damaged = damage_package(delta_tar, tmp_path / "damaged.tar", "libgreet")
    out = _unpacked_base(prod_tar, tmp_path)
    before = _tree(out)
    failed = run("pixi-unpack", damaged, "-o", out, check=False)
    assert failed.returncode != 0
    assert "is corrupt" in failed.stderr.decode()
    assert _tree(out) == before


def test_a_killed_update_is_rolled_back_by_the_next_run(
    delta_tar: Path, prod_tar: Path, tmp_path: Path
) -> None:
    from pixi_pack_ext.unpack.journal import OWNER_FILE, PrefixJournal

    out = _unpacked_base(prod_tar, tmp_path)
    env = out / "env"
    # What a run killed halfway leaves: a complete journal, and an environment half changed.
    journal = PrefixJournal(env)
    journal.begin(outside=sorted(out.glob("activate.*")))
    (journal.folder / OWNER_FILE).write_text(f"{gone_pid()} {os.readlink('/proc/self/ns/pid')}\n")
    for meta in (env / "conda-meta").glob("libgreet-*.json"):
        meta.unlink()
    (env / "share/libgreet/platform.txt").unlink()
    (env / "share/libgreet/new.txt").write_text("half\n")
    (out / "activate.sh").write_text("broken\n")
    # The next run restores the environment first, then applies the delta to it.
    run("pixi-unpack", delta_tar, "-o", out)
    assert (env / "share/libgreet/platform.txt").read_text() == "libgreet 2.2 for linux-64\n"
    assert not (env / "share/libgreet/new.txt").exists()
    assert not journal.folder.exists()


def test_rollback_restores_every_byte(prod_tar: Path, tmp_path: Path) -> None:
    from pixi_pack_ext.unpack.journal import PrefixJournal

    out = _unpacked_base(prod_tar, tmp_path)
    env = out / "env"
    before = _tree(out)
    journal = PrefixJournal(env)
    journal.begin(outside=[out / "activate.sh"])
    shutil.rmtree(env / "share")
    (env / "bin" / "hello").unlink()
    (env / "bin" / "hello").write_text("replaced\n")
    (env / "lib" / "extra").mkdir(parents=True)
    (env / "lib" / "extra" / "x").write_text("x")
    (env / "bin" / "hello-script").unlink()
    (env / "bin" / "hello-script").mkdir()  # a folder where a file was
    (env / "bin" / "hello-script" / "x").write_text("x")
    (out / "activate.sh").write_text("changed\n")
    journal.rollback()
    assert _tree(out) == before


def test_since_accepts_a_lock_and_an_installed_environment(
    new_workspace: Path, workspace: Path, prod_tar: Path, tmp_path: Path
) -> None:
    from_lock = tmp_path / "from-lock.tar"
    pack_prod(new_workspace, from_lock, "--since", workspace / "pixi.lock")
    out = _unpacked_base(prod_tar, tmp_path)
    from_env = tmp_path / "from-env.tar"
    pack_prod(new_workspace, from_env, "--since", out / "env")
    assert _names(from_lock) == _names(from_env)
    run("pixi-unpack", from_env, "-o", out)
    assert (out / "env/bin/hello-new").is_file()


def test_since_the_same_environment_is_refused(workspace: Path, prod_tar: Path, tmp_path: Path) -> None:
    result = pack_prod(workspace, tmp_path / "d.tar", "--since", prod_tar, check=False)
    assert result.returncode != 0
    assert "nothing changed since" in result.stderr.decode()
    assert not (tmp_path / "d.tar").exists()


def test_a_reader_of_format_1_refuses_a_delta(delta_tar: Path, tmp_path: Path) -> None:
    refused = run("pixi-unpack", "-", "-o", tmp_path / "o", input=delta_tar.read_bytes(), check=False)
    assert refused.returncode != 0
    assert "this is a delta pack" in refused.stderr.decode()


@needs_host_python
def test_delta_updates_the_pypi_packages(py_world: PythonWorld, tmp_path: Path) -> None:
    base_ws = py_world.lock(
        tmp_path / "base", specs=["python"], pypi=[py_world.entry("greet-cli"), py_world.entry("greet-two")]
    )
    new_ws = py_world.lock(
        tmp_path / "new", specs=["python"], pypi=[py_world.entry("greet-cli"), py_world.entry("greet-local")]
    )
    full, delta = tmp_path / "full.tar", tmp_path / "delta.tar"
    run("pixi-pack", base_ws, "-p", "linux-64", "-o", full)
    run("pixi-pack", new_ws, "-p", "linux-64", "--since", full, "-o", delta)
    assert [n for n in _names(delta) if not n.endswith("repodata.json")] == [
        "environment.yml",
        "pixi-pack-manifest.json",
        "pixi-pack.json",
        f"pypi/{py_world.wheels['greet-local'].name}",
        "sbom.cdx.json",
    ]
    out = tmp_path / "out"
    run("pixi-unpack", full, "-o", out)
    env = out / "env"
    site = env / "lib" / f"python{py_world.python.short_version}" / "site-packages"
    assert (site / "greet_two").is_dir()
    run("pixi-unpack", delta, "-o", out)
    probe = subprocess.run(
        [env / "bin/python", "-c", "import greet_local, greet_cli; print(greet_local.VALUE)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "local", probe.stderr
    assert not (site / "greet_two").exists()
    assert not list(site.glob("greet_two-*.dist-info"))
    assert subprocess.run([env / "bin/greet"], capture_output=True, text=True).stdout.strip() == (
        f"greet prefix={env}"
    )


def test_a_delta_that_does_not_make_its_target_is_refused(
    new_workspace: Path, prod_tar: Path, tmp_path: Path
) -> None:
    import json

    from pixi_pack_ext.package_set import PackageSet

    folder = tmp_path / "delta-folder"
    pack_prod(new_workspace, folder, "--since", prod_tar, "--directory-only")
    data = json.loads((folder / "pixi-pack.json").read_text())
    lines = [*data["delta"]["target-packages"], "conda extra=1.0=h0_0 " + "0" * 64]
    data["delta"]["target-packages"] = lines
    data["delta"]["target"] = PackageSet.of(lines).digest
    (folder / "pixi-pack.json").write_text(json.dumps(data))
    (folder / "pixi-pack-manifest.json").unlink()  # else the manifest refuses the changed file first
    out = _unpacked_base(prod_tar, tmp_path)
    before = _tree(out)
    refused = run("pixi-unpack", folder, "-o", out, check=False)
    assert refused.returncode != 0
    assert "does not make the environment" in refused.stderr.decode()
    assert "lacks extra=1.0=h0_0" in refused.stderr.decode()
    assert _tree(out) == before


def test_since_a_pack_of_several_environments(
    new_workspace: Path, workspace: Path, delta_tar: Path, tmp_path: Path
) -> None:
    multi = tmp_path / "multi.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", multi)
    delta = tmp_path / "delta.tar"
    pack_prod(new_workspace, delta, "--since", multi)
    assert _names(delta) == _names(delta_tar)
    out = tmp_path / "out"
    run("pixi-unpack", multi, "--environment", "prod", "-o", out)
    run("pixi-unpack", delta, "-o", out)
    assert (out / "env/bin/hello-new").is_file()


def test_an_update_killed_with_sigkill_is_restored(delta_tar: Path, prod_tar: Path, tmp_path: Path) -> None:
    import signal
    import time

    from conftest import cli

    from pixi_pack_ext.unpack.journal import COMPLETE, journal_folder, recover

    out = _unpacked_base(prod_tar, tmp_path)
    env = out / "env"
    before = _tree(out)
    marker = journal_folder(env) / COMPLETE
    process = subprocess.Popen([cli("pixi-unpack"), delta_tar, "-o", out, "-q"])
    deadline = time.monotonic() + 60
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    if process.poll() is not None:
        pytest.skip("the update finished before it could be killed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert journal_folder(env).is_dir()
    assert recover(env)  # what the next pixi-unpack of a delta does first
    # The killed run's staging folder is left (the next run removes it); the rest is as it was.
    assert {k: v for k, v in _tree(out).items() if not k.startswith(".pixi-unpack-")} == before
    run("pixi-unpack", delta_tar, "-o", out)
    assert (env / "bin/hello-new").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
