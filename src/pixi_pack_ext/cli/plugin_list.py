"""``pixi-pack plugins`` (or ``--list-plugins``): what is loaded, from where, providing what."""

from __future__ import annotations

from ..plugins import get_plugin_manager


def list_plugins() -> None:
    """Print the plugin table, then refuse a conflicting plugin set (it shows in the table)."""
    from rich.table import Table

    manager = get_plugin_manager()
    table = Table(title="pixi-pack plugins")
    table.add_column("plugin", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("provides")
    for info in manager.describe():
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items())
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
        name = info.name.removeprefix("pixi_pack_ext.builtin.") if info.builtin else info.name
        table.add_row(name, origin, provides or "-")
    from rich.console import Console

    Console().print(table)
    manager.check()  # after the listing, so a conflict can be seen in it
