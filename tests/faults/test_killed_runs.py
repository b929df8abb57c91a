"""SIGKILL (the OOM killer, ``kill -9``) while packing and unpacking: nothing can clean up then, so
the staging folder stays; the next run in the same place removes it and succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli, host_platform
from pack_checks import assert_pack_holds_channel_files

from pixi_pack_ext.staging_owner import OWNER_FILE, make_owned_folder, owner_line, remove_abandoned
from pixi_pack_ext.testing.faulty_server import FaultyServer

from .conftest import ENV, hold_hello_bin, leftovers, pack, start_pack
from .test_interrupts import wait_until

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and owner checks are POSIX")


def _owned_staging(folder: Path, prefix: str) -> list[Path]:
    """Staging folders in ``folder`` whose owner file is written."""
    return [p for p in folder.glob(f"{prefix}*") if (p / OWNER_FILE).is_file()]


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def test_a_killed_pack_leaves_its_staging_folder_and_the_next_pack_removes_it(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    held, workspace, _ = hold_hello_bin(faulty, moved, channel_dir)
    out = tmp_path / "out"
    out.mkdir()
    process = start_pack(workspace, out / "env.tar", stderr=subprocess.DEVNULL)
    try:
        assert wait_until(
            lambda: faulty.fault_log.count(held) == 1 and bool(_owned_staging(out, ".pixi-pack-"))
        )
        _kill(process)
    finally:
        if process.poll() is None:
            process.kill()
        faulty.clear_faults()
        faulty.release()
    left = _owned_staging(out, ".pixi-pack-")
    assert len(left) == 1 and any(left[0].rglob("*.conda")), "the killed pack's staging folder"

    pack(workspace, out / "env.tar")
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["env.tar"]
    assert_pack_holds_channel_files(out / "env.tar", channel_dir)


def test_a_killed_unpack_leaves_its_work_folder_and_the_next_unpack_removes_it(
    workspace: Path, tmp_path: Path
) -> None:
    if host_platform() != "linux-64":
        pytest.skip("the demo environment installs on linux-64 only")
    demo = tmp_path / "demo.tar"
    pack(workspace, demo)
    out = tmp_path / "out"
    data = demo.read_bytes()
    process = subprocess.Popen(
        [cli("pixi-unpack"), "-", "-o", out], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV
    )
    assert process.stdin is not None
    try:
        process.stdin.write(data[: len(data) // 2])  # half a pack: the unpack waits for the rest
        process.stdin.flush()
        assert wait_until(lambda: any(out.glob(".pixi-unpack-*/pack/channel")))
        _kill(process)
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
    assert len(_owned_staging(out, ".pixi-unpack-")) == 1, "the killed unpack's work folder"

    subprocess.run([cli("pixi-unpack"), demo, "-o", out], env=ENV, check=True, capture_output=True)
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    assert (out / "env" / "conda-meta" / "history").is_file()


def test_only_folders_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    namespace = owner_line().split(" ", 1)[1].strip()
    abandoned = tmp_path / ".x-abandoned"
    running = tmp_path / ".x-running"
    elsewhere = tmp_path / ".x-elsewhere"  # a container's: its pids mean nothing here
    unowned = tmp_path / ".x-unowned"  # being made, or not ours
    other_prefix = tmp_path / ".y-abandoned"
    for folder, line in [
        (abandoned, f"{gone.stdout.strip()} {namespace}\n"),
        (running, f"{os.getpid()} {namespace}\n"),
        (elsewhere, f"{gone.stdout.strip()} pid:[1]\n"),
        (unowned, None),
        (other_prefix, f"{gone.stdout.strip()} {namespace}\n"),
    ]:
        (folder / "data").mkdir(parents=True)
        if line is not None:
            (folder / OWNER_FILE).write_text(line)

    assert remove_abandoned(tmp_path, ".x-") == [abandoned]
    assert not abandoned.exists()
    assert running.exists() and elsewhere.exists() and unowned.exists() and other_prefix.exists()

    made = make_owned_folder(tmp_path, ".y-")
    assert not other_prefix.exists() and (made / OWNER_FILE).read_text() == owner_line()
