"""``dd datasets``: the registered dataset names (built-ins plus the named plugins')."""

from __future__ import annotations

import click


@click.command(name="datasets")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Also list this plugin's datasets.")
def datasets_command(plugins: tuple[str, ...]) -> None:
    """List datasets that `dd run --dataset NAME` accepts."""
    from rich.table import Table

    from ddcore.data.registry import DatasetRegistry
    from ddcore.hooks import Hooks
    from ddcore.plugins import get_plugin_manager
    from ddcore_cli.output import stdout

    registry = Hooks(get_plugin_manager(list(plugins))).register_datasets(DatasetRegistry())
    table = Table(title="datasets", title_justify="left")
    for column in ("name", "plugin", "description"):
        table.add_column(column)
    for name in registry.names():
        entry = registry.entries[name]
        table.add_row(name, entry.plugin, entry.description)
    stdout().print(table)
