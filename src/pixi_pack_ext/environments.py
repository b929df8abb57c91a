"""Packs of several environments (and platforms): which files each environment installs.

Such a pack has one channel holding each archive once, and its ``pixi-pack.json`` says version
``"2"`` (readers of format "1" refuse it) with::

    "environments": {NAME: {PLATFORM: {"conda": ["channel/SUBDIR/FILE", ...],
                                       "pypi": ["pypi/FILE.whl", ...],
                                       "virtual-packages": ["__glibc=2.28", ...],
                                       "activation": {"env": {...}, "scripts": ["activation/..."]}}}}

``activation`` (optional) is the workspace's ``[activation]`` of that environment and platform, as
a pack of one environment carries it; the scripts it names live once in the pack's ``activation/``.

``pixi-unpack --environment NAME`` installs exactly the listed files of NAME for the host's
platform; a pack of one environment and one platform stays format "1".
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import rattler

from . import __version__, untrusted
from .activation_data import ACTIVATION_FIELD, PackActivation, parse_activation
from .delta import DeltaInfo, parse_delta_member
from .errors import InvalidPackError, UsageError
from .metadata import METADATA_FILE, PYPI_DIR, PackMetadata, parse_metadata, read_metadata

MULTI_FORMAT_VERSION = "2"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: pixi's rule for environment names (lowercase letters, digits, dashes), bounded: ``--all`` makes
#: a folder and an ``activate-NAME`` script of each, so a name must never be a path, a hidden
#: name or another environment's activation script (``activate.sh``).
_ENV_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class Target:
    """The files of one environment on one platform."""

    conda: tuple[str, ...]
    pypi: tuple[str, ...] = ()
    virtual_packages: tuple[str, ...] = ()
    #: The workspace's ``[activation]`` for this environment and platform (None: it has none).
    activation: PackActivation | None = None
    #: In a delta pack of several environments: the base this environment's update applies to and
    #: the set it makes (``conda``/``pypi`` then list only the files the delta ships for it).
    delta: DeltaInfo | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"conda": sorted(self.conda), "pypi": sorted(self.pypi)}
        if self.virtual_packages:
            data["virtual-packages"] = list(self.virtual_packages)
        if self.activation:
            data[ACTIVATION_FIELD] = self.activation.to_json()
        if self.delta is not None:
            data["delta"] = self.delta.member_json()
        return data


def multi_metadata_json(targets: dict[str, dict[str, Target]]) -> str:
    """``pixi-pack.json`` of a pack of several environments or platforms."""
    data = {
        "version": MULTI_FORMAT_VERSION,
        "pixi-pack-version": __version__,
        "platforms": sorted({p for per in targets.values() for p in per}),
        "environments": {
            name: {platform: target.to_json() for platform, target in sorted(per.items())}
            for name, per in sorted(targets.items())
        },
    }
    return json.dumps(data, indent=1)


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidPackError(f"{METADATA_FILE} has a '{what}' that is not a list of strings")
    return tuple(value)


def header_metadata(text: str) -> str:
    """``pixi-pack.json`` on one line, as a self-extracting header records it. A pack of several
    environments keeps their names, platforms and virtual packages there (what is checked before
    the pack is read) but not their file lists, which can be long: the header's values must stay
    within its first blocks, where readers look for them."""
    environments = parse_environments(text)
    if environments is None:
        return text.strip().replace("\n", " ")
    summary = {
        "version": MULTI_FORMAT_VERSION,
        "pixi-pack-version": __version__,
        "platforms": sorted({p for per in environments.values() for p in per}),
        "environments": {
            name: {
                platform: Target(conda=(), virtual_packages=target.virtual_packages).to_json()
                for platform, target in sorted(per.items())
            }
            for name, per in sorted(environments.items())
        },
    }
    return json.dumps(summary)


def parse_environments(text: str) -> dict[str, dict[str, Target]] | None:
    """The environments of a multi-environment pack's ``pixi-pack.json``; None for any other pack."""
    try:
        data = untrusted.load_json(text, METADATA_FILE)
    except untrusted.UntrustedDataError:
        return None  # parse_metadata says what is wrong with it
    if not isinstance(data, dict) or "environments" not in data:
        return None
    if data.get("version") != MULTI_FORMAT_VERSION:
        raise InvalidPackError(
            f"{METADATA_FILE} lists environments but is not version '{MULTI_FORMAT_VERSION}'"
        )
    environments = data["environments"]
    if not isinstance(environments, dict) or not environments:
        raise InvalidPackError(f"{METADATA_FILE} has an 'environments' that is not a non-empty object")
    result: dict[str, dict[str, Target]] = {}
    for name, per in environments.items():
        if not _ENV_NAME.fullmatch(name) or not isinstance(per, dict):
            raise InvalidPackError(
                f"{METADATA_FILE} has an environment {untrusted.shown(name)} that is not a plain name "
                "(lowercase letters, digits and dashes, at most 64)"
            )
        untrusted.safe_component(name, METADATA_FILE, "environment", windows=True)  # --all: a folder name
        result[name] = {}
        for platform, entry in per.items():
            if not _PLAIN.fullmatch(platform) or not isinstance(entry, dict):
                raise InvalidPackError(
                    f"{METADATA_FILE} has a platform {untrusted.shown(platform)} of '{name}' that is not valid"
                )
            untrusted.pack_platform(platform, METADATA_FILE)
            activation = entry.get(ACTIVATION_FIELD)
            target = Target(
                conda=_strings(entry.get("conda", []), f"{name}.{platform}.conda"),
                pypi=_strings(entry.get("pypi", []), f"{name}.{platform}.pypi"),
                virtual_packages=_strings(
                    entry.get("virtual-packages", []), f"{name}.{platform}.virtual-packages"
                ),
                activation=(
                    parse_activation(activation, f"{METADATA_FILE} of '{name}' on {platform}")
                    if activation is not None
                    else None
                ),
            )
            if "delta" in entry:
                where = f"environments.{name}.{platform}.delta"
                target = dataclasses.replace(
                    target, delta=parse_delta_member(entry["delta"], METADATA_FILE, where)
                )
            if not all(v.startswith("__") for v in target.virtual_packages):
                raise InvalidPackError(
                    f"{METADATA_FILE} has virtual packages of '{name}' that are not '__name=...'"
                )
            for entry_text in target.virtual_packages:
                untrusted.virtual_package_entry(entry_text, METADATA_FILE)
            result[name][platform] = target
    if len({target.delta is None for per in result.values() for target in per.values()}) > 1:
        raise InvalidPackError(f"{METADATA_FILE} has a 'delta' for some environments but not all")
    return result


def is_delta_of_several(environments: dict[str, dict[str, Target]] | None) -> bool:
    """Whether a pack of several environments is a delta (each environment then has its own)."""
    return environments is not None and any(
        target.delta is not None for per in environments.values() for target in per.values()
    )


#: The refusal of a delta where a full pack is installed (it holds only the packages its base lacks).
DELTA_NOT_INSTALLABLE = (
    "this is a delta pack: it updates an installed environment, from a pack file or folder "
    "(not standard input); pass its path to pixi-unpack"
)


def choose(
    environments: dict[str, dict[str, Target]], name: str | None, host: str
) -> tuple[str, str, Target]:
    """(name, platform, target): the one asked for (or the only one) for the host's platform."""
    if name is None:
        if len(environments) != 1:
            raise UsageError(
                f"the pack holds the environments {', '.join(sorted(environments))}; choose one with "
                "--environment NAME, or install each with --all"
            )
        name = next(iter(environments))
    if name not in environments:
        raise UsageError(
            f"environment '{name}' is not in the pack (it has: {', '.join(sorted(environments))})"
        )
    per = environments[name]
    platform = host if host in per else next(iter(sorted(per)))
    return name, platform, per[platform]


@dataclass
class Selection:
    """What an unpack installs from a pack: its metadata, records and the folder the steps read."""

    metadata: PackMetadata
    pack_dir: Path
    files: frozenset[str] | None = None
    wheels: tuple[str, ...] = field(default_factory=tuple)
    name: str = ""

    def keep(self, records: list[rattler.RepoDataRecord]) -> list[rattler.RepoDataRecord]:
        """The records of the chosen environment (all of them for a pack of one)."""
        if self.files is None:
            return records
        chosen = [r for r in records if f"channel/{r.subdir}/{r.file_name}" in self.files]
        if len(chosen) != len(self.files):
            raise InvalidPackError(
                f"{METADATA_FILE} lists packages of environment '{self.name}' that the channel lacks"
            )
        return chosen


def peek_selection(text: str, name: str | None) -> PackMetadata:
    """The metadata to validate before a pack is read, for the environment that will be installed."""
    environments = parse_environments(text)
    if environments is None:
        if name is not None:
            raise UsageError("--environment applies to a pack of several environments; this pack holds one")
        return parse_metadata(text)
    _, platform, target = choose(environments, name, str(rattler.Subdir.current()))
    if target.delta is not None:
        raise InvalidPackError(DELTA_NOT_INSTALLABLE)
    return target_metadata(platform, target)


def target_metadata(platform: str, target: Target) -> PackMetadata:
    """What an unpack of one environment of the pack reads: as a pack of that environment alone."""
    return PackMetadata(
        MULTI_FORMAT_VERSION, platform, __version__, target.virtual_packages, target.activation or None
    )


def select(pack_dir: Path, name: str | None, scratch: Path, delta: bool = False) -> Selection:
    """The chosen environment of the opened pack. For a multi-environment pack, the steps get a
    folder of their own holding only its wheels (hard links to the pack's). A delta's environment
    is chosen only by the one applying it (``delta``)."""
    path = pack_dir / METADATA_FILE
    text = untrusted.read_limited(path, METADATA_FILE).decode("utf-8", "replace") if path.is_file() else ""
    environments = parse_environments(text)
    if environments is None:
        if name is not None:
            raise UsageError("--environment applies to a pack of several environments; this pack holds one")
        return Selection(read_metadata(pack_dir), pack_dir)
    chosen, platform, target = choose(environments, name, str(rattler.Subdir.current()))
    if (target.delta is not None) != delta:
        raise InvalidPackError(
            DELTA_NOT_INSTALLABLE if target.delta is not None else "this is not a delta pack"
        )
    metadata = target_metadata(platform, target)
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / PYPI_DIR).mkdir()
    for wheel in target.pypi:
        file_name = wheel.removeprefix(f"{PYPI_DIR}/")
        untrusted.wheel_file_name(file_name, METADATA_FILE)  # one plain name, on Windows too
        if (
            "/" in file_name
            or not file_name.endswith(".whl")
            or not (pack_dir / PYPI_DIR / file_name).is_file()
        ):
            raise InvalidPackError(
                f"{METADATA_FILE} lists a wheel '{wheel}' of '{chosen}' that the pack lacks"
            )
        try:
            os.link(pack_dir / PYPI_DIR / file_name, scratch / PYPI_DIR / file_name)
        except OSError:
            shutil.copy2(pack_dir / PYPI_DIR / file_name, scratch / PYPI_DIR / file_name)
    (scratch / METADATA_FILE).write_text(text)
    return Selection(metadata, scratch, frozenset(target.conda), target.pypi, chosen)


def environment_names(text: str) -> list[str]:
    """The environments of a pack (one, ``["default"]``-less, for a pack of one: empty)."""
    environments = parse_environments(text)
    return sorted(environments) if environments is not None else []
