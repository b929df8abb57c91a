"""``pixi-pack completion -s SHELL``: tab completion for pixi-pack and pixi-unpack.

The printed script registers both commands. At completion time the shell runs the command itself
with ``_PIXI_PACK_COMPLETE`` (or ``_PIXI_UNPACK_COMPLETE``) set, and click answers from the
command's own options, so completion always matches the installed version. bash, zsh and fish use
click's scripts; PowerShell gets a small one here that speaks click's bash protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click
import rich_click
from click.core import ParameterSource
from click.shell_completion import CompletionItem, get_completion_class, split_arg_string

SHELLS = ("bash", "zsh", "fish", "powershell")

#: Words ``pixi-pack`` takes in place of MANIFEST_PATH as subcommands.
PACK_SUBCOMMANDS = {"plugins": "list the loaded plugins", "completion": "print a shell completion script"}

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


# --------------------------------------------------------------------------------------------------
# Completions for values: subcommand words, environments and platforms of the lock
# --------------------------------------------------------------------------------------------------


def _any_given(ctx: click.Context) -> bool:
    """Whether the command line so far sets any option (subcommand words must come first)."""
    return any(ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE for name in ctx.params)


def complete_manifest(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """MANIFEST_PATH: the shell's own file completion, plus the subcommand words where they match.

    Shells drop file completion once a plain word is offered (bash does), so when a subcommand word
    matches, the matching paths are listed here as plain words too.
    """
    words = [
        CompletionItem(word, help=text)
        for word, text in PACK_SUBCOMMANDS.items()
        if word.startswith(incomplete) and not _any_given(ctx)
    ]
    if not words:
        return [CompletionItem(incomplete, type="file")]
    folder, _, prefix = incomplete.rpartition("/")
    try:
        entries = sorted(Path(folder or ".").iterdir())
    except OSError:
        entries = []
    paths = [
        CompletionItem(f"{folder}/{p.name}" if folder else p.name)
        for p in entries
        if p.name.startswith(prefix) and (prefix.startswith(".") or not p.name.startswith("."))
    ]
    return [*words, *paths]


def _manifest(ctx: click.Context) -> Path:
    """MANIFEST_PATH as typed so far.

    click loses positionals when the line ends in an option still waiting for its value
    (``pixi-pack ws -e <TAB>``), so the words the shell passed are scanned as well.
    """
    if ctx.get_parameter_source("manifest_path") == ParameterSource.COMMANDLINE:
        return Path(ctx.params["manifest_path"])
    takes_value = {
        name
        for param in ctx.command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in param.opts
    }
    skip = False
    for word in split_arg_string(os.environ.get("COMP_WORDS", ""))[1:]:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in takes_value
        elif Path(word).exists():
            return Path(word)
    return Path(".")


def _lock_names(ctx: click.Context, pick: Callable[[object], list[str]]) -> list[str]:
    """Names read from the lock of the manifest given so far (or ./pixi.lock); none if unreadable."""
    import rattler

    from ..lockfile import find_lock_file

    try:
        lock = rattler.LockFile.from_path(find_lock_file(_manifest(ctx)))
        return sorted(set(pick(lock)))
    except Exception:  # completion must never print a traceback into the user's prompt
        return []


def complete_environment(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``-e``: the environments the lock has."""
    names = _lock_names(ctx, lambda lock: [name for name, _ in lock.environments()])  # type: ignore[attr-defined]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_platform(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``-p``: the platforms the lock has for the chosen environment (all of them if none chosen)."""

    def platforms(lock: object) -> list[str]:
        wanted = ctx.params.get("environment")
        found = []
        for name, env in lock.environments():  # type: ignore[attr-defined]
            if wanted in (None, name):
                found += [p.name for p in env.platforms()]
        return found

    return [CompletionItem(name) for name in _lock_names(ctx, platforms) if name.startswith(incomplete)]
