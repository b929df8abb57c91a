"""Runs that meet each other or a stop signal: two pixi-unpack runs into one folder, SIGTERM and
SIGHUP while packing or unpacking. The second run refuses with one line and never touches the
first one's environment; a stop signal is handled like Ctrl-C (one line, exit 128 + signal, no
temporary folder left)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli

from pixi_pack_ext.testing.faulty_server import FaultyServer

from .conftest import ENV, error_line, hold_hello_bin, leftovers, start_pack, unpack_half_a_pack, wait_until

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and flock are POSIX")


def _finish(process: subprocess.Popen[bytes], pack_file: Path) -> tuple[int, str]:
    """Give a ``unpack_half_a_pack`` run the rest of its pack and wait for it."""
    assert process.stdin is not None
    data = pack_file.read_bytes()
    process.stdin.write(data[len(data) // 2 :])
    process.stdin.close()
    err = process.stderr.read() if process.stderr is not None else b""
    process.wait(timeout=120)
    return process.returncode, err.decode(errors="replace")


def test_a_second_unpack_into_the_same_folder_refuses_and_the_first_one_completes(
    demo_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = unpack_half_a_pack(demo_pack, out, stderr=subprocess.PIPE)
    try:
        for extra in ([], ["--force"]):
            second = subprocess.run(
                [cli("pixi-unpack"), demo_pack, "-o", out, *extra], env=ENV, capture_output=True, timeout=120
            )
            line = error_line(second)
            assert "another pixi-unpack is unpacking into" in line and str(out) in line, line
        code, err = _finish(first, demo_pack)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]
    assert (out / "env" / "conda-meta" / "history").is_file()
    assert leftovers(out) == []


def test_after_the_first_finishes_a_second_needs_force(demo_pack: Path, tmp_path: Path) -> None:
    """The lock is released with the run: the next run sees the finished environment."""
    out = tmp_path / "out"
    subprocess.run([cli("pixi-unpack"), demo_pack, "-o", out], env=ENV, check=True, capture_output=True)
    again = subprocess.run([cli("pixi-unpack"), demo_pack, "-o", out], env=ENV, capture_output=True)
    assert "already exists and is not empty" in error_line(again)
    subprocess.run(
        [cli("pixi-unpack"), demo_pack, "-o", out, "--force"], env=ENV, check=True, capture_output=True
    )
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]


def _stop(process: subprocess.Popen[bytes], signum: int, ready: Callable[[], bool] = lambda: True) -> str:
    """Send ``signum`` once ``ready()`` holds (asserted) and return the stderr of the exit; a process
    still running after a failure here is killed, so no test leaves one behind."""
    try:
        assert ready()
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return err.decode(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_while_unpacking_is_handled_like_ctrl_c(
    signum: int, demo_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = unpack_half_a_pack(demo_pack, out, stderr=subprocess.PIPE)
    text = _stop(process, signum)
    assert process.returncode == 128 + signum, text
    assert "interrupted" in text and signal.Signals(signum).name in text and "Traceback" not in text, text
    assert not out.exists(), "the output folder this run made is left"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_while_packing_is_handled_like_ctrl_c(
    signum: int, faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    held, workspace, _ = hold_hello_bin(faulty, moved, channel_dir)
    out = tmp_path / "out"
    out.mkdir()
    process = start_pack(workspace, out / "env.tar", stderr=subprocess.PIPE)
    text = _stop(process, signum, ready=lambda: wait_until(lambda: faulty.fault_log.count(held) == 1))
    assert process.returncode == 128 + signum, text
    assert "interrupted" in text and "Traceback" not in text, text
    assert list(out.iterdir()) == [], "a partial pack or staging folder was left"
