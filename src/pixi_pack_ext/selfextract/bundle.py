"""The default unpacker of self-extracting packs: pixi-unpack as one zipapp for the target platform.

It carries this very ``pixi_pack_ext`` package plus the wheels of its runtime dependencies for the
target (py-rattler's abi3 wheel and pure-Python ones), so a target needs only ``python3 >= 3.10``.
Wheels come, in this order, from a wheelhouse folder (``--unpacker-wheelhouse`` or
``$PIXI_PACK_WHEELHOUSE``, offline), from the user cache, or from the Python index through
``pip download`` (then cached). When none of these works and the target is this machine, the
installed distributions of the running environment are copied instead (that bundle needs the
running Python's minor version or newer). Built zipapps are cached by content.
"""

from __future__ import annotations

import contextlib
import email
import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import logging
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import platformdirs

from .. import __version__
from ..errors import PackError, UsageError
from ..status import status
from .elf_strip import strip_symbols

log = logging.getLogger(__name__)

WHEELHOUSE_ENV = "PIXI_PACK_WHEELHOUSE"
#: Bump when the zipapp's layout or runtime changes (part of the cache key).
BUNDLE_VERSION = "3"
MIN_PYTHON = (3, 10)
#: Built zipapps kept per platform in the cache (each version of this code builds its own).
KEEP_ZIPAPPS = 3
DISTRIBUTION = "pixi-pack-ext"
#: The installed pixi_pack_ext package, whose modules the zipapp carries.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Runtime dependencies only packing uses (imported where used), left out of the unpacker.
#: cryptography (and its per-Python cffi) too: a self-extracting script checks a pack's signature
#: with the target's ssh-keygen before it runs the unpacker (see executable_header.sh).
PACK_ONLY = frozenset({"httpx", "cyclonedx-python-lib", "cryptography"})
#: Parts of this package an unpacker never needs.
SKIPPED_PARTS = {"__pycache__", "testing"}
#: Conda platform -> the wheel platform tags whose wheels run there (pip adds older compatible ones).
PIP_PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-64": ("manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "linux-aarch64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "linux-ppc64le": ("manylinux_2_17_ppc64le", "manylinux2014_ppc64le"),
    "osx-64": ("macosx_10_13_x86_64",),
    "osx-arm64": ("macosx_11_0_arm64",),
    "win-64": ("win_amd64",),
    "win-arm64": ("win_arm64",),
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("pixi-pack-ext")) / "unpacker"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_platform(platform: str) -> None:
    """Refuse, before any download, a platform no bundled unpacker can be made for."""
    if platform not in PIP_PLATFORMS:
        raise UsageError(
            f"no bundled pixi-unpack exists for {platform} (py-rattler has no wheels for it); "
            "embed a pixi-unpack built for it with --pixi-unpack-source PATH|URL"
        )


def _declared_requirements() -> list[str]:
    """The requirements of this code: its source tree's pyproject.toml when it runs from one
    (an editable install's metadata is as old as the install), else the installed metadata."""
    pyproject = PACKAGE_DIR.parent.parent / "pyproject.toml"
    if PACKAGE_DIR.parent.name == "src" and pyproject.is_file():
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        with contextlib.suppress(OSError, ValueError):
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == DISTRIBUTION:
                return list(project.get("dependencies", []))
    return list(metadata.requires(DISTRIBUTION) or [])


def runtime_requirements() -> list[str]:
    """What pixi-unpack needs: pixi-pack-ext's runtime requirements without the pack-only ones,
    py-rattler pinned to the version running now."""
    requirements = []
    for requirement in _declared_requirements():
        if re.search(r"extra\s*==", requirement):
            continue
        match = _NAME.match(requirement)
        name = normalize(match.group(1)) if match else ""
        if name in PACK_ONLY:
            continue
        if name == "py-rattler":
            requirement = f"py-rattler=={metadata.version('py-rattler')}"
        requirements.append(requirement)
    return requirements


# -- wheels ---------------------------------------------------------------------------------------


def _pip_download(
    platform: str, dest: Path, find_links: Iterable[Path], *, online: bool, extra: Iterable[str] = ()
) -> tuple[bool, str]:
    """``pip download`` the runtime requirements' wheels for ``platform`` into ``dest``."""
    if importlib.util.find_spec("pip") is None:
        return False, "pip is not installed in the environment running pixi-pack"
    python = "".join(map(str, MIN_PYTHON))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--python-version",
        ".".join(map(str, MIN_PYTHON)),
        "--implementation",
        "cp",
        *("--abi", "abi3", "--abi", f"cp{python}", "--abi", "none"),
        *(arg for tag in PIP_PLATFORMS[platform] for arg in ("--platform", tag)),
        "--dest",
        str(dest),
    ]
    for link in find_links:
        if link.is_dir():
            command += ["--find-links", str(link)]
    if not online:
        command.append("--no-index")
    command += [*runtime_requirements(), *extra]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.returncode == 0, (lines[-1].strip() if lines else f"pip exited {result.returncode}")


def _marker_environments(platform: str) -> list[dict[str, str]]:
    """Marker values of the targets: ``platform`` with every Python minor from MIN_PYTHON on."""
    system, machine = platform.split("-", 1)
    base = {
        "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
        "osx": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
        "win": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
    }[system]
    machines = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le"}
    arch = machines.get(machine, machine)
    if system == "win":
        arch = {"x86_64": "AMD64", "arm64": "ARM64"}.get(arch, arch)
    common = {
        **base,
        "platform_machine": arch,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return [
        {**common, "python_version": f"3.{minor}", "python_full_version": f"3.{minor}.0"}
        for minor in range(MIN_PYTHON[1], MIN_PYTHON[1] + 5)
    ]


def missing_for_target(wheels: list[Path], platform: str) -> list[str]:
    """Requirements the target needs that pip skipped: it evaluates markers for the running Python.

    A marker that holds for any supported Python on ``platform`` (``tomli; python_version <
    '3.11'``, ``colorama; platform_system == 'Windows'``) makes its requirement needed.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    environments = _marker_environments(platform)
    metadata_of: dict[str, list[str]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            if name is None:
                continue
            message = email.message_from_bytes(archive.read(name))
            metadata_of[normalize(str(message["Name"]))] = message.get_all("Requires-Dist") or []

    def applies(requirement: Requirement, extras: set[str]) -> bool:
        if requirement.marker is None:
            return True
        return any(
            requirement.marker.evaluate({**env, "extra": extra})
            for env in environments
            for extra in extras or {""}
        )

    missing: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(text, {""}) for text in runtime_requirements()]
    while todo:
        text, extras = todo.pop()
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if not applies(requirement, extras):
            continue
        name = normalize(requirement.name)
        wanted = frozenset({"", *requirement.extras})
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        if name not in metadata_of:
            bare = Requirement(text)
            bare.marker = None
            missing[name] = str(bare)
            continue
        todo.extend((sub, set(wanted)) for sub in metadata_of[name])
    return sorted(missing.values())


def _download_complete(
    platform: str, dest: Path, find_links: list[Path], *, online: bool
) -> tuple[bool, str]:
    """Download, then add what pip's marker evaluation left out, until nothing is missing.

    The additions found last time are remembered per platform, so a cached run needs one pip call.
    """
    remembered = cache_dir() / "wheels" / f"{platform}.extra-requirements.txt"
    try:
        extra = remembered.read_text().split()
    except OSError:
        extra = []
    for _ in range(5):
        ok, why = _pip_download(platform, dest, find_links, online=online, extra=extra)
        if not ok:
            return ok, why
        missing = missing_for_target(sorted(dest.glob("*.whl")), platform)
        if not missing or set(missing) <= set(extra):
            with contextlib.suppress(OSError):
                remembered.parent.mkdir(parents=True, exist_ok=True)
                remembered.write_text("\n".join(extra) + "\n")
            return True, ""
        extra = sorted({*extra, *missing})
    return False, f"could not complete the requirements for {platform}: {', '.join(extra)}"


def resolve_wheels(platform: str, wheelhouse: Path | None, dest: Path) -> tuple[list[Path] | None, str]:
    """The wheels of the unpacker's dependencies for ``platform`` in ``dest`` (None: not found)."""
    cached = cache_dir() / "wheels" / platform
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise UsageError(f"unpacker wheelhouse '{wheelhouse}' is not a folder")
        ok, why = _download_complete(platform, dest, [wheelhouse], online=False)
        if not ok:
            raise PackError(
                f"the wheelhouse '{wheelhouse}' lacks wheels the {platform} pixi-unpack needs: {why}"
            )
        return sorted(dest.glob("*.whl")), ""
    if cached.is_dir():
        ok, why = _download_complete(platform, dest, [cached], online=False)
        if ok:
            return sorted(dest.glob("*.whl")), ""
        for stale in dest.glob("*"):
            stale.unlink()
    status.info(
        "fetching the wheels of the bundled pixi-unpack for %s with pip (once: they are kept in %s)",
        platform,
        cached,
    )
    ok, why = _download_complete(platform, dest, [cached], online=True)
    if not ok:
        return None, why
    cached.mkdir(parents=True, exist_ok=True)
    for wheel in dest.glob("*.whl"):
        if not (cached / wheel.name).exists():
            part = cached / f".{wheel.name}.part"
            shutil.copyfile(wheel, part)
            os.replace(part, cached / wheel.name)
    return sorted(dest.glob("*.whl")), ""


def _installed_closure() -> list[metadata.Distribution]:
    """The installed distributions pixi-pack-ext needs at run time (without extras), transitively."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(runtime_requirements())
    while todo:
        requirement = todo.pop()
        match = _NAME.match(requirement)
        if match is None:
            continue
        name = normalize(match.group(1))
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker does not apply here
        found[name] = dist
        extras = re.findall(r"\[([^\]]*)\]", requirement.split(";")[0])
        wanted = {normalize(e) for group in extras for e in group.split(",") if e.strip()}
        for sub in dist.requires or []:
            marker = sub.partition(";")[2]
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra is None or normalize(extra.group(1)) in wanted:
                todo.append(sub)
    return [found[name] for name in sorted(found)]


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
    installed = [entry for dist in _installed_closure() for entry in _installed_files(dist)]
    sources = [*own, ("platform", platform.encode()), ("python", bytes(python))]
    sources += [(name, _file_digest(path)) for name, path in installed]
    return _cached_build(
        platform, sources, lambda part: _write_zipapp(part, [], installed, (python[0], python[1]), platform)
    )
