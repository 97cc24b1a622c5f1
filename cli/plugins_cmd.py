"""``dd plugins``: every installed plugin, its hooks and its status; a broken one is listed, never fatal."""

from __future__ import annotations

import json

import click


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "include_builtins", is_flag=True, help="Include ddcore's built-in plugins.")
@click.option("--hook", "hook_filter", metavar="HOOK", help="Only plugins implementing this hook (e.g. dd_select).")
@click.option("--requirements", is_flag=True, help="Print dist==version lines of the installed plugins.")
def plugins_command(as_json: bool, include_builtins: bool, hook_filter: str | None, requirements: bool) -> None:
    """List installed ddcore plugins (entry-point group `ddcore`)."""
    from rich.table import Table

    from ddcore.errors import DDError
    from ddcore.plugins import iter_hook_names, list_installed
    from ddcore_cli.output import stdout

    if hook_filter and hook_filter not in iter_hook_names():
        raise DDError(f"--hook {hook_filter}: no such hook; hooks: {', '.join(iter_hook_names())}")
    infos = list_installed(include_builtins=include_builtins)
    if hook_filter:
        infos = [info for info in infos if hook_filter in info.hooks]
    if requirements:
        for line in sorted({f"{i.distribution}=={i.version}" for i in infos if i.distribution}):
            click.echo(line)
        return
    if as_json:
        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    table = Table(title="ddcore plugins", title_justify="left")
    for column in ("name", "distribution", "version", "hooks", "status"):
        table.add_column(column)
    for info in infos:
        status = "[green]ok[/]" if info.status == "ok" else f"[red]error[/]: {info.error}"
        table.add_row(info.name, info.distribution or info.source, info.version or "", ", ".join(info.hooks), status)
    console = stdout()
    if infos:
        console.print(table)
    else:
        console.print("No plugins installed (entry-point group `ddcore`). `dd plugins --all` shows the built-ins.")
