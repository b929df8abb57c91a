"""The default unpacker of self-extracting packs: pixi-unpack as one zipapp for the target platform.

It carries this very ``pixi_pack_ext`` package plus the wheels of its runtime dependencies for the
target (py-rattler's abi3 wheel and pure-Python ones), so a target needs only ``python3 >= 3.10``.
Wheels come (``unpacker_wheels``), in this order, from a wheelhouse folder (``--unpacker-wheelhouse`` or
``$PIXI_PACK_WHEELHOUSE``, offline), from the user cache, or from the Python index through
``pip download`` (then cached). When none of these works and the target is this machine, the
installed distributions of the running environment are copied instead (that bundle needs the
running Python's minor version or newer). Built zipapps are cached by content.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import logging
import marshal
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .. import __version__
from ..errors import PackError
from ..status import status
from .elf_strip import strip_symbols
from .unpacker_wheels import (
    DISTRIBUTION,
    MIN_PYTHON,
    PACKAGE_DIR,
    WHEELHOUSE_ENV,
    cache_dir,
    check_platform,
    installed_closure,
    resolve_wheels,
)

log = logging.getLogger(__name__)

#: Bump when the zipapp's layout or runtime changes (part of the cache key).
BUNDLE_VERSION = "3"
#: Built zipapps kept per platform in the cache (each version of this code builds its own).
KEEP_ZIPAPPS = 3
#: Parts of this package an unpacker never needs.
SKIPPED_PARTS = {"__pycache__", "testing"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# -- the zipapp -----------------------------------------------------------------------------------


def _own_files() -> Iterator[tuple[str, Path]]:
    """(archive name, file) for this package's own modules."""
    for path in sorted(PACKAGE_DIR.rglob("*")):
        relative = path.relative_to(PACKAGE_DIR)
        if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix != ".pyc":
            yield f"lib/pixi_pack_ext/{relative.as_posix()}", path


def _own_metadata() -> dict[str, bytes]:
    info = f"pixi_pack_ext-{__version__}.dist-info"
    return {
        f"lib/{info}/METADATA": f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {__version__}\n".encode(),
        f"lib/{info}/top_level.txt": b"pixi_pack_ext\n",
    }


def _installed_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if ".." in parts or "__pycache__" in parts or str(file).endswith((".pyc", ".pth")):
            continue
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            yield f"lib/{Path(str(file)).as_posix()}", path


def _key(sources: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(f"{BUNDLE_VERSION}\n".encode())
    for name, content_digest in sorted(sources):
        digest.update(name.encode() + b"\0" + content_digest)
    return digest.hexdigest()[:32]


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.digest()


#: Where the bytes of a zipapp entry come from: a file, a member of a wheel, or literal bytes.
Source = Path | tuple[Path, str] | bytes
#: Compiled code, loadable only from disk: its whole top-level folder is extracted at run time.
_NATIVE_FILE = re.compile(r"\.(so|pyd|dylib|dll)$|\.so\.")


def _wheel_entries(wheel: Path) -> Iterator[tuple[str, Source]]:
    """(install path, source) for what installing ``wheel`` puts in site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = [member.filename for member in archive.infolist() if not member.is_dir()]
    for name in names:
        parts = name.split("/")
        if ".." in parts or "__pycache__" in parts:
            continue
        if parts[0].endswith(".data"):
            if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                continue  # scripts, headers, data: not needed to import
            parts = parts[2:]
        yield "/".join(parts), (wheel, name)


#: What importlib.metadata reads of a ``*.dist-info`` folder (it cannot read one inside a zip).
_METADATA_FILES = frozenset({"METADATA", "entry_points.txt", "top_level.txt"})


def _on_disk(name: str) -> bool:
    """Whether the unpacker extracts this installed file (compiled code, the metadata read at run
    time) rather than reading it from the zip."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0].endswith(".dist-info"):
        return parts[1] in _METADATA_FILES
    return bool(_NATIVE_FILE.search(parts[-1]))


def _bytecode(source: bytes, name: str) -> bytes | None:
    """An unchecked-hash pyc of ``source`` for this Python (None where it does not compile)."""
    try:
        code = compile(source, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    flags = (1).to_bytes(4, "little")  # hash-based, not checked against the source (PEP 552)
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)


def _bytecode_name(entry: str) -> str | None:
    """Where the zipapp keeps the pyc of ``entry``: beside it, where zipimport looks for one."""
    if sys.implementation.cache_tag is None or not entry.endswith(".py") or not entry.startswith("lib/"):
        return None
    return entry + "c"


def _write_entry(bundle: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    bundle.writestr(info, data, compresslevel=6)


#: zlib level of the compiled libraries: 6 makes them a third of their stored size; 9 saves 2%
#: more at three times the time (paid once: built zipapps are cached).
LIBRARY_LEVEL = 6


def _write_library(
    bundle: zipfile.ZipFile, name: str, source: Source, wheels: dict[Path, zipfile.ZipFile]
) -> str:
    """Store a compiled library deflated, without its ELF symbol table (nothing loads it; it is a
    third of py-rattler's Linux library); returns the sha256 of the bytes the target writes out.

    The unpacker inflates a library once per machine into a content-addressed cache (see
    ``unpacker_main``), so the smaller pack costs nothing on later runs.
    """
    data = strip_symbols(_read(source, wheels))
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o755 << 16
    bundle.writestr(info, data, compresslevel=LIBRARY_LEVEL)
    return hashlib.sha256(data).hexdigest()


def self_checked_size(zipapp: Path) -> int:
    """How many bytes at the start of the zipapp it checks itself: its compiled libraries, which
    come first and whose sha256s its ``bundle.json`` lists. The self-extracting header checks the
    rest, ``bundle.json`` included, before it runs the zipapp."""
    with zipfile.ZipFile(zipapp) as bundle:
        libraries = json.loads(bundle.read("bundle.json")).get("libraries", {})
        others = [info.header_offset for info in bundle.infolist() if info.filename not in libraries]
        first_other = min(others, default=0)
        if any(bundle.getinfo(name).header_offset >= first_other for name in libraries):
            return 0  # not all in front: let the header check everything
        return first_other


def _folders(names: Iterable[str]) -> list[str]:
    """Every folder holding one of ``names``: zipimport finds a namespace package (a folder without
    ``__init__.py``, such as some of py-rattler's) only by its folder's own zip entry."""
    folders = set()
    for name in names:
        parts = name.split("/")[:-1]
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return sorted(folders)


def _write_folder(bundle: zipfile.ZipFile, name: str) -> None:
    info = zipfile.ZipInfo(f"{name}/", _ZIP_TIME)
    info.external_attr = (0o40755 << 16) | 0x10
    bundle.writestr(info, b"")


def _read(source: Source, wheels: dict[Path, zipfile.ZipFile]) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, Path):
        return source.read_bytes()
    return wheels[source[0]].read(source[1])


def _write_zipapp(
    target: Path,
    wheels: list[Path],
    installed: list[tuple[str, Path]],
    python: tuple[int, int],
    platform: str,
) -> None:
    """Write the zipapp deterministically (sorted entries, fixed times); see ``unpacker_main``.

    The wheels' files land as installed under ``lib/`` (imported from the zip, each ``.py`` with a
    pyc for this Python) or, for what must be on disk, ``native/`` (extracted at run time; compiled
    libraries are inflated once into the target's cache and reused from there).
    """
    files: dict[str, Source] = {}
    for wheel in sorted(wheels, key=lambda w: w.name):
        files.update(_wheel_entries(wheel))
    files.update({name.removeprefix("lib/"): path for name, path in installed})
    files.update({name.removeprefix("lib/"): data for name, data in _own_metadata().items()})
    files.update({name.removeprefix("lib/"): path for name, path in _own_files()})
    main = (Path(__file__).resolve().parent / "unpacker_main.py").read_bytes()
    info: dict[str, object] = {
        "python": list(python),
        "platform": platform,
        "pixi-pack-ext": __version__,
        "wheels": sorted(wheel.name for wheel in wheels),
    }
    with contextlib.ExitStack() as stack:
        opened = {wheel: stack.enter_context(zipfile.ZipFile(wheel)) for wheel in wheels}
        bundle = stack.enter_context(zipfile.ZipFile(target, "w"))
        # The compiled libraries first: the header's sha256 leaves them out, the zipapp checks them
        # against the sha256s in bundle.json as it copies them out, on the other core.
        libraries = sorted(name for name in files if _NATIVE_FILE.search(name.rsplit("/", 1)[-1]))
        info["libraries"] = {
            f"native/{name}": _write_library(bundle, f"native/{name}", files[name], opened)
            for name in libraries
        }
        _write_entry(bundle, "__main__.py", main)
        main_pyc = _bytecode(main, "__main__.py")
        if main_pyc is not None and sys.implementation.cache_tag is not None:
            _write_entry(bundle, "__main__.pyc", main_pyc)
        _write_entry(bundle, "bundle.json", json.dumps(info, sort_keys=True).encode())
        for folder in _folders(name for name in files if not _on_disk(name)):
            _write_folder(bundle, f"lib/{folder}")
        for name in sorted(set(files) - set(libraries)):
            entry = ("native/" if _on_disk(name) else "lib/") + name
            data = _read(files[name], opened)
            _write_entry(bundle, entry, data)
            pyc_name = _bytecode_name(entry)
            pyc = _bytecode(data, entry) if pyc_name else None
            if pyc_name and pyc is not None:
                _write_entry(bundle, pyc_name, pyc)


def _cached_build(platform: str, key_sources: list[tuple[str, bytes]], build: Callable[[Path], None]) -> Path:
    """The zipapp for these sources from the cache, built first if needed.

    Each change of this code makes a new one, so only the newest few per platform are kept.
    """
    key = _key(key_sources)
    target = cache_dir() / "zipapps" / f"pixi-unpack-{platform}-{key}.pyz"
    if target.is_file():
        return target
    status.info("building the bundled pixi-unpack for %s (once: it is kept in %s)", platform, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=".pixi-unpack-", suffix=".part", dir=target.parent)
    os.close(fd)
    part = Path(part_name)
    try:
        build(part)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    older = sorted(target.parent.glob(f"pixi-unpack-{platform}-*.pyz"), key=lambda p: p.stat().st_mtime)
    for stale in older[:-KEEP_ZIPAPPS]:
        with contextlib.suppress(OSError):
            stale.unlink()
    return target


def build_unpacker(platform: str, wheelhouse: Path | None = None) -> Path:
    """A cached pixi-unpack zipapp for ``platform``; see the module docstring for where wheels come from."""
    check_platform(platform)
    if wheelhouse is None and os.environ.get(WHEELHOUSE_ENV):
        wheelhouse = Path(os.environ[WHEELHOUSE_ENV])
    own = [(name, _file_digest(path)) for name, path in _own_files()]
    own.append(("__main__.py", _file_digest(Path(__file__).resolve().parent / "unpacker_main.py")))
    own.append(("version", __version__.encode()))
    own.append(("bytecode", importlib.util.MAGIC_NUMBER + (sys.implementation.cache_tag or "").encode()))
    with tempfile.TemporaryDirectory(prefix="pixi-pack-wheels-") as tmp:
        wheels, why = resolve_wheels(platform, wheelhouse, Path(tmp))
        if wheels is not None:
            sources = [*own, ("platform", platform.encode())]
            sources += [(f"wheel/{w.name}", _file_digest(w)) for w in wheels]
            return _cached_build(
                platform, sources, lambda part: _write_zipapp(part, wheels, [], MIN_PYTHON, platform)
            )
    import rattler

    if platform != str(rattler.Subdir.current()):
        raise PackError(
            f"could not get the wheels of the embedded pixi-unpack for {platform} ({why}); "
            f"give a wheelhouse folder with --unpacker-wheelhouse or ${WHEELHOUSE_ENV}, "
            "or embed another unpacker with --pixi-unpack-source"
        )
    python = sys.version_info[:2]
    log.warning(
        "could not download the embedded pixi-unpack's wheels (%s); embedding this environment's "
        "installed packages instead: the target then needs Python >= %d.%d",
        why,
        *python,
    )
    installed = [entry for dist in installed_closure() for entry in _installed_files(dist)]
    sources = [*own, ("platform", platform.encode()), ("python", bytes(python))]
    sources += [(name, _file_digest(path)) for name, path in installed]
    return _cached_build(
        platform, sources, lambda part: _write_zipapp(part, [], installed, (python[0], python[1]), platform)
    )
