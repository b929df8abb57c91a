"""What the self-extracting tests share: a target-like environment, the shell tools a target has,
a stand-in for a static pixi-unpack, the zipapp inside a pack.

The scripts run with a PATH that lacks this virtualenv (no pixi-unpack, no pixi-pack-ext), so what
runs is what the file carries. The default embedded unpacker's wheels come from the user cache
(one download from the Python index, ever) or, offline, from this environment's installed packages.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import run

from pixi_pack_ext.selfextract.layout import unescape
from pixi_pack_ext.selfextract.reader import read_layout

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


#: Tools a target without Python must have for a --pixi-unpack-source executable.
SHELL_TOOLS = (
    "sh",
    "tail",
    "dd",
    "tee",
    "wc",
    "tr",
    "awk",
    "sha256sum",
    "mktemp",
    "rm",
    "chmod",
    "uname",
    "cat",
)


#: All the bundled unpacker needs besides python3.
PYTHON_KIND_TOOLS = ("sh", "wc", "tr", "mktemp", "rm", "uname")


def _python_ok(python: str | None) -> bool:
    if python is None:
        return False
    check = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 10))"], check=False)
    return check.returncode == 0


needs_system_python = pytest.mark.skipif(
    not _python_ok(SYSTEM_PYTHON), reason="needs a python3 >= 3.10 outside the virtualenv (/usr/bin)"
)


def clean_env(tmp: Path, path: str = "/usr/bin:/bin") -> dict[str, str]:
    """An environment like a fresh target's: no virtualenv on PATH, its own TMPDIR."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return {"PATH": path, "HOME": str(tmp), "TMPDIR": str(tmpdir), "LC_ALL": "C"}


def run_script(
    *args: str | os.PathLike[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


STAND_IN = """#!/bin/sh
# Stands in for a static pixi-unpack: records its arguments and what the pack it got contains.
record="{record}"
printf '%s\\n' "$@" > "$record.args"
for last; do :; done
tar -tf "$last" > "$record.members"
exit 7
"""


def _restricted_path(tmp_path: Path, tools: tuple[str, ...] = SHELL_TOOLS) -> str:
    """A PATH holding only these shell tools (no python anywhere)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*tools, "tar"):  # tar: for the stand-in unpacker only
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _pack_with_stand_in(workspace: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(the stand-in pixi-unpack, environment.sh embedding it with --pixi-unpack-source)."""
    stand_in = tmp_path / "pixi-unpack"
    stand_in.write_text(STAND_IN.format(record=tmp_path / "record"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    return stand_in, script


def _decode_region(path: Path, offset: int, size: int) -> bytes:
    """A region of a self-extracting file as it was before storing (PowerShell payloads are escaped)."""
    layout = read_layout(path)
    assert layout is not None
    with open(path, "rb") as f:
        f.seek(offset)
        stored = f.read(size)
    return unescape(stored) if layout.escaped else stored


def _bundle_of(script: Path) -> zipfile.ZipFile:
    layout = read_layout(script)
    assert layout is not None and layout.unpacker == "python"
    return zipfile.ZipFile(io.BytesIO(_decode_region(script, layout.unpacker_offset, layout.unpacker_size)))
