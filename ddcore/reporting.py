"""Progress bars and log lines (rich), shown on the main process only and silenced by ``quiet``."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

logger = logging.getLogger("ddcore")


class Reporter:
    """Where a run tells the user what it is doing.

    Args:
        quiet: no progress bars and no info lines on the console (errors still go to stderr).
        enabled: ``False`` on non-main processes: nothing is shown at all.
        console: the rich console (stderr by default, so stdout stays machine-readable).
    """

    def __init__(self, quiet: bool = False, enabled: bool = True, console: Console | None = None):
        self.quiet = quiet
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._log_handler: logging.Handler | None = None
        self._pending: list[logging.LogRecord] = []  # lines logged before the run's log file existed

    @property
    def visible(self) -> bool:
        return self.enabled and not self.quiet

    def info(self, message: str) -> None:
        """A log line: to the run's log file always, to the console unless quiet."""
        self.note(message)
        if self.visible:  # free text, not rich markup: "[tm]" in a line stays "[tm]"
            self.console.print(message, highlight=False, markup=False)

    def note(self, message: str, level: int = logging.INFO) -> None:
        """A line for the run's log file only (stages, resolved presets, results, the error).

        Lines noted before :meth:`attach_log_file` are kept and written first when it is called, so
        ``run.log`` also holds what happened before the run directory existed (the dataset stage).
        """
        record = logger.makeRecord(logger.name, level, "(ddcore)", 0, message, None, None)
        if self._log_handler is None and self.enabled:
            self._pending.append(record)
        if logger.isEnabledFor(level):
            logger.handle(record)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        """``with reporter.progress("evaluating", total=3) as advance: ... advance(1)``.

        ``advance(n, **values)`` also shows the latest named numbers after the bar
        (``advance(1, loss=0.8123, syn_lr=0.01)`` -> ``loss 0.8123  syn_lr 0.01``, 4 significant digits).
        Nothing is shown (and nothing formatted) when quiet or on a non-main process.
        """
        if not self.visible:
            yield lambda n=1, **values: None
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(escape(description), total=total, status="")  # "[bold]" is the column's markup

            def advance(n: int = 1, **values: float) -> None:
                if values:
                    bar.update(task, status=status_text(values))
                bar.advance(task, n)

            yield advance

    def attach_log_file(self, path: Path) -> None:
        """Copy ddcore's log records into ``path`` (the run directory's ``run.log``)."""
        handler = _QuietFileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for record in self._pending:
            handler.handle(record)
        self._pending.clear()
        logging.getLogger("ddcore").addHandler(handler)
        logging.getLogger("ddcore").setLevel(logging.INFO)
        self._log_handler = handler

    def close(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("ddcore").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


def status_text(values: Mapping[str, float]) -> str:
    """``{"loss": 0.81234, "syn_lr": 0.01}`` -> ``"loss 0.8123  syn_lr 0.01"`` (the progress bar's status).

    >>> status_text({"loss": 0.812345, "syn_lr": 0.0100004})
    'loss 0.8123  syn_lr 0.01'
    """
    return "  ".join(f"{name} {value:.4g}" for name, value in values.items())


class _QuietFileHandler(logging.FileHandler):
    """``run.log``'s handler: a failed write (a full disk) is not printed as logging's ``--- Logging error ---``
    traceback; the run's own writes report the storage problem as one line (:class:`ddcore.storage.StorageError`)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass
