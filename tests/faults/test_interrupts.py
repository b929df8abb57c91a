"""Ctrl-C (SIGINT to the process) while packing and unpacking: a clear message, exit 130, no
partial pack or environment; a re-run succeeds and takes what was verified from the cache."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli
from pack_checks import assert_pack_holds_channel_files, package_paths

from pixi_pack_ext.testing.faulty_server import FaultyServer, Stall

from .conftest import (
    ENV,
    assert_cache_is_verified,
    hold_hello_bin,
    leftovers,
    lock_hashes,
    pack,
    start_pack,
    unpack_half_a_pack,
    wait_until,
)


def interrupt(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode(errors="replace")


def assert_interrupted(code: int, err: str) -> None:
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err, err


def test_ctrl_c_during_download_then_a_rerun_uses_the_cache(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    held, workspace, hashes = hold_hello_bin(faulty, moved, channel_dir)
    others = {key for key in hashes if f"/{key}" != held}
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    process = start_pack(workspace, out / "env.tar", "--use-cache", cache, stderr=subprocess.PIPE)
    try:
        # the held file is being downloaded and every other one is verified and in the cache
        assert wait_until(
            lambda: faulty.fault_log.count(held) == 1 and all((cache / k).is_file() for k in others)
        )
        code, err = interrupt(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert_interrupted(code, err)
    assert list(out.iterdir()) == [], "a partial pack or staging folder was left"
    assert assert_cache_is_verified(cache, hashes) == others

    faulty.release()
    before = {path: faulty.fault_log.count(path) for path in package_paths(channel_dir)}
    pack(workspace, out / "env.tar", "--use-cache", cache)
    fetched_again = [p for p in before if faulty.fault_log.count(p) > before[p]]
    assert fetched_again == [held], "the re-run downloaded files the cache already held"
    assert_pack_holds_channel_files(out / "env.tar", channel_dir)
    assert assert_cache_is_verified(cache, hashes) == set(hashes)


def test_killed_pack_leaves_a_partial_download_that_a_rerun_clears(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL cannot be cleaned up after: the next run on the cache and in the output folder
    removes what it left."""
    stalled = next(p for p in package_paths(channel_dir) if p.startswith("/linux-64/hello-bin-"))
    faulty.add_faults(stalled, Stall(after=1000))
    workspace = moved(faulty.url)
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    process = start_pack(
        workspace,
        out / "env.tar",
        "--use-cache",
        cache,
        env={"PIXI_PACK_READ_TIMEOUT": "60"},
        stderr=subprocess.DEVNULL,
    )
    try:
        partial = lambda: list(cache.rglob(".hello-bin-*.part"))  # noqa: E731
        assert wait_until(lambda: bool(partial()) and faulty.fault_log.count(stalled) == 1)
        process.kill()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert partial(), "the killed run's partial download should still be there"
    assert [p.name[:11] for p in out.iterdir()] == [".pixi-pack-"], "and its staging folder"
    faulty.release()
    pack(workspace, out / "env.tar", "--use-cache", cache)
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"], "the rerun removed the staging folder"
    assert_pack_holds_channel_files(out / "env.tar", channel_dir)
    assert assert_cache_is_verified(cache, lock_hashes(workspace)) == set(lock_hashes(workspace))


def test_ctrl_c_while_reading_the_pack(demo_pack: Path, tmp_path: Path) -> None:
    """Half of the pack arrives on stdin, then Ctrl-C: the output folder it made is gone again."""
    out = tmp_path / "out"
    process = unpack_half_a_pack(demo_pack, out, stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)  # stdin stays open: the interrupt, not an end of input, stops it
        err = process.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
    assert_interrupted(code, err)
    assert not out.exists()


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02])
def test_ctrl_c_during_the_install(demo_pack: Path, tmp_path: Path, delay: float) -> None:
    """Ctrl-C once the environment folder exists: rattler's threads finish, then it is all removed.
    (If the install happened to finish first, the environment is complete and the run succeeds.)"""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    process = subprocess.Popen([cli("pixi-unpack"), demo_pack, "-o", out], stderr=subprocess.PIPE, env=ENV)
    try:
        assert wait_until(lambda: (out / "env").exists() or process.poll() is not None)
        time.sleep(delay)
        code, err = interrupt(process)
    finally:
        if process.poll() is None:
            process.kill()
    if code == 0:
        assert (out / "env" / "conda-meta" / "history").is_file() and (out / "activate.sh").is_file()
    else:
        assert_interrupted(code, err)
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert leftovers(out) == []
