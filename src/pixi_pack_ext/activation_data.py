"""The manifest's activation inside a pack: the optional ``activation`` field of ``pixi-pack.json``
and the optional ``activation/`` folder holding the scripts it names.

Both are optional, so the Rust ``pixi-unpack`` and older readers (which ignore unknown fields and
folders) still read the pack. On unpack both are untrusted: names must be environment variable
names, values strings, and every script a plain file directly inside ``activation/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidPackError
from .untrusted import MAX_FIELD, RESERVED_ENV_NAMES, component_problem, env_value, unique_names

#: The pack's folder of activation scripts, and the field of ``pixi-pack.json`` that lists them.
ACTIVATION_DIR = "activation"
ACTIVATION_FIELD = "activation"
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


#: What every shell here (and Windows) accepts as a variable name.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: str, where: str) -> str:
    """An environment variable name any shell can set, or one clear refusal naming ``where``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > MAX_FIELD:
        raise InvalidPackError(
            f"{where} sets an environment variable with an invalid name {name!r}; "
            "names are letters, digits and '_' and do not start with a digit"
        )
    if name in RESERVED_ENV_NAMES:
        raise InvalidPackError(
            f"{where} sets the environment variable {name}, which the shells keep for themselves "
            "(read-only, or evaluated as arithmetic); a pack may not set it"
        )
    return name


@dataclass(frozen=True)
class WorkspaceActivation:
    """A workspace's activation for one environment and platform, read at pack time: ``env`` in
    pixi's order, and the script files to pack."""

    env: tuple[tuple[str, str], ...]
    scripts: tuple[Path, ...]


@dataclass(frozen=True)
class PackActivation:
    """``env`` in pixi's order (name, value as the manifest writes it) and ``scripts`` (paths inside
    the pack, ``activation/NAME``) in pixi's order."""

    env: tuple[tuple[str, str], ...] = ()
    scripts: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.env or self.scripts)

    def to_json(self) -> dict[str, object]:
        return {"env": dict(self.env), "scripts": list(self.scripts)}


def script_member(index: int, source_name: str) -> str:
    """The pack path for the ``index``-th script: its file name made plain, numbered to stay unique."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", source_name).lstrip(".-_") or "script"
    return f"{ACTIVATION_DIR}/{index:02d}-{plain[:100]}"


def shared_script_member(content_sha256: str, source_name: str, taken: set[str]) -> str:
    """The pack path of a script in a pack of several environments: named by its content, so one
    file serves every environment that sources it and two different files of the same name never
    meet; ``taken`` (this environment's members so far) keeps one list free of repeats."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", source_name).lstrip(".-_") or "script"
    member = f"{ACTIVATION_DIR}/{content_sha256[:16]}-{plain[:100]}"
    repeat = 1
    while member in taken:
        repeat += 1
        member = f"{ACTIVATION_DIR}/{content_sha256[:16]}-{repeat}-{plain[:100]}"
    return member


def parse_activation(data: object, source: str) -> PackActivation:
    """The ``activation`` field of ``pixi-pack.json``, checked; anything else is one clear refusal."""
    where = f"{source} field '{ACTIVATION_FIELD}'"
    if not isinstance(data, dict):
        raise InvalidPackError(f"{where} must be a JSON object with 'env' and 'scripts'")
    env = data.get("env", {})
    scripts = data.get("scripts", [])
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise InvalidPackError(f"{where}: 'env' must map variable names to string values")
    for name, value in env.items():
        check_name(name, where)
        env_value(value, where, name)
    if not isinstance(scripts, list) or not all(isinstance(s, str) for s in scripts):
        raise InvalidPackError(f"{where}: 'scripts' must be a list of paths inside {ACTIVATION_DIR}/")
    for script in scripts:
        folder, _, name = script.partition("/")
        if (
            folder != ACTIVATION_DIR
            or not _SCRIPT_NAME.fullmatch(name)
            or component_problem(name, windows=True) is not None
        ):
            raise InvalidPackError(
                f"{where} names the script {script!r}; scripts must be plain files directly in {ACTIVATION_DIR}/"
            )
    if len(set(scripts)) != len(scripts):
        raise InvalidPackError(f"{where} names a script twice")
    unique_names((s.partition("/")[2] for s in scripts), where, "script")
    return PackActivation(env=tuple(env.items()), scripts=tuple(scripts))
