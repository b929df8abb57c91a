"""Tab completion of option values: subcommand words, and the environments and platforms of the lock.

The commands name these as ``shell_complete`` callbacks; ``completion.py`` prints the scripts that
make the shell ask for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem, split_arg_string

#: Words ``pixi-pack`` takes in place of MANIFEST_PATH as subcommands.
PACK_SUBCOMMANDS = {
    "plugins": "list the loaded plugins",
    "completion": "print a shell completion script",
    "verify": "check a pack against its manifest and signature",
    "sbom": "print a pack's CycloneDX SBOM",
}


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

    from ..pack.lockfile import find_lock_file

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
