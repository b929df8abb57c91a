"""Packs running at once on one ``--use-cache`` folder: all succeed, each file is downloaded once,
and the cache never holds a file whose hash does not match its record."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pack_checks import assert_pack_holds_channel_files

from pixi_pack_ext.testing.faulty_server import FaultyServer

from .conftest import assert_cache_is_verified, hold_hello_bin, lock_hashes, start_pack, wait_until


def start_in(folder: Path, workspace: Path, cache: Path) -> subprocess.Popen[bytes]:
    """A pack into ``folder/env.tar`` on the ``--use-cache`` folder ``cache``, in the background."""
    folder.mkdir(parents=True, exist_ok=True)
    return start_pack(
        workspace, folder / "env.tar", "--use-cache", cache, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()


def finish_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """``finish`` each one; whatever still runs when one fails is killed."""
    try:
        for process in processes:
            finish(process)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def packages_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.name.endswith((".conda", ".tar.bz2")))


def test_second_pack_waits_for_the_first_ones_download(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    held, workspace, hashes = hold_hello_bin(faulty, moved, channel_dir)
    cache = tmp_path / "cache"
    first = start_in(tmp_path / "a", workspace, cache)
    second = None
    try:
        assert wait_until(lambda: faulty.fault_log.count(held) == 1)  # the first is downloading it
        second = start_in(tmp_path / "b", workspace, cache)
        # the second has every other file and now waits for the one the first is still fetching
        assert wait_until(lambda: packages_in(tmp_path / "b") == len(hashes) - 1)
        faulty.release()
        finish(first)
        finish(second)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    assert {key: faulty.fault_log.count(f"/{key}") for key in hashes} == dict.fromkeys(hashes, 1)
    assert (tmp_path / "a" / "env.tar").read_bytes() == (tmp_path / "b" / "env.tar").read_bytes()
    assert_pack_holds_channel_files(tmp_path / "a" / "env.tar", channel_dir)
    assert assert_cache_is_verified(cache, hashes) == set(hashes)


def test_three_packs_at_once_on_an_empty_cache(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    workspace = moved(faulty.url)
    cache = tmp_path / "cache"
    finish_all([start_in(tmp_path / name, workspace, cache) for name in "abc"])
    hashes = lock_hashes(workspace)
    assert {key: faulty.fault_log.count(f"/{key}") for key in hashes} == dict.fromkeys(hashes, 1)
    for name in "abc":
        assert_pack_holds_channel_files(tmp_path / name / "env.tar", channel_dir)
    assert assert_cache_is_verified(cache, hashes) == set(hashes)


def test_a_corrupt_cache_entry_is_replaced_once(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    """Two packs find the same damaged file: one fetches it again, the other uses the new copy."""
    workspace = moved(faulty.url)
    hashes = lock_hashes(workspace)
    cache = tmp_path / "cache"
    damaged = next(key for key in hashes if key.startswith("linux-64/hello-bin-"))
    (cache / damaged).parent.mkdir(parents=True)
    (cache / damaged).write_bytes(b"not the package")
    finish_all([start_in(tmp_path / name, workspace, cache) for name in "ab"])
    assert faulty.fault_log.count(f"/{damaged}") == 1
    assert assert_cache_is_verified(cache, hashes) == set(hashes)
    for name in "ab":
        assert_pack_holds_channel_files(tmp_path / name / "env.tar", channel_dir)
