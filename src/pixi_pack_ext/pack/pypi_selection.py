"""Which PyPI packages of a plan can be packed: wheels only, with a clear way out for the rest."""

from __future__ import annotations

import logging

from ..errors import PackError
from ..plan import PackPlan, PypiPackage

log = logging.getLogger(__name__)


def _is_workspace_project(package: PypiPackage, plan: PackPlan) -> bool:
    return (
        package.local_path is not None
        and plan.workspace is not None
        and package.local_path.resolve() == plan.workspace.resolve()
    )


def _kind(package: PypiPackage) -> str:
    location = package.location.lower()
    if location.startswith("git+"):
        return "a git dependency"
    if package.editable:
        return "a local project folder"
    return "a source distribution"


def select_wheels(plan: PackPlan, *, ignore_non_wheel: bool) -> None:
    """Keep the wheels of ``plan.pypi``; skip or refuse everything else.

    The workspace's own editable project is skipped with a warning by default (it is the code being
    deployed, not a dependency); any other non-wheel fails the pack unless ``ignore_non_wheel``.
    """
    kept: list[PypiPackage] = []
    for package in plan.pypi:
        if package.is_wheel:
            kept.append(package)
            continue
        if _is_workspace_project(package, plan):
            log.warning(
                "skipping PyPI package '%s': it is the workspace's own project; build a wheel and "
                "pass it with --inject to ship it",
                package.name,
            )
            continue
        if ignore_non_wheel:
            log.warning(
                "skipping PyPI package '%s' (%s): only wheels can be packed", package.name, _kind(package)
            )
            continue
        raise PackError(
            f"PyPI package '{package.name}=={package.version}' is {_kind(package)} ({package.location}), "
            "not a wheel; pass --ignore-pypi-non-wheel to skip it, or inject a wheel with --inject"
        )
    plan.pypi = kept
