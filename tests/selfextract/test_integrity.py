"""Checking each part of a self-extracting pack once: packages against repodata, the rest by the
tar's skeleton, packs from before the skeleton and the split, the zipapp's extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.selfextract.reader import read_layout, skeleton_sha256

from .helpers import (
    PYTHON_KIND_TOOLS,
    SYSTEM_PYTHON,
    _bundle_of,
    _pack_with_stand_in,
    _restricted_path,
    clean_env,
    needs_system_python,
    run_script,
)


def _largest_member_data(script: Path) -> tuple[int, int]:
    """(file offset, size) of the biggest file's bytes in the tar of ``script``."""
    biggest = max(_members(script), key=lambda m: m.size)
    return biggest.offset_data, biggest.size


def _members(script: Path) -> list[tarfile.TarInfo]:
    """The tar's members in ``script``, their offsets counted from the start of the file."""
    layout = read_layout(script)
    assert layout is not None
    with open(script, "rb") as f:
        f.seek(layout.archive_offset)
        with tarfile.open(fileobj=f, mode="r:") as tar:  # tarfile counts from where the tar starts
            return tar.getmembers()


def _member(script: Path, suffix: str) -> tarfile.TarInfo:
    return next(m for m in _members(script) if m.name.endswith(suffix))


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _touch_header(path: Path, member: tarfile.TarInfo) -> None:
    """Give ``member``'s tar header another mtime, with a checksum that matches: a sound tar."""
    with open(path, "r+b") as f:
        f.seek(member.offset)
        header = bytearray(f.read(tarfile.BLOCKSIZE))
        header[136:148] = b"%011o\0" % (member.mtime + 1)
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        f.seek(member.offset)
        f.write(header)
    assert any(m.name == member.name and m.mtime == member.mtime + 1 for m in _members(path))


@needs_linux64
@needs_system_python
def test_a_corrupt_package_inside_a_sound_tar_is_refused_before_anything_is_installed(
    executable: Path, tmp_path: Path
) -> None:
    """Package bytes are checked once, against the pack's repodata.json, as they are extracted."""
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    package = _member(broken, ".conda")
    _flip(broken, package.offset_data + package.size // 2)
    result = run_script("sh", broken, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert f"{package.name} in '{broken}' is corrupt: expected sha256" in errors[0]
    assert "nothing was installed" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64
@needs_system_python
@pytest.mark.parametrize("where", ["repodata.json", "environment.yml", "a package's tar header"])
def test_whatever_the_packages_sha256_does_not_cover_is_checked_by_the_skeleton(
    executable: Path, tmp_path: Path, where: str
) -> None:
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    if where == "a package's tar header":
        _touch_header(broken, _member(broken, ".conda"))
    else:
        member = _member(broken, where)
        _flip(broken, member.offset_data + member.size // 2)
    result = run_script("sh", broken, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt (archive skeleton sha256" in errors[0], result.stderr
    assert "nothing was installed" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


def test_the_skeleton_sha256_leaves_out_the_package_bodies_and_nothing_else(
    executable: Path, tmp_path: Path
) -> None:
    layout = read_layout(executable)
    assert layout is not None and layout.archive_skeleton_sha256 is not None
    data = executable.read_bytes()
    members = _members(executable)
    kept, position = hashlib.sha256(), layout.archive_offset
    for m in members:
        if m.isreg() and m.name.startswith("channel/") and m.name.endswith((".conda", ".tar.bz2")):
            kept.update(data[position : m.offset_data])
            position = m.offset_data + m.size
    kept.update(data[position : layout.archive_offset + layout.archive_size])
    assert kept.hexdigest() == layout.archive_skeleton_sha256 != layout.archive_sha256

    def skeleton(path: Path) -> str | None:
        with open(path, "rb") as f:
            return skeleton_sha256(f, layout.archive_offset, layout.archive_size)

    copy = tmp_path / "copy.sh"
    for m in members:
        if not m.size:
            continue
        shutil.copy(executable, copy)
        _flip(copy, m.offset_data)
        is_package = m.name.endswith((".conda", ".tar.bz2"))
        assert (skeleton(copy) == layout.archive_skeleton_sha256) == is_package, m.name
    copy.write_bytes(data[: layout.archive_offset + layout.archive_size - 1])
    assert skeleton(copy) is None


def _as_before_the_skeleton(script: Path, target: Path) -> None:
    """Rewrite ``script``'s header as packs were written before the skeleton sha256: without it."""
    data = bytearray(script.read_bytes())
    line = data.index(b"PIXI_PACK_ARCHIVE_SKELETON_SHA256=")
    end = data.index(b"\n", line)
    data[line:end] = b"#" * (end - line)
    target.write_bytes(data)


@needs_linux64
def test_pixi_unpack_checks_the_whole_tar_of_a_pack_from_before_the_skeleton(
    executable: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.sh"
    _as_before_the_skeleton(executable, old)
    layout = read_layout(old)
    assert layout is not None and layout.archive_skeleton_sha256 is None
    run("pixi-unpack", old, "-o", tmp_path / "out")
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()

    package = _member(old, ".conda")
    _flip(old, package.offset_data + package.size // 2)
    result = run("pixi-unpack", old, "-o", tmp_path / "again", check=False)
    assert result.returncode != 0 and b"is corrupt (archive sha256" in result.stderr
    assert b"Traceback" not in result.stderr and not (tmp_path / "again").exists()


OLD_PYTHON = """#!/bin/sh
# A python3 that reports 3.9: the real interpreter, with sys.version_info set before the bootstrap.
[ "$1" = -S ] && [ "$2" = -c ] || exit 2
boot=$3
shift 3
exec {python} -S -c "import sys; sys.version_info = (3, 9, 18); exec(sys.argv.pop(1))" "$boot" "$@"
"""


@needs_linux64
@needs_system_python
def test_a_python3_older_than_3_10_is_passed_over_for_python(executable: Path, tmp_path: Path) -> None:
    path = _restricted_path(tmp_path, PYTHON_KIND_TOOLS)
    old = Path(path) / "python3"
    old.write_text(OLD_PYTHON.format(python=SYSTEM_PYTHON))
    old.chmod(0o755)
    env = clean_env(tmp_path, path=path)
    result = run_script("sh", executable, "-o", tmp_path / "none", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 1 and "python3 >= 3.10" in result.stderr and "none was found" in result.stderr
    assert not (tmp_path / "none").exists()

    os.symlink(str(SYSTEM_PYTHON), Path(path) / "python")
    result = run_script("sh", executable, "-o", tmp_path / "target", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "target" / "env" / "bin" / "hello").is_file()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_a_corrupt_embedded_executable_never_runs(workspace: Path, tmp_path: Path) -> None:
    _, script = _pack_with_stand_in(workspace, tmp_path)
    layout = read_layout(script)
    assert layout is not None
    _flip(script, layout.unpacker_offset + 20)
    result = run_script("sh", script, env=clean_env(tmp_path, path=_restricted_path(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt (unpacker sha256" in errors[0]
    assert not Path(f"{tmp_path / 'record'}.args").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


def _as_before_the_split(script: Path, target: Path) -> None:
    """Rewrite ``script`` as packs were written before each part got its own sha256: the unpacker
    first, then the tar, and one sha256 over both."""
    layout = read_layout(script)
    assert layout is not None
    data = script.read_bytes()
    unpacker = data[layout.unpacker_offset : layout.unpacker_offset + layout.unpacker_size]
    archive = data[layout.archive_offset : layout.archive_offset + layout.archive_size]
    size = 4096
    lines = [
        "#!/bin/sh",
        "# pixi-pack-ext self-extracting environment: run it (sh environment.sh -h), do not source it.",
        f"# pixi-pack.json: {layout.metadata}",
        f"PIXI_PACK_HEADER_SIZE={size}",
        f"PIXI_PACK_UNPACKER_OFFSET={size}",
        f"PIXI_PACK_UNPACKER_SIZE={len(unpacker)}",
        f"PIXI_PACK_ARCHIVE_OFFSET={size + len(unpacker)}",
        f"PIXI_PACK_ARCHIVE_SIZE={len(archive)}",
        f"PIXI_PACK_SHA256={hashlib.sha256(unpacker + archive).hexdigest()}",
        f"PIXI_PACK_UNPACKER={layout.unpacker}",
        f"PIXI_PACK_PLATFORM={layout.platform}",
        f"PIXI_PACK_FILE_SIZE={size + len(unpacker) + len(archive)}",
    ]
    target.write_bytes("\n".join(lines).encode().ljust(size, b"\n") + unpacker + archive)


@needs_linux64
def test_pixi_unpack_reads_a_pack_from_before_the_split_sha256(executable: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.sh"
    _as_before_the_split(executable, old)
    layout = read_layout(old)
    assert layout is not None and layout.unpacker_sha256 is None
    assert layout.archive_check_offset == layout.header_size
    run("pixi-unpack", old, "-o", tmp_path / "out")
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()

    _flip(old, layout.unpacker_offset + 100)  # the old sha256 covers the unpacker too
    result = run("pixi-unpack", old, "-o", tmp_path / "again", check=False)
    assert result.returncode != 0 and b"is corrupt" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "again").exists()


def test_the_zipapp_extracts_only_compiled_code_and_metadata(executable: Path) -> None:
    """Everything else is imported from the zip, with bytecode for the Python that made it."""
    bundle = _bundle_of(executable)
    native = [i for i in bundle.infolist() if i.filename.startswith("native/") and not i.is_dir()]
    assert native and all(
        i.filename.endswith((".so", ".pyd")) or ".dist-info/" in i.filename for i in native
    ), [i.filename for i in native]
    so = [i for i in native if i.filename.endswith(".so")]
    # deflated: inflated once per machine into the unpacker's cache (tests/selfextract/test_unpacker_size.py)
    assert so and all(i.compress_type == zipfile.ZIP_DEFLATED for i in so)
    names = set(bundle.namelist())
    assert "lib/rattler/__init__.py" in names and "lib/pixi_pack_ext/unpack/driver.py" in names
    assert "lib/rattler/utils/" in names  # zipimport finds namespace packages by their folder entry
    sources = [n for n in names if n.startswith("lib/") and n.endswith(".py")]
    assert all(f"{n}c" in names for n in sources)


def test_a_pyc_for_another_python_is_passed_over_for_the_source(tmp_path: Path) -> None:
    """The zipapp's bytecode is for the packing Python; another version imports the sources."""
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("lib/", b"")
        bundle.writestr("lib/probe.py", b"VALUE = 'from the source'\n")
        bundle.writestr("lib/probe.pyc", b"\x00\x00\r\n" + b"\x01\x00\x00\x00" + b"\x00" * 8 + b"junk")
    code = f"import sys; sys.path.insert(0, {str(archive / 'lib')!r}); import probe; print(probe.VALUE)"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "from the source"
