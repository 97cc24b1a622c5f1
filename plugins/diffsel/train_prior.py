"""Train ddcore's class-conditional pixel prior on a run's dataset: cached, resumable, Accelerate-aware.

Cache folder: ``<cache_dir>/diffsel/priors/<key>/`` (see :mod:`ddcore_diffsel.pixel_prior` for the
files). ``key`` hashes the dataset identity (with the content fingerprint of :mod:`ddcore.datasig`, so a
prior of images since rewritten is not reused), the architecture and the training recipe and seed, but
not the number of steps: asking for more steps resumes the cached prior from its last checkpoint,
and a cached prior that already has at least the steps asked for is used as it is.

Randomness: the UNet's initialisation, the batch indices, the null-class dropout, the noise and the
timesteps come from generators seeded by ``(seed, "diffsel-prior", ...)``; each step draws the whole
batch and process ``p`` of ``N`` trains on rows ``p, p+N, ...`` (gradients averaged by Accelerate),
so the streams do not depend on the number of processes. A resumed run continues the saved streams
and ends with the same weights as an uninterrupted one (on the same device).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddcore.context import RunContext, derive_seed
from ddcore.data.base import ImageDataset
from ddcore.datasig import data_signature
from ddcore.errors import PluginError
from ddcore.tm.experts import dataset_identity
from ddcore.training import fork_devices
from ddcore_diffsel.config import PriorTrainConfig
from ddcore_diffsel.pixel_prior import (
    PRIOR_FORMAT,
    STATE_FILE,
    WEIGHTS_FILE,
    build_scheduler,
    build_unet,
    prior_input,
    read_meta,
    save_prior,
)

#: Datasets up to this many bytes (at the prior's size) are held in memory while training; larger ones stream.
IN_MEMORY_BYTES = 256 * 2**20


def prior_size(config: PriorTrainConfig, dataset: ImageDataset) -> int:
    """The training side: ``config.size``, else a quarter of the image side clamped to ``[8, 32]``
    (never more than the image side)."""
    side = dataset.image_shape[-1]
    return config.size or min(side, max(8, min(32, side // 4)))


def prior_key(dataset: ImageDataset, config: PriorTrainConfig, seed: int, data_root: Any = None) -> str:
    """16 hex digits naming a prior: dataset identity, architecture, recipe (not steps), seed, format."""
    recipe = {k: v for k, v in asdict(config).items() if k not in ("steps", "checkpoint_every")}
    contents = {"format": PRIOR_FORMAT, "dataset": dataset_identity(dataset, data_root), "recipe": recipe,
                "size": prior_size(config, dataset), "seed": seed}  # fmt: skip
    return hashlib.sha256(json.dumps(contents, sort_keys=True).encode()).hexdigest()[:16]


def prior_folder(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "diffsel" / "priors" / key


def ensure_pixel_prior(ctx: RunContext, dataset: ImageDataset, config: PriorTrainConfig) -> Path:
    """The folder of a prior trained for at least ``config.steps`` steps on ``dataset`` (train or resume it).

    Records ``diffsel/prior`` (folder, key, steps, steps trained now) in the manifest.
    """
    size = prior_size(config, dataset)
    channels, side, _ = dataset.image_shape
    multiple = 2 ** (len(config.channels) - 1)
    if size % multiple:
        raise PluginError(
            f"a prior of {len(config.channels)} levels needs a side divisible by {multiple}, got {size} "
            "(config keys plugin.diffsel.train.size / plugin.diffsel.train.channels)"
        )
    key = prior_key(dataset, config, ctx.seed, ctx.config.data_root or None)
    folder = prior_folder(ctx.cache_dir, key)
    meta = read_meta(folder)
    done = int(meta["steps"]) if meta else 0
    trained_now = 0
    if done < config.steps:
        trained_now = config.steps - done
        train_pixel_prior(ctx, dataset, config, folder, key)
    ctx.accelerator.wait_for_everyone()
    meta = read_meta(folder)
    if meta is None:
        raise PluginError(f"the pixel prior in {folder} was not written (main process failed?)")
    ctx.record("diffsel/prior", {"folder": str(folder), "key": key, "steps": meta["steps"], "trained_now": trained_now,
                                  "size": size, "channels": channels, "image_side": side,
                                  "fingerprint": data_signature(dataset)["fingerprint"]})  # fmt: skip
    return folder


def _training_images(dataset: ImageDataset, size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The whole training split in ``[0, 1]`` at ``size`` if it is small enough, else ``None`` (stream)."""
    channels = dataset.image_shape[0]
    if len(dataset.train) * channels * size * size * 4 > IN_MEMORY_BYTES:
        return None
    images, labels = dataset.load("train", list(range(len(dataset.train))))
    return prior_input(dataset.unwhiten(images), dataset.mean, dataset.std, size), labels  # pixels, ZCA undone


def train_pixel_prior(ctx: RunContext, dataset: ImageDataset, config: PriorTrainConfig, folder: Path, key: str) -> None:
    """Train (or resume) the prior in ``folder`` up to ``config.steps`` steps; the main process writes."""
    accelerator, device = ctx.accelerator, ctx.device
    size = prior_size(config, dataset)
    channels = dataset.image_shape[0]
    num_classes = dataset.num_classes
    seed = ctx.seed
    with torch.random.fork_rng(devices=fork_devices(device)):
        torch.manual_seed(derive_seed(seed, "diffsel-prior", "init"))
        unet = build_unet(size, channels, num_classes, config.channels, config.attention)
    scheduler = build_scheduler(config.timesteps)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    batches = torch.Generator().manual_seed(derive_seed(seed, "diffsel-prior", "batches"))
    draws = torch.Generator().manual_seed(derive_seed(seed, "diffsel-prior", "noise"))
    step = 0
    meta = read_meta(folder)
    if meta is not None and (folder / STATE_FILE).is_file():
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        weights = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)["unet"]
        if int(state["step"]) == int(meta["steps"]):
            unet.load_state_dict(weights)
            optimizer.load_state_dict(state["optimizer"])
            batches.set_state(state["batches"])
            draws.set_state(state["noise"])
            step = int(state["step"])
            ctx.reporter.info(f"resuming the diffusion prior at step {step} ({folder})")
    unet.to(device)
    model, optimizer = accelerator.prepare(unet, optimizer)
    data = _training_images(dataset, size)
    n = len(dataset.train)
    p, world = ctx.process_index, ctx.num_processes
    alphas = scheduler.alphas_cumprod.to(device)
    signature = data_signature(dataset)  # recorded in the prior's meta: what it was trained on

    def checkpoint(at: int) -> None:
        if accelerator.is_main_process:
            training_state = {"step": at, "optimizer": optimizer.state_dict(), "batches": batches.get_state(),
                              "noise": draws.get_state()}  # fmt: skip
            save_prior(folder, accelerator.unwrap_model(model), scheduler, dataset.class_names,
                       {"key": key, "steps": at, "train": asdict(config), "seed": seed, "dataset": dataset.name,
                        "data": signature},
                       training_state)  # fmt: skip

    model.train()
    with ctx.reporter.progress(f"training the diffusion prior ({size} px)", total=config.steps - step) as advance:
        while step < config.steps:
            index = torch.randint(0, n, (config.batch_size,), generator=batches)
            drop = torch.rand(config.batch_size, generator=draws) < config.p_uncond
            noise = torch.randn(config.batch_size, channels, size, size, generator=draws)
            t = torch.randint(0, config.timesteps, (config.batch_size,), generator=draws)
            mine = slice(p, None, world)
            if data is not None:
                images, labels = data[0][index[mine]], data[1][index[mine]]
            else:
                raw, labels = dataset.load("train", index[mine].tolist())
                images = prior_input(dataset.unwhiten(raw), dataset.mean, dataset.std, size)
            labels = torch.where(drop[mine], torch.full_like(labels, num_classes), labels)
            clean = (images * 2 - 1).to(device)
            eps, steps_t = noise[mine].to(device), t[mine].to(device)
            a = alphas[steps_t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * clean + (1 - a).sqrt() * eps
            loss = F.mse_loss(model(noisy, steps_t, class_labels=labels.to(device)).sample, eps)
            if world > 1:  # the processes' gradients are averaged: weigh each by its share of the batch
                loss = loss * (len(eps) * world / config.batch_size)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            step += 1
            advance(1)
            if not torch.isfinite(loss):
                raise PluginError(f"the diffusion prior's loss became {loss.item()} at step {step}; lower plugin.diffsel.train.lr")
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint(step)
    checkpoint(step)
