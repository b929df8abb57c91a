"""``__main__`` of the bundled pixi-unpack zipapp (standard library only, Python >= 3.10).

Pure-Python modules are imported straight from the zip (``lib/``), each source with its bytecode
for the Python that built the zipapp beside it (another version compiles the source instead), so a
run reads only the modules it imports. What cannot be loaded from a zip lives in ``native/``: the
``*.dist-info`` metadata importlib.metadata reads is extracted into ``$PIXI_UNPACK_LIB_DIR`` when
the self-extracting header gives one (it removes its temporary folder itself), else into a
temporary folder removed on exit, Ctrl-C included. The compiled libraries (py-rattler's) are
deflated in the zip, which keeps a pack small: they are inflated once per machine into the user's
cache, in a folder named by their sha256s, and each later run checks the cached files against
those sha256s and loads them from there. The host's site-packages are left out of ``sys.path`` so
that only the bundled, tested versions are imported.

The compiled libraries come first in the zip and the self-extracting header does not check them:
each is checked against the sha256 ``bundle.json`` lists (in the part the header checked) while
it is inflated or found in the cache, by a thread, as the imports run; importing an extension
waits for that, and a library that does not match stops the run before anything is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import mmap
import os
import shutil
import stat
import struct
import sys
import sysconfig
import tempfile
import threading
import zipfile
import zipimport
import zlib
from typing import IO, Any

LIB = "lib"
NATIVE = "native/"
LIB_DIR_ENV = "PIXI_UNPACK_LIB_DIR"
#: Where compiled libraries are kept between runs (empty: nowhere; unset: the user cache).
CACHE_ENV = "PIXI_UNPACK_CACHE_DIR"
#: Members at least this big are extracted by the thread.
BIG = 1 << 20
#: Bytes of a stored library mapped, hashed and written at a time.
WINDOW = 32 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")


class CorruptLibrary(Exception):
    """A compiled library whose bytes are not the ones the zipapp lists."""


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


def _check_python(info: dict[str, Any]) -> None:
    needed = tuple(info.get("python", [3, 10]))
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


def _copy_mapped(raw: int, member: zipfile.ZipInfo, out: IO[bytes], hasher: Any) -> None:
    """Copy a stored member a mapped window at a time: hashed and written without the GIL, and
    without copying its bytes out of the page cache first."""
    offset = _data_offset(raw, member)
    start, end = offset - offset % mmap.ALLOCATIONGRANULARITY, offset + member.file_size
    while start < end:
        length = min(end - start, WINDOW)
        with (
            mmap.mmap(raw, length, offset=start, access=mmap.ACCESS_READ) as window,
            memoryview(window)[max(offset - start, 0) :] as view,
        ):
            hasher.update(view)
            out.write(view)
        start += length


def _extract_member(bundle: zipfile.ZipFile, raw: int, member: zipfile.ZipInfo, destination: str) -> str:
    """Write a member to ``destination``; returns the sha256 of its bytes."""
    with open(destination, "wb") as out:
        if member.compress_type == zipfile.ZIP_STORED:
            hasher = hashlib.sha256()
            try:
                _copy_mapped(raw, member, out, hasher)
                return hasher.hexdigest()
            except (OSError, ValueError):  # a file that cannot be mapped is read
                out.seek(0)
                out.truncate()
        hasher = hashlib.sha256()
        with bundle.open(member) as source:
            while block := source.read(1 << 20):
                hasher.update(block)
                out.write(block)
    return hasher.hexdigest()


def _hash_file(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def _user_cache() -> str | None:
    """The user's cache folder (as platformdirs finds it), or None when there is none."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "")
    elif sys.platform == "darwin":
        home = os.path.expanduser("~")
        base = os.path.join(home, "Library", "Caches") if home != "~" else ""
    else:
        home = os.path.expanduser("~")
        base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home != "~" else "")
    return os.path.join(base, "pixi-pack-ext", "unpacker-lib") if os.path.isabs(base) else None


def _private_folder(path: str) -> bool:
    """Made (or found) as a folder only this user can write to: another user could otherwise
    swap a library between its check and its loading."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if os.name != "posix":
        return True
    return st.st_uid == os.getuid() and not st.st_mode & 0o022 and not os.path.islink(path)


def _safe_ancestors(path: str) -> bool:
    """Whether no other user can rename a folder on the way to ``path`` (a real path): each is
    owned by this user or root and writable by no one else, unless sticky (``/tmp``: there only a
    child's owner may rename it). Otherwise a folder on the way could be swapped, with the
    library in it, between its check and its loading (``sudo`` keeping the user's ``$HOME``)."""
    if os.name != "posix":
        return True
    uid = os.getuid()
    parent = os.path.dirname(path)
    while True:
        st = os.lstat(parent)
        if st.st_uid not in (0, uid) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            return False
        if parent == os.path.dirname(parent):
            return True
        parent = os.path.dirname(parent)


class Native:
    """The zipapp's ``native/`` files on disk, and a finder for its compiled extensions.

    The small files (the metadata importlib.metadata reads) are extracted at once into this run's
    folder. The compiled libraries are deflated in the zip: a thread inflates them, once per
    machine, into a folder of the user's cache named by their sha256s (``$PIXI_UNPACK_CACHE_DIR``,
    empty for none), and on later runs checks the cached files against those sha256s instead; a
    cache that cannot be used means inflating into this run's folder. ``find_spec`` hands out an
    extension only once that thread is done and every library matched, so the imports before it
    run meanwhile. An extension's package stays in the zip: the finder locates the module itself.
    """

    def __init__(self, archive: str, target: str) -> None:
        self.archive = archive
        self.folder = os.path.join(target, "native")
        self.extensions: dict[str, str] = {}
        self._locations: dict[str, str] = {}
        self._problem: Exception | None = None
        self._bundle = zipfile.ZipFile(archive)
        info = json.loads(self._bundle.read("bundle.json"))
        _check_python(info)
        self._libraries: dict[str, str] = info.get("libraries", {})
        self._raw = os.open(archive, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        later = []
        for member in self._bundle.infolist():
            parts = member.filename.split("/")
            if not member.filename.startswith(NATIVE) or member.is_dir() or ".." in parts:
                continue
            relative = "/".join(parts[1:])
            self._note_extension(parts[1:], relative)
            if member.filename in self._libraries or member.file_size >= BIG:
                later.append(member)
            else:
                self._locations[relative] = self._extract_into(self.folder, member)
        self._thread = threading.Thread(target=self._extract_all, args=(later,), daemon=True)
        self._thread.start()

    def _note_extension(self, parts: list[str], relative: str) -> None:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if parts[-1].endswith(suffix):
                module = [*parts[:-1], parts[-1][: -len(suffix)]]
                self.extensions.setdefault(".".join(module), relative)
                return

    def _destination(self, folder: str, member: zipfile.ZipInfo) -> str:
        destination = os.path.join(folder, *member.filename.split("/")[1:])
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        return destination

    def _check(self, member: zipfile.ZipInfo, digest: str) -> None:
        expected = self._libraries.get(member.filename)
        if expected is not None and digest != expected:
            name = member.filename.removeprefix(NATIVE)
            raise CorruptLibrary(
                f"'{self.archive}' is corrupt ({name} sha256 {digest}, expected {expected}); "
                "nothing was installed"
            )

    def _write_checked(self, member: zipfile.ZipInfo, destination: str) -> None:
        """Extract (inflate) a member to ``destination`` and check its sha256; damaged deflate
        data is a corrupt pack like a wrong sha256."""
        try:
            digest = _extract_member(self._bundle, self._raw, member, destination)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            name = member.filename.removeprefix(NATIVE)
            raise CorruptLibrary(
                f"'{self.archive}' is corrupt ({name}: {exc}); nothing was installed"
            ) from None
        self._check(member, digest)

    def _extract_into(self, folder: str, member: zipfile.ZipInfo) -> str:
        destination = self._destination(folder, member)
        self._write_checked(member, destination)
        return destination

    def _cache_folder(self) -> str | None:
        given = os.environ.get(CACHE_ENV)
        root = (given or None) if given is not None else _user_cache()
        if root is None or not self._libraries:
            return None
        key = hashlib.sha256(json.dumps(self._libraries, sort_keys=True).encode()).hexdigest()[:32]
        try:
            if not _private_folder(root):
                return None
            root = os.path.realpath(root)  # from here on no link on the way can be re-pointed
            folder = os.path.join(root, key)
            return folder if _safe_ancestors(root) and _private_folder(folder) else None
        except OSError:
            return None

    def _cached(self, folder: str, member: zipfile.ZipInfo) -> str:
        """The library in the cache folder, checked; inflated there first when missing or wrong."""
        destination = self._destination(folder, member)
        expected = self._libraries[member.filename]
        with contextlib.suppress(OSError):
            if _hash_file(destination) == expected:
                return destination
        fd, part = tempfile.mkstemp(prefix=".part-", dir=os.path.dirname(destination))
        os.close(fd)
        try:
            self._write_checked(member, part)
            os.chmod(part, 0o755)
            os.replace(part, destination)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(part)
        return destination

    def _extract_all(self, later: list[zipfile.ZipInfo]) -> None:
        try:
            libraries = [m for m in later if m.filename in self._libraries]
            cache = self._cache_folder()
            try:
                cached = {m.filename: self._cached(cache, m) for m in libraries} if cache else {}
            except OSError:  # a full or read-only cache: this run's folder instead
                cached = {}
            for member in later:
                relative = member.filename[len(NATIVE) :]
                location = cached.get(member.filename)
                self._locations[relative] = location or self._extract_into(self.folder, member)
        except Exception as exc:  # told by problem(): nothing half-written or unchecked is loaded
            self._problem = exc
        finally:
            self._bundle.close()
            os.close(self._raw)

    def problem(self) -> Exception | None:
        """Wait for the thread; what stopped it, if anything (a corrupt library, a full disk)."""
        self._thread.join()
        return self._problem

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        relative = self.extensions.get(fullname)
        if relative is None:
            return None
        problem = self.problem()
        if problem is not None:
            raise ImportError(str(problem), name=fullname)
        location = self._locations[relative]
        loader = importlib.machinery.ExtensionFileLoader(fullname, location)
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


class ZipModules(zipimport.zipimporter):
    """zipimport, less its second read of every module: the import system asks ``get_filename``
    for the spec, then ``get_code``, and zipimport reads and unmarshals the module for each."""

    def get_filename(self, fullname: str) -> str:
        module = os.path.join(self.archive, self.prefix, fullname.rpartition(".")[2])
        return os.path.join(module, "__init__.py") if self.is_package(fullname) else f"{module}.py"


def _modules_hook(lib: str) -> Any:
    """A ``sys.path_hooks`` entry that reads the zipapp's ``lib/`` with ``ZipModules``."""

    def hook(path: str) -> ZipModules:
        if path != lib and not path.startswith(lib + os.sep):
            raise ImportError(f"{path} is not in {lib}")
        return ZipModules(path)

    return hook


def _failed(archive: str, folder: str, problem: Exception) -> int:
    """One error line for what stopped the libraries' extraction; the exit code."""
    name = os.path.basename(archive)
    if isinstance(problem, CorruptLibrary):
        sys.stderr.write(f"{name}: error: {problem}\n")
    else:
        sys.stderr.write(f"{name}: error: cannot extract the bundled libraries into {folder}: {problem}\n")
    return 1


def _run(native: Native) -> int:
    """pixi-unpack's command line, once every library is in place and checked; its exit code."""
    try:
        from pixi_pack_ext import startup_cache
        from pixi_pack_ext.cli.common import exit_code
        from pixi_pack_ext.cli.main import run_unpack as run
    except ImportError:
        problem = native.problem()
        if problem is None:
            raise
        return _failed(native.archive, native.folder, problem)
    problem = native.problem()
    if problem is not None:
        return _failed(native.archive, native.folder, problem)
    startup_cache.ENABLED = False  # the user's cache holds the libraries only, as they allow
    try:
        run()
    except SystemExit as exc:
        return exit_code(exc)
    return 0


def _run_from(archive: str, target: str) -> int:
    try:
        native = Native(archive, target)
    except (OSError, CorruptLibrary, zipfile.BadZipFile) as exc:
        return _failed(archive, target, exc)
    lib = os.path.join(archive, LIB)
    sys.path_hooks.insert(0, _modules_hook(lib))
    sys.path[:] = [lib, native.folder, *_stdlib_paths()]
    sys.meta_path.insert(0, native)  # type: ignore[arg-type]  # a finder: find_spec only
    importlib.invalidate_caches()
    try:
        return _run(native)
    finally:
        native.problem()  # never remove the folder under the thread


def main() -> None:
    given = os.environ.pop(LIB_DIR_ENV, "")
    target = given or tempfile.mkdtemp(prefix="pixi-unpack-lib-")
    try:
        code = _run_from(_archive(), target)
    finally:
        if not given:
            shutil.rmtree(target, ignore_errors=True)
    # Leave without interpreter teardown, during which py-rattler's native runtime can crash.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
