"""``dd diffsel ...``: train the self-trained prior, inspect a prior's discriminativeness.

``dd diffsel train-prior --dataset digits`` trains (or resumes, or reuses) ddcore's class-conditional
pixel prior in the cache, exactly the one ``dd run --plugin diffsel`` (``prior = "auto"``) picks up
with the same options. Under ``accelerate launch`` the batches are split over the processes.
"""

from __future__ import annotations

from pathlib import Path

import click


def _pipeline(dataset, data_root, image_size, seed, cache_dir, cpu, quiet, diffsel_options, plugins=()):
    from ddcore import build_run_context

    config: dict = {"dataset": dataset, "seed": seed, "ipc": 1, "cpu": cpu, "eval": {"runs": 0},
                    "plugin": {"diffsel": diffsel_options}}  # fmt: skip
    for key, value in (("data_root", data_root), ("image_size", image_size), ("cache_dir", cache_dir)):
        if value is not None:
            config[key] = str(value) if isinstance(value, Path) else value
    return build_run_context(config, ["diffsel", *plugins], quiet=quiet)


@click.group(name="diffsel")
def diffsel_group() -> None:
    """Diffusion-driven patch selection: the self-trained prior and its maps."""


_common = [
    click.option("--plugin", "plugins", multiple=True, metavar="NAME|FILE.py", help="Activate a plugin (for its datasets)."),
    click.option("--dataset", default="digits", show_default=True, help="Registered dataset name (see `dd datasets`)."),
    click.option("--data-root", type=click.Path(path_type=Path), help="Folder of the dataset (imagefolder, ...)."),
    click.option("--image-size", type=int, help="Resize the dataset's images to this side."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--cache-dir", type=click.Path(path_type=Path), help="Cache folder (default $DDCORE_CACHE or ~/.cache/ddcore)."),
    click.option("--cpu", is_flag=True, help="Run on the CPU even when a GPU is present."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
]


def common(function):
    for option in reversed(_common):
        function = option(function)
    return function


@diffsel_group.command(name="train-prior")
@common
@click.option("--steps", type=int, default=None, help="Optimiser steps in total (default: plugin.diffsel.train.steps).")
@click.option("--size", type=int, default=None, help="Training side in px (default: a quarter of the image side, 8 to 32).")
@click.option("--channels", default=None, help="UNet block channels, comma-separated (default 32,64).")
@click.option("--attention", is_flag=True, default=None, help="Self-attention in the middle level.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--checkpoint-every", type=int, default=None, help="Steps between resumable checkpoints.")
def train_prior_command(plugins, dataset, data_root, image_size, seed, cache_dir, cpu, quiet, steps, size, channels,
                        attention, batch_size, lr, checkpoint_every) -> None:  # fmt: skip
    """Train ddcore's class-conditional pixel prior on DATASET (cached, resumable)."""
    from ddcore.errors import ConfigError
    from rich.console import Console
    from ddcore_diffsel.pixel_prior import read_meta
    from ddcore_diffsel.train_prior import ensure_pixel_prior

    train: dict = {}
    if channels is not None:
        try:
            train["channels"] = [int(c) for c in channels.split(",") if c.strip()]
        except ValueError:
            raise ConfigError(f"--channels {channels!r}: expected comma-separated integers, e.g. 32,64,64") from None
    for key, value in (("steps", steps), ("size", size), ("attention", attention), ("batch_size", batch_size),
                       ("lr", lr), ("checkpoint_every", checkpoint_every)):  # fmt: skip
        if value is not None:
            train[key] = value
    ctx = _pipeline(dataset, data_root, image_size, seed, cache_dir, cpu, quiet, {"train": train}, plugins)
    config = ctx.plugin_config("diffsel").train
    folder = ensure_pixel_prior(ctx, ctx.dataset, config)
    if ctx.is_main_process:
        meta = read_meta(folder) or {}
        record = ctx.records["diffsel/prior"]
        Console().print(
            f"prior for {ctx.dataset.name}: {meta.get('steps')} steps ({record['trained_now']} trained now), "
            f"{record['size']} px, channels {meta.get('train', {}).get('channels')}\nfolder: {folder}\n"
            f"use it: dd run --plugin diffsel --set plugin.diffsel.prior='local-dir:{folder}'  (or prior = \"auto\")",
            soft_wrap=True,
        )


@diffsel_group.command(name="maps")
@common
@click.option("--prior", "prior_source", default="auto", show_default=True, help="auto, local-dir:PATH or hf-hub:ORG/NAME.")
@click.option("--per-class", type=int, default=4, show_default=True, help="Images shown per class.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="PNG to write (images above their maps).")
def maps_command(plugins, dataset, data_root, image_size, seed, cache_dir, cpu, quiet, prior_source, per_class, out_path) -> None:
    """Write a PNG of the first images of each class above their discriminativeness maps."""
    import torch
    from torchvision.utils import save_image

    from ddcore.atomic import atomic_path
    from ddcore_diffsel.scorers import DiffusionScorer
    from ddcore_diffsel.selection import refuse_whitened
    from ddcore_diffsel.sources import resolve_prior

    ctx = _pipeline(dataset, data_root, image_size, seed, cache_dir, cpu, quiet, {"prior": prior_source}, plugins)
    config = ctx.plugin_config("diffsel")
    real = ctx.dataset
    refuse_whitened(real, "dd diffsel maps")  # the scorer reads the images as pixels with mean/std alone
    prior, resolution = resolve_prior(ctx, real, config)
    side = real.image_shape[-1]
    scorer = DiffusionScorer(prior, image_side=side, window=side, stride=side, per_image=1, max_iou=1.0,
                             timesteps=config.timesteps, n_noise=config.n_noise, contrast=config.contrast,
                             num_classes=real.num_classes, resolution=resolution, mean=real.mean, std=real.std)  # fmt: skip
    chosen = [i for positions in real.indices_by_class("train") for i in positions[:per_class]]
    images, labels = real.load("train", chosen)
    generators = [ctx.derive_generator("diffsel", "stage1", i) for i in chosen]  # each image's Stage-I noise
    maps = scorer.maps(images, labels, generators)  # [B, H, W]: the maps Stage I scores these images with
    low = maps.flatten(1).min(1).values.view(-1, 1, 1)
    high = maps.flatten(1).max(1).values.view(-1, 1, 1)
    heat = ((maps - low) / (high - low).clamp(min=1e-12)).unsqueeze(1).expand(-1, images.shape[1], -1, -1)
    pixels = real.denormalize(images).clamp(0, 1)
    grid = torch.cat([pixels, heat]).cpu()
    if ctx.is_main_process:
        with atomic_path(out_path.with_suffix(".png")) as tmp:
            save_image(grid, tmp, nrow=len(chosen), format="png")
        click.echo(f"wrote {out_path.with_suffix('.png')}: {len(chosen)} images (top row) and their maps (bottom row)")
