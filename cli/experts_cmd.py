"""``dd experts``: train (or reuse) expert trajectories on the real data and list them.

The experts land in ``<cache-dir>/experts/<key>/`` (see :mod:`ddcore.tm.experts`); a later run with the
same dataset, model, recipe and seed reuses them, and asking for more experts trains only the new
ones. Under ``torchrun`` the missing experts are shared out over the processes.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="experts")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate a plugin (for its datasets).")
@click.option("--dataset", default="digits", show_default=True, help="Registered dataset name (see `dd datasets`).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Folder of the dataset (imagefolder, ...).")
@click.option("--image-size", type=int, help="Resize images to this side (default: the dataset's own).")
@click.option("--workers", type=int, help="Data loader worker processes (default 2).")
@click.option("--num-experts", type=int, default=5, show_default=True, help="Experts wanted (existing ones are reused).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Epochs per expert (one snapshot after each).")
@click.option("--model", default="convnet", show_default=True, help="Expert network: convnet, convnetd3/4/5, resnet18.")
@click.option("--width", type=int, default=0, show_default=True, help="ConvNet width (0: 32 for digits, else 128).")
@click.option("--depth", type=int, default=0, show_default=True, help="ConvNet depth (0: from the image size).")
@click.option("--norm", default="instancenorm", show_default=True, help="instancenorm, batchnorm, layernorm or none.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate (constant by default).")
@click.option("--momentum", type=float, default=0.0, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option(
    "--augment",
    type=click.Choice(["auto", "none", "crop", "crop_flip"]),
    default="auto",
    show_default=True,
    help="Training augmentation (auto: the dataset's default, crop for digits).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Expert i is seeded from (seed, i).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore).")
@click.option("--cpu", is_flag=True, help="Train on the CPU even when a GPU is present.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only the table.")
def experts_command(
    plugins, dataset, data_root, image_size, workers, num_experts, epochs, model, width, depth, norm,
    optimizer, lr, momentum, weight_decay, schedule, batch_size, augment, seed, cache_dir, cpu, quiet,
) -> None:  # fmt: skip
    """Train expert trajectories on the real training data (cached and resumable)."""
    from rich.table import Table

    from ddcore.tm.experts import ensure_experts, recipe_for_dataset
    from ddcore.runner import Pipeline
    from ddcore_cli.output import stdout

    config: dict = {"dataset": dataset, "seed": seed, "ipc": 1, "cpu": cpu, "eval": {"runs": 0}}
    for key, value in (("data_root", data_root), ("image_size", image_size), ("workers", workers), ("cache_dir", cache_dir)):
        if value is not None:
            config[key] = str(value) if isinstance(value, Path) else value
    pipeline = Pipeline(config, list(plugins), quiet=quiet, write=False)
    ctx = pipeline.ctx
    real = pipeline.build_dataset()
    recipe = recipe_for_dataset(
        real, num_experts, epochs,
        model=model, width=width, depth=depth, norm=norm, seed=seed, augment=augment,
        optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        batch_size=batch_size,
    )  # fmt: skip
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
    console.print(f"cache folder: {buffer.folder} ({len(trained)} trained, {len(buffer) - len(trained)} reused)", soft_wrap=True)
