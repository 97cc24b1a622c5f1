"""``dd datasets``: the registered dataset names (built-ins plus the named plugins'), and those that
installed but inactive plugins would add (with the ``--plugin NAME`` that activates them)."""

from __future__ import annotations

import click


@click.command(name="datasets")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Also list this plugin's datasets.")
@click.option("--active-only", is_flag=True, help="Leave out the datasets of installed plugins the command did not activate.")
def datasets_command(plugins: tuple[str, ...], active_only: bool) -> None:
    """List datasets that `dd run --dataset NAME` accepts.

    Datasets of installed plugins that are not active are listed too, marked `(with --plugin NAME)`:
    `dd run` accepts them once that plugin is activated. An installed plugin that cannot be imported
    is reported below the table (see `dd plugins`), never fatal.
    """
    from rich.table import Table

    from ddcore.data.registry import DatasetRegistry
    from ddcore.hooks import Hooks
    from ddcore.plugins import get_plugin_manager
    from ddcore_cli.output import stdout

    pm = get_plugin_manager(list(plugins))
    registry = Hooks(pm).register_datasets(DatasetRegistry())
    table = Table(title="datasets", title_justify="left")
    for column in ("name", "plugin", "description"):
        table.add_column(column)
    for name in registry.names():
        entry = registry.entries[name]
        table.add_row(name, entry.plugin, entry.description)
    problems: list[str] = []
    if not active_only:
        for plugin, name, description in inactive_datasets(set(pm.infos), set(registry.entries), problems):
            table.add_row(name, f"{plugin} (with --plugin {plugin})", description)
    console = stdout()
    console.print(table)
    for problem in problems:
        console.print(f"[yellow]not listed[/]: {problem}", highlight=False)


def inactive_datasets(active: set[str], taken: set[str], problems: list[str]) -> list[tuple[str, str, str]]:
    """``(plugin, dataset, description)`` for every dataset an installed, inactive plugin registers.

    Each such plugin is imported and asked alone (``dd_register_datasets`` only); one that fails to
    import, or whose registration fails, adds a line to ``problems`` instead. Names already in
    ``taken`` (the active registry) are left out: activating that plugin would be a clash, which
    ``dd run`` reports.
    """
    from ddcore.data.registry import DatasetRegistry
    from ddcore.errors import DDError, PluginCrash
    from ddcore.plugins import DDPluginManager, entry_point_info, installed_entry_points, load_entry_point

    found: list[tuple[str, str, str]] = []
    for name, eps in sorted(installed_entry_points().items()):
        if name in active or len(eps) != 1:
            continue  # active already listed; a name claimed twice is reported by `dd plugins`
        try:
            probe = DDPluginManager()
            probe.register_plugin(load_entry_point(eps[0]), entry_point_info(eps[0]))
            if "dd_register_datasets" not in probe.infos[name].hooks:
                continue
            registry = DatasetRegistry()
            for impl in probe.hook.dd_register_datasets.get_hookimpls():
                impl.function(register=registry.registrar(name))
        except (DDError, PluginCrash) as exc:
            problems.append(f"plugin {name}: {exc}")
            continue
        except Exception as exc:  # a broken third-party plugin must not break the listing
            problems.append(f"plugin {name}: {type(exc).__name__}: {exc}")
            continue
        for dataset in registry.names():
            if dataset not in taken:
                found.append((name, dataset, registry.entries[dataset].description))
    return found
