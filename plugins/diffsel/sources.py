"""``plugin.diffsel.prior`` -> a ready :class:`~ddcore_diffsel.priors.DiffusionPrior`, checked before any work.

- ``auto``: ddcore's pixel prior for the run's dataset, trained and cached on first use.
- ``local-dir:PATH``: a folder holding a saved ddcore pixel prior (``diffsel_prior.json``) or a
  diffusers Stable-Diffusion-style pipeline (``model_index.json`` / ``unet/`` + ``vae/``).
- ``hf-hub:ORG/NAME``: a Stable-Diffusion-style pipeline already in the Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ddcore import PluginError
from ddcore_diffsel.pixel_prior import META_FILE, load_prior
from ddcore_diffsel.priors import DiffusionPrior
from ddcore_diffsel.prompts import class_prompts, imagenet_wnids
from ddcore_diffsel.sd_prior import hub_snapshot, is_sd_folder, load_latent_prior


def open_source(source: str, device, variant: str = "") -> DiffusionPrior:
    """Load the prior a ``local-dir:`` or ``hf-hub:`` source names (no network); ``variant`` picks the
    weight files of a Stable Diffusion folder (``plugin.diffsel.sd_variant``, e.g. ``"fp16"``)."""
    kind, _, rest = source.partition(":")
    if kind == "hf-hub":
        return load_latent_prior(hub_snapshot(rest), source, device, variant)
    if kind != "local-dir":
        raise PluginError(f"plugin.diffsel.prior {source!r}: expected auto, local-dir:PATH or hf-hub:ORG/NAME")
    folder = Path(rest).expanduser()
    if not folder.exists():
        raise PluginError(f"the diffusion prior folder {folder} does not exist (config key plugin.diffsel.prior)")
    if not folder.is_dir():
        raise PluginError(f"{folder} is a file, not a diffusion model folder (config key plugin.diffsel.prior)")
    if (folder / META_FILE).is_file():
        return load_prior(folder, device)
    if is_sd_folder(folder):
        return load_latent_prior(folder, source, device, variant)
    raise PluginError(
        f"{folder} is not a diffusion model: no {META_FILE} (ddcore pixel prior) and no model_index.json or "
        "unet/ + vae/ (diffusers pipeline) (config key plugin.diffsel.prior)"
    )


def prepare_prior(prior: DiffusionPrior, dataset, resolution: int, prompt: str) -> int:
    """Check the prior against the dataset (classes, channels, size) and set prompts; return the resolution used."""
    side = dataset.image_shape[-1]
    used = resolution or prior.native_resolution(side)
    prior.check(list(dataset.class_names), tuple(dataset.image_shape), used)
    if hasattr(prior, "set_prompts"):
        prior.set_prompts(class_prompts(dataset, prompt))
    return used


def resolve_prior(ctx, dataset, config) -> tuple[DiffusionPrior, int]:
    """The run's prior, checked against ``dataset``, and the resolution it sees images at."""
    if config.prior == "auto":
        from ddcore_diffsel.train_prior import ensure_pixel_prior

        multiple = 2 ** (len(config.train.channels) - 1)
        if config.resolution % multiple:  # known before training: say it now
            raise PluginError(
                f"the diffusion prior cannot take {config.resolution} px images: its UNet needs a side divisible by "
                f"{multiple} (config key plugin.diffsel.resolution)"
            )
        folder = ensure_pixel_prior(ctx, dataset, config.train)
        prior = load_prior(folder, ctx.device)
    else:
        prior = open_source(config.prior, ctx.device, config.sd_variant)
    used = prepare_prior(prior, dataset, config.resolution, config.prompt)
    prompts = getattr(prior, "prompts", None)
    if prompts:  # what each class was called, in label order (class names may repeat across ImageNet synsets)
        wnids = imagenet_wnids(dataset) or [None] * len(prompts)
        ctx.record("diffsel/prompts", {"template": config.prompt, "classes": [
            {"label": k, "class": str(name), "wnid": wnid, "prompt": text}
            for k, (name, wnid, text) in enumerate(zip(dataset.class_names, wnids, prompts))]})  # fmt: skip
    return prior, used


def check_sequence(values: Sequence[int], limit: int, key: str) -> None:
    bad = [v for v in values if not 0 <= v < limit]
    if bad:
        raise PluginError(f"config key '{key}': timesteps {bad} are outside the prior's 0..{limit - 1}")
