"""Exceptions that carry a user-facing message.

Every subclass of :class:`DDError` is an *expected* problem (bad input, a plugin that cannot load, a
plugin that answered wrongly). The ``dd`` command prints ``Error: <message>`` on one line and exits
with status 2 for these; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class DDError(Exception):
    """Base class for problems the user can fix. ``str(err)`` is the one-line message.

    ``exit_code`` (class or instance attribute, default 2) is the ``dd`` command's exit status for it.
    """

    exit_code: int = 2

    def cli_message(self) -> str:
        """The line the ``dd`` command prints before exiting with status 2."""
        return f"Error: {self}"


class ConfigError(DDError):
    """The run configuration (file, flags or a plugin's section) is invalid."""


class PluginError(DDError):
    """A plugin reports a problem the user can fix (missing checkpoint, unsupported option, ...).

    Plugins raise it from their hooks; ``plugin`` names the reporter when known.

    >>> PluginError("teacher checkpoint not found", plugin="edf").cli_message()
    'Error [edf]: teacher checkpoint not found'
    """

    def __init__(self, message: str, plugin: str | None = None):
        self.plugin = plugin
        super().__init__(message)

    def cli_message(self) -> str:
        return f"Error [{self.plugin}]: {self}" if self.plugin else f"Error: {self}"


class PluginLoadError(DDError):
    """A requested plugin is unknown, ambiguous or fails to import."""


class PluginCallError(DDError):
    """A hook implementation raised or returned something that breaks the hook's contract.

    Attributes name the hook, the plugin and its distribution so the message says who failed.
    """

    def __init__(self, message: str, *, hook: str, plugin: str, dist: str | None = None):
        self.hook = hook
        self.plugin = plugin
        self.dist = dist
        who = f'plugin "{plugin}"' + (f" ({dist})" if dist else "")
        super().__init__(f"{hook}: {who} {message}")


class PluginCrash(Exception):
    """A plugin's code raised an unexpected exception (a bug in the plugin); chained to it.

    Not a :class:`DDError`: the ``dd`` command shows a short traceback, names ``where`` (the hook or
    the dataset factory) and the plugin, and exits with status 1.
    """

    def __init__(self, where: str, plugin: str, dist: str | None, exc: BaseException):
        self.hook, self.plugin, self.dist = where, plugin, dist
        who = f'plugin "{plugin}"' + (f" ({dist})" if dist else "")
        super().__init__(f"{where}: {who} raised {type(exc).__name__}: {exc}")


@contextmanager
def attributed_to(where: str, plugin: str, dist: str | None = None) -> Iterator[None]:
    """Run plugin code so that any failure names the plugin.

    A :class:`PluginError` without a plugin gets ``plugin``; other :class:`DDError` pass through;
    anything else becomes :class:`PluginCrash` chained to the original.
    """
    try:
        yield
    except PluginError as exc:
        if exc.plugin is None:
            exc.plugin = plugin
        raise
    except DDError:
        raise
    except Exception as exc:
        raise PluginCrash(where, plugin, dist, exc) from exc
