"""``dd distillers``: the registered distillers (``--distill NAME``), their plugin, table and the hooks they call."""

from __future__ import annotations

import json

import click


@click.command(name="distillers")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py",
              help="Only the built-ins and these plugins (default: every installed plugin that registers distillers).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def distillers_command(plugins: tuple[str, ...], as_json: bool) -> None:
    """List the distillers that `dd run --distill NAME` accepts (with `--plugin PLUGIN` for a plugin's)."""
    from ddcore.distillers import DistillerRegistry
    from ddcore.hooks import Hooks
    from ddcore.plugins import get_plugin_manager, list_installed

    requested = list(plugins) or [
        info.name for info in list_installed() if info.status == "ok" and "dd_register_distillers" in info.hooks
    ]
    registry = Hooks(get_plugin_manager(requested)).register_distillers(DistillerRegistry())
    rows = [
        {"name": entry.name, "plugin": entry.plugin, "table": f"[{entry.name}]" if entry.config_class else "",
         "calls": list(entry.calls), "description": entry.description}
        for entry in (registry.entries[name] for name in registry.names())
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from ddcore_cli.output import stdout

    table = Table(title="distillers (dd run --distill NAME; a plugin's also needs --plugin PLUGIN)", title_justify="left")
    for column in ("name", "plugin", "options", "calls", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(text) for text in (row["name"], row["plugin"], row["table"], ", ".join(row["calls"]), row["description"])))
    stdout().print(table)
