"""``pixi-pack --since OLD``: keep in the plan only what OLD lacks, and say which base it applies to.

OLD is an earlier pack (a tar or a pack folder, full or delta), the ``pixi.lock`` (or workspace
folder) it was made from, read for the same environment and platform, or an installed environment's
prefix. Each gives the base's ``PackageSet``; the plan's own set is the target.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..delta import DeltaInfo, is_delta, parse_delta
from ..environments import parse_environments
from ..errors import PackError, PixiPackError, UsageError
from ..metadata import CHANNEL_DIR, METADATA_FILE, PYPI_DIR, environment_yml, read_metadata
from ..package_set import (
    PackageSet,
    conda_line,
    installed_records,
    installed_set,
    pypi_line,
    record_line,
    wheel_line,
)
from ..plan import PackPlan

#: Formats a delta can be written in: it is applied by this pixi-unpack, from a file or a folder.
DELTA_FORMATS = ("tar", "directory")


def plan_set(plan: PackPlan) -> PackageSet:
    """The set a pack of ``plan`` installs (its wheels only: other PyPI entries are not packed)."""
    lines = [record_line(package.record) for package in plan.conda]
    lines += [pypi_line(wheel.name, wheel.version) for wheel in plan.pypi if wheel.is_wheel]
    return PackageSet.of(lines)


def _pack_set(
    metadata: str,
    repodata: dict[str, str],
    wheels: list[str],
    where: Path,
    environment: str,
    platform: str,
    several: bool = False,
) -> PackageSet:
    """The set of a pack from its ``pixi-pack.json``, repodata texts and wheel file names; of a
    pack of several environments, the set of ``environment`` on ``platform``. ``several``: the new
    pack has several environments, so OLD must name each of them (a pack of one does not)."""
    environments = parse_environments(metadata)
    if several and environments is None:
        raise UsageError(
            "it holds one environment; with several -e/-p pass an earlier pack of several "
            "environments or the pixi.lock it was made from"
        )
    if is_delta(metadata):
        return parse_delta(metadata, f"{where}: {METADATA_FILE}")[1].target
    try:
        data = json.loads(metadata)
    except ValueError:
        raise UsageError(f"--since '{where}': its {METADATA_FILE} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"--since '{where}': its {METADATA_FILE} is not a JSON object")
    keep: set[str] | None = None
    if environments is not None:
        target = environments.get(environment, {}).get(platform)
        if target is None:
            raise UsageError(
                f"--since '{where}' has no environment '{environment}' for {platform} "
                f"(it has: {', '.join(sorted(environments))})"
            )
        if target.delta is not None:
            return target.delta.target
        keep = set(target.conda)
        wheels = [w for w in wheels if f"{PYPI_DIR}/{w}" in target.pypi]
    lines = []
    for subdir, text in sorted(repodata.items()):
        try:
            document = json.loads(text)
            for table in ("packages", "packages.conda"):
                for file_name, entry in (document.get(table) or {}).items():
                    if keep is not None and f"{CHANNEL_DIR}/{subdir}/{file_name}" not in keep:
                        continue
                    lines.append(
                        conda_line(entry["name"], str(entry["version"]), entry["build"], entry["sha256"])
                    )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"--since '{where}': channel/{subdir}/repodata.json is malformed") from None
    lines += [line for line in (wheel_line(name) for name in wheels) if line is not None]
    return PackageSet.of(lines)


def _tar_set(path: Path, environment: str, platform: str, several: bool) -> PackageSet:
    metadata: str | None = None
    repodata: dict[str, str] = {}
    wheels: list[str] = []
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                parts = member.name.removeprefix("./").split("/")
                small = member.isfile() and member.size < (256 << 20)
                if parts == [METADATA_FILE] and small:
                    metadata = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                elif len(parts) == 3 and parts[0] == CHANNEL_DIR and parts[2] == "repodata.json" and small:
                    repodata[parts[1]] = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                elif len(parts) == 2 and parts[0] == PYPI_DIR:
                    wheels.append(parts[1])
    except (tarfile.TarError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"--since '{path}' is not a readable pack ({exc})") from None
    if metadata is None:
        raise UsageError(
            f"--since '{path}' has no {METADATA_FILE}; pass a pack, a pixi.lock or an environment"
        )
    return _pack_set(metadata, repodata, wheels, path, environment, platform, several)


def _folder_set(path: Path, environment: str, platform: str, several: bool) -> PackageSet:
    repodata = {p.parent.name: p.read_text() for p in sorted((path / CHANNEL_DIR).glob("*/repodata.json"))}
    wheels = [p.name for p in sorted((path / PYPI_DIR).glob("*.whl"))]
    metadata = (path / METADATA_FILE).read_text()
    return _pack_set(metadata, repodata, wheels, path, environment, platform, several)


def base_set(since: Path, environment: str, platform: str, several: bool = False) -> PackageSet:
    """The set of OLD: a pack (file or folder), a lock or workspace, or an installed prefix.
    ``several``: the base of one environment of a pack of several (OLD then names each)."""
    from .lockfile import read_plan

    if not since.exists():
        raise UsageError(
            f"--since '{since}' does not exist; pass an earlier pack, its pixi.lock or an environment"
        )
    try:
        if since.is_dir() and (since / METADATA_FILE).is_file():
            return _folder_set(since, environment, platform, several)
        if since.is_dir() and (since / "conda-meta").is_dir():
            if several:
                raise UsageError(
                    "it is one installed environment; with several -e/-p pass an earlier pack of "
                    "several environments or the pixi.lock it was made from"
                )
            return installed_set(since, installed_records(since))
        if since.suffix == ".lock" or (since.is_dir() and (since / "pixi.lock").is_file()):
            return plan_set(read_plan(since, environment, platform))
        if since.is_file() and tarfile.is_tarfile(since):
            return _tar_set(since, environment, platform, several)
    except PixiPackError as exc:
        raise UsageError(f"--since '{since}': {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--since '{since}' cannot be read ({exc})") from None
    raise UsageError(
        f"--since '{since}' is neither a pack (tar or folder), a pixi.lock nor an environment (conda-meta/)"
    )


@dataclass(frozen=True)
class DeltaPlan:
    """What a delta pack writes besides its packages."""

    info: DeltaInfo
    #: environment.yml of the whole new environment (the plan itself keeps only the new packages).
    environment_yml: str

    def write(self, staging: Path, plan: PackPlan) -> None:
        """Overwrite the full pack's ``pixi-pack.json`` and ``environment.yml`` with the delta's."""
        metadata = read_metadata(staging)  # the full pack's, with its [activation]
        (staging / METADATA_FILE).write_text(self.info.to_json(metadata))
        (staging / "environment.yml").write_text(self.environment_yml)


def _python_changed(base: PackageSet, plan: PackPlan) -> bool:
    """Whether python's minor version changes: rattler then relinks every ``noarch: python``
    package (their files move to the new site-packages), so the delta must ship them too."""
    new = plan.conda_by_name().get("python")
    old = [line.split(" ")[1].split("=")[1] for line in base.lines if line.startswith("conda python=")]
    if new is None or not old:
        return False
    return old[0].split(".")[:2] != str(new.record.version).split(".")[:2]


def check_delta_format(format_name: str) -> None:
    if format_name not in DELTA_FORMATS:
        raise UsageError(
            f"a delta pack (--since) is written as a tar or a folder, not '{format_name}'; "
            "drop --since or the format option"
        )


def keep_new(plan: PackPlan, base: PackageSet) -> DeltaInfo:
    """Drop from ``plan`` every package ``base`` has (the installed ones stay); the delta's sets."""
    target = plan_set(plan)
    relinked = _python_changed(base, plan)
    plan.conda = [
        p
        for p in plan.conda
        if record_line(p.record) not in base.lines or (relinked and getattr(p.record.noarch, "python", False))
    ]
    plan.pypi = [w for w in plan.pypi if w.is_wheel and pypi_line(w.name, w.version) not in base.lines]
    return DeltaInfo(base=base, target=target)


def make_delta(plan: PackPlan, since: Path, format_name: str) -> DeltaPlan:
    """Drop from ``plan`` every package the base has; refuse when nothing changed."""
    check_delta_format(format_name)
    base = base_set(since, plan.environment, plan.platform)
    if base == plan_set(plan):
        raise PackError(f"nothing changed since '{since}': the environment has the same packages")
    full_yml = environment_yml(plan)
    return DeltaPlan(keep_new(plan, base), full_yml)
