"""Mistakes a new user makes on the first run end in one clear line, never in a traceback.

Each case runs the real console scripts; the oracle is what the user sees: one ``error:`` line
naming the path and the fix, the exit code, and files the user made left as they were.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli, copy_workspace, pack_prod, run


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single stderr line of a failed run (asserting there is exactly one, and no traceback)."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in: a read-only mode, or (for root) a read-only tmpfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
        folder.chmod(0o755)
        return
    (folder / "probe").unlink()
    folder.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("running as root without the right to mount: no folder is read-only here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --------------------------------------------------------------------------------------------------
# pixi-unpack -o
# --------------------------------------------------------------------------------------------------


def test_unpack_into_read_only_folder_names_it(prod_tar: Path, read_only_folder: Path) -> None:
    result = run("pixi-unpack", prod_tar, "-o", read_only_folder, check=False)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"cannot create a staging folder in '{read_only_folder}'" in line
    assert "choose a writable folder with -o" in line


def test_unpack_below_read_only_folder_names_the_output(prod_tar: Path, read_only_folder: Path) -> None:
    result = run("pixi-unpack", prod_tar, "-o", read_only_folder / "new", check=False)
    assert result.returncode == 1
    assert f"cannot create the output folder '{read_only_folder / 'new'}'" in one_error_line(result)


def test_unpack_into_a_file_is_refused(prod_tar: Path, tmp_path: Path) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    result = run("pixi-unpack", prod_tar, "-o", existing, check=False)
    assert result.returncode == 2
    assert one_error_line(result) == f"error: output folder '{existing}' is a file; choose a folder with -o"
    assert existing.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------------------------------
# pixi-pack -o and --use-cache
# --------------------------------------------------------------------------------------------------


def test_pack_to_a_folder_asks_for_a_file_name(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dist"
    folder.mkdir()
    result = pack_prod(workspace, folder, check=False)
    assert result.returncode == 2
    line = one_error_line(result)
    assert ".part" not in line
    assert line == (
        f"error: output '{folder}' is a folder; give -o a file name, such as '{folder / 'environment.tar'}'"
    )
    assert list(folder.iterdir()) == []


def test_use_cache_naming_a_file_is_refused(workspace: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("x")
    result = pack_prod(workspace, tmp_path / "env.tar", "--use-cache", not_a_folder, check=False)
    assert result.returncode == 2
    assert "is a file, not a folder" in one_error_line(result)
    assert not (tmp_path / "env.tar").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_pack_into_an_unwritable_system_folder_names_it(workspace: Path) -> None:
    result = pack_prod(workspace, "/proc/x.tar", check=False)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "cannot create a staging folder in '/proc'" in line
    assert "choose an -o in a writable folder" in line


def test_pack_into_read_only_folder_names_it(workspace: Path, read_only_folder: Path) -> None:
    result = pack_prod(workspace, read_only_folder / "env.tar", check=False)
    assert result.returncode == 1
    assert f"cannot create a staging folder in '{read_only_folder}'" in one_error_line(result)


# --------------------------------------------------------------------------------------------------
# An existing output file
# --------------------------------------------------------------------------------------------------


def test_replacing_an_output_file_says_so(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    out.write_bytes(b"an older pack")
    result = pack_prod(workspace, out)
    assert f"replaced the existing file {out}" in result.stderr.decode()
    assert out.read_bytes() != b"an older pack"
    fresh = pack_prod(workspace, tmp_path / "fresh.tar")
    assert "replaced" not in fresh.stderr.decode()


def test_read_only_output_file_is_left_alone(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    out.write_bytes(b"a release pack")
    out.chmod(0o444)
    result = pack_prod(workspace, out, check=False)
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"output '{out}' exists and is read-only" in line
    assert "chmod u+w" in line
    assert out.read_bytes() == b"a release pack"
    assert stat.S_IMODE(out.stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.tar"]


# --------------------------------------------------------------------------------------------------
# Subcommand words and help
# --------------------------------------------------------------------------------------------------


def test_help_names_the_subcommands() -> None:
    text = run("pixi-pack", "--help").stdout.decode()
    assert "pixi-pack plugins" in text
    assert "pixi-pack completion -s SHELL" in text


@pytest.mark.parametrize("name", ["plugins", "completion"])
def test_workspace_folder_named_like_a_subcommand_packs(workspace: Path, tmp_path: Path, name: str) -> None:
    copy_workspace(workspace, tmp_path / name)
    for argument in (name, f"./{name}"):
        out = tmp_path / f"{name}-{len(argument)}.tar"
        result = run("pixi-pack", argument, "-e", "prod", "-p", "linux-64", "-o", out, cwd=tmp_path)
        assert out.is_file(), result.stderr.decode()
    # without a manifest in it, the folder does not hide the subcommand
    (tmp_path / name / "pixi.toml").unlink()
    result = run("pixi-pack", name, *(["-s", "bash"] if name == "completion" else []), cwd=tmp_path)
    assert ("plugins" if name == "plugins" else "_PIXI_PACK_COMPLETE") in result.stdout.decode()


@pytest.mark.parametrize("command", ["pixi-pack", "pixi-unpack"])
def test_help_fits_80_columns(command: str) -> None:
    text = run(command, "--help", env={"COLUMNS": "80"}).stdout.decode()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text  # rich cuts what does not fit: every option must show whole


# --------------------------------------------------------------------------------------------------
# Ctrl-C while the program is still loading
# --------------------------------------------------------------------------------------------------


def _frames(err: str) -> list[str]:
    """The files of a traceback's frames."""
    return [line.split('"')[1] for line in err.splitlines() if line.strip().startswith('File "')]


@pytest.mark.parametrize("command", ["pixi-pack", "pixi-unpack"])
def test_early_ctrl_c_is_one_line(command: str, tmp_path: Path) -> None:
    """SIGINT at many moments of the start: what we load never ends in a traceback.

    Before the console script reaches our entry point a Ctrl-C is the interpreter's own business
    (Python may print its own traceback from its start-up modules); from there on, loading the
    command, its libraries and the plugins, it is one line and exit code 130. (``-q --version``:
    a bare ``--version`` is answered before the command is loaded.)
    """
    env = {**os.environ, "NO_COLOR": "1"}
    interrupted = 0
    for step in range(16):
        process = subprocess.Popen(
            [cli(command), "-q", "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        time.sleep(0.025 * step)
        process.send_signal(signal.SIGINT)
        _, err_bytes = process.communicate(timeout=60)
        err = err_bytes.decode()
        ours = [
            frame
            for frame in _frames(err)
            if f"pixi_pack_ext{os.sep}cli" in frame
            or ("site-packages" in frame and "__editable__" not in frame)
        ]
        assert not ours, err
        if process.returncode == 130:
            assert err.strip() == "interrupted", err
            interrupted += 1
        else:
            assert process.returncode in (0, 1, -signal.SIGINT), (process.returncode, err)
    assert interrupted > 0, "no interrupt landed while the program was loading"
