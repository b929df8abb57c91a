"""The built-in wheel injector: ``--inject pkg-1.0-py3-none-any.whl`` adds the wheel to ``pypi/``.

The file must be a wheel (a zip with a ``.dist-info/WHEEL``); whether its tags fit the environment's
python is checked by the core once every injected file is in (the python may be injected too).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InjectionError
from ...hashing import hash_file
from ...hookspecs import Injector, hookimpl
from ...plan import PackPlan, PypiPackage


def _check_archive(path: Path) -> None:
    import zipfile  # imported when a wheel is injected, not whenever the plugin loads

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InjectionError(f"cannot inject '{path.name}': it is not a wheel ({exc})") from None
    if not any(
        n.count("/") == 1 and n.split("/")[0].endswith(".dist-info") and n.endswith("/WHEEL") for n in names
    ):
        raise InjectionError(f"cannot inject '{path.name}': it is not a wheel (no .dist-info/WHEEL inside)")


def inject_wheel(path: Path, plan: PackPlan) -> None:
    """Add a local wheel to the plan, replacing a planned PyPI package of the same name."""
    from packaging.utils import canonicalize_name

    from ...envpython import parse_wheel_name

    try:
        wheel = parse_wheel_name(path.name)
    except ValueError as exc:
        raise InjectionError(f"cannot inject '{path.name}': {exc}") from None
    _check_archive(path)
    package = PypiPackage(
        name=wheel.name,
        version=wheel.version,
        location=str(path),
        sha256=hash_file(path)[0],
        local_path=path,
    )
    for index, existing in enumerate(plan.pypi):
        if canonicalize_name(existing.name) == wheel.name:
            plan.pypi[index] = package
            plan.notes.append(
                f"injected wheel '{path.name}' replaces the locked PyPI package "
                f"'{existing.name}=={existing.version}'"
            )
            return
    plan.pypi.append(package)


@hookimpl
def pixi_pack_injectors() -> list[Injector]:
    return [
        Injector(
            name="wheel",
            suffixes=(".whl",),
            inject=inject_wheel,
            description="local wheels, installed into the environment by pixi-unpack",
        )
    ]
