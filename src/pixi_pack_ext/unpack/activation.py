"""Activation scripts next to the environment (``activate.sh``, ``activate.bat``, ...).

rattler's shell support writes bash, zsh, fish, xonsh, PowerShell and cmd scripts (PATH, CONDA_PREFIX,
the env's ``etc/conda/activate.d`` scripts). Nushell is not among them, so its script is written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rattler.rattler import PyActivationVariables
from rattler.shell import ActivationVariables, Shell, activate

from ..errors import UsageError

#: Shell name -> (rattler shell, script file extension); the extensions are pixi-pack's.
SHELLS: dict[str, tuple[object | None, str]] = {
    "bash": (Shell.bash, "sh"),
    "zsh": (Shell.zsh, "zsh"),
    "fish": (Shell.fish, "fish"),
    "xonsh": (Shell.xonsh, "xsh"),
    "powershell": (Shell.powershell, "ps1"),
    "cmd": (Shell.cmd_exe, "bat"),
    "nushell": (None, "nu"),
}


def default_shell(platform: str) -> str:
    return "cmd" if platform.startswith("win") else "bash"


def _prepend_only() -> ActivationVariables:
    """Activation variables that prepend to the PATH the user has when sourcing, not ours now."""
    variables = ActivationVariables.__new__(ActivationVariables)
    variables._activation_variables = PyActivationVariables(None, [], "prepend")
    return variables


def _nushell_script(prefix: Path, platform: str) -> str:
    binary_dirs = (
        [
            prefix,
            prefix / "Library" / "mingw-w64" / "bin",
            prefix / "Library" / "usr" / "bin",
            prefix / "Library" / "bin",
            prefix / "Scripts",
            prefix / "bin",
        ]
        if platform.startswith("win")
        else [prefix / "bin"]
    )
    path_var = "Path" if platform.startswith("win") else "PATH"
    entries = " ".join(f"'{d}'" for d in binary_dirs)
    return (
        f"$env.{path_var} = ($env.{path_var} | split row (char esep) | prepend [{entries}])\n"
        "$env.CONDA_SHLVL = '1'\n"
        f"$env.CONDA_PREFIX = '{prefix}'\n"
    )


def activation_script(prefix: Path, shell: str, platform: str) -> str:
    """The text of the activation script for ``shell``."""
    rattler_shell, _ = SHELLS[shell]
    if rattler_shell is None:
        return _nushell_script(prefix, platform)
    return activate(prefix, _prepend_only(), rattler_shell, platform).script  # type: ignore[arg-type]


def write_activation_script(output_dir: Path, prefix: Path, shell: str | None, platform: str) -> Path:
    """Write ``activate.<ext>`` for ``shell`` (default: bash on Unix, cmd on Windows) into ``output_dir``."""
    shell = shell or default_shell(platform)
    if shell not in SHELLS:
        raise UsageError(f"unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    _, extension = SHELLS[shell]
    target = output_dir / f"activate.{extension}"
    text = activation_script(prefix, shell, platform)
    newline = "\r\n" if extension in ("bat", "ps1") else "\n"
    with open(target, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    if sys.platform != "win32":
        target.chmod(0o755)
    return target
