"""A lock is input too: names in it that would become paths outside the pack's staging folder
(a ``subdir`` with ``..``, a wheel file name with backslashes) are refused before anything is
fetched or written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from conftest import run

from pixi_pack_ext.testing.world import ChannelServer, PypiEntry, write_lock

from .hostile import error_line, snapshot


def _pack_with_libgreet_edited(workspace: Path, tmp_path: Path, pattern: str, replacement: str) -> str:
    """Pack a copy of the workspace whose lock has libgreet's entry edited by one regex substitution;
    returns the error line, after checking that nothing under ``tmp_path`` changed."""
    hostile = tmp_path / "ws"
    hostile.mkdir()
    shutil.copy(workspace / "pixi.toml", hostile / "pixi.toml")
    text, count = re.subn(pattern, replacement, (workspace / "pixi.lock").read_text(), flags=re.M)
    assert count == 1
    (hostile / "pixi.lock").write_text(text)
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    result = run(
        "pixi-pack", hostile, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "out" / "env.tar", check=False
    )
    line = error_line(result)
    assert snapshot(tmp_path) == before
    return line


def test_subdir_climbing_out_is_refused(workspace: Path, tmp_path: Path) -> None:
    line = _pack_with_libgreet_edited(
        workspace, tmp_path, r"^(- conda: \S+/linux-64/libgreet-[^\n]+\n)", r"\1  subdir: ../../../escaped\n"
    )
    assert "the subdir '../../../escaped' is not a plain folder name" in line, line


def test_wheel_name_with_backslashes_is_refused(channel_server: ChannelServer, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "pixi.toml").write_text('[workspace]\nname = "w"\nplatforms = ["linux-64"]\n')
    location = f"{channel_server.url}wheels/..%5C..%5Cevil-1.0-py3-none-any.whl"
    write_lock(
        workspace / "pixi.lock",
        channel_server.url,
        {"default": ["greeting-data"]},
        ["linux-64"],
        pypi={"default": [PypiEntry("evil", "1.0", location, "0" * 64)]},
    )
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", tmp_path / "out" / "env.tar", check=False)
    line = error_line(result)
    assert "refusing to pack evil==1.0" in line and "is not a plain name" in line, line
    assert snapshot(tmp_path) == before


def test_a_lock_entry_without_any_hash_is_refused_before_anything_is_fetched(
    workspace: Path, tmp_path: Path
) -> None:
    """Without a sha256 or md5 the pack would hold whatever the server sends."""
    line = _pack_with_libgreet_edited(
        workspace,
        tmp_path,
        r"^(- conda: \S+/linux-64/libgreet-[^\n]+\n(?:  [^\n]*\n)*?)  sha256: \w+\n  md5: \w+\n",
        r"\1",
    )
    assert "refusing to pack libgreet=2.1" in line and "neither a sha256 nor an md5" in line, line
    assert "--inject" in line and "pixi lock" in line, line
