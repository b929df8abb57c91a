"""Self-extracting packs (``--create-executable``): run with ``sh`` alone, self-describing, refused
when corrupt or truncated."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.selfextract.reader import copy_unpacker, read_layout

from .helpers import (
    PYTHON_KIND_TOOLS,
    SYSTEM_PYTHON,
    _python_ok,
    _restricted_path,
    clean_env,
    needs_system_python,
    run_script,
)


@needs_linux64
@needs_system_python
def test_environment_sh_installs_with_sh_and_system_python(executable: Path, tmp_path: Path) -> None:
    path = _restricted_path(tmp_path, PYTHON_KIND_TOOLS)  # a few shell tools and python3, nothing else
    os.symlink(str(SYSTEM_PYTHON), Path(path) / "python3")
    env = clean_env(tmp_path, path=path)
    result = run_script("sh", executable, "-o", tmp_path / "target", "-e", "demo", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "target" / "demo"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"
    assert (tmp_path / "target" / "activate.sh").is_file()
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"


@needs_linux64
@needs_system_python
def test_pixi_unpack_reads_the_executable_directly(executable: Path, tmp_path: Path) -> None:
    run("pixi-unpack", executable, "-o", tmp_path / "out", "-s", "zsh")
    prefix = tmp_path / "out" / "env"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"
    assert (tmp_path / "out" / "activate.zsh").is_file()


def test_help_installs_nothing(executable: Path, tmp_path: Path) -> None:
    result = run_script("sh", executable, "-h", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage: environment.sh [OPTIONS]" in result.stdout
    assert (
        "--output-directory" in result.stdout and "--env-name" in result.stdout and "--shell" in result.stdout
    )
    assert "--compile-bytecode" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]


@needs_linux64
@needs_system_python
def test_the_bundled_unpacker_takes_compile_bytecode(executable: Path, tmp_path: Path) -> None:
    """The option reaches the bundled pixi-unpack (the demo has no wheels: nothing is compiled)."""
    env = clean_env(tmp_path)
    result = run_script(
        "sh", executable, "-o", tmp_path / "target", "--compile-bytecode", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "target" / "env" / "conda-meta").is_dir()


def test_the_executable_is_executable_and_self_describing(executable: Path) -> None:
    assert os.access(executable, os.X_OK)
    layout = read_layout(executable)
    assert layout is not None
    assert layout.platform == "linux-64" and layout.unpacker == "python" and layout.script == "sh"
    # header | tar | zipapp: the zipapp ends the file, so Python imports it in place
    assert layout.header_size % 4096 == 0 and layout.archive_offset == layout.header_size
    assert layout.unpacker_offset == layout.archive_offset + layout.archive_size
    assert layout.unpacker_offset + layout.unpacker_size == layout.file_size == executable.stat().st_size
    assert '"platform": "linux-64"' in (layout.metadata or "")
    data = executable.read_bytes()
    archive = data[layout.archive_offset : layout.unpacker_offset]
    assert hashlib.sha256(archive).hexdigest() == layout.archive_sha256
    # the header checks the zipapp from its check offset on; the compiled libraries in front of it
    # are checked by the zipapp itself, against the sha256s of its bundle.json (in the checked part)
    assert layout.unpacker_offset < layout.unpacker_check_offset < layout.file_size
    assert hashlib.sha256(data[layout.unpacker_check_offset :]).hexdigest() == layout.unpacker_sha256
    bundle = zipfile.ZipFile(io.BytesIO(data[layout.unpacker_offset :]))
    libraries = json.loads(bundle.read("bundle.json"))["libraries"]
    assert libraries and all(hashlib.sha256(bundle.read(n)).hexdigest() == d for n, d in libraries.items())
    front = layout.unpacker_check_offset - layout.unpacker_offset
    assert all((i.header_offset < front) == (i.filename in libraries) for i in bundle.infolist()), (
        "the libraries, and only they, come before the check offset"
    )
    header = data[: layout.header_size]
    assert header.startswith(b"#!/bin/sh\n") and b"\r" not in header
    check = subprocess.run(["sh", "-n"], input=header, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def _shells() -> list[list[str]]:
    shells = [["sh"], ["bash", "--posix"]]
    if shutil.which("busybox"):
        shells.append(["busybox", "sh"])
    if shutil.which("zsh"):
        shells.append(["zsh", "--emulate", "sh"])
    return shells


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
@pytest.mark.parametrize("where", ["archive", "library", "unpacker"])
@pytest.mark.parametrize("shell", _shells(), ids=lambda s: s[0])
def test_a_corrupt_byte_is_refused_before_anything_is_installed(
    executable: Path, tmp_path: Path, where: str, shell: list[str]
) -> None:
    layout = read_layout(executable)
    assert layout is not None
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    unpacker_end = layout.unpacker_offset + layout.unpacker_size
    offset = {
        "archive": layout.archive_offset + layout.archive_size // 2,
        "library": (layout.unpacker_offset + layout.unpacker_check_offset) // 2,  # py-rattler's
        "unpacker": (layout.unpacker_check_offset + unpacker_end) // 2,
    }[where]
    with open(broken, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    env = clean_env(tmp_path)
    result = run_script(*shell, broken, "-o", tmp_path / "target", env=env, cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt" in errors[0] and "nothing was installed" in errors[0]
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_a_truncated_file_is_refused(executable: Path, tmp_path: Path) -> None:
    broken = tmp_path / "environment.sh"
    with open(executable, "rb") as src, open(broken, "wb") as dst:
        dst.write(src.read(executable.stat().st_size - 1000))
    result = run_script("sh", broken, env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "truncated or damaged" in result.stderr
    assert not (tmp_path / "env").exists()


@needs_linux64
@needs_system_python
def test_pixi_unpack_refuses_a_corrupt_executable_before_installing(executable: Path, tmp_path: Path) -> None:
    layout = read_layout(executable)
    assert layout is not None
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    with open(broken, "r+b") as f:  # flip a byte in the tar's padding: the tar itself still reads
        f.seek(layout.archive_offset + layout.archive_size - 10)
        f.write(b"\x01")
    result = run("pixi-unpack", broken, "-o", tmp_path / "out", check=False)
    assert result.returncode != 0
    assert b"is corrupt" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_zipapp_runs_on_its_own(executable: Path, tmp_path: Path) -> None:
    """The embedded unpacker is a plain zipapp: copied out, it is a standalone pixi-unpack."""
    if not _python_ok(SYSTEM_PYTHON):
        pytest.skip("needs a python3 >= 3.10 outside the virtualenv")
    layout = read_layout(executable)
    assert layout is not None
    pyz = tmp_path / "pixi-unpack.pyz"
    copy_unpacker(executable, layout, pyz)
    env = clean_env(tmp_path)
    result = run_script(str(SYSTEM_PYTHON), pyz, "--version", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pixi-unpack" in result.stdout
    assert not list((tmp_path / "tmpdir").iterdir())
