"""The bundled unpacker is small in the pack and fast on the target.

py-rattler's compiled library is stored deflated and without its ELF symbol table; the unpacker
inflates it once per machine into the user's cache (a folder named by the libraries' sha256s) and
checks the cached file against its sha256 on every later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_linux64, pack_prod

from pixi_pack_ext.selfextract.elf_strip import strip_symbols

from .helpers import _bundle_of, clean_env, needs_system_python, run_script

MiB = 1 << 20


@pytest.fixture(scope="module")
def packs(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sizes")
    tar, script = folder / "environment.tar", folder / "environment.sh"
    pack_prod(workspace, tar)
    pack_prod(workspace, script, "--create-executable", timeout=900)
    return tar, script


@needs_linux64
def test_the_bundled_unpacker_adds_at_most_30_mib(packs: tuple[Path, Path]) -> None:
    tar, script = packs
    assert script.stat().st_size - tar.stat().st_size <= 30 * MiB


def _cached_libraries(home: Path) -> list[Path]:
    return sorted((home / ".cache" / "pixi-pack-ext" / "unpacker-lib").rglob("*.so"))


@needs_linux64
@needs_system_python
def test_libraries_are_inflated_once_and_checked_on_every_run(
    packs: tuple[Path, Path], tmp_path: Path
) -> None:
    _, script = packs
    listed = json.loads(_bundle_of(script).read("bundle.json"))["libraries"]
    env = clean_env(tmp_path)  # HOME is tmp_path: the cache goes to tmp_path/.cache

    def unpack(name: str) -> None:
        result = run_script("sh", script, "-o", tmp_path / name, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        hello = subprocess.run([tmp_path / name / "env" / "bin" / "hello"], capture_output=True, text=True)
        assert hello.stdout.startswith("hello-bin prefix=")

    unpack("first")
    cached = _cached_libraries(tmp_path)
    assert len(cached) == len(listed) >= 1
    library = cached[0]
    expected = listed[f"native/{library.relative_to(library.parents[1]).as_posix()}"]
    assert hashlib.sha256(library.read_bytes()).hexdigest() == expected
    before = library.stat()

    unpack("second")  # reused: not written again
    after = library.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    data = bytearray(library.read_bytes())  # damaged in the cache: found out and replaced
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))
    unpack("third")
    assert hashlib.sha256(library.read_bytes()).hexdigest() == expected
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"


@needs_linux64
@needs_system_python
def test_a_cache_others_can_write_to_is_not_used(packs: tuple[Path, Path], tmp_path: Path) -> None:
    _, script = packs
    env = clean_env(tmp_path)
    assert run_script("sh", script, "-o", tmp_path / "first", env=env, cwd=tmp_path).returncode == 0
    library = _cached_libraries(tmp_path)[0]
    library.write_bytes(b"not a library")
    library.parents[1].chmod(0o777)  # the folder named by the sha256s: anyone could swap the file
    result = run_script("sh", script, "-o", tmp_path / "second", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert library.read_bytes() == b"not a library"  # neither loaded nor rewritten


@needs_linux64
@needs_system_python
def test_no_cache_when_asked(packs: tuple[Path, Path], tmp_path: Path) -> None:
    _, script = packs
    env = {**clean_env(tmp_path), "PIXI_UNPACK_CACHE_DIR": ""}
    result = run_script("sh", script, "-o", tmp_path / "out", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".cache").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the installed py-rattler is ELF on Linux")
def test_stripped_library_still_loads(tmp_path: Path) -> None:
    """The stripped py-rattler library is smaller and imports and works in a fresh interpreter."""
    import rattler

    package = Path(rattler.__file__).parent
    copy = tmp_path / "rattler"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    library = next(copy.glob("rattler*.so"))
    original = library.read_bytes()
    stripped = strip_symbols(original)
    assert len(stripped) < len(original)
    assert strip_symbols(stripped) == stripped  # nothing left to drop
    library.write_bytes(stripped)
    code = "import rattler; print(rattler.__file__, rattler.Version('1.2.3'))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(copy / "__init__.py")
    assert result.stdout.split()[1] == "1.2.3"


def test_strip_leaves_what_it_does_not_know_alone() -> None:
    assert strip_symbols(b"#!/bin/sh\necho hi\n") == b"#!/bin/sh\necho hi\n"
    truncated = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00" + b"\xff" * 40
    assert strip_symbols(truncated) == truncated
