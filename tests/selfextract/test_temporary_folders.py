"""A self-extracting run's temporary folders: removed on Ctrl-C, left by a killed run and removed
by the next one only when abandoned, named in their owner file."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import gone_pid, needs_linux64, run

from pixi_pack_ext.staging_owner import owner_line

from .helpers import _restricted_path, clean_env, needs_system_python, run_script


def _pack_with_waiting_stand_in(workspace: Path, tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """``environment.sh`` whose embedded unpacker writes ``record.started``, then sleeps while the file
    ``hold`` exists and exits 7; the environment to run it with, and the folder its PATH names."""
    stand_in = tmp_path / "pixi-unpack"
    hold, record = tmp_path / "hold", tmp_path / "record"
    stand_in.write_text(f'#!/bin/sh\n: > "{record}.started"\n[ -e "{hold}" ] && sleep 120\nexit 7\n')
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    path = _restricted_path(tmp_path)
    os.symlink(shutil.which("sleep", path="/usr/bin:/bin") or "sleep", Path(path) / "sleep")
    hold.touch()
    return script, clean_env(tmp_path, path=path), Path(path)


def _run_until_the_stand_in_waits(
    script: Path, env: dict[str, str], tmp_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``script`` in a session of its own; return once its embedded unpacker is running."""
    started = tmp_path / "record.started"
    process = subprocess.Popen(["sh", str(script)], env=env, cwd=tmp_path, start_new_session=True)
    try:
        for _ in range(1200):  # up to a minute
            if started.exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert started.exists(), "the embedded unpacker never started"
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_ctrl_c_removes_the_temporary_files(workspace: Path, tmp_path: Path) -> None:
    script, env, _ = _pack_with_waiting_stand_in(workspace, tmp_path)
    process = _run_until_the_stand_in_waits(script, env, tmp_path)
    try:
        assert list((tmp_path / "tmpdir").iterdir()), "the pack should be extracted while it runs"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 130
    finally:
        _stop(process)
    assert not list((tmp_path / "tmpdir").iterdir())


def _namespace() -> str:
    return owner_line().split(" ", 1)[1].strip()


@needs_linux64
def test_a_killed_run_leaves_its_folder_and_the_next_run_removes_only_abandoned_ones(
    workspace: Path, tmp_path: Path
) -> None:
    script, env, path = _pack_with_waiting_stand_in(workspace, tmp_path)
    # readlink tells the pid namespace; without it no folder is removed (checked at the end)
    os.symlink(shutil.which("readlink", path="/usr/bin:/bin") or "readlink", path / "readlink")
    tmpdir = tmp_path / "tmpdir"
    process = _run_until_the_stand_in_waits(script, env, tmp_path)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # kill -9: no trap runs
        process.wait(timeout=60)
    finally:
        _stop(process)
    (killed,) = tmpdir.iterdir()
    assert (killed / "environment.tar").is_file(), "the killed run's copy of the pack stays"
    assert (killed / "owner.pid").read_text() == f"{process.pid} {_namespace()}\n"

    sleeper = subprocess.Popen(["sleep", "120"])
    gone, live, namespace = gone_pid(), sleeper.pid, _namespace()
    kept = {
        "pixi-unpack.running": f"{live} {namespace}\n",
        "pixi-unpack.one-of-two-running": f"{gone} {namespace}\n{live} {namespace}\n",
        "pixi-unpack.other-namespace": f"{gone} pid:[1]\n",  # a container's: its pids mean nothing here
        "pixi-unpack.no-owner-yet": None,
    }
    try:
        for name, owner in kept.items():
            (tmpdir / name).mkdir()
            if owner is not None:
                (tmpdir / name / "owner.pid").write_text(owner)
        (tmpdir / "pixi-unpack.gone").mkdir()
        (tmpdir / "pixi-unpack.gone" / "owner.pid").write_text(f"{gone} {namespace}\n")
        (tmp_path / "hold").unlink()
        again = run_script("sh", script, env=env, cwd=tmp_path)
        assert again.returncode == 7, again.stderr  # the stand-in's own exit code
        assert sorted(p.name for p in tmpdir.iterdir()) == sorted(kept)

        (path / "readlink").unlink()  # the namespace is unknown now: no folder is removed
        (tmpdir / "pixi-unpack.gone").mkdir()
        (tmpdir / "pixi-unpack.gone" / "owner.pid").write_text(f"{gone} {namespace}\n")
        again = run_script("sh", script, env=env, cwd=tmp_path)
        assert again.returncode == 7, again.stderr
        assert sorted(p.name for p in tmpdir.iterdir()) == sorted([*kept, "pixi-unpack.gone"])
    finally:
        sleeper.kill()
        sleeper.wait()


@needs_linux64
@needs_system_python
def test_the_bundled_unpacker_names_itself_in_the_owner_file(executable: Path, tmp_path: Path) -> None:
    """A run that kills only the shell leaves Python working in the folder: it must stay."""
    env = clean_env(tmp_path)
    tmpdir = tmp_path / "tmpdir"
    process = subprocess.Popen(["sh", str(executable), "-o", str(tmp_path / "out"), "-q"], env=env,
                               cwd=tmp_path, stderr=subprocess.PIPE)  # fmt: skip
    owners: list[str] = []
    while process.poll() is None and len(owners) < 2:
        with contextlib.suppress(FileNotFoundError):  # the run may end between the glob and the read
            owners = [line for f in tmpdir.glob("*/owner.pid") for line in f.read_text().splitlines()]
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert len(owners) == 2, "the shell's line and the Python unpacker's"
    assert owners[0].split(" ")[0] == str(process.pid) and owners[1].split(" ")[0] != owners[0].split(" ")[0]
    assert len({line.partition(" ")[2] for line in owners}) == 1
    assert not list(tmpdir.iterdir())
