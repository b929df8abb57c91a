"""The built-in wheel step: the pack's ``pypi/*.whl`` installed into the environment, offline.

The work is in ``wheel_install``, imported when a pack has wheels: a pack, or an unpack without
wheels, does not load ``installer`` and ``packaging``.
"""

from __future__ import annotations

from ...hookspecs import UnpackContext, UnpackStep, hookimpl
from ...metadata import pack_wheels


def stage_wheels(context: UnpackContext) -> None:
    if not pack_wheels(context.pack_dir):
        return
    from ...unpack.wheel_install import stage_wheels as stage

    stage(context)


def install_wheels(context: UnpackContext) -> None:
    if not pack_wheels(context.pack_dir):
        return
    from ...unpack.wheel_install import install_wheels as install

    install(context)


@hookimpl
def pixi_pack_unpack_steps() -> list[UnpackStep]:
    return [
        UnpackStep(
            name="wheels",
            run=install_wheels,
            prepare=stage_wheels,
            order=50,
            description="install the pack's PyPI wheels into the environment (offline, no resolver)",
        )
    ]
