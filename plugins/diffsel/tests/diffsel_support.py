"""What the diffsel test modules import: a planted-signal prior and tiny prior-training options."""

from __future__ import annotations

import torch

from ddcore_diffsel.pixel_prior import build_scheduler
from ddcore_diffsel.priors import NULL, DiffusionPrior


class PlantedPrior(DiffusionPrior):
    """A prior on all-zero images whose conditional prediction is exact inside ``region`` and zero
    (uninformed) elsewhere; the null prediction is zero everywhere. With ``contrast="others"`` only the
    true class (``true_class``) is exact; other classes predict zero.

    Args:
        region: ``[H, W]`` bool mask where the class condition is informative.
        true_class: the class whose condition is informative (``None``: any class).
    """

    kind = "planted"

    def __init__(self, region: torch.Tensor, true_class: int | None = None):
        super().__init__(build_scheduler(1000))
        self.region = region
        self.true_class = true_class
        self.calls = 0

    def encode(self, images):
        return images * 2 - 1

    def predict(self, noisy, timesteps, conditions):
        self.calls += 1
        clean = torch.full_like(noisy, -1.0)  # the images are all zero -> -1 in [-1, 1]
        abar = self.scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(noisy.dtype)
        exact = (noisy - abar.sqrt() * clean) / (1 - abar).sqrt()  # the true noise
        informed = conditions != NULL
        if self.true_class is not None:
            informed &= conditions == self.true_class
        mask = self.region.view(1, 1, *self.region.shape) & informed.view(-1, 1, 1, 1)
        return torch.where(mask, exact, torch.zeros_like(exact))

    def check(self, class_names, image_shape, resolution):
        return None

    def native_resolution(self, image_side):
        return image_side

    def fingerprint(self):
        return {"kind": self.kind}


#: A prior that trains in a second or two and a Stage I over 6 images per class.
TINY_PRIOR = {"steps": 4, "size": 8, "channels": [8, 16], "batch_size": 8, "checkpoint_every": 0}
