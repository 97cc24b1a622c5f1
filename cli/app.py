"""The ``dd`` root command: core subcommands, lazily loaded plugin subcommands, one error policy.

Errors the user can fix (:class:`ddcore.DDError`) print one line and exit with status 2 (or the error's
``exit_code``); so does an ``OSError`` from writing that the user can fix (a full disk, a quota, a
read-only file system, no permission, a file in the way: :mod:`ddcore.storage`), wherever it was raised,
plugin code included. A plugin bug prints a short traceback naming the hook and plugin and exits with status 1.
"""

from __future__ import annotations

import sys
import traceback

import click

from ddcore.errors import DDError


class DDGroup(click.Group):
    """A group whose unknown subcommands are looked up among installed plugins' entry points.

    ``dd compdd ...`` imports only the ``compdd`` plugin and lets it add its commands through
    ``dd_register_commands``; nothing else installed is imported.
    """

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Name installed plugins' command groups from metadata, without importing them."""
        from ddcore.plugins import installed_entry_points

        names = sorted(set(installed_entry_points()) - set(self.commands))
        if names:
            with formatter.section("Plugin commands (if the plugin adds any)"):
                formatter.write_dl([(name, f"dd {name} --help") for name in names])
        super().format_epilog(ctx, formatter)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        from ddcore.plugins import installed_entry_points

        if name not in installed_entry_points():
            return None
        from ddcore.hooks import Hooks
        from ddcore.plugins import get_plugin_manager

        scratch = click.Group(name=self.name, commands=dict(self.commands))  # the root stays untouched
        Hooks(get_plugin_manager([name])).register_commands(scratch)
        return scratch.commands.get(name) or _no_commands(name)


def _no_commands(plugin: str) -> click.Command:
    @click.command(name=plugin, help=f"(plugin {plugin} adds no subcommands)")
    def placeholder() -> None:
        raise DDError(f'plugin "{plugin}" adds no subcommands; use it with `dd run --plugin {plugin}`')

    return placeholder


@click.group(cls=DDGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ddcore", prog_name="dd")
def cli() -> None:
    """ddcore: dataset distillation with plugins.

    \b
    dd run --ipc 10                      distil digits with the built-ins and evaluate
    dd run --plugin NAME ...             activate an installed plugin (repeatable)
    dd plugins                           list installed plugins
    dd show RUN_DIR / dd eval RUN_DIR    inspect or re-evaluate a run
    """


def _register_core_commands() -> None:
    """The core commands; their modules import only click at the top, so ``dd --help`` stays torch-free."""
    from ddcore_cli.compare_cmd import compare_command
    from ddcore_cli.datasets_cmd import datasets_command
    from ddcore_cli.distillers_cmd import distillers_command
    from ddcore_cli.eval_cmd import eval_command
    from ddcore_cli.export_cmd import export_command
    from ddcore_cli.experts_cmd import experts_command
    from ddcore_cli.plugins_cmd import plugins_command
    from ddcore_cli.run_cmd import run_command
    from ddcore_cli.show_cmd import show_command

    commands = (run_command, plugins_command, show_command, eval_command, datasets_command, distillers_command, experts_command, export_command, compare_command)
    for command in commands:
        cli.add_command(command)


_register_core_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dd`` console script."""
    from ddcore.errors import PluginCrash
    from ddcore.storage import storage_error

    try:
        code = cli.main(args=argv, prog_name="dd", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except DDError as exc:
        click.echo(exc.cli_message(), err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except PluginCrash as exc:
        cause = exc.__cause__
        storage = storage_error(cause, writing=False) if cause is not None else None
        if storage is not None:  # a full disk in plugin code is no plugin bug
            click.echo(f"{storage.cli_message()} (in {exc.hook}, plugin {exc.plugin})", err=True)
            sys.exit(2)
        if cause is not None:
            traceback.print_exception(type(cause), cause, cause.__traceback__, limit=-4, file=sys.stderr)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except OSError as exc:
        storage = storage_error(exc, writing=False)
        if storage is None:
            raise
        click.echo(storage.cli_message(), err=True)
        sys.exit(2)
