"""Stage-I scorers: a batch of real images -> each image's best candidate boxes and their scores.

Both scorers answer the same question (``candidates``) so the rest of the pipeline (streaming,
Stage II, assembly) is shared and benchmarks compare like with like. Scores: higher is better.

- :class:`DiffusionScorer` (the method): one discriminativeness map per image from the prior, every
  square window scored from it by a box filter, the best windows kept with an overlap limit.
- :class:`ObserverScorer` (RDED's baseline): ``crops`` random resized crops per image, each scored
  by minus the observer's cross-entropy for the image's class; the best crops kept.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.data.base import denormalize
from ddcore_diffsel.priors import DiffusionPrior, Generators, discriminativeness_map
from ddcore_diffsel.windows import best_windows, box_means, crop_resize, square_windows


class DiffusionScorer:
    """Diffusion-prior windows. ``images`` are dataset-normalised; ``mean``/``std`` undo that for the prior."""

    def __init__(self, prior: DiffusionPrior, *, image_side: int, window: int, stride: int, per_image: int,
                 max_iou: float, timesteps: Sequence[int], n_noise: int, contrast: str, num_classes: int,
                 resolution: int, mean: Sequence[float], std: Sequence[float]) -> None:  # fmt: skip
        self.prior = prior
        self.boxes = square_windows(image_side, image_side, window, stride)  # [P, 4]
        self.per_image, self.max_iou = per_image, max_iou
        self.timesteps, self.n_noise, self.contrast = list(timesteps), n_noise, contrast
        self.num_classes, self.resolution = num_classes, resolution
        self.mean, self.std = tuple(mean), tuple(std)

    def maps(self, images: torch.Tensor, labels: torch.Tensor, generator: Generators) -> torch.Tensor:
        """Discriminativeness maps (noise from each image's generator when given ``B`` of them).

        Shape: ``[B, C, H, W]`` normalised -> ``[B, H, W]``."""
        pixels = denormalize(images, self.mean, self.std).clamp(0, 1)
        return discriminativeness_map(self.prior, pixels, labels, self.timesteps, self.n_noise, generator,
                                      self.contrast, self.num_classes, self.resolution)  # fmt: skip

    def candidates(self, images: torch.Tensor, labels: torch.Tensor, generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: ``images [B, C, H, W]``, ``labels [B]``, ``B`` generators -> ``(boxes [B, k, 4], scores [B, k])``,
        ``k = per_image``."""
        scores = box_means(self.maps(images, labels, generator), self.boxes)  # [B, P]
        picked, picked_scores = best_windows(scores, self.boxes, self.per_image, self.max_iou)
        return self.boxes[picked.clamp(min=0)], picked_scores


def random_resized_boxes(n: int, height: int, width: int, min_scale: float, generator: torch.Generator,
                         ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:  # fmt: skip
    """RandomResizedCrop boxes: area fraction ``U(min_scale, 1)``, log-uniform aspect ratio, up to
    ``tries`` draws per box, else the whole image. Batched; randomness from ``generator`` only.

    Shape: ``-> [n, 4]`` int64 ``(top, left, height, width)`` inside the image.
    """
    area = height * width
    scale = min_scale + (1 - min_scale) * torch.rand(n, tries, generator=generator)
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, tries, generator=generator)
    aspect = log_ratio.exp()
    w = (scale * area * aspect).sqrt().round().long()
    h = (scale * area / aspect).sqrt().round().long()
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    h_pick = torch.where(first >= 0, h[rows, first.clamp(min=0)], torch.full((n,), height))
    w_pick = torch.where(first >= 0, w[rows, first.clamp(min=0)], torch.full((n,), width))
    u = torch.rand(n, 2, generator=generator)
    top = (u[:, 0] * (height - h_pick + 1)).floor().long().clamp(max=height - 1)
    left = (u[:, 1] * (width - w_pick + 1)).floor().long().clamp(max=width - 1)
    return torch.stack([top, left, h_pick, w_pick], dim=1)


def observer_views(patches: torch.Tensor, image_side: int, view: str) -> torch.Tensor:
    """What the observer sees of a cell-size patch: ``pad`` (centred on a zero canvas) or ``resize``.

    Shape: ``[B, C, s, s]`` -> ``[B, C, image_side, image_side]``.

    >>> observer_views(torch.ones(1, 1, 2, 2), 4, "pad")[0, 0]
    tensor([[0., 0., 0., 0.],
            [0., 1., 1., 0.],
            [0., 1., 1., 0.],
            [0., 0., 0., 0.]])
    """
    s = patches.shape[-1]
    if s == image_side:
        return patches
    if view == "resize":
        return F.interpolate(patches, size=(image_side, image_side), mode="bilinear", align_corners=False)
    before = (image_side - s) // 2
    after = image_side - s - before
    return F.pad(patches, (before, after, before, after))


class ObserverScorer:
    """RDED's observer: random resized crops scored by ``-CE(observer(view(crop)), class)``."""

    def __init__(self, observer: nn.Module, *, image_side: int, cell: int, crops: int, min_scale: float, view: str,
                 per_image: int, max_iou: float, device) -> None:  # fmt: skip
        self.observer, self.image_side, self.cell = observer, image_side, cell
        self.crops, self.min_scale, self.view = crops, min_scale, view
        self.per_image, self.max_iou, self.device = per_image, max_iou, device

    @torch.no_grad()
    def candidates(self, images: torch.Tensor, labels: torch.Tensor, generator: Generators) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: ``images [B, C, H, W]``, ``labels [B]`` -> ``(boxes [B, k, 4], scores [B, k])``. Image ``i``'s
        crops come from ``generator[i]`` when given ``B`` generators (independent of the batch), else all
        from the one generator."""
        b, _, h, w = images.shape
        if isinstance(generator, torch.Generator):
            boxes = random_resized_boxes(b * self.crops, h, w, self.min_scale, generator).view(b, self.crops, 4)
        else:
            if len(generator) != b:
                raise ValueError(f"{len(generator)} generators for {b} images")
            boxes = torch.stack([random_resized_boxes(self.crops, h, w, self.min_scale, g) for g in generator]) if b else torch.empty(0, self.crops, 4, dtype=torch.long)
        patches = crop_resize(images.repeat_interleave(self.crops, 0), boxes.view(-1, 4), self.cell)
        views = observer_views(patches, self.image_side, self.view).to(self.device)
        logits = self.observer(views).float()
        losses = F.cross_entropy(logits, labels.repeat_interleave(self.crops).to(self.device), reduction="none")
        scores = (-losses).view(b, self.crops).cpu()
        picked, picked_scores = best_windows(scores, boxes, self.per_image, self.max_iou)
        chosen = boxes[torch.arange(b).unsqueeze(1), picked.clamp(min=0)]
        return chosen, picked_scores
