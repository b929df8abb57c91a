"""Format settings on the command line: ``--format-option NAME=VALUE`` and the flags formats declare.

A format lists its settings as ``FormatOption`` records; ``pixi-pack`` offers each as ``--NAME VALUE``
(when the core does not already use that flag) and always accepts ``--format-option NAME=VALUE``.
Values given for a format that does not declare them are refused with one clear line.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from ..errors import UsageError
from ..hookspecs import FormatOption, PackFormat

#: Where option callbacks leave the values of declared flags for the command to pick up.
META_KEY = "pixi_pack.format_options"


def _store(key: str):  # type: ignore[no-untyped-def]
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.meta.setdefault(META_KEY, {})[key] = value

    return callback


def add_format_flags(command: click.Command, formats: Iterable[PackFormat]) -> None:
    """Give ``command`` a ``--NAME VALUE`` option for every option the formats declare.

    A flag the command already has is left alone (``--format-option NAME=VALUE`` still reaches the
    format); a flag two formats declare becomes one option whose help names both.
    """
    taken = {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}
    added: dict[str, tuple[FormatOption, list[str]]] = {}
    for fmt in formats:
        for option in fmt.options:
            flag = f"--{option.name}"
            if flag in taken and flag not in added:
                continue
            added.setdefault(flag, (option, []))[1].append(fmt.name)
            taken.add(flag)
    for flag, (option, owners) in added.items():
        command.params.append(
            click.Option(
                [flag],
                metavar=option.metavar,
                default=None,
                expose_value=False,
                callback=_store(option.key),
                help=f"{option.help} (format {', '.join(owners)})".strip(),
            )
        )


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``("base-image=x", "compression=zstd")`` -> ``{"base_image": "x", "compression": "zstd"}``."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--format-option expects NAME=VALUE, got '{pair}'")
        values[name.replace("-", "_")] = value
    return values


def format_options_for(fmt: PackFormat, pairs: Iterable[str], flags: dict[str, str]) -> dict[str, object]:
    """The checked options for ``fmt``: ``--format-option`` pairs, then declared flags (which win)."""
    values: dict[str, object] = {**parse_pairs(pairs), **flags}
    declared = {option.key: option.name for option in fmt.options}
    for key in values:
        if key not in declared:
            takes = ", ".join(sorted(declared.values())) or "none"
            raise UsageError(
                f"format '{fmt.name}' has no option '{key.replace('_', '-')}' (its options: {takes})"
            )
    return values
