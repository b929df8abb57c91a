"""Where the bundled unpacker's dependencies come from: the wheels of its runtime requirements for the
target platform, from a wheelhouse folder (offline), the user cache or ``pip download``, or, for this
machine, the installed distributions of the running environment (see ``bundle``).
"""

from __future__ import annotations

import contextlib
import email
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

import platformdirs

from ..errors import PackError, UsageError
from ..status import status

WHEELHOUSE_ENV = "PIXI_PACK_WHEELHOUSE"
MIN_PYTHON = (3, 10)
DISTRIBUTION = "pixi-pack-ext"
#: The installed pixi_pack_ext package, whose modules the zipapp carries.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Runtime dependencies only packing uses (imported where used), left out of the unpacker.
#: cryptography (and its per-Python cffi) too: a self-extracting script checks a pack's signature
#: with the target's ssh-keygen before it runs the unpacker (see executable_header.sh).
PACK_ONLY = frozenset({"httpx", "cyclonedx-python-lib", "cryptography"})
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


def installed_closure() -> list[metadata.Distribution]:
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
