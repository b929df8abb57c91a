"""The pack's PyPI wheels, installed into the image's environment at pack time.

The environment's python may be for another platform, so nothing is run: ``installer`` unpacks each
wheel into the staged prefix, console scripts get a shebang to the in-image python, and bytecode is
left to python to write on first import. Each wheel must fit the environment's python and the
target platform (by OS and architecture) before the first one is written.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from installer.destinations import SchemeDictionaryDestination

from pixi_pack_ext.format_toolkit import (
    PYPI_DIR,
    EnvPython,
    PythonNotFoundError,
    WheelName,
    describe_tags,
    fits_loosely,
    install_wheel,
    pack_wheels,
    parse_wheel_name,
    python_for_wheels,
    wheel_scheme,
)

from .errors import OciError


def _python(staged: Path, platform: str) -> tuple[EnvPython, str]:
    """The environment's python and its executable's path relative to the prefix (a link to the
    in-image path counts: it dangles here)."""
    try:
        return python_for_wheels(staged, platform, dangling_ok=True)
    except PythonNotFoundError as exc:
        raise OciError(str(exc)) from None


def _checked(wheels: list[Path], python: EnvPython, platform: str) -> list[WheelName]:
    names: list[WheelName] = []
    for wheel in wheels:
        try:
            name = parse_wheel_name(wheel.name)
        except ValueError as exc:
            raise OciError(f"{PYPI_DIR}/{wheel.name} is not a valid wheel name: {exc}") from None
        if not fits_loosely(name, python, platform):
            raise OciError(
                f"wheel {wheel.name} ({describe_tags(name)}) does not fit python "
                f"{python.major}.{python.minor} on {platform}"
            )
        names.append(name)
    return names


def install_wheels(pack_dir: Path, staged: Path, prefix: PurePosixPath, platform: str) -> int:
    """Install ``pack_dir/pypi/*.whl`` into ``staged`` (the environment at ``prefix`` in the image)."""
    wheels = pack_wheels(pack_dir)
    if not wheels:
        return 0
    python, executable = _python(staged, platform)
    for wheel, name in zip(wheels, _checked(wheels, python, platform), strict=True):
        destination = SchemeDictionaryDestination(
            scheme_dict=wheel_scheme(staged, python, platform, name.name),
            interpreter=f"{prefix}/{executable}",
            script_kind="posix",
            bytecode_optimization_levels=(),
            overwrite_existing=True,
        )
        install_wheel(wheel, destination, OciError)
    return len(wheels)
