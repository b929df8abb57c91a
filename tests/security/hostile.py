"""Hand-made hostile packs and packages: tar members written as an attacker would write them.

Packs are rewritten member by member from a real pack; packages are real ``.tar.bz2`` archives and
real ``.conda`` zips (zstd frames written with raw blocks, so no zstd library is needed) whose
``paths.json`` and members say whatever the test wants.
"""

from __future__ import annotations

import bz2
import copy
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MTIME = 1153704088
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")


@dataclass
class Member:
    """One tar entry: its header and (for regular files) its data."""

    info: tarfile.TarInfo
    data: bytes | None = None


def read_members(pack: Path) -> list[Member]:
    with tarfile.open(pack) as tar:
        members = []
        for info in tar.getmembers():
            source = tar.extractfile(info) if info.isfile() else None
            members.append(Member(copy.copy(info), source.read() if source else None))
        return members


def write_pack(path: Path, members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for member in members:
            tar.addfile(member.info, io.BytesIO(member.data) if member.data is not None else None)
    return path


def file_member(name: str, data: bytes = b"x\n", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    return Member(info, data)


def dir_member(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
    return Member(info)


def link_member(name: str, target: str, *, hard: bool = False) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname, info.mode, info.mtime = target, 0o777, MTIME
    return Member(info)


def special_member(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, 0o666, MTIME
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return Member(info)


def find(members: list[Member], name: str) -> Member:
    return next(m for m in members if m.info.name == name)


def set_data(members: list[Member], name: str, data: bytes) -> None:
    member = find(members, name)
    member.data = data
    member.info.size = len(data)


def remove(members: list[Member], name: str) -> None:
    members[:] = [m for m in members if m.info.name != name]


def package_names(members: list[Member]) -> list[str]:
    """The pack's package files, in pack order."""
    return [
        m.info.name
        for m in members
        if m.info.name.startswith("channel/") and m.info.name.endswith(PACKAGE_SUFFIXES)
    ]


# --------------------------------------------------------------------------------------------------
# Hand-made conda packages
# --------------------------------------------------------------------------------------------------


def zstd_raw(data: bytes) -> bytes:
    """A valid zstd frame holding ``data`` uncompressed (raw blocks of at most 128 KiB)."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out.append(0xE0)  # 8-byte content size, single segment, no checksum, no dictionary
    out += struct.pack("<Q", len(data))
    chunks = [data[i : i + (1 << 17)] for i in range(0, len(data), 1 << 17)] or [b""]
    for i, chunk in enumerate(chunks):
        header = (len(chunk) << 3) | int(i == len(chunks) - 1)  # block type 0: raw
        out += header.to_bytes(3, "little") + chunk
    return bytes(out)


def _tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            tar.addfile(member.info, io.BytesIO(member.data) if member.data is not None else None)
    return buffer.getvalue()


def index_json(
    name: str, version: str = "1.0", build: str = "0", subdir: str = "noarch"
) -> dict[str, object]:
    index: dict[str, object] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": [],
        "subdir": subdir,
    }
    if subdir == "noarch":
        index["noarch"] = "generic"
    return index


def path_entry(path: str, data: bytes | None = None, *, softlink: bool = False) -> dict[str, object]:
    if softlink:
        return {"_path": path, "path_type": "softlink"}
    data = data if data is not None else b"x\n"
    return {
        "_path": path,
        "path_type": "hardlink",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data),
    }


def make_package(
    index: dict[str, object],
    paths: list[dict[str, object]] | None,
    members: list[Member],
    fmt: str,
    files_list: list[str] | None = None,
    info_members: tuple[Member, ...] = (),
) -> tuple[str, bytes]:
    """(file name, bytes) of a package with this index.json, paths.json and payload members;
    ``paths=None`` leaves paths.json out, as old packages do, and ``files_list`` is their
    ``info/files``; ``info_members`` are more files of ``info/`` (``info/link.json``)."""
    stem = f"{index['name']}-{index['version']}-{index['build']}"
    info = [file_member("info/index.json", json.dumps(index).encode()), *info_members]
    if paths is not None:
        info.append(file_member("info/paths.json", json.dumps({"paths_version": 1, "paths": paths}).encode()))
    if files_list is not None:
        info.append(file_member("info/files", "".join(f"{line}\n" for line in files_list).encode()))
    if fmt == "tar.bz2":
        return f"{stem}.tar.bz2", bz2.compress(_tar_bytes(info + members))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        archive.writestr(f"pkg-{stem}.tar.zst", zstd_raw(_tar_bytes(members)))
        archive.writestr(f"info-{stem}.tar.zst", zstd_raw(_tar_bytes(info)))
    return f"{stem}.conda", buffer.getvalue()


def add_package(members: list[Member], file_name: str, data: bytes, index: dict[str, object]) -> None:
    """Put a package into the pack's channel and list it, with its true hashes, in repodata.json."""
    subdir = str(index["subdir"])
    members.append(file_member(f"channel/{subdir}/{file_name}", data))
    repodata_name = f"channel/{subdir}/repodata.json"
    repodata = json.loads(find(members, repodata_name).data or b"{}")
    table = "packages.conda" if file_name.endswith(".conda") else "packages"
    repodata.setdefault(table, {})[file_name] = {
        **index,
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
    }
    set_data(members, repodata_name, json.dumps(repodata).encode())


# --------------------------------------------------------------------------------------------------
# What a user checks after a refusal
# --------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path below ``root`` (links not followed) with its kind and size."""
    result: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
            result[str(path.relative_to(root))] = (kind, 0 if kind == "dir" else st.st_size)
    return result


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one error line of a refused run (and proof that there was no traceback)."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, f"expected a refusal, got exit 0:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]
