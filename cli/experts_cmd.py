"""``dd experts``: train (or reuse) expert trajectories on the real data and list them.

The experts are exactly those ``dd run --distill tm`` wants for the same dataset and options: the
recipe comes from :func:`ddcore.tm.distiller.resolve_expert_recipe` for the run this command describes
(``--config``, ``--set`` and the flags below, with ``distill = "tm"``), so the epochs follow the ``[tm]``
preset of the dataset and ``--ipc``, and the network is the ``[eval]`` one. They land in
``<cache-dir>/experts/<key>/`` (see :mod:`ddcore.tm.experts`); a later run with the same options reuses
them, and asking for more experts trains only the new ones. The key includes the data's content
fingerprint (:func:`ddcore.datasig.dataset_fingerprint`, printed with the folder), so experts of images
that have since been rewritten, swapped or replaced are never reused. Under ``torchrun`` the missing
experts are shared out over the processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ddcore.vocab import AUGMENT_CHOICES, EXPERT_DEFAULTS, OPTIMIZERS, SCHEDULES

#: flag -> config key; a flag that is not given leaves the key to the config file and the defaults.
FLAG_KEYS = {
    "dataset": "dataset", "data_root": "data_root", "image_size": "image_size", "workers": "workers", "ipc": "ipc",
    "seed": "seed", "cache_dir": "cache_dir",
    "num_experts": "experts.num", "epochs": "experts.epochs", "lr": "experts.lr", "momentum": "experts.momentum",
    "weight_decay": "experts.weight_decay", "batch_size": "experts.batch_size", "augment": "experts.augment",
    "optimizer": "experts.optimizer", "schedule": "experts.schedule",
    "model": "eval.model", "width": "eval.width", "depth": "eval.depth", "norm": "eval.norm",
}  # fmt: skip


def experts_config(config_file: Path | None, sets: tuple[str, ...], **flags: Any) -> dict[str, Any]:
    """The run config this command trains the experts of: file, then ``--set``, then flags; ``distill = "tm"``."""
    from ddcore.config import deep_merge, parse_assignment, read_config_file

    data = read_config_file(config_file) if config_file else {}
    for assignment in sets:
        data = deep_merge(data, parse_assignment(assignment))
    for flag, key in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None:
            value = str(value) if isinstance(value, Path) else value
            for part in reversed(key.split(".")):
                value = {part: value}
            data = deep_merge(data, value)
    if flags.get("cpu"):
        data["cpu"] = True
    data["distill"] = "tm"
    data["eval"] = {**data.get("eval", {}), "runs": 0}
    return data


@click.command(name="experts")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), help="A run's TOML config: train the experts that run uses.")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate a plugin (for its datasets).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any config key, e.g. --set tm.max_start_epoch=6.")
@click.option("--dataset", help="Registered dataset name (see `dd datasets`). Default: digits.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder of the dataset (imagefolder, ...).")
@click.option("--image-size", type=int, help="Resize images to this side (default: the dataset's own).")
@click.option("--workers", type=int, help="Data loader worker processes (default 2).")
@click.option("--ipc", type=int, help="The run's images per class (default 10): picks the [tm] preset, hence the epochs.")
@click.option("--num-experts", type=int, help=f"Experts wanted (default {EXPERT_DEFAULTS['num']}; existing ones are reused).")
@click.option("--epochs", type=int, help="Epochs per expert (default 0: what the [tm] window needs, tm.max_start_epoch + tm.expert_epochs).")
@click.option("--model", help="Expert network, as eval.model: auto (convnet), convnetd3/4/5, resnet18.")
@click.option("--width", type=int, help="ConvNet width, as eval.width (default 0: 32 for digits, else 128).")
@click.option("--depth", type=int, help="ConvNet depth, as eval.depth.")
@click.option("--norm", help="As eval.norm: instancenorm, batchnorm, layernorm or none.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help=f"Default {EXPERT_DEFAULTS['optimizer']}.")
@click.option("--lr", type=float, help=f"Learning rate (default {EXPERT_DEFAULTS['lr']}).")
@click.option("--momentum", type=float, help=f"Default {EXPERT_DEFAULTS['momentum']}.")
@click.option("--weight-decay", type=float, help=f"Default {EXPERT_DEFAULTS['weight_decay']}.")
@click.option("--schedule", type=click.Choice(SCHEDULES), help=f"Default {EXPERT_DEFAULTS['schedule']}.")
@click.option("--batch-size", type=int, help=f"Default {EXPERT_DEFAULTS['batch_size']}.")
@click.option("--augment", type=click.Choice(AUGMENT_CHOICES), help="Training augmentation (default auto: the dataset's, crop for digits).")
@click.option("--seed", type=int, help="The run's seed (default 0); expert i is seeded from (seed, i).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore).")
@click.option("--cpu", is_flag=True, help="Train on the CPU even when a GPU is present.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only the table.")
def experts_command(config_file, plugins, sets, quiet, **flags) -> None:
    """Train the expert trajectories `dd run --distill tm` uses, on the real training data (cached and resumable).

    Give the same dataset and options as the run (or its --config): the run then trains nothing.
    """
    from rich.table import Table

    from ddcore.standalone import build_run_context
    from ddcore.tm.distiller import resolve_expert_recipe
    from ddcore.tm.experts import ensure_experts
    from ddcore_cli.output import stdout

    ctx = build_run_context(experts_config(config_file, sets, **flags), list(plugins), quiet=quiet)
    real = ctx.dataset
    recipe = resolve_expert_recipe(ctx)
    buffer = ensure_experts(ctx, real, recipe)
    if not ctx.is_main_process:  # only the main process prints
        return
    trained = ctx.records["experts"]["trained"]
    spec = recipe.model
    table = Table(
        title=f"{len(buffer)} experts: {real.name}, {spec.name} w{spec.width} d{spec.resolved_depth()}, "
        f"{recipe.epochs} epochs, seed {recipe.seed}",
        title_justify="left",
    )
    for column, justify in (("expert", "right"), ("final train acc %", "right"), ("test acc %", "right"), ("file", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for index in range(len(buffer)):
        info = buffer.info(index)
        name = Path(info["path"]).name + (" (new)" if index in trained else "")
        table.add_row(str(index), f"{info['final_train_acc']:.2f}", f"{info['test_acc']:.2f}", name)
    console = stdout()
    console.print(table)
    fingerprint = ctx.records["experts"].get("fingerprint", "")
    console.print(
        f"cache folder: {buffer.folder} ({len(trained)} trained, {len(buffer) - len(trained)} reused); "
        f"data fingerprint {fingerprint} (experts are reused only for data with this fingerprint)",
        soft_wrap=True,
    )
