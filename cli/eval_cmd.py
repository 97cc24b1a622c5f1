"""``dd eval RUN_DIR``: re-evaluate a saved distilled set (e.g. with more runs or another network, or after a
failed evaluation: ``distilled.pt`` is saved before the run evaluates).

``dd eval --distilled PATH --dataset NAME``: evaluate a set made elsewhere (tensor files or an ImageFolder of
images, :mod:`ddcore.external`) under ddcore's protocol; the results go to a new run directory.
"""

from __future__ import annotations

from pathlib import Path

import click

from ddcore.config import BASELINES, deep_merge, parse_assignment
from ddcore.vocab import LABEL_MODES
from ddcore_cli.run_cmd import flag_overrides

INPUT_RANGES = ("normalized", "01", "255")  # ddcore.external.INPUT_RANGES (torch-free here)
#: Options that only make sense with --distilled (a new run directory), by their parameter name.
DISTILLED_ONLY = {"dataset": "--dataset", "image_size": "--image-size",
                  "out": "--out", "overwrite": "--overwrite", "seed": "--seed"}  # fmt: skip


@click.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--distilled", "distilled_path", type=click.Path(path_type=Path), metavar="PATH",
              help="Evaluate a set made elsewhere: a .pt file, a folder with images.pt/labels.pt[/lr.pt], or a folder of <class>/<image> files.")
@click.option("--dataset", help="With --distilled: the dataset the set is for (see `dd datasets`).")
@click.option("--image-size", type=int, help="With --distilled: the dataset's image side (the set must have this size).")
@click.option("--input-range", type=click.Choice(INPUT_RANGES),
              help="With --distilled, tensors only: normalized (default: already normalised with the dataset's mean/std), 01 or 255 (pixel values).")
@click.option("--out", type=click.Path(path_type=Path), help="With --distilled: the run directory to write (default runs/<timestamp>-<name>).")
@click.option("--overwrite", is_flag=True, help="With --distilled: replace the run in --out.")
@click.option("--seed", type=int, help="With --distilled: the run's one seed (default 0).")
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
def eval_command(run_dir: Path | None, distilled_path: Path | None, input_range, plugins, sets, quiet, **flags) -> None:
    """Re-evaluate the distilled set in RUN_DIR; writes RUN_DIR/eval-<timestamp>.json.

    Works on any run whose set was distilled, also one whose own evaluation failed (`dd show` says so);
    a run stopped before that is pointed to `dd run --resume RUN_DIR`.

    With --distilled PATH --dataset NAME instead of RUN_DIR: evaluate a set made elsewhere; writes a new
    run directory (manifest.json, distilled.pt, grid.png, metrics.json).
    """
    from ddcore.errors import ConfigError

    if run_dir is not None and distilled_path is not None:
        raise ConfigError("give RUN_DIR or --distilled PATH, not both (RUN_DIR re-evaluates a ddcore run; --distilled evaluates a set made elsewhere)")
    if distilled_path is not None:
        _eval_distilled(distilled_path, input_range, plugins, sets, quiet, flags)
        return
    if run_dir is None:
        raise ConfigError("missing RUN_DIR (a ddcore run directory), or --distilled PATH --dataset NAME for a set made elsewhere")
    given = [flag for name, flag in DISTILLED_ONLY.items() if flags.get(name)] + (["--input-range"] if input_range else [])
    if given:
        raise ConfigError(f"{', '.join(given)} only go with --distilled; `dd eval RUN_DIR` uses the run's recorded dataset and seed (drop them)")
    for name in DISTILLED_ONLY:
        flags.pop(name, None)
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


def _eval_distilled(path: Path, input_range, plugins, sets, quiet: bool, flags: dict) -> None:
    """``dd eval --distilled PATH --dataset NAME``: a new run directory measuring the set at ``path``."""
    from ddcore.errors import ConfigError
    from ddcore.external import evaluate_external
    from ddcore_cli.output import metrics_table, stdout

    if not flags.get("dataset"):
        raise ConfigError("--distilled needs --dataset NAME: the dataset the set was made for (see `dd datasets`)")
    config: dict = {}
    for assignment in sets:
        config = deep_merge(config, parse_assignment(assignment))
    config = deep_merge(config, flag_overrides(**flags))
    result = evaluate_external(path, config, list(plugins), input_range=input_range, quiet=quiet)
    if result.manifest["accelerate"]["process_index"] != 0:
        return
    console = stdout()
    record = (result.manifest.get("records") or {}).get("external") or {}
    norm = record.get("normalised_with") or {}
    done = ("converted to the dataset's normalisation" if record.get("converted") else "kept as saved (the dataset's normalisation)")
    console.print(f"set {path}: {record.get('images')} images ({record.get('labels')} labels), classes {record.get('class_order')}; "
                  f"input assumed {record.get('assumed')}: {done}, mean {norm.get('mean')} std {norm.get('std')}",
                  highlight=False, soft_wrap=True)  # fmt: skip
    if record.get("lr") is not None:
        console.print(f"learned lr from the set: {record['lr']:g} (eval.use_learned_lr)", highlight=False)
    if record.get("note"):
        console.print(f"note: {record['note']}", highlight=False, soft_wrap=True)
    if result.metrics:
        console.print(metrics_table(result.metrics, title=f"{path} on {result.manifest['config']['dataset']} (accuracy %)"))
    console.print(f"run directory: {result.out_dir}")
