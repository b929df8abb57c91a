"""Install the pack's ``pypi/*.whl`` into the environment, offline (the built-in wheel step).

No resolver and no network: the lock already chose exactly these wheels. ``installer`` does the
installing (RECORD, INSTALLER, entry-point scripts with a shebang to the environment's python); the
bytecode is compiled by the environment's own python, because ``.pyc`` files are specific to the
python version that reads them. Every wheel is checked against the environment's python and this
machine's platform before the first one is written.
"""

from __future__ import annotations

import base64
import email.parser
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
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
from .package_guard import unsafe_reason

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
    """installer's file-system destination, remembering the ``.py`` files it wrote for compiling."""

    written_python: list[Path] = field(default_factory=list)

    def write_to_fs(self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool) -> RecordEntry:
        entry = super().write_to_fs(scheme, path, stream, is_executable)
        if scheme in ("purelib", "platlib") and path.endswith(".py"):
            self.written_python.append(Path(self.scheme_dict[scheme]) / path)
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


def check_wheels(wheels: list[Path], python: EnvPython) -> list[WheelName]:
    """Refuse a malformed name, two wheels of one distribution, or tags this python/machine cannot run."""
    supported = python.supported_tags(host_platform_tags())
    names: list[WheelName] = []
    seen: dict[str, str] = {}
    for wheel in wheels:
        try:
            name = parse_wheel_name(wheel.name)
        except ValueError as exc:
            raise UnpackError(f"{PYPI_DIR}/{wheel.name} is not a valid wheel name: {exc}") from None
        if name.name in seen:
            raise UnpackError(
                f"{PYPI_DIR}/ has two wheels of '{name.name}': {seen[name.name]} and {wheel.name}"
            )
        seen[name.name] = wheel.name
        _check_members(wheel)
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


def _check_members(wheel: Path) -> None:
    """Refuse a wheel with a member that names an absolute path or climbs out with ``..`` (installer
    would refuse it too, but only once earlier wheels are written, and in murkier words)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnpackError(f"wheel {wheel.name} is not a readable zip archive: {exc}") from None
    for member in names:
        reason = unsafe_reason(member)
        if reason is not None:
            raise UnpackError(f"refusing wheel {wheel.name}: it holds '{member}', {reason}")


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
    site = str(prefix / python.site_packages(platform))
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


def compile_bytecode(python_exe: Path, files: list[Path]) -> None:
    """Compile ``files`` with the environment's python; a failure only costs start-up time, so warn."""
    if not files:
        return
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    try:
        result = subprocess.run(
            [str(python_exe), "-I", "-m", "compileall", "-q", "-i", "-"],
            input="\n".join(str(f) for f in files) + "\n",
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except OSError as exc:
        log.warning("could not compile the wheels' bytecode with %s: %s", python_exe, exc.strerror or exc)
        return
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        log.warning(
            "compiling the wheels' bytecode reported errors (the modules still work): %s",
            detail[0] if detail else f"exit code {result.returncode}",
        )


def stage_wheels(context: UnpackContext) -> None:
    """Install the wheels into ``context.scratch`` while rattler installs the conda packages.

    The staging folder has the prefix's own layout and the scripts name the interpreter the
    environment will have, so ``install_wheels`` only moves the files into place. The python
    comes from the records; a pack without one is left to ``install_wheels`` to refuse."""
    wheels = pack_wheels(context.pack_dir)
    python = EnvPython.from_records(context.records)
    if not wheels or python is None or context.scratch is None:
        return
    names = check_wheels(wheels, python)
    interpreter = python.executable_candidates(context.platform)[0]
    staged = context.scratch / STAGED_PREFIX
    log.info("installing %d wheels into %s", len(wheels), context.prefix)
    written = _install_all(wheels, names, staged, python, context.prefix / interpreter, context.platform)
    manifest = {
        "interpreter": interpreter,
        "site_packages": python.site_packages(context.platform),
        "python_files": [p.relative_to(staged).as_posix() for p in written],
    }
    (context.scratch / STAGED_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def install_wheels(context: UnpackContext) -> None:
    """Install every wheel of the pack's ``pypi/`` folder into the environment: move in what
    ``stage_wheels`` installed when it guessed the environment's python right, else install now."""
    wheels = pack_wheels(context.pack_dir)
    if not wheels:
        return
    python, python_exe = find_python(context.prefix, context.platform)
    manifest = _staged_manifest(context)
    if (
        manifest is not None
        and context.prefix / manifest.get("interpreter", "") == python_exe
        and manifest.get("site_packages") == python.site_packages(context.platform)
    ):
        assert context.scratch is not None  # a manifest was read from it
        _move_tree(context.scratch / STAGED_PREFIX, context.prefix)
        written = [context.prefix / p for p in manifest.get("python_files", [])]
    else:
        names = check_wheels(wheels, python)
        log.info("installing %d wheels into %s", len(wheels), context.prefix)
        written = _install_all(wheels, names, context.prefix, python, python_exe, context.platform)
    compile_bytecode(python_exe, written)


def _install_all(
    wheels: list[Path],
    names: list[WheelName],
    root: Path,
    python: EnvPython,
    interpreter: Path,
    platform: str,
) -> list[Path]:
    """Install ``wheels`` into the prefix layout at ``root``; returns the ``.py`` files written."""
    written: list[Path] = []
    for wheel, name in zip(wheels, names, strict=True):
        destination = _Destination(
            scheme_dict=wheel_scheme(root, python, platform, name.name),
            interpreter=str(interpreter),
            script_kind=_LAUNCHERS.get(platform, "posix"),  # type: ignore[arg-type]
            overwrite_existing=True,
        )
        install_wheel(wheel, destination)
        written.extend(destination.written_python)
    return written


def _staged_manifest(context: UnpackContext) -> dict[str, Any] | None:
    if context.scratch is None:
        return None
    try:
        manifest = json.loads((context.scratch / STAGED_MANIFEST).read_text(encoding="utf-8"))
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
