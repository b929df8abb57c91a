"""Small packages are extracted in a private tmpfs folder before the install copies them into the
environment; the folder is bounded and always removed, and without room the disk is used."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from conftest import damage_package, needs_linux64

from pixi_pack_ext import staging_owner
from pixi_pack_ext.errors import InvalidPackError
from pixi_pack_ext.unpack import cache_prefill, ram_staging
from pixi_pack_ext.unpack.driver import UnpackOptions, unpack
from pixi_pack_ext.unpack.ram_staging import RAM_STAGING_ENV, RamStaging

needs_tmpfs = pytest.mark.skipif(
    not any(Path(c).is_dir() for c in ram_staging.TMPFS_CANDIDATES), reason="no tmpfs at /dev/shm here"
)


class _Spy:
    """Notes every RamStaging an unpack makes and what it staged."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stagings: list[RamStaging] = []
        self.staged: list[str] = []
        create, package_folder = RamStaging.create, RamStaging.package_folder

        def spy_create() -> RamStaging | None:
            staging = create()
            if staging is not None:
                self.stagings.append(staging)
            return staging

        def spy_package_folder(staging: RamStaging, name: str) -> Path:
            self.staged.append(name)
            return package_folder(staging, name)

        monkeypatch.setattr(RamStaging, "create", staticmethod(spy_create))
        monkeypatch.setattr(RamStaging, "package_folder", spy_package_folder)


def _packages(pack: Path) -> list[str]:
    with tarfile.open(pack) as archive:
        return [m.name for m in archive.getmembers() if m.name.endswith((".conda", ".tar.bz2"))]


def _runs_with_its_prefix(prefix: Path) -> None:
    result = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert f"prefix={prefix}" in result.stdout  # the placeholder was rewritten in the copied file


@needs_linux64
@needs_tmpfs
def test_small_packages_are_extracted_in_ram_and_the_environment_runs(
    prod_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(monkeypatch)
    prefix = unpack(UnpackOptions(pack=prod_tar, output_directory=tmp_path / "out"))
    _runs_with_its_prefix(prefix)
    assert len(spy.stagings) == 1
    assert len(spy.staged) == len(_packages(prod_tar))  # every package of the demo is small
    assert not spy.stagings[0].folder.exists(), "the RAM folder outlived the unpack"
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".pixi-unpack")] == []


@needs_linux64
@pytest.mark.parametrize("limit", ["0", "1"], ids=["turned off", "no room for any package"])
def test_without_ram_room_packages_go_through_the_disk(
    limit: str, prod_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RAM_STAGING_ENV, limit)
    spy = _Spy(monkeypatch)
    prefix = unpack(UnpackOptions(pack=prod_tar, output_directory=tmp_path / "out"))
    _runs_with_its_prefix(prefix)
    assert spy.staged == []
    assert all(not s.folder.exists() for s in spy.stagings)


@needs_linux64
@needs_tmpfs
def test_a_failed_unpack_removes_the_ram_folder(
    prod_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package that fails its hash after it was staged in RAM: nothing is left anywhere."""
    spy = _Spy(monkeypatch)
    damaged = damage_package(prod_tar, tmp_path / "damaged.tar", "hello-bin")
    with pytest.raises(InvalidPackError, match=r"hello-bin.*is corrupt: expected sha256"):
        unpack(UnpackOptions(pack=damaged, output_directory=tmp_path / "out"))
    assert spy.staged, "nothing was staged in RAM before the refusal"
    assert not spy.stagings[0].folder.exists()
    assert not (tmp_path / "out").exists()


@needs_tmpfs
def test_reserve_keeps_to_the_limit_and_to_the_free_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RAM_STAGING_ENV, str(10 << 20))
    staging = RamStaging.create()
    assert staging is not None
    try:
        assert staging.limit <= 10 << 20
        assert staging.reserve(6 << 20) and staging.used == 6 << 20
        assert not staging.reserve(6 << 20), "two reservations exceed the limit"
        assert staging.reserve(4 << 20)
        staging.keep_free = 1 << 62  # more free space than any tmpfs has: nothing more fits
        staging.used = 0
        assert not staging.reserve(1)
    finally:
        staging.remove()
    assert not staging.folder.exists()


@needs_tmpfs
def test_a_folder_left_by_a_killed_unpack_is_removed_by_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    tmpfs = Path(ram_staging.TMPFS_CANDIDATES[0])
    abandoned = Path(tempfile.mkdtemp(prefix=ram_staging.PREFIX, dir=tmpfs))
    namespace = staging_owner._pid_namespace()
    (abandoned / staging_owner.OWNER_FILE).write_text(f"{dead.stdout.strip()} {namespace}\n")
    (abandoned / "cache").mkdir()
    busy = Path(tempfile.mkdtemp(prefix=ram_staging.PREFIX, dir=tmpfs))
    (busy / staging_owner.OWNER_FILE).write_text(f"{os.getpid()} {namespace}\n")
    elsewhere = Path(tempfile.mkdtemp(prefix=ram_staging.PREFIX, dir=tmpfs))  # another container's
    (elsewhere / staging_owner.OWNER_FILE).write_text(f"{dead.stdout.strip()} pid:[1]\n")
    staging = RamStaging.create()
    try:
        assert staging is not None
        assert not abandoned.exists(), "the folder of a process that is gone was kept"
        assert busy.exists(), "the folder of a running unpack was removed"
        assert elsewhere.exists(), "the folder of another pid namespace was removed"
    finally:
        shutil.rmtree(busy, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)
        shutil.rmtree(abandoned, ignore_errors=True)
        if staging is not None:
            staging.remove()


@needs_linux64
@needs_tmpfs
def test_a_full_tmpfs_sends_packages_to_the_disk(
    prod_tar: Path, tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive can unpack to many times its size: when the tmpfs has no room for a package's
    copy or extraction, that package is extracted on disk instead and the unpack succeeds."""
    with open(small_disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)
    monkeypatch.setattr(RamStaging, "package_folder", lambda staging, name: small_disk / "packages" / name)
    monkeypatch.setattr(RamStaging, "archive_path", lambda staging, subdir, name: small_disk / name)
    monkeypatch.setattr(RamStaging, "holds", lambda staging, path: path.is_relative_to(small_disk))
    spy = _Spy(monkeypatch)  # wraps the full file system's folders
    extracted: list[Path] = []
    extract = cache_prefill._extract

    async def spy_extract(client: object, url: str, folder: Path) -> str | None:
        sha256 = await extract(client, url, folder)  # type: ignore[arg-type]
        if sha256 is not None:
            extracted.append(folder)
        return sha256

    monkeypatch.setattr(cache_prefill, "_extract", spy_extract)
    prefix = unpack(UnpackOptions(pack=prod_tar, output_directory=tmp_path / "out"))
    _runs_with_its_prefix(prefix)
    assert len(spy.staged) == len(_packages(prod_tar)), "the packages were not offered to the RAM"
    assert len(extracted) == len(spy.staged) and all(
        f.parent.name == cache_prefill.STAGING for f in extracted
    )
    assert spy.stagings and not spy.stagings[0].folder.exists()
