"""SIGKILL (the OOM killer, ``kill -9``) while unpacking: nothing can clean up then, so the work
folder stays; the next unpack in the same place removes it and succeeds. (A killed pack:
test_interrupts.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import cli, gone_pid

from pixi_pack_ext.staging_owner import OWNER_FILE, make_owned_folder, owner_line, remove_abandoned

from .conftest import ENV, leftovers, unpack_half_a_pack

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and owner checks are POSIX")


def _owned_staging(folder: Path, prefix: str) -> list[Path]:
    """Staging folders in ``folder`` whose owner file is written."""
    return [p for p in folder.glob(f"{prefix}*") if (p / OWNER_FILE).is_file()]


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def test_a_killed_unpack_leaves_its_work_folder_and_the_next_unpack_removes_it(
    demo_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = unpack_half_a_pack(demo_pack, out, stderr=subprocess.DEVNULL)
    assert process.stdin is not None
    try:
        _kill(process)
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
    assert len(_owned_staging(out, ".pixi-unpack-")) == 1, "the killed unpack's work folder"

    subprocess.run([cli("pixi-unpack"), demo_pack, "-o", out], env=ENV, check=True, capture_output=True)
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    assert (out / "env" / "conda-meta" / "history").is_file()


def test_only_folders_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    gone = gone_pid()
    namespace = owner_line().split(" ", 1)[1].strip()
    abandoned = tmp_path / ".x-abandoned"
    running = tmp_path / ".x-running"
    elsewhere = tmp_path / ".x-elsewhere"  # a container's: its pids mean nothing here
    unowned = tmp_path / ".x-unowned"  # being made, or not ours
    other_prefix = tmp_path / ".y-abandoned"
    for folder, line in [
        (abandoned, f"{gone} {namespace}\n"),
        (running, f"{os.getpid()} {namespace}\n"),
        (elsewhere, f"{gone} pid:[1]\n"),
        (unowned, None),
        (other_prefix, f"{gone} {namespace}\n"),
    ]:
        (folder / "data").mkdir(parents=True)
        if line is not None:
            (folder / OWNER_FILE).write_text(line)

    assert remove_abandoned(tmp_path, ".x-") == [abandoned]
    assert not abandoned.exists()
    assert running.exists() and elsewhere.exists() and unowned.exists() and other_prefix.exists()

    made = make_owned_folder(tmp_path, ".y-")
    assert not other_prefix.exists() and (made / OWNER_FILE).read_text() == owner_line()
