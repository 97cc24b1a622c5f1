"""``dd eval RUN_DIR``: re-evaluate a saved distilled set (e.g. with more runs or another network, or after a
failed evaluation: ``distilled.pt`` is saved before the run evaluates)."""

from __future__ import annotations

from pathlib import Path

import click

from ddcore.config import BASELINES, deep_merge, parse_assignment
from ddcore.vocab import LABEL_MODES
from ddcore_cli.run_cmd import flag_overrides


@click.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate an extra plugin (e.g. a benchmark's evaluator).")
@click.option("--eval-runs", type=int, help="Networks to train.")
@click.option("--eval-epochs", type=int, help="Epochs per network.")
@click.option("--eval-model", help="Evaluation network: convnet, convnetd3/4/5, resnet18.")
@click.option("--labels", type=click.Choice(LABEL_MODES))
@click.option("--baseline", multiple=True, type=click.Choice(BASELINES))
@click.option("--data-root", type=click.Path(path_type=Path), help="Where the dataset lives now, if it moved.")
@click.option("--workers", type=int, help="Data loader worker processes (default: the run's recorded value).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any config key, e.g. --set eval.lr=0.02.")
@click.option("--cpu", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def eval_command(run_dir: Path, plugins, sets, quiet, **flags) -> None:
    """Re-evaluate the distilled set in RUN_DIR; writes RUN_DIR/eval-<timestamp>.json.

    Works on any run whose set was distilled, also one whose own evaluation failed (`dd show` says so);
    a run stopped before that is pointed to `dd run --resume RUN_DIR`.
    """
    from ddcore.runner import evaluate_saved_run
    from ddcore_cli.output import metrics_table, stdout

    overrides: dict = {}
    for assignment in sets:
        overrides = deep_merge(overrides, parse_assignment(assignment))
    overrides = deep_merge(overrides, flag_overrides(**flags))
    metrics, path = evaluate_saved_run(run_dir, overrides, list(plugins), quiet=quiet)
    console = stdout()
    console.print(metrics_table(metrics, title=f"re-evaluation of {run_dir} (accuracy %)"))
    from ddcore.builtin.evaluate import describe_rows

    distiller = _recorded_distiller(run_dir)
    for line in describe_rows(metrics, distiller=distiller):  # what each row is, and the paired headline
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"written: {path}")


def _recorded_distiller(run_dir: Path) -> str | None:
    """The ``distill`` the run recorded in its manifest (``None`` when unreadable)."""
    from ddcore.runner import read_run_manifest

    try:
        return (read_run_manifest(run_dir).get("config") or {}).get("distill")
    except Exception:  # noqa: BLE001 - only a description depends on it
        return None
