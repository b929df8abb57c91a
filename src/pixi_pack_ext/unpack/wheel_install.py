"""Install the pack's ``pypi/*.whl`` into the environment, offline (the built-in wheel step).

No resolver and no network: the lock already chose exactly these wheels. ``installer`` does the
installing (RECORD, INSTALLER, entry-point scripts with a shebang to the environment's python)
into a staging folder with the prefix's layout; before anything moves into the environment, every
staged file is checked not to replace a file a conda package installed (a wheel's
``.data/scripts/python3.11`` over the conda python, say) nor to land in ``conda-meta`` or through
a link leaving the environment. Bytecode is compiled only when the user asks
(``--compile-bytecode``): that runs the environment's python, which is code from the pack; it then
runs isolated and without ``site`` (no ``.pth`` file, no user site). Every wheel is checked against
the environment's python and this machine's platform before the first one is written.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import email.parser
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import RecordEntry
from installer.sources import WheelContentElement, WheelFile
from installer.utils import Scheme
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..envpython import (
    EnvPython,
    PythonNotFoundError,
    WheelName,
    describe_tags,
    host_platform_tags,
    parse_wheel_name,
    python_for_wheels,
)
from ..errors import PixiPackError, UnpackError
from ..hookspecs import UnpackContext
from ..metadata import PYPI_DIR, pack_wheels
from ..untrusted import (
    MAX_SMALL_JSON,
    alias_key,
    as_path_under,
    entry_point_command,
    env_vars,
    shown,
    split_path,
    wheel_file_name,
)
from .package_guard import ENV_VARS_DIR, read_small, unsafe_reason

log = logging.getLogger(__name__)

INSTALLER_NAME = b"pixi-pack-ext\n"

#: In a wheel step's scratch folder: the wheels installed in the prefix's layout, and what
#: ``install_wheels`` needs to know about them.
STAGED_PREFIX = "prefix"
STAGED_MANIFEST = "staged.json"

#: installer's launcher kinds for Windows platforms; every other platform gets POSIX scripts.
_LAUNCHERS = {"win-64": "win-amd64", "win-32": "win-ia32", "win-arm64": "win-arm64"}


@dataclass
class _Destination(SchemeDictionaryDestination):
    """installer's file-system destination, remembering every file it wrote (and the ``.py`` files
    among them, for compiling)."""

    written_python: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def write_to_fs(self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool) -> RecordEntry:
        entry = super().write_to_fs(scheme, path, stream, is_executable)
        target = Path(os.path.abspath(Path(self.scheme_dict[scheme]) / path))
        self.written.append(target)
        if scheme in ("purelib", "platlib") and path.endswith(".py"):
            self.written_python.append(target)
        return entry


class _RecordCheckedStream:
    """A wheel member's stream that checks its size and hash against RECORD when read to its end.

    installer reads each member once to install it; checking in that same read instead of in a
    pass of its own before (``validate_record``) decompresses every member once, not twice. A
    mismatch raises before installer records the file, and a failed unpack removes the environment.
    """

    def __init__(self, stream: BinaryIO, entry: RecordEntry) -> None:
        self._stream = stream
        self._entry = entry
        self._restart()

    def _restart(self) -> None:
        self._hash = hashlib.new(self._entry.hash_.name) if self._entry.hash_ is not None else None
        self._size = 0

    def _seen(self, data: bytes, at_end: bool) -> bytes:
        self._size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        if at_end:
            self._check()
        return data

    def _check(self) -> None:
        entry, expected = self._entry, self._entry.hash_
        size_ok = entry.size is None or entry.size == self._size
        hash_ok = self._hash is None or (
            expected is not None and _record_digest(self._hash) == expected.value
        )
        if not (size_ok and hash_ok):
            raise ValueError(f"hash / size of {entry.path} didn't match RECORD")

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(size)
        rest = size is None or size < 0
        return self._seen(data, at_end=rest or (not data and size != 0))

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        return self._seen(data, at_end=not data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_SET):  # installer only rewinds; anything else is unchecked
            raise OSError(f"cannot check {self._entry.path} against RECORD after a seek to {offset}")
        self._restart()
        return self._stream.seek(0)

    def close(self) -> None:
        self._stream.close()


def _record_digest(hasher: hashlib._Hash) -> str:
    """A digest as RECORD writes it (and installer compares it): urlsafe base64 without padding."""
    return base64.urlsafe_b64encode(hasher.digest()).decode("ascii").rstrip("=")


class _RecordCheckedWheel(WheelFile):
    """installer's wheel source, each member's stream checked against RECORD as it is installed."""

    def get_contents(self) -> Iterator[WheelContentElement]:
        for elements, stream, is_executable in super().get_contents():
            checked = _RecordCheckedStream(stream, RecordEntry.from_elements(*elements))
            yield elements, cast(BinaryIO, checked), is_executable


def find_python(prefix: Path, platform: str) -> tuple[EnvPython, Path]:
    """The environment's python (from conda-meta) and its executable; fails with a clear line."""
    try:
        python, executable = python_for_wheels(prefix, platform)
    except PythonNotFoundError as exc:
        raise UnpackError(str(exc)) from None
    return python, prefix / executable


def check_wheels(wheels: list[Path], python: EnvPython, platform: str = "") -> list[WheelName]:
    """Refuse a malformed name, two wheels of one distribution, or tags this python/machine cannot run."""
    supported = python.supported_tags(host_platform_tags())
    names: list[WheelName] = []
    seen: dict[str, str] = {}
    for wheel in wheels:
        wheel_file_name(wheel.name)
        if not wheel.is_file():  # a folder pack is used in place: a FIFO would block the zip reader
            raise UnpackError(f"{PYPI_DIR}/{wheel.name} is not a regular file")
        try:
            name = parse_wheel_name(wheel.name)
        except ValueError as exc:
            raise UnpackError(f"{PYPI_DIR}/{wheel.name} is not a valid wheel name: {exc}") from None
        if name.name in seen:
            raise UnpackError(
                f"{PYPI_DIR}/ has two wheels of '{name.name}': {seen[name.name]} and {wheel.name}"
            )
        seen[name.name] = wheel.name
        _check_members(wheel, platform)
        if not name.tags & supported:
            raise UnpackError(
                f"wheel {wheel.name} cannot run here: its tags ({describe_tags(name)}) do not fit "
                f"python {python.major}.{python.minor} ({python.abi}) on this machine"
            )
        requires = requires_python(wheel)
        if (
            requires
            and python.full_version
            and not SpecifierSet(requires).contains(python.full_version, True)
        ):
            raise UnpackError(
                f"wheel {wheel.name} requires python {requires}, but the environment has python "
                f"{python.full_version}"
            )
        names.append(name)
    return names


def _check_members(wheel: Path, platform: str = "") -> None:
    """Refuse a wheel with a member that names an absolute path or climbs out with ``..`` (installer
    would refuse it too, but only once earlier wheels are written, and in murkier words), or an
    entry point whose command is not a plain file name (installer writes ``scripts/<name>``, so
    ``../etc/conda/activate.d/x.sh`` would become a script that activation sources)."""
    windows = platform.startswith("win-")
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            entry_points = next(
                (n for n in names if n.count("/") == 1 and n.endswith(".dist-info/entry_points.txt")), None
            )
            text = _read_member(archive, entry_points) if entry_points else ""
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnpackError(f"wheel {wheel.name} is not a readable zip archive: {exc}") from None
    for member in names:
        reason = unsafe_reason(member, windows=windows)
        if reason is not None:
            raise UnpackError(f"refusing wheel {wheel.name}: it holds {shown(member)}, {reason}")
    for command in _script_names(text, wheel.name):
        entry_point_command(command, f"wheel {wheel.name}", windows=windows)


def _read_member(archive: zipfile.ZipFile, name: str) -> str:
    if archive.getinfo(name).file_size > MAX_SMALL_JSON:
        raise UnpackError(f"refusing wheel: its {name} is bigger than {MAX_SMALL_JSON} bytes")
    return archive.read(name).decode("utf-8", "replace")


def _script_names(text: str, wheel: str) -> list[str]:
    """The commands of ``entry_points.txt``'s script sections, read as installer reads them."""
    parser = configparser.ConfigParser(delimiters="=", interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise UnpackError(
            f"refusing wheel {wheel}: its entry_points.txt is unreadable ({str(exc).splitlines()[0]})"
        ) from None
    return [
        name
        for section in ("console_scripts", "gui_scripts")
        if parser.has_section(section)
        for name in parser[section]
    ]


def requires_python(wheel: Path) -> str | None:
    """The wheel's ``Requires-Python`` (None when absent or unreadable; installing reports a bad wheel)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            metadata = next(
                (n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")),
                None,
            )
            if metadata is None:
                return None
            message = email.parser.BytesHeaderParser().parsebytes(archive.read(metadata))
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    value = message.get("Requires-Python")
    if not value:
        return None
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        return None
    return str(value)


def wheel_scheme(prefix: Path, python: EnvPython, platform: str, distribution: str) -> dict[str, str]:
    """Where a wheel's files go in the conda environment at ``prefix`` (installer's scheme)."""
    site = str(as_path_under(prefix, python.site_packages(platform)))  # a record's path: checked again
    scripts = prefix / ("Scripts" if platform.startswith("win-") else "bin")
    return {
        "purelib": site,
        "platlib": site,
        "headers": str(prefix / python.include_dir(platform) / distribution),
        "scripts": str(scripts),
        "data": str(prefix),
    }


def install_wheel(
    wheel: Path, destination: SchemeDictionaryDestination, error: type[PixiPackError] = UnpackError
) -> None:
    """Install one wheel with installer: RECORD must list every member (checked first) with the size
    and hash each one has (checked as it is written); a failure is one line as ``error``."""
    try:
        with _RecordCheckedWheel.open(wheel) as source:
            source.validate_record(validate_contents=False)
            install(source, destination, {"INSTALLER": INSTALLER_NAME})
    except Exception as exc:  # installer's validation errors, unsafe paths, bad zips
        text = str(exc).strip().splitlines()
        raise error(
            f"installing wheel {wheel.name} failed: {text[0] if text else type(exc).__name__}"
        ) from None


#: Run by the environment's python: compile each staged file (a line of standard input), naming
#: it in tracebacks by the path it will have in the environment. Standard library only.
_COMPILE = """
import os, py_compile, sys
staged, final = sys.argv[1], sys.argv[2]
failed = []
for line in sys.stdin:
    source = line.rstrip("\\n")
    if source:
        try:
            py_compile.compile(source, dfile=os.path.join(final, os.path.relpath(source, staged)), doraise=True)
        except Exception as exc:
            failed.append("%s: %s" % (source, exc))
if failed:
    sys.exit("%d files did not compile, the first: %s" % (len(failed), failed[0]))
"""


def compile_bytecode(python_exe: Path, files: list[Path], staged: Path, final: Path) -> None:
    """Compile ``files`` (below ``staged``, to be moved to ``final``) with the environment's python.

    The python is started before any wheel file is in the environment, so nothing a wheel ships
    (a ``pyvenv.cfg`` next to the interpreter, a ``.pth``, a module shadowing the standard library)
    can take part; and isolated (``-I``: no environment variables, no user site, no script folder
    on ``sys.path``) and without ``site`` (``-S``). A failure only costs start-up time, so warn."""
    if not files:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        result = subprocess.run(
            [str(python_exe), "-I", "-S", "-c", _COMPILE, str(staged), str(final)],
            input="\n".join(str(f) for f in files) + "\n",
            capture_output=True,
            text=True,
            env=env,
            cwd=staged,
            check=False,
        )
    except OSError as exc:
        log.warning("could not compile the wheels' bytecode with %s: %s", python_exe, exc.strerror or exc)
        return
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        log.warning(
            "compiling the wheels' bytecode reported errors (the modules still work): %s",
            detail[-1] if detail else f"exit code {result.returncode}",
        )


def stage_wheels(context: UnpackContext) -> None:
    """Install the wheels into ``context.scratch`` while rattler installs the conda packages.

    The staging folder has the prefix's own layout and the scripts name the interpreter the
    environment will have, so ``install_wheels`` only checks the files and moves them into place.
    The python comes from the records; a pack without one is left to ``install_wheels`` to refuse."""
    wheels = pack_wheels(context.pack_dir)
    python = EnvPython.from_records(context.records)
    if not wheels or python is None or context.scratch is None:
        return
    names = check_wheels(wheels, python, context.platform)
    interpreter = python.executable_candidates(context.platform)[0]
    staged = context.scratch / STAGED_PREFIX
    log.info("installing %d wheels into %s", len(wheels), context.prefix)
    owners, written = _install_all(
        wheels, names, staged, python, context.final_prefix / interpreter, context.platform
    )
    manifest = {
        "interpreter": interpreter,
        "site_packages": python.site_packages(context.platform),
        "python_files": [p.relative_to(staged).as_posix() for p in written],
        "owners": owners,
    }
    (context.scratch / STAGED_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def install_wheels(context: UnpackContext) -> None:
    """Install every wheel of the pack's ``pypi/`` folder into the environment: what
    ``stage_wheels`` installed when it guessed the environment's python right, else install them
    into a staging folder now; check the staged files against the conda packages' files, then
    move them in (and compile their bytecode when asked)."""
    wheels = pack_wheels(context.pack_dir)
    if not wheels:
        return
    python, python_exe = find_python(context.prefix, context.platform)
    with contextlib.ExitStack() as stack:
        scratch = context.scratch or Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix=".pixi-unpack-wheels-", dir=context.prefix)
            )
        )
        manifest = _staged_manifest(scratch)
        if (
            manifest is not None
            and context.prefix / manifest.get("interpreter", "") == python_exe
            and manifest.get("site_packages") == python.site_packages(context.platform)
        ):
            staged = scratch / STAGED_PREFIX
            owners = manifest.get("owners", {})
            written = [staged / p for p in manifest.get("python_files", [])]
        else:
            names = check_wheels(wheels, python, context.platform)
            log.info("installing %d wheels into %s", len(wheels), context.prefix)
            staged = scratch / "late"
            shutil.rmtree(staged, ignore_errors=True)
            interpreter = context.final_prefix / python_exe.relative_to(context.prefix)  # scripts' shebang
            owners, written = _install_all(wheels, names, staged, python, interpreter, context.platform)
        if context.compile_bytecode:  # before the move: no wheel file is in the environment yet
            compile_bytecode(python_exe, written, staged, context.final_prefix)
        check_staged_files(staged, context.prefix, context.platform, owners)
        _move_tree(staged, context.prefix)


def _install_all(
    wheels: list[Path],
    names: list[WheelName],
    root: Path,
    python: EnvPython,
    interpreter: Path,
    platform: str,
) -> tuple[dict[str, str], list[Path]]:
    """Install ``wheels`` into the prefix layout at ``root``; returns which wheel wrote each file
    (relative to ``root``) and the ``.py`` files written."""
    written: list[Path] = []
    owners: dict[str, str] = {}
    base = Path(os.path.abspath(root))
    for wheel, name in zip(wheels, names, strict=True):
        destination = _Destination(
            scheme_dict=wheel_scheme(root, python, platform, name.name),
            interpreter=str(interpreter),
            script_kind=_LAUNCHERS.get(platform, "posix"),  # type: ignore[arg-type]
            overwrite_existing=True,
        )
        install_wheel(wheel, destination)
        written.extend(destination.written_python)
        for path in destination.written:
            owners.setdefault(path.relative_to(base).as_posix(), wheel.name)
    return owners, written


def conda_files(prefix: Path, platform: str) -> dict[str, tuple[str, str]]:
    """Every file the conda packages installed (``conda-meta/*.json``'s ``files``): key (as the
    environment's file system compares names) -> (path, package name)."""
    fold = not platform.startswith("linux-")  # macOS and Windows compare names without case
    owned: dict[str, tuple[str, str]] = {}
    for meta in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue  # rattler wrote these; one it could not is not a record
        if not isinstance(data, dict):
            continue
        package = str(data.get("name", meta.stem))
        for path in data.get("files") or []:
            if isinstance(path, str):
                owned[_owned_key(path, fold)] = (path, package)
    return owned


def _owned_key(path: str, fold: bool) -> str:
    relative = "/".join(split_path(path))
    return "/".join(alias_key(p) for p in relative.split("/")) if fold else relative


def check_staged_files(staged: Path, prefix: Path, platform: str, owners: dict[str, str]) -> None:
    """Refuse the wheels if a staged file would replace a conda package's file (or any file already
    in the environment), land in ``conda-meta``, or be written through a link leaving the prefix."""
    owned = conda_files(prefix, platform)
    fold = not platform.startswith("linux-")
    real_prefix = os.path.realpath(prefix)
    for root, _dirs, files in os.walk(staged):
        real_parent = ""  # where this folder of the staging tree lands in the prefix, links followed
        for name in files:
            relative = Path(os.path.relpath(os.path.join(root, name), staged)).as_posix()
            wheel = owners.get(relative, "from the pack")
            parts = split_path(relative)
            real_parent = real_parent or os.path.realpath(prefix.joinpath(*parts[:-1]))
            if real_parent != real_prefix and not real_parent.startswith(real_prefix + os.sep):
                raise UnpackError(
                    f"refusing wheel {wheel}: '{relative}' would be written through a link leaving "
                    "the environment"
                )
            real_relative = os.path.relpath(os.path.join(real_parent, parts[-1]), real_prefix)
            real_keys = [alias_key(p) for p in split_path(real_relative)]
            if alias_key(parts[0]) == "conda-meta" or real_keys[0] == "conda-meta":
                raise UnpackError(
                    f"refusing wheel {wheel}: it would write '{relative}' into the environment's conda-meta"
                )
            if tuple(real_keys[:3]) == ENV_VARS_DIR:  # activation sets these: checked as a package's are
                env_vars(read_small(Path(root, name)), f"wheel {wheel}: {relative}")
            for candidate in dict.fromkeys((relative, Path(real_relative).as_posix())):
                hit = owned.get(_owned_key(candidate, fold))
                if hit is not None:
                    raise UnpackError(
                        f"refusing wheel {wheel}: it would replace '{hit[0]}', which conda package "
                        f"'{hit[1]}' installed"
                    )
            target = os.path.join(real_parent, parts[-1])
            if os.path.lexists(target) and not os.path.isdir(target):
                raise UnpackError(
                    f"refusing wheel {wheel}: it would replace '{relative}', which is already in the environment"
                )


def _staged_manifest(scratch: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((scratch / STAGED_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # nothing staged (no python in the records, or no prepare ran)
    return manifest if isinstance(manifest, dict) else None


def _move_tree(source: Path, target: Path) -> None:
    """Move every file under ``source`` to the same place under ``target``, replacing a file that
    is there (as installing a wheel over a conda package's file does)."""
    for root, _dirs, files in os.walk(source):
        relative = os.path.relpath(root, source)
        destination = target if relative == "." else target / relative
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.replace(os.path.join(root, name), destination / name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(os.path.join(root, name), destination / name)  # a prefix on its own mount
