"""``pixi-pack completion -s SHELL``: tab completion for pixi-pack and pixi-unpack.

The printed script registers both commands. At completion time the shell runs the command itself
with ``_PIXI_PACK_COMPLETE`` (or ``_PIXI_UNPACK_COMPLETE``) set, and click answers from the
command's own options, so completion always matches the installed version. bash, zsh and fish use
click's scripts; PowerShell gets a small one here that speaks click's bash protocol.
"""

from __future__ import annotations

import click
import rich_click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish", "powershell")

_POWERSHELL = r"""
Register-ArgumentCompleter -Native -CommandName %(prog_name)s -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $words = @()
    foreach ($element in $commandAst.CommandElements) {
        if ($element.Extent.StartOffset -ge $cursorPosition) { break }
        if ($element -is [System.Management.Automation.Language.StringConstantExpressionAst]) {
            $words += $element.Value
        } else {
            $words += $element.Extent.Text
        }
    }
    if ($wordToComplete -eq '') { $words += '' }
    $quoted = ($words | ForEach-Object { "'" + ($_ -replace "'", "'\''") + "'" }) -join ' '
    $env:COMP_WORDS = $quoted
    $env:COMP_CWORD = $words.Count - 1
    $env:%(complete_var)s = 'bash_complete'
    try {
        $lines = @(& %(prog_name)s 2>$null)
    } finally {
        Remove-Item Env:%(complete_var)s, Env:COMP_WORDS, Env:COMP_CWORD -ErrorAction SilentlyContinue
    }
    foreach ($line in $lines) {
        $type, $value = $line -split ',', 2
        if ($type -eq 'plain') {
            [System.Management.Automation.CompletionResult]::new($value, $value, 'ParameterValue', $value)
        } elseif ($type -eq 'file' -or $type -eq 'dir') {
            $parent = Split-Path -Path $wordToComplete -Parent
            Get-ChildItem -Path "$wordToComplete*" -Directory:($type -eq 'dir') -ErrorAction SilentlyContinue |
                ForEach-Object {
                    $path = if ($parent) { Join-Path $parent $_.Name } else { $_.Name }
                    [System.Management.Automation.CompletionResult]::new($path, $path, 'ProviderItem', $path)
                }
        }
    }
}
"""


def complete_var(prog_name: str) -> str:
    """The environment variable click checks for ``prog_name`` (``_PIXI_PACK_COMPLETE``)."""
    return f"_{prog_name}_COMPLETE".replace("-", "_").upper()


def _commands() -> list[tuple[str, click.Command]]:
    from .pack import pack_command
    from .unpack import unpack_command

    return [("pixi-pack", pack_command), ("pixi-unpack", unpack_command)]


def completion_script(shell: str) -> str:
    """The script that makes ``shell`` complete both pixi-pack and pixi-unpack."""
    parts = []
    for prog_name, command in _commands():
        if shell == "powershell":
            body = _POWERSHELL % {"prog_name": prog_name, "complete_var": complete_var(prog_name)}
        else:
            completer = get_completion_class(shell)
            assert completer is not None, shell
            body = completer(command, {}, prog_name, complete_var(prog_name)).source()
        parts.append(f"# {prog_name} completion ({shell})\n{body.strip()}\n")
    return "\n".join(parts)


_SETUP = {
    "bash": 'eval "$(pixi-pack completion --shell bash)"   # in ~/.bashrc',
    "zsh": 'eval "$(pixi-pack completion --shell zsh)"    # in ~/.zshrc, after compinit',
    "fish": "pixi-pack completion --shell fish | source   # in ~/.config/fish/config.fish",
    "powershell": "pixi-pack completion --shell powershell | Out-String | Invoke-Expression   # in $PROFILE",
}


@rich_click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Set-up lines:\n\n" + "\n\n".join(f"{shell}: {line}" for shell, line in _SETUP.items()),
)
@rich_click.option(
    "-s",
    "--shell",
    type=click.Choice(SHELLS),
    required=True,
    help="Shell to print the completion script for.",
)
def completion_command(shell: str) -> None:
    """Print the tab-completion script for pixi-pack and pixi-unpack in SHELL's language.

    Load it from the shell's start-up file, e.g. eval "$(pixi-pack completion -s bash)".
    """
    click.echo(completion_script(shell), nl=False)
