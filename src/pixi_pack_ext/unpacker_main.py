"""``__main__`` of the bundled pixi-unpack zipapp (standard library only, Python >= 3.10).

Pure-Python modules are imported straight from the zip (``lib/``), each source with its bytecode
for the Python that built the zipapp beside it (another version compiles the source instead), so a
run reads only the modules it imports. What cannot be loaded from a zip is extracted (``native/``:
compiled extensions such as py-rattler's, stored uncompressed so that extracting them is a copy,
and the ``*.dist-info`` metadata importlib.metadata reads): into ``$PIXI_UNPACK_LIB_DIR`` when the
self-extracting header gives one (it removes its temporary folder itself), else into a temporary
folder removed on exit, Ctrl-C included. The big files are copied by a thread while the imports
run; importing an extension waits for them. The host's site-packages are left out of ``sys.path``
so that only the bundled, tested versions are imported.

Run by a self-extracting header, the zipapp gets ``PIXI_UNPACK_ARCHIVE_CHECK`` among its globals:
the hash of the pack's tar the header started before the zipapp (see
``selfextract.adopt_archive_check``), which the unpack compares before it installs anything.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import struct
import sys
import sysconfig
import tempfile
import threading
import zipfile
from typing import Any

LIB = "lib"
NATIVE = "native/"
LIB_DIR_ENV = "PIXI_UNPACK_LIB_DIR"
CHECK_GLOBAL = "PIXI_UNPACK_ARCHIVE_CHECK"
#: Stored entries at least this big are copied by the kernel in the background.
BIG = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def _archive() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _stdlib_paths() -> list[str]:
    paths = sysconfig.get_paths()
    roots = {os.path.normcase(os.path.abspath(paths[key])) for key in ("stdlib", "platstdlib")}
    kept = []
    for entry in sys.path:
        norm = os.path.normcase(os.path.abspath(entry)) if entry else ""
        if "site-packages" in norm or "dist-packages" in norm:
            continue
        if any(norm == root or norm.startswith(root + os.sep) for root in roots) or norm.endswith(".zip"):
            kept.append(entry)
    return kept


def _check_python(bundle: zipfile.ZipFile) -> None:
    needed = tuple(json.loads(bundle.read("bundle.json")).get("python", [3, 10]))
    if sys.version_info[:2] < needed:
        version = ".".join(map(str, needed))
        sys.stderr.write(
            f"pixi-unpack: error: this unpacker needs Python >= {version}, "
            f"but {sys.executable} is {sys.version.split()[0]}\n"
        )
        raise SystemExit(1)


def _data_offset(raw: int, member: zipfile.ZipInfo) -> int:
    """Where a member's bytes start: after its local header (whose extra field may differ)."""
    header = os.pread(raw, _LOCAL_HEADER.size, member.header_offset)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {member.filename}")
    return member.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _copy_stored(raw: int, member: zipfile.ZipInfo, destination: str) -> bool:
    """Copy a stored member with ``copy_file_range``; False where the kernel cannot."""
    if not hasattr(os, "copy_file_range"):
        return False
    offset, done = _data_offset(raw, member), 0
    with open(destination, "wb") as out:
        while done < member.file_size:
            try:
                copied = os.copy_file_range(raw, out.fileno(), member.file_size - done, offset + done)
            except OSError:
                copied = 0
            if copied == 0:
                return False
            done += copied
    return True


def _extract_member(bundle: zipfile.ZipFile, raw: int, member: zipfile.ZipInfo, destination: str) -> None:
    if member.compress_type == zipfile.ZIP_STORED and _copy_stored(raw, member, destination):
        return
    with bundle.open(member) as source, open(destination, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


class Native:
    """The zipapp's ``native/`` files on disk, and a finder for its compiled extensions.

    The small files (metadata) are extracted at once, the big ones (the extensions) by a thread;
    ``find_spec`` hands out an extension only once that thread is done, so the imports before it
    run meanwhile. An extension's package stays in the zip: the finder locates the module itself.
    """

    def __init__(self, archive: str, target: str) -> None:
        self.folder = os.path.join(target, "native")
        self.extensions: dict[str, str] = {}
        self._error: BaseException | None = None
        self._bundle = zipfile.ZipFile(archive)
        _check_python(self._bundle)
        self._raw = os.open(archive, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        big = []
        for member in self._bundle.infolist():
            parts = member.filename.split("/")
            if not member.filename.startswith(NATIVE) or member.is_dir() or ".." in parts:
                continue
            destination = os.path.join(self.folder, *parts[1:])
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            self._note_extension(parts[1:], destination)
            if member.file_size >= BIG:
                big.append((member, destination))
            else:
                _extract_member(self._bundle, self._raw, member, destination)
        self._thread = threading.Thread(target=self._extract, args=(big,), daemon=True)
        self._thread.start()

    def _note_extension(self, parts: list[str], destination: str) -> None:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if parts[-1].endswith(suffix):
                module = [*parts[:-1], parts[-1][: -len(suffix)]]
                self.extensions.setdefault(".".join(module), destination)
                return

    def _extract(self, big: list[tuple[zipfile.ZipInfo, str]]) -> None:
        try:
            for member, destination in big:
                _extract_member(self._bundle, self._raw, member, destination)
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc
        finally:
            self._bundle.close()
            os.close(self._raw)

    def wait(self) -> None:
        """Wait for the big files; raise what stopped their extraction."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Wait for the extraction thread, whatever became of it (before its folder is removed)."""
        self._thread.join()

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        location = self.extensions.get(fullname)
        if location is None:
            return None
        self.wait()
        loader = importlib.machinery.ExtensionFileLoader(fullname, location)
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


def _adopt_archive_check(check: tuple[Any, ...]) -> None:
    from pathlib import Path

    from pixi_pack_ext.selfextract import adopt_archive_check

    path, offset, size, thread, result = check
    adopt_archive_check(Path(path), offset, size, thread, result)


def _extraction_failed(folder: str, exc: OSError) -> int:
    sys.stderr.write(f"pixi-unpack: error: cannot extract the bundled libraries into {folder}: {exc}\n")
    return 1


def _run(native: Native) -> int:
    """pixi-unpack's command line; its exit code."""
    try:
        from pixi_pack_ext.cli.common import exit_code
        from pixi_pack_ext.cli.unpack import run
    except ImportError:
        try:
            native.wait()
        except OSError as exc:  # the real cause of the failed import
            return _extraction_failed(native.folder, exc)
        raise
    try:
        run()
    except SystemExit as exc:
        return exit_code(exc)
    return 0


def _run_from(archive: str, target: str, check: tuple[Any, ...] | None) -> int:
    try:
        native = Native(archive, target)
    except OSError as exc:
        return _extraction_failed(target, exc)
    sys.path[:] = [os.path.join(archive, LIB), native.folder, *_stdlib_paths()]
    sys.meta_path.insert(0, native)  # type: ignore[arg-type]  # a finder: find_spec only
    importlib.invalidate_caches()
    if check is not None:
        _adopt_archive_check(check)
    try:
        return _run(native)
    finally:
        native.join()


def main() -> None:
    given = os.environ.pop(LIB_DIR_ENV, "")
    target = given or tempfile.mkdtemp(prefix="pixi-unpack-lib-")
    try:
        code = _run_from(_archive(), target, globals().get(CHECK_GLOBAL))
    finally:
        if not given:
            shutil.rmtree(target, ignore_errors=True)
    # Leave without interpreter teardown, during which py-rattler's native runtime can crash.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
