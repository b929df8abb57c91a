"""Python for the test world, offline: a conda ``python`` package, tiny projects and real wheels.

No conda channel is reachable, so the ``python`` package is made from this machine's interpreter: it
holds a copy of the host interpreter as ``bin/pythonX.Y`` and a ``pyvenv.cfg`` at the prefix root
pointing at the host's installation, like ``python -m venv --copies``: the installed environment
behaves like a venv rooted at the environment (``sys.prefix`` is the environment, ``site-packages``
is the environment's, the host's packages are not visible). Such a package only works on the
machine that built it (it borrows the host's standard library), which is all a test needs.

Wheels are built from tiny projects with ``pip wheel`` and the ``flit_core`` backend, without network.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import platform as py_platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rattler_build import ArchiveType, assemble_package


@dataclass(frozen=True)
class HostPython:
    """The real interpreter this process runs on (a venv's base interpreter, not the venv)."""

    executable: Path
    version: str

    @property
    def short_version(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @classmethod
    def current(cls) -> HostPython:
        base = getattr(sys, "_base_executable", None) or sys.executable
        return cls(Path(os.path.realpath(base)), py_platform.python_version())


def build_package(
    output_dir: Path,
    name: str,
    version: str,
    platform: str = "noarch",
    *,
    build: str = "h0_0",
    depends: Sequence[str] = (),
    constrains: Sequence[str] = (),
    files: Mapping[str, str] | None = None,
    archive: str = "conda",
) -> Path:
    """Assemble a conda package with py-rattler-build from ``files`` (relative path -> text)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="world-pkg-") as staging:
        root = Path(staging)
        for relative, text in (files or {f"share/{name}/{name}.txt": f"{name} {version}\n"}).items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        output = assemble_package(
            name,
            version,
            platform,
            build,
            output_dir,
            files_dir=root,
            depends=list(depends),
            constrains=list(constrains),
            noarch="generic" if platform == "noarch" else None,
            archive_type=ArchiveType.TarBz2 if archive == "tar.bz2" else ArchiveType.Conda,
        )
    return Path(output.path)


def build_host_python_package(output_dir: Path, platform: str = "linux-64", build: str = "host_0") -> Path:
    """A conda ``python`` package (the host's X.Y.Z) running the host's interpreter, venv style.

    Every link stays inside the environment (``python`` -> ``pythonX.Y``), as unpack requires.
    """
    if sys.platform == "win32":
        raise RuntimeError("the host python package uses symlinks and a POSIX layout; not on Windows")
    host = HostPython.current()
    short = host.short_version
    with tempfile.TemporaryDirectory(prefix="world-python-") as staging:
        root = Path(staging)
        (root / "bin").mkdir()
        shutil.copy2(host.executable, root / "bin" / f"python{short}")
        (root / "bin" / "python3").symlink_to(f"python{short}")
        (root / "bin" / "python").symlink_to(f"python{short}")
        (root / "pyvenv.cfg").write_text(
            f"home = {host.executable.parent}\ninclude-system-site-packages = false\nversion = {host.version}\n"
        )
        site = root / "lib" / f"python{short}" / "site-packages"
        site.mkdir(parents=True)
        (site / "README.txt").write_text("packages installed into this environment live here\n")
        output = assemble_package("python", host.version, platform, build, output_dir, files_dir=root)
    return Path(output.path)


def write_project(
    root: Path,
    name: str,
    version: str = "1.0",
    *,
    code: str = "",
    scripts: Mapping[str, str] | None = None,
) -> Path:
    """A tiny flit project: one module named after ``name`` with ``code``, and console ``scripts``."""
    module = name.replace("-", "_").lower()
    project = root / name
    (project / module).mkdir(parents=True, exist_ok=True)
    (project / module / "__init__.py").write_text(f'"""{name} for tests."""\n\n{code}\n')
    lines = [
        "[build-system]",
        'requires = ["flit_core>=3.9,<4"]',
        'build-backend = "flit_core.buildapi"',
        "",
        "[project]",
        f'name = "{name}"',
        f'version = "{version}"',
        f'description = "{name} for tests"',
        'requires-python = ">=3.8"',
    ]
    if scripts:
        lines += ["", "[project.scripts]", *(f'{k} = "{v}"' for k, v in scripts.items())]
    (project / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return project


def build_wheels(projects: Iterable[Path], output_dir: Path) -> list[Path]:
    """Build wheels of ``projects`` with ``pip wheel``, offline (no index, no build isolation)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    before = set(output_dir.glob("*.whl"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(output_dir),
            *(str(p) for p in projects),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{result.stdout}{result.stderr}")
    return sorted(set(output_dir.glob("*.whl")) - before)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(folder: Path, name: str, version: str, package_files: Mapping[str, bytes]) -> Path:
    """A pure-Python ``py3-none-any`` wheel of ``package_files``, with METADATA, WHEEL and RECORD.

    For tests that need a wheel fast and without a build backend; entries carry a fixed date so the
    same files give the same bytes.
    """
    dist_info = f"{name}-{version}.dist-info"
    files = dict(package_files)
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return wheel


def _rewrite_wheel(wheel: Path, target: Path, edit: Callable[[str, dict[str, bytes]], None]) -> Path:
    """Copy ``wheel`` to ``target`` after ``edit(dist_info, contents)``, with a RECORD that agrees."""
    with zipfile.ZipFile(wheel) as source:
        contents = {info.filename: source.read(info) for info in source.infolist()}
    dist_info = next(n.split("/")[0] for n in contents if n.endswith(".dist-info/WHEEL"))
    edit(dist_info, contents)
    record_name = f"{dist_info}/RECORD"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in contents.items():
        if path != record_name:
            writer.writerow([path, _record_hash(data), len(data)])
    writer.writerow([record_name, "", ""])
    contents[record_name] = record.getvalue().encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for path, data in contents.items():
            out.writestr(path, data)
    return target


def retag_wheel(wheel: Path, tag: str, output_dir: Path) -> Path:
    """A copy of ``wheel`` claiming another tag (``cp311-cp311-win_amd64``): WHEEL, RECORD and name agree."""

    def edit(dist_info: str, contents: dict[str, bytes]) -> None:
        lines = contents[f"{dist_info}/WHEEL"].decode().splitlines()
        lines = [line.replace("Root-Is-Purelib: true", "Root-Is-Purelib: false") for line in lines]
        lines = [line for line in lines if not line.startswith("Tag:")] + [f"Tag: {tag}"]
        contents[f"{dist_info}/WHEEL"] = ("\n".join(lines) + "\n").encode()

    name, version = wheel.name.split("-")[:2]
    return _rewrite_wheel(wheel, output_dir / f"{name}-{version}-{tag}.whl", edit)


def set_wheel_metadata(wheel: Path, output_dir: Path, **headers: str) -> Path:
    """A copy of ``wheel`` whose METADATA says otherwise (``Requires_Python=">=3.99"``; ``_`` is ``-``).

    For metadata a build frontend would refuse to build on this machine, such as a newer python.
    """

    def edit(dist_info: str, contents: dict[str, bytes]) -> None:
        names = {key.replace("_", "-") for key in headers}
        lines = contents[f"{dist_info}/METADATA"].decode().split("\n")
        end = lines.index("") if "" in lines else len(lines)
        kept = [line for line in lines[:end] if line.split(":", 1)[0] not in names]
        added = [f"{key.replace('_', '-')}: {value}" for key, value in headers.items()]
        contents[f"{dist_info}/METADATA"] = "\n".join(kept + added + lines[end:]).encode()

    return _rewrite_wheel(wheel, output_dir / wheel.name, edit)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
