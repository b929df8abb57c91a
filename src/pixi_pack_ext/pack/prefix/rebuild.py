"""Rebuild a ``.conda`` package from the folder a package cache extracted it into.

pixi's and rattler's caches keep extracted folders, not archives. When neither a cache, the
``--use-cache`` folder nor the channel has a package's original archive, ``pixi-pack --prefix``
rebuilds one from that folder: the files ``info/paths.json`` lists (each checked against its sha256
there, so an edited cache is refused) plus ``info/``, in a ``.conda`` that any conda installer reads.
The bytes differ from the original archive's (another compressor, other tar headers), so the pack
records the rebuilt file's sha256 and size and keeps the original ones for reference.

The two inner tars are zstd frames made of raw (stored) blocks: the zstd format written with the
standard library alone (py-rattler exposes no package writer, and no zstd compressor is a
dependency). Such a package is as big as its files; it is a fallback for packages that cannot be
had otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import rattler

from ...errors import DownloadError, PrefixError

if TYPE_CHECKING:
    from ...plan import CondaPackage
    from ..fetch_item import FetchItem

log = logging.getLogger(__name__)

#: Largest raw zstd block (the format's Block_Maximum_Size).
ZSTD_BLOCK = 128 << 10
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Frame header descriptor: an 8-byte frame content size, single segment, no checksum, no dictionary.
ZSTD_DESCRIPTOR = b"\xe0"
#: Every zip entry of a rebuilt package has this date (zip cannot store anything earlier).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Rebuilt:
    """A rebuilt package file and its digests."""

    path: Path
    sha256: str
    md5: str
    size: int


def conda_file_name(record: rattler.PackageRecord) -> str:
    return f"{record.name.normalized}-{record.version}-{record.build}.conda"


def extracted_folder(record: rattler.PrefixRecord, cache_dirs: list[Path]) -> Path | None:
    """The folder a package cache extracted ``record`` into, when one exists and its
    ``info/index.json`` names the same package."""
    stem = f"{record.name.normalized}-{record.version}-{record.build}"
    candidates = [Path(record.extracted_package_dir)] if record.extracted_package_dir else []
    candidates += [folder / stem for folder in cache_dirs]
    for folder in candidates:
        try:
            index = json.loads((folder / "info" / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(index, dict)
            and index.get("name") == record.name.normalized
            and str(index.get("version")) == str(record.version)
            and index.get("build") == str(record.build)
        ):
            return folder
    return None


def _listed_paths(folder: Path) -> list[dict[str, object]]:
    """The entries of ``info/paths.json`` (or, for old packages, ``info/files``)."""
    paths_json = folder / "info" / "paths.json"
    if paths_json.is_file():
        data = json.loads(paths_json.read_text(encoding="utf-8"))
        entries = data.get("paths") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("info/paths.json has no 'paths' list")
        return [e for e in entries if isinstance(e, dict)]
    files = (folder / "info" / "files").read_text(encoding="utf-8").splitlines()
    return [{"_path": line} for line in files if line.strip()]


def _safe_member(name: str) -> str:
    """A relative, normalized path inside the package (the folder is ours, but the lists in it came
    from a package)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe path '{name}' in the package's file list")
    return "/".join(parts)


def _tar_of(folder: Path, members: list[str], out: BinaryIO, expected: dict[str, str], mtime: int) -> None:
    """A tar of ``members`` (paths relative to ``folder``, in this order), with normalized owners
    and times; a regular file whose sha256 differs from ``expected`` stops it."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in members:
            path = folder / name
            st = path.lstat()
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(path, "rb") as f:
                    digest = _Hashing(f)
                    tar.addfile(info, digest)  # type: ignore[arg-type]
                if name in expected and digest.sha256.hexdigest() != expected[name]:
                    raise ValueError(f"'{name}' does not match the sha256 info/paths.json records")
            else:
                raise ValueError(f"'{name}' is not a file, link or folder")


class _Hashing:
    """A reader that hashes what is read through it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha256.update(data)
        return data


def _zstd_stored(src: BinaryIO, size: int, out: BinaryIO) -> None:
    """``src`` (``size`` bytes) as one zstd frame of raw blocks (RFC 8878, 3.1.1)."""
    out.write(ZSTD_MAGIC + ZSTD_DESCRIPTOR + size.to_bytes(8, "little"))
    if size == 0:
        out.write((1).to_bytes(3, "little"))  # one empty last raw block
        return
    remaining = size
    while remaining:
        n = min(ZSTD_BLOCK, remaining)
        remaining -= n
        out.write(((n << 3) | (0 if remaining else 1)).to_bytes(3, "little"))
        out.write(src.read(n))


def rebuild_conda(folder: Path, record: rattler.PackageRecord, out_dir: Path) -> Rebuilt:
    """Write ``<name>-<version>-<build>.conda`` into ``out_dir`` from the extracted ``folder``."""
    stem = conda_file_name(record).removesuffix(".conda")
    try:
        entries = _listed_paths(folder)
        expected = {
            _safe_member(str(e["_path"])): str(e["sha256"])
            for e in entries
            if isinstance(e.get("sha256"), str) and e.get("path_type", "hardlink") == "hardlink"
        }
        files = sorted({_safe_member(str(e["_path"])) for e in entries})
        info = sorted(
            p.relative_to(folder).as_posix()
            for p in (folder / "info").rglob("*")
            if not p.is_dir() or p.is_symlink()
        )
    except (OSError, ValueError, KeyError) as exc:
        raise PrefixError(f"cannot rebuild {stem}.conda from '{folder}': {exc}") from None
    mtime = int(record.timestamp.timestamp()) if record.timestamp else 0
    target = out_dir / f"{stem}.conda"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".rebuild-") as scratch:
        zip_path = Path(scratch) / target.name
        try:
            with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
                _add(archive, "metadata.json", io.BytesIO(b'{"conda_pkg_format_version": 2}'), scratch)
                for kind, members in (
                    ("pkg", [f for f in files if not f.startswith("info/")]),
                    ("info", info),
                ):
                    tar_path = Path(scratch) / f"{kind}.tar"
                    with open(tar_path, "wb") as out:
                        _tar_of(folder, members, out, expected, mtime)
                    with open(tar_path, "rb") as src:
                        _add(archive, f"{kind}-{stem}.tar.zst", src, scratch, tar_path.stat().st_size)
                    tar_path.unlink()
        except (OSError, ValueError) as exc:
            raise PrefixError(f"cannot rebuild {stem}.conda from '{folder}': {exc}") from None
        sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
        with open(zip_path, "rb") as f:
            while chunk := f.read(CHUNK):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        os.replace(zip_path, target)
    return Rebuilt(target, sha256.hexdigest(), md5.hexdigest(), size)


def _add(archive: zipfile.ZipFile, name: str, src: BinaryIO, scratch: str, size: int | None = None) -> None:
    """Store one entry: the zstd frame of ``src`` (``metadata.json`` as it is)."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    if size is None:
        archive.writestr(info, src.read())
        return
    framed = Path(scratch) / "frame"
    with open(framed, "wb") as out:
        _zstd_stored(src, size, out)
    info.file_size = framed.stat().st_size
    with open(framed, "rb") as f, archive.open(info, "w") as entry:
        shutil.copyfileobj(f, entry, CHUNK)
    framed.unlink()


def use_rebuilt(package: CondaPackage, rebuilt: Rebuilt) -> None:
    """Make ``package`` the rebuilt file: its record takes the new file name and digests, and the
    pack's repodata keeps the original ones as ``rebuilt_from``."""
    record = package.record
    package.repodata_extra["rebuilt_from"] = {
        "fn": record.file_name,
        "sha256": record.sha256.hex() if record.sha256 else None,
        "md5": record.md5.hex() if record.md5 else None,
        "size": record.size,
    }
    new = rattler.RepoDataRecord(record, rebuilt.path.name, record.url, record.channel or "")
    new.sha256 = bytes.fromhex(rebuilt.sha256)
    new.md5 = bytes.fromhex(rebuilt.md5)
    new.size = rebuilt.size
    package.record = new
    package.local_path = rebuilt.path


def fetch_or_rebuild(
    items: list[FetchItem], packages: dict[Path, CondaPackage], fetch: Callable[[list[FetchItem]], None]
) -> None:
    """Fetch ``items`` (packages that have an extracted folder to fall back on, by destination);
    rebuild each one that could not be fetched, and name them all in one warning."""
    try:
        fetch(items)
    except DownloadError as exc:
        log.info("%s; rebuilding from the package caches' extracted folders instead", exc)
    rebuilt: list[str] = []
    for item in items:
        if item.dest.exists():
            continue
        package = packages[item.dest]
        assert package.rebuild_from is not None
        use_rebuilt(package, rebuild_conda(package.rebuild_from, package.record, item.dest.parent))
        rebuilt.append(package.spec)
    if rebuilt:
        log.warning(
            "rebuilt %d package(s) from the folders the package caches extracted them into, as no "
            "cache, --use-cache folder or channel had their archives: %s; the pack records the "
            "rebuilt files' sha256 and size (their bytes differ from the channel's) and keeps the "
            "original ones under 'rebuilt_from' in its repodata",
            len(rebuilt),
            ", ".join(sorted(rebuilt)),
        )
