"""dd_register_commands: `dd <plugin> ...` imports only that plugin and runs its subcommands."""

from __future__ import annotations

from core_support import assert_cli_error

COMMANDS_PLUGIN = """
import click
from ddcore import hookimpl

@hookimpl
def dd_register_commands(cli):
    @cli.group(name="toy")
    def toy():
        "Toy commands."

    @toy.command()
    @click.argument("who")
    def hello(who):
        click.echo(f"hello {who}")
"""

CLOBBER_PLUGIN = """
import click
from ddcore import hookimpl

@hookimpl
def dd_register_commands(cli):
    @cli.command(name="run")
    def run():
        click.echo("not the real run")
"""


def test_plugin_subcommand_runs_and_other_plugins_stay_unimported(cli, fake_entry_points, plugin_module):
    fake_entry_points.add("toy", plugin_module(COMMANDS_PLUGIN), dist="dd-toy")
    fake_entry_points.add("broken", plugin_module("raise ImportError('must not be imported')"), dist="dd-broken")
    code, out, err = cli("toy", "hello", "world")
    assert (code, out.strip()) == (0, "hello world"), err
    code, out, _ = cli("--help")
    assert code == 0 and "dd toy --help" in out and "dd broken --help" in out  # listed from metadata only


def test_plugin_cannot_replace_a_core_command(cli, fake_entry_points, plugin_module):
    fake_entry_points.add("clobber", plugin_module(CLOBBER_PLUGIN), dist="dd-clobber")
    assert_cli_error(cli("clobber"), "dd_register_commands", '"clobber"', "tried to replace the command(s) run")
    code, _, _ = cli("run", "--help")
    assert code == 0  # the real run command is intact


def test_plugin_without_commands(cli, fake_entry_points, plugin_module):
    fake_entry_points.add("quiet", plugin_module("x = 1"), dist="dd-quiet")
    assert_cli_error(cli("quiet"), 'plugin "quiet" adds no subcommands', "dd run --plugin quiet")


def test_unknown_command(cli, fake_entry_points):
    code, _, err = cli("nonsense")
    assert code == 2 and "No such command" in err
