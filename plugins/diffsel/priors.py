"""One interface over diffusion priors: images, class ids, timestep -> noise-prediction errors.

A prior turns images into the space it denoises (pixels, or VAE latents), knows how to predict the
noise under a condition (a class, or the null condition), and the shared code here does the rest:
draw the noise, noise the input at timestep ``t``, run the conditional and the reference predictions
in **one** batched call under ``no_grad``, and return the per-pixel squared errors.

Conditions are class ids ``0 .. K-1`` of the run's dataset; :data:`NULL` is the unconditional (empty
prompt / null class) condition. Each prior maps them to its own embedding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

#: The condition id of "no class" (the null class or the empty prompt).
NULL = -1

#: One generator for a whole batch, or one per image (per-item randomness, independent of batching).
Generators = torch.Generator | Sequence[torch.Generator]


def draw_normal(shape: Sequence[int], generator: Generators) -> torch.Tensor:
    """Standard normal noise of ``shape`` on the CPU: row ``i`` from ``generator[i]`` when given one
    generator per row (then bit-identical whatever the rows batched with it), else all from one.

    >>> g = [torch.Generator().manual_seed(s) for s in (1, 2)]
    >>> torch.equal(draw_normal((2, 3), g)[1], draw_normal((1, 3), [torch.Generator().manual_seed(2)])[0])
    True
    """
    if isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} images")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator]) if shape[0] else torch.empty(tuple(shape))

Contrast = Literal["null", "others"]


class DiffusionPrior(ABC):
    """Images, class ids and a timestep -> per-pixel noise-prediction error with and without the class.

    Attributes:
        scheduler: a diffusers ``DDPMScheduler`` (its ``alphas_cumprod`` define the noising).
        device: where the networks run.
        kind: ``"pixel"`` or ``"latent-text"`` (recorded).
    """

    kind = "prior"

    def __init__(self, scheduler, device: torch.device | str = "cpu"):
        self.scheduler = scheduler
        self.device = torch.device(device)

    # -- what each prior provides ---------------------------------------------------------------

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The clean input of the diffusion model. Shape: ``images [B, C, H, W]`` in ``[0, 1]`` -> ``[B, c, h, w]``."""

    @abstractmethod
    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """The network's output for ``noisy [B, c, h, w]`` at ``timesteps [B]`` under ``conditions [B]``
        (class ids, :data:`NULL` for none). Shape: ``-> [B, c, h, w]``."""

    @abstractmethod
    def check(self, class_names: Sequence[str], image_shape: tuple[int, int, int], resolution: int) -> None:
        """Raise ``PluginError`` if the prior cannot score these classes or images at ``resolution``."""

    @abstractmethod
    def native_resolution(self, image_side: int) -> int:
        """The side images are resized to when the run does not set ``resolution``."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """What identifies the prior's weights (for the Stage-I pool's cache key)."""

    # -- shared ---------------------------------------------------------------------------------

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def targets(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network should output: the noise (``epsilon``), the velocity or the clean input."""
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.scheduler.get_velocity(clean, noise, timesteps)
        if kind == "sample":
            return clean
        raise ValueError(f"unsupported prediction_type {kind!r}")

    @torch.no_grad()
    def error_maps(
        self,
        images: torch.Tensor,
        class_ids: torch.Tensor,
        timestep: int,
        generator: Generators,
        contrast: Contrast = "null",
        num_classes: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel squared errors with the class condition and with the reference condition.

        The noise is drawn once per image (on the CPU, so a seed gives the same noise on every device)
        and shared by both predictions: from each image's own generator when ``generator`` is a
        sequence of ``B`` of them (so an image's noise does not depend on the batch it is in), else
        the whole batch from the one generator. ``contrast="null"``: the reference is
        the null condition; ``"others"``: the mean error over the other ``num_classes - 1`` classes.
        Errors are summed over channels, at the prior's own resolution (latent for latent priors).

        Shape: ``images [B, C, H, W]`` in ``[0, 1]``, ``class_ids [B]`` int64 ->
        ``(e_cond [B, h, w], e_ref [B, h, w])`` float32.
        """
        clean = self.encode(images.to(self.device)).float()  # [B, c, h, w]
        b = clean.shape[0]
        noise = draw_normal(clean.shape, generator).to(self.device)
        steps = torch.full((b,), int(timestep), dtype=torch.long, device=self.device)
        noisy = self.scheduler.add_noise(clean, noise, steps)
        target = self.targets(clean, noise, steps)
        class_ids = class_ids.to(self.device).long()
        if contrast == "null":
            conditions = torch.cat([class_ids, torch.full_like(class_ids, NULL)])
            out = self.predict(torch.cat([noisy, noisy]), torch.cat([steps, steps]), conditions).float()
            errors = (out - torch.cat([target, target])).square().sum(dim=1)  # [2B, h, w]
            return errors[:b], errors[b:]
        if num_classes is None or num_classes < 2:
            raise ValueError("contrast 'others' needs num_classes >= 2")
        k = num_classes
        conditions = torch.arange(k, device=self.device).repeat(b)  # [B*K]: image-major
        out = self.predict(noisy.repeat_interleave(k, 0), steps.repeat_interleave(k), conditions).float()
        errors = (out - target.repeat_interleave(k, 0)).square().sum(dim=1).view(b, k, *clean.shape[2:])
        own = F.one_hot(class_ids, k).bool()  # [B, K]
        e_cond = errors[own]  # [B, h, w]
        e_ref = errors.masked_fill(own[..., None, None], 0).sum(dim=1) / (k - 1)
        return e_cond, e_ref


def discriminativeness_map(
    prior: DiffusionPrior,
    images: torch.Tensor,
    class_ids: torch.Tensor,
    timesteps: Sequence[int],
    n_noise: int,
    generator: Generators,
    contrast: Contrast = "null",
    num_classes: int | None = None,
    resolution: int | None = None,
) -> torch.Tensor:
    """``D = e_ref - e_cond`` averaged over ``n_noise`` draws and ``timesteps``, at the images' size.

    Large where knowing the class helps denoise. Images are resized to ``resolution`` (when given and
    different) before the prior sees them; the map is resized back (bilinear) to ``H x W``. Noise: see
    :meth:`DiffusionPrior.error_maps` (one generator per image: an image's map does not depend on the
    other images of the batch; each draws ``len(timesteps) * n_noise`` times, in that order).

    Shape: ``images [B, C, H, W]`` in ``[0, 1]``, ``class_ids [B]`` -> ``[B, H, W]`` float32.
    """
    h, w = images.shape[-2:]
    seen = images
    if resolution and (h, w) != (resolution, resolution):
        seen = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    total = None
    for t in timesteps:
        for _ in range(n_noise):
            e_cond, e_ref = prior.error_maps(seen, class_ids, t, generator, contrast, num_classes)
            d = e_ref - e_cond
            total = d if total is None else total + d
    assert total is not None
    mean = total / (len(timesteps) * n_noise)
    if mean.shape[-2:] != (h, w):
        mean = F.interpolate(mean.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False).squeeze(1)
    return mean.cpu()
