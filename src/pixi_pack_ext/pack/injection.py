"""``--inject``: hand each file to the injector plugin that accepts it, then check the plan still holds.

Injectors check the file itself (a readable package, the right platform) and add it to the plan. The
checks that depend on the whole plan run here, after every file is in, so injected packages may
depend on each other whatever the order on the command line: every conda dependency and constraint
must be met by the plan's records (no re-solve), and every injected wheel must fit the plan's python.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import rattler

from ..envpython import EnvPython, describe_tags, fits_loosely, parse_wheel_name
from ..errors import InjectionError, UsageError
from ..plan import CondaPackage, PackPlan, PypiPackage

if TYPE_CHECKING:
    from ..plugins import PluginManager


def apply_injections(paths: Sequence[Path], plan: PackPlan, plugins: PluginManager) -> None:
    """Inject every file into ``plan``; raise ``InjectionError`` when the result does not hold together."""
    if not paths:
        return
    conda_before = list(plan.conda)
    pypi_before = list(plan.pypi)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"injected file '{path}' does not exist")
        plugins.injector_for(path).inject(path.resolve(), plan)
    if _changed(plan.conda, conda_before):
        check_conda_dependencies(plan)
    new_wheels = [p for p in plan.pypi if not any(p is q for q in pypi_before)]
    if new_wheels:
        check_wheels_fit(plan, new_wheels)


def _changed(now: list[CondaPackage], before: list[CondaPackage]) -> bool:
    return len(now) != len(before) or any(a is not b for a, b in zip(now, before, strict=True))


def _spec(text: str, package: CondaPackage) -> rattler.MatchSpec:
    try:
        return rattler.MatchSpec(text)
    except Exception:  # rattler's parse errors
        raise InjectionError(
            f"package '{package.spec}' has a dependency '{text}' that cannot be parsed"
        ) from None


def check_conda_dependencies(plan: PackPlan) -> None:
    """Every ``depends`` of every package is met by a package of the plan, and no ``constrains`` is broken.

    Virtual packages (``__glibc``, ``__cuda``, ...) are the target machine's business and are checked
    when the pack is unpacked.
    """
    by_name = plan.conda_by_name()
    for package in plan.conda:
        for dep in package.record.depends:
            spec = _spec(dep, package)
            name = spec.name.normalized if spec.name else ""
            if name.startswith("__"):
                continue
            present = by_name.get(name)
            if present is None:
                raise InjectionError(
                    f"package '{package.spec}' has dependency '{dep}', which is not in the environment"
                )
            if not spec.matches(present.record):
                raise InjectionError(
                    f"package '{package.spec}' has dependency '{dep}', which '{present.spec}' in the "
                    "environment does not satisfy"
                )
        for constraint in package.record.constrains:
            spec = _spec(constraint, package)
            present = by_name.get(spec.name.normalized if spec.name else "")
            if present is not None and not spec.matches(present.record):
                raise InjectionError(
                    f"package '{package.spec}' has constraint '{constraint}', which '{present.spec}' in the "
                    "environment does not satisfy"
                )


def check_wheels_fit(plan: PackPlan, wheels: Sequence[PypiPackage]) -> None:
    """Each wheel's tags fit the plan's python and platform (OS and architecture; the unpack step checks
    the exact glibc/macOS level on the target)."""
    python = EnvPython.from_records(p.record for p in plan.conda)
    for wheel in wheels:
        if python is None:
            raise InjectionError(
                f"cannot inject wheel '{wheel.file_name}': the environment has no python to install it into"
            )
        name = parse_wheel_name(wheel.file_name)
        if not fits_loosely(name, python, plan.platform):
            raise InjectionError(
                f"cannot inject wheel '{wheel.file_name}': its tags ({describe_tags(name)}) do not fit "
                f"python {python.major}.{python.minor} on {plan.platform}"
            )
