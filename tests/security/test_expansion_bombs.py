"""Packages that expand far beyond what they declare, and packages that declare files they lack.

A few hundred bytes of bzip2 or zstd can expand to gigabytes; each bomb here expands to 64 MiB
(or declares a gigabyte) from a tiny archive and must be refused, naming the package, before any
extractor writes it (into RAM-backed staging or on disk): nothing is left behind. A package whose
paths.json lists a file its archive lacks is refused before rattler starts linking.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pixi_pack_ext.unpack import ram_staging
from pixi_pack_ext.unpack.cache_prefill import STREAM_MIN_SIZE_ENV
from pixi_pack_ext.unpack.driver import UnpackOptions, unpack
from pixi_pack_ext.unpack.ram_staging import RamStaging

from .conftest import Outcome
from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    index_json,
    make_package,
    path_entry,
    write_pack,
    zstd_raw,
)

BOMB = 64 << 20
#: info/ may hold up to 64 MiB (and more for a big archive): its bombs are bigger.
INFO_BOMB = 256 << 20
BLOCK = 128 << 10


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 1153704088
    return info.tobuf(tarfile.USTAR_FORMAT)


def _zstd_rle(first: bytes, zeros: int, last: bytes) -> bytes:
    """One zstd frame: ``first`` as a raw block, ``zeros`` zero bytes as RLE blocks (4 bytes per
    128 KiB), then ``last`` raw: a tiny frame that decompresses to ``zeros`` bytes and more."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00")  # no content size, windowed, no checksum
    out.append(0x58)  # a window descriptor (8 MiB)
    out += ((len(first) << 3) | 0).to_bytes(3, "little") + first
    while zeros > 0:
        size = min(zeros, BLOCK)
        out += ((size << 3) | (1 << 1)).to_bytes(3, "little") + b"\0"
        zeros -= size
    out += ((len(last) << 3) | 1).to_bytes(3, "little") + last
    return bytes(out)


def _bomb_conda(
    stem: str, paths: list[dict[str, object]], index: dict[str, object], info_bomb: bool
) -> bytes:
    """A .conda whose pkg (or info) archive holds one member of ``BOMB`` zero bytes."""
    buffer = io.BytesIO()
    info_tar = io.BytesIO()
    with tarfile.open(fileobj=info_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in (
            file_member("info/index.json", json.dumps(index).encode()),
            file_member("info/paths.json", json.dumps({"paths_version": 1, "paths": paths}).encode()),
        ):
            tar.addfile(member.info, io.BytesIO(member.data or b""))
    end = b"\0" * 1024
    size = INFO_BOMB if info_bomb else BOMB
    bomb = _zstd_rle(_tar_header("info/big" if info_bomb else "share/big.bin", size), size, end)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        if info_bomb:
            archive.writestr(f"pkg-{stem}.tar.zst", zstd_raw(b"\0" * 1024))
            # the real info members first, then the bomb (one frame each: frames concatenate)
            archive.writestr(f"info-{stem}.tar.zst", zstd_raw(info_tar.getvalue()[:-1024]) + bomb)
        else:
            archive.writestr(f"pkg-{stem}.tar.zst", bomb)
            archive.writestr(f"info-{stem}.tar.zst", zstd_raw(info_tar.getvalue()))
    return buffer.getvalue()


def _bomb_tar_bz2(
    index: dict[str, object], paths: list[dict[str, object]], *, data_first: bool, name: str
) -> bytes:
    """A .tar.bz2 whose ``name`` member is ``BOMB`` zero bytes (before or after info/)."""
    packer = bz2.BZ2Compressor(9)
    info = b""
    for member in (
        file_member("info/index.json", json.dumps(index).encode()),
        file_member("info/paths.json", json.dumps({"paths_version": 1, "paths": paths}).encode()),
    ):
        data = member.data or b""
        info += _tar_header(member.info.name, len(data)) + data + b"\0" * (-len(data) % 512)
    parts = [] if data_first else [packer.compress(info)]
    size = INFO_BOMB if name.startswith("info/") else BOMB
    parts.append(packer.compress(_tar_header(name, size)))
    zeros = b"\0" * (1 << 20)
    for _ in range(size >> 20):
        parts.append(packer.compress(zeros))
    if data_first:
        parts.append(packer.compress(info))
    parts.append(packer.compress(b"\0" * 1024))
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bz2_bombs() -> dict[tuple[bool, str], bytes]:
    """The .tar.bz2 bombs, compressed once for the module (64 MiB of zeros each)."""
    index = index_json("bomb")
    paths = [path_entry("share/big.bin", b"tiny\n")]
    return {
        (first, name): _bomb_tar_bz2(index, paths, data_first=first, name=name)
        for first, name in ((False, "share/big.bin"), (True, "share/big.bin"), (False, "info/big"))
    }


CASES = ["conda pkg", "conda info", "tar.bz2 pkg", "tar.bz2 pkg before info", "tar.bz2 info"]


@pytest.mark.parametrize("streamed", [False, True], ids=["file", "from-the-pack"])
@pytest.mark.parametrize("case", CASES)
def test_a_decompression_bomb_is_refused_before_extraction(
    case: str,
    streamed: bool,
    bz2_bombs: dict[tuple[bool, str], bytes],
    members: list[Member],
    unpack_hostile: Callable[..., Outcome],
) -> None:
    index = index_json("bomb")
    paths = [path_entry("share/big.bin", b"tiny\n")]  # declares 5 bytes
    if case.startswith("conda"):
        file_name, data = "bomb-1.0-0.conda", _bomb_conda("bomb-1.0-0", paths, index, case.endswith("info"))
    else:
        key = (case.endswith("before info"), "info/big" if case == "tar.bz2 info" else "share/big.bin")
        file_name, data = "bomb-1.0-0.tar.bz2", bz2_bombs[key]
    assert len(data) < 64 << 10, len(data)  # a tiny archive: the expansion is the attack
    add_package(members, file_name, data, index)
    env = {STREAM_MIN_SIZE_ENV: "1"} if streamed else None
    outcome = unpack_hostile(members, env=env)
    line = error_line(outcome.result)
    assert f"refusing package {file_name}" in line and "bytes" in line, line
    assert "bomb" in line, line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_a_package_declaring_its_true_sizes_installs(
    fmt: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    """The bound is what paths.json declares: 3 MiB of zeros that it declares install fine."""
    data = b"\0" * (3 << 20)
    index = index_json("roomy")
    file_name, package = make_package(
        index, [path_entry("share/zeros.bin", data)], [file_member("share/zeros.bin", data)], fmt
    )
    add_package(members, file_name, package, index)
    outcome = unpack_hostile(members)
    assert outcome.result.returncode == 0, outcome.result.stderr.decode()
    assert (
        hashlib.sha256((outcome.output / "env" / "share" / "zeros.bin").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["file", "from-the-pack"])
@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_paths_json_listing_a_file_the_archive_lacks_is_refused_before_linking(
    fmt: str, streamed: bool, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    index = index_json("hollow")
    paths = [path_entry("share/here.txt"), path_entry("share/missing.txt")]
    file_name, data = make_package(index, paths, [file_member("share/here.txt")], fmt)
    add_package(members, file_name, data, index)
    outcome = unpack_hostile(members, env={STREAM_MIN_SIZE_ENV: "1"} if streamed else None)
    line = error_line(outcome.result)
    assert (
        "refusing package hollow-1.0-0" in line and "'share/missing.txt', which its archive lacks" in line
    ), line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"


def test_ram_staging_is_bounded_by_the_declared_expansion_not_the_archive(
    members: list[Member], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few-KB .conda that honestly declares 64 MiB of zeros goes through the disk when the RAM
    limit is below that (it used to count as its archive size and fill the tmpfs)."""
    if not Path(ram_staging.TMPFS_CANDIDATES[0]).is_dir():
        pytest.skip("no tmpfs at /dev/shm here")
    monkeypatch.setenv(ram_staging.RAM_STAGING_ENV, str(32 << 20))
    staged: list[str] = []
    package_folder = RamStaging.package_folder

    def spy(staging: RamStaging, name: str) -> Path:
        staged.append(name)
        return package_folder(staging, name)

    monkeypatch.setattr(RamStaging, "package_folder", spy)
    index = index_json("zeros")
    digest = hashlib.sha256(b"\0" * BOMB).hexdigest()
    paths = [{"_path": "share/big.bin", "path_type": "hardlink", "sha256": digest, "size_in_bytes": BOMB}]
    data = _bomb_conda("zeros-1.0-0", paths, index, info_bomb=False)
    assert len(data) < 64 << 10
    add_package(members, "zeros-1.0-0.conda", data, index)
    pack = write_pack(tmp_path / "zeros.tar", members)
    prefix = unpack(UnpackOptions(pack=pack, output_directory=tmp_path / "out"))
    assert (prefix / "share" / "big.bin").stat().st_size == BOMB
    assert staged and not any("zeros-1.0-0" in name for name in staged), staged
