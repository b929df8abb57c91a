"""Activation scripts next to the environment (``activate.sh``, ``activate.bat``, ...).

The script does what ``pixi shell-hook`` does, in its order: prepend the environment's binary folders
to PATH, set ``CONDA_PREFIX``, set the packages' variables (``etc/conda/env_vars.d/*.json``, then
``conda-meta/state``), source the packages' ``etc/conda/activate.d`` scripts, source the manifest's
``[activation]`` scripts, and last set the manifest's ``[activation.env]`` variables.

It is generated here for every shell rather than by rattler's shell module, because rattler writes
values between double quotes, so a value (or an output folder name) holding ``$(...)``, a backtick or
a double quote would run as code or break the script. Every value is quoted for its shell by
``activation_shells``; a value the shell cannot hold is refused.

The script is written atomically (a temporary file in the same folder, then a rename), so a planted
symbolic link is replaced itself, never written through; an existing script is only replaced with
``--force``, and that is checked before anything is installed. The manifest's scripts are copied
from the pack into the environment (``etc/pixi-pack-ext/activation/``), never through a link.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ..activation_data import NAME_RE, PackActivation, check_name
from ..errors import InvalidPackError, UsageError
from .activation_shells import SYNTAX, ShellSyntax, Value, VarRef

log = logging.getLogger(__name__)

#: Shell name -> script file extension (the extensions are pixi-pack's).
SHELLS: dict[str, str] = {
    "bash": "sh",
    "zsh": "zsh",
    "fish": "fish",
    "xonsh": "xsh",
    "powershell": "ps1",
    "cmd": "bat",
    "nushell": "nu",
}

#: Shell -> extensions of the ``etc/conda/activate.d`` scripts it sources (as rattler picks them).
PACKAGE_SCRIPT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "bash": (".sh",),
    "zsh": (".sh",),
    "fish": (".fish",),
    "xonsh": (".xsh",),
    "powershell": (".ps1",),
    "cmd": (".bat",),
    "nushell": (".nu",),
}

#: Shell -> extensions of the manifest's ``[activation] scripts`` it sources (None: every script, as
#: pixi's activator does). pixi's scripts are for bash on Unix and cmd on Windows; xonsh sources bash
#: scripts; fish, PowerShell and nushell cannot.
MANIFEST_SCRIPT_EXTENSIONS: dict[str, tuple[str, ...] | None] = {
    "bash": None,
    "zsh": None,
    "xonsh": (".sh", ".bash"),
    "cmd": None,
}


def _sources(shell: str, script: Path) -> bool:
    """Whether the ``shell``'s activation script sources the manifest's ``script``."""
    if shell not in MANIFEST_SCRIPT_EXTENSIONS:
        return False
    usable = MANIFEST_SCRIPT_EXTENSIONS[shell]
    return usable is None or script.suffix in usable


#: Where an unpacked environment keeps the manifest's scripts (removed with the environment).
INSTALLED_DIR = ("etc", "pixi-pack-ext", "activation")

#: The largest ``env_vars.d`` file read: such files hold a few variables.
MAX_ENV_VARS_FILE = 1 << 20

_UNIX_REF = re.compile(r"\$\{(" + NAME_RE.pattern + r")\}|\$(" + NAME_RE.pattern + ")")
_WINDOWS_REF = re.compile(r"%(" + NAME_RE.pattern + ")%")


@dataclass(frozen=True)
class ManifestActivation:
    """The workspace manifest's ``[activation]`` of the packed environment, as installed.

    ``env`` holds the values as the manifest writes them (``$NAME``/``${NAME}`` on Unix, ``%NAME%``
    on Windows refer to other variables); ``scripts`` are the installed copies of its scripts."""

    env: tuple[tuple[str, str], ...] = ()
    scripts: tuple[Path, ...] = field(default_factory=tuple)


def default_shell(platform: str) -> str:
    return "cmd" if platform.startswith("win") else "bash"


def activation_path(output_dir: Path, shell: str | None, platform: str, stem: str = "activate") -> Path:
    """Where ``write_activation_script`` writes the script for ``shell`` (``stem``: its name
    without the extension; ``--all`` names each environment's ``activate-NAME``)."""
    shell = shell or default_shell(platform)
    if shell not in SHELLS:
        raise UsageError(f"unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    return output_dir / f"{stem}.{SHELLS[shell]}"


def check_activation_target(
    output_dir: Path, shell: str | None, platform: str, force: bool, stem: str = "activate"
) -> Path:
    """Refuse, before anything is installed, to replace a script (or link, or folder) already there."""
    target = activation_path(output_dir, shell, platform, stem)
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            raise UsageError(f"'{target}' is a folder; remove it to write the activation script there")
        if not force:
            raise UsageError(f"'{target}' already exists; remove it or pass --force to replace it")
    return target


def reference_value(text: str, platform: str) -> Value:
    """A manifest value as parts: ``$NAME``/``${NAME}`` (Unix) or ``%NAME%`` (Windows) refer to
    variables, as the shell ``pixi shell-hook`` writes for expands them; anything else is literal
    (``$(...)`` and backticks included: they never run)."""
    pattern = _WINDOWS_REF if platform.startswith("win") else _UNIX_REF
    parts: list[str | VarRef] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(VarRef(next(g for g in match.groups() if g)))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return parts


def binary_dirs(prefix: PurePath, platform: str) -> list[str]:
    """The folders of an environment that go on PATH (as rattler lists them)."""
    if platform.startswith("win"):
        subdirs: Iterable[tuple[str, ...]] = (
            (),
            ("Library", "mingw-w64", "bin"),
            ("Library", "usr", "bin"),
            ("Library", "bin"),
            ("Scripts",),
            ("bin",),
        )
        return [str(prefix.joinpath(*parts)) for parts in subdirs]
    return [str(prefix / "bin")]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _read_json_object(path: Path, where: str) -> dict[str, object]:
    try:
        if path.stat().st_size > MAX_ENV_VARS_FILE:
            raise InvalidPackError(f"{where} is larger than {MAX_ENV_VARS_FILE} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidPackError(f"{where} is not valid JSON text") from None
    if not isinstance(data, dict):
        raise InvalidPackError(f"{where} must be a JSON object of variable names and values")
    return data


def package_env_vars(prefix: Path) -> list[tuple[str, str, str]]:
    """``(name, value, where)`` of the packages' variables: ``env_vars.d/*.json`` in name order, then
    ``conda-meta/state``; a later file overrides a name. Names are checked, values are data."""
    found: dict[str, tuple[str, str]] = {}
    folder = prefix / "etc" / "conda" / "env_vars.d"
    if folder.is_dir() and _inside(folder, prefix):
        for path in sorted(folder.iterdir()):
            where = f"etc/conda/env_vars.d/{path.name}"
            if path.suffix != ".json" or not path.is_file() or not _inside(path, prefix):
                continue
            for name, value in _read_json_object(path, where).items():
                check_name(name, where)
                if not isinstance(value, str):
                    log.warning("%s: the value of %s is not a string; it is not set", where, name)
                    continue
                found.pop(name, None)
                found[name] = (value, where)
    state = prefix / "conda-meta" / "state"
    if state.is_file() and _inside(state, prefix):
        env_vars = _read_json_object(state, "conda-meta/state").get("env_vars", {})
        if not isinstance(env_vars, dict):
            raise InvalidPackError("conda-meta/state has an 'env_vars' that is not a JSON object")
        for name, value in env_vars.items():
            check_name(name, "conda-meta/state")
            if isinstance(value, str):
                found.pop(name.upper(), None)
                found[name.upper()] = (value, "conda-meta/state")
    return [(name, value, where) for name, (value, where) in found.items()]


def package_scripts(prefix: Path, shell: str) -> list[Path]:
    """The packages' ``etc/conda/activate.d`` scripts for ``shell``, in name order."""
    folder = prefix / "etc" / "conda" / "activate.d"
    if not folder.is_dir() or not _inside(folder, prefix):
        return []
    extensions = PACKAGE_SCRIPT_EXTENSIONS[shell]
    return [
        path
        for path in sorted(folder.iterdir())
        if path.suffix in extensions and path.is_file() and _inside(path, prefix)
    ]


def _in_target(path: Path, prefix: Path, target_prefix: PurePath) -> str:
    """``path`` (inside ``prefix``) as it will be named once the environment lives at ``target_prefix``."""
    return str(target_prefix / path.relative_to(prefix))


def activation_script(
    prefix: Path,
    shell: str,
    platform: str,
    manifest: ManifestActivation | None = None,
    target_prefix: PurePath | None = None,
) -> str:
    """The text of the activation script for ``shell``; ``target_prefix`` is where the environment
    read at ``prefix`` will live, when that differs (an image's ``/app/env``)."""
    if shell not in SHELLS:
        raise UsageError(f"unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    syntax: ShellSyntax = SYNTAX[shell](platform.startswith("win"))
    home = target_prefix if target_prefix is not None else prefix
    lines: list[str] = []
    if shell == "powershell":
        lines.append("$OutputEncoding = [System.Console]::OutputEncoding = [System.Text.Encoding]::UTF8")
    elif shell == "cmd":
        lines.append("@chcp 65001 > nul")
    folder = f"the environment's folder '{home}'"
    lines.append(syntax.prepend_path(binary_dirs(home, platform), folder))
    lines.append(syntax.set_var("CONDA_SHLVL", ["1"], "CONDA_SHLVL"))
    lines.append(syntax.set_var("CONDA_PREFIX", [str(home)], folder))
    for name, value, where in package_env_vars(prefix):
        lines.append(syntax.set_var(name, [value], f"the value of {name} in {where}"))
    for script in package_scripts(prefix, shell):
        where = f"the activation script {script.name}"
        lines.append(syntax.source(_in_target(script, prefix, home), where))
    if manifest is not None:
        for script in manifest.scripts:
            if _sources(shell, script):
                where = f"the manifest's activation script {script.name}"
                lines.append(syntax.source(_in_target(script, prefix, home), where))
        for name, text in manifest.env:
            where = f"the manifest's activation value of {name}"
            lines.append(
                syntax.set_var(check_name(name, "the manifest"), reference_value(text, platform), where)
            )
    return "\n".join(lines) + "\n"


def skipped_manifest_scripts(manifest: ManifestActivation | None, shell: str) -> list[str]:
    """The manifest's scripts the ``shell`` cannot source (pixi runs them with bash or cmd)."""
    if manifest is None:
        return []
    return [s.name for s in manifest.scripts if not _sources(shell, s)]


def write_activation_script(
    output_dir: Path,
    prefix: Path,
    shell: str | None,
    platform: str,
    manifest: ManifestActivation | None = None,
    stem: str = "activate",
) -> Path:
    """Write ``activate.<ext>`` (``stem.<ext>``) for ``shell`` (default: bash on Unix, cmd on
    Windows) into ``output_dir`` atomically; a link at its place is replaced, never followed."""
    shell = shell or default_shell(platform)
    target = activation_path(output_dir, shell, platform, stem)
    text = activation_script(prefix, shell, platform, manifest)
    skipped = skipped_manifest_scripts(manifest, shell)
    if skipped:
        log.warning(
            "the %s activation script does not run the manifest's scripts %s (pixi runs them with "
            "bash on Unix, cmd on Windows); unpack with --shell bash or cmd to have them",
            shell,
            ", ".join(skipped),
        )
    newline = "\r\n" if target.suffix in (".bat", ".ps1") else "\n"
    descriptor, temporary = tempfile.mkstemp(prefix=".activate-", suffix=".tmp", dir=output_dir)
    try:
        with open(descriptor, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        if sys.platform != "win32":
            os.chmod(temporary, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def refresh_scripts(
    pack_dir: Path, prefix: Path, activation: PackActivation | None
) -> ManifestActivation | None:
    """For an update in place: the scripts an earlier unpack installed go, the pack's come in."""
    old = prefix / INSTALLED_DIR[0] / INSTALLED_DIR[1]
    if old.is_symlink() or old.is_file():
        old.unlink()
    elif old.is_dir():
        shutil.rmtree(old)
    return install_scripts(pack_dir, prefix, activation) if activation else None


def check_pack_activation(
    pack_dir: Path, activation: PackActivation | None, shell: str | None, platform: str
) -> None:
    """Before anything is installed: every script the pack lists is a regular file of the pack,
    and every value can be written for ``shell``; else one refusal line, and nothing is written."""
    if not activation:
        return
    for member in activation.scripts:
        _pack_script(pack_dir, member)
    check_activation_values(activation, shell, platform)


def check_activation_values(activation: PackActivation | None, shell: str | None, platform: str) -> None:
    """Every value of the pack's activation can be written for ``shell``: one refusal line if not.
    Needs only ``pixi-pack.json``, so an update of several environments checks each before any."""
    if not activation:
        return
    shell = shell or default_shell(platform)
    if shell not in SHELLS:
        raise UsageError(f"unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    syntax: ShellSyntax = SYNTAX[shell](platform.startswith("win"))
    for name, text in activation.env:
        where = f"the manifest's activation value of {name}"
        syntax.set_var(check_name(name, "the manifest"), reference_value(text, platform), where)


def _pack_script(pack_dir: Path, member: str) -> Path:
    """The pack's file of the activation script ``member`` (a plain name in ``activation/``)."""
    source = pack_dir / member
    try:
        info = source.lstat()
    except FileNotFoundError:
        raise InvalidPackError(
            f"the pack lists the activation script '{member}' but does not have it"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidPackError(f"the pack's activation script '{member}' is not a regular file")
    return source


def install_scripts(pack_dir: Path, prefix: Path, activation: PackActivation) -> ManifestActivation:
    """Copy the pack's activation scripts into ``prefix``; the values pass on as they are.

    Each script must be a regular file in the pack (a link is refused); the folder it goes to is
    made here and must not exist yet, and no part of the way there may be a link, so nothing a
    package installed can send the copy elsewhere."""
    if not activation.scripts:
        return ManifestActivation(env=activation.env)
    etc = prefix / INSTALLED_DIR[0]
    if etc.is_symlink() or (etc.exists() and not etc.is_dir()):
        raise InvalidPackError(
            f"the environment's '{INSTALLED_DIR[0]}' is not a folder; cannot add activation scripts"
        )
    etc.mkdir(exist_ok=True)
    target = etc
    for part in INSTALLED_DIR[1:]:
        target = target / part
        try:
            target.mkdir()
        except FileExistsError:
            raise InvalidPackError(
                f"a package of the pack already installs '{'/'.join(INSTALLED_DIR)}'; "
                "the manifest's activation scripts go there"
            ) from None
    installed = []
    for member in activation.scripts:
        source = _pack_script(pack_dir, member)
        destination = target / member.partition("/")[2]
        flags = (
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        )
        with open(source, "rb") as reader, os.fdopen(os.open(destination, flags, 0o644), "wb") as writer:
            shutil.copyfileobj(reader, writer)
        installed.append(destination)
    return ManifestActivation(env=activation.env, scripts=tuple(installed))
