"""rattler's link step failing or being killed halfway: the environment is assembled aside, so
nothing of the new one remains, and an environment that ``--force`` was replacing is still there,
byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli, run

from .conftest import Outcome
from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    index_json,
    make_package,
    path_entry,
    snapshot,
    write_pack,
)


def _add_unlinkable_package(members: list[Member], fmt: str, how: str = "binary") -> None:
    """A package that passes every check before the install and fails while rattler links it."""
    if how == "binary":  # a binary placeholder shorter than the environment's path cannot be replaced
        data = b"\0\0/opt/x\0\0"
        entry = {**path_entry("bin/tool", data), "file_mode": "binary", "prefix_placeholder": "/opt/x"}
        index = index_json("unlinkable")
        name, package = make_package(index, [entry], [file_member("bin/tool", data)], fmt)
    else:  # noarch python without a python
        index = {**index_json("unlinkable"), "noarch": "python"}
        entry = path_entry("site-packages/x.py", b"x = 1\n")
        name, package = make_package(index, [entry], [file_member("site-packages/x.py", b"x = 1\n")], fmt)
    add_package(members, name, package, index)


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_a_failing_link_leaves_nothing(
    fmt: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    _add_unlinkable_package(members, fmt)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "installing the environment" in line and "failed to link unlinkable-1.0-0" in line, line
    assert "nothing was changed there" in line, line
    assert outcome.changed == set(), f"the failed unpack left {sorted(outcome.changed)}"


def test_a_failing_link_with_force_keeps_the_previous_environment(
    good_pack: Path, members: list[Member], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", good_pack, "-o", out)
    before = snapshot(out)
    _add_unlinkable_package(members, "conda", "noarch")
    hostile = write_pack(tmp_path / "unlinkable.tar", members)
    line = error_line(run("pixi-unpack", hostile, "-o", out, "--force", check=False))
    assert "installing the environment" in line, line
    assert snapshot(out) == before


def _many_files_package(members: list[Member], count: int) -> None:
    """A package of ``count`` small files: linking it takes a while."""
    index = index_json("many")
    files = [file_member(f"share/many/{i:05d}.txt", b"%d\n" % i) for i in range(count)]
    paths = [path_entry(m.info.name, m.data) for m in files]
    name, data = make_package(index, paths, files, "conda")
    add_package(members, name, data, index)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_run_stopped_while_linking_leaves_the_previous_environment(
    signum: int, good_pack: Path, members: list[Member], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", good_pack, "-o", out)
    before = snapshot(out)
    _many_files_package(members, 20_000)
    bigger = write_pack(tmp_path / "many.tar", members)
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [cli("pixi-unpack"), bigger, "-o", out, "--force"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not any(out.glob(".pixi-unpack-*/env/share/many")):  # rattler is linking
            assert process.poll() is None and time.monotonic() < deadline, "the link step was missed"
            time.sleep(0.002)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (128 + signum, -signum), err.decode(errors="replace")
    after = {k: v for k, v in snapshot(out).items() if not k.startswith(".pixi-unpack-")}
    assert after == before, "the previous environment changed"
    if signum == signal.SIGKILL:  # nothing could clean up: the next run does
        run("pixi-unpack", good_pack, "-o", out, "--force")
    assert not any(out.glob(".pixi-unpack-*"))
    assert snapshot(out) == before
