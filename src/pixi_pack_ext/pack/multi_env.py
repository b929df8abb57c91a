"""``pixi-pack -e A -e B [-p X -p Y]``: one pack of several environments and platforms.

Each environment and platform is planned as a pack of its own; the plans are merged into one
channel holding each archive once (the same file name must be the same file), and the pack says
which files each environment installs on each platform (``environments.py``). Each environment
gets its ``environment-NAME.yml`` (``environment-NAME-PLATFORM.yml`` with several platforms).
The workspace's ``[activation]`` of each environment and platform goes into its target; the scripts
are stored once in ``activation/``, named by their content (``shared_script_member``).

With ``--since OLD`` (an earlier pack of several environments, or the lock it was made from) each
environment keeps only the packages its base in OLD lacks, and records that base (a delta of
several environments: see ``environments.Target.delta``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..activation_data import ACTIVATION_DIR, PackActivation, WorkspaceActivation, shared_script_member
from ..environments import Target, multi_metadata_json
from ..errors import PackError, UsageError
from ..metadata import ENVIRONMENT_FILE, METADATA_FILE, environment_yml
from ..plan import CondaPackage, PackPlan, PypiPackage
from .delta import base_set, check_delta_format, keep_new

if TYPE_CHECKING:
    from ..config import Settings
    from ..plugins import PluginManager
    from .options import PackOptions

#: Formats a pack of several environments can be written in (this pixi-unpack reads them).
MULTI_FORMATS = ("tar", "directory", "executable")
#: Formats bound to one platform: a self-extracting pack embeds an unpacker built for one.
ONE_PLATFORM_FORMATS = ("executable",)


@dataclass(frozen=True)
class MultiLayout:
    """What a multi-environment pack writes besides its packages."""

    targets: dict[str, dict[str, Target]]
    environment_files: dict[str, str]
    #: ``activation/NAME`` in the pack -> the workspace's script it is a copy of.
    activation_scripts: dict[str, Path] = dataclasses.field(default_factory=dict)

    def write(self, staging: Path) -> None:
        (staging / METADATA_FILE).write_text(multi_metadata_json(self.targets))
        (staging / ENVIRONMENT_FILE).unlink(missing_ok=True)
        for name, text in self.environment_files.items():
            (staging / name).write_text(text)
        for member, source in self.activation_scripts.items():
            (staging / ACTIVATION_DIR).mkdir(exist_ok=True)
            shutil.copyfile(source, staging / member)


def _pack_activation(
    activation: WorkspaceActivation | None, scripts: dict[str, Path], digests: dict[str, str]
) -> PackActivation | None:
    """One environment's activation as the pack lists it; its scripts join ``scripts`` (each
    content once: ``digests`` holds the sha256 of every script stored so far)."""
    if activation is None or not (activation.env or activation.scripts):
        return None
    members: list[str] = []
    for script in activation.scripts:
        digest = hashlib.sha256(script.read_bytes()).hexdigest()
        member = shared_script_member(digest, script.name, set(members))
        if digests.setdefault(member, digest) != digest:  # pragma: no cover - 64-bit prefix collision
            raise PackError(f"two activation scripts would both be stored as {member}; rename one of them")
        scripts.setdefault(member, script)
        members.append(member)
    return PackActivation(env=activation.env, scripts=tuple(members))


def make_multi_plan(
    options: PackOptions,
    plugins: PluginManager,
    settings: Settings,
    make_plan: Callable[[PackOptions, PluginManager, Settings], PackPlan],
    format_name: str,
) -> tuple[PackPlan, MultiLayout]:
    """One plan holding every environment's files, and the layout that says whose they are."""
    if format_name not in MULTI_FORMATS:
        raise UsageError(
            f"a pack of several environments is written as a tar, a folder or a self-extracting script, "
            f"not '{format_name}'; pack each environment on its own (-e NAME --format {format_name})"
        )
    if options.prefix is not None:
        raise UsageError("several -e/-p cannot be combined with --prefix; pack one environment")
    if options.since is not None:
        check_delta_format(format_name)
    environments = list(dict.fromkeys(options.environments or [options.environment]))
    platforms = list(dict.fromkeys(options.platforms or [options.platform])) or [None]
    if format_name in ONE_PLATFORM_FORMATS and len(platforms) > 1:
        raise UsageError(
            f"a '{format_name}' pack runs its unpacker on one platform, not {', '.join(map(str, platforms))}; "
            "make one per platform (-p PLATFORM --create-executable) or write a tar"
        )
    conda: dict[str, CondaPackage] = {}
    wheels: dict[str, PypiPackage] = {}
    targets: dict[str, dict[str, Target]] = {}
    files: dict[str, str] = {}
    scripts: dict[str, Path] = {}
    digests: dict[str, str] = {}
    merged: PackPlan | None = None
    unchanged = 0
    for name in environments:
        for platform in platforms:
            one = dataclasses.replace(
                options, environment=name, platform=platform, environments=[], platforms=[]
            )
            plan = make_plan(one, plugins, settings)
            environment_file = environment_yml(plan)  # the whole environment, of a delta too
            delta = None
            if options.since is not None:
                delta = keep_new(plan, base_set(options.since, name, plan.platform, several=True))
                unchanged += delta.base == delta.target
            for package in plan.conda:
                seen = conda.setdefault(package.pack_path, package)
                if seen.sha256 != package.sha256:
                    raise PackError(
                        f"two environments have different files named {package.pack_path}; pack them separately"
                    )
            for wheel in (w for w in plan.pypi if w.is_wheel):
                seen_wheel = wheels.setdefault(wheel.pack_path, wheel)
                if seen_wheel.sha256 != wheel.sha256:
                    raise PackError(
                        f"two environments have different wheels named {wheel.pack_path}; pack them separately"
                    )
            targets.setdefault(name, {})[plan.platform] = Target(
                conda=tuple(p.pack_path for p in plan.conda),
                pypi=tuple(w.pack_path for w in plan.pypi if w.is_wheel),
                virtual_packages=tuple(plan.virtual_packages),
                activation=_pack_activation(plan.activation, scripts, digests),
                delta=delta,
            )
            suffix = name if len(platforms) == 1 else f"{name}-{plan.platform}"
            files[f"environment-{suffix}.yml"] = environment_file
            if merged is None:
                # Each environment's [activation] is in its target, not in the merged plan.
                merged = dataclasses.replace(plan, conda=[], pypi=[], notes=[], activation=None)
            merged.notes += [n for n in plan.notes if n not in merged.notes]
    assert merged is not None
    if unchanged == len(environments) * len(platforms):
        raise PackError(f"nothing changed since '{options.since}': each environment has the same packages")
    merged.conda = list(conda.values())
    merged.pypi = list(wheels.values())
    return merged, MultiLayout(targets, files, scripts)
