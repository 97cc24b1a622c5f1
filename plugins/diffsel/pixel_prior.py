"""ddcore's own prior: a small class-conditional pixel-space diffusion UNet with a null class.

A diffusers ``UNet2DModel`` with ``num_class_embeds = K + 1``: classes ``0 .. K-1`` are the dataset's,
class ``K`` is the null class (trained by replacing labels with it at random, as classifier-free
guidance does). Inputs are images in ``[-1, 1]``.

A saved prior is a folder::

    diffsel_prior.json   format, class names, channels, size, unet and scheduler configs, steps done
    prior.pt             {"unet": state_dict}                      (read with weights_only=True)
    training_state.pt    optimiser and random-stream states, for resuming training
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ddcore import PluginError
from ddcore.atomic import torch_save, write_json
from ddcore_diffsel.priors import NULL, DiffusionPrior

PRIOR_FORMAT = 1
META_FILE = "diffsel_prior.json"
WEIGHTS_FILE = "prior.pt"
STATE_FILE = "training_state.pt"


def build_unet(size: int, channels: int, num_classes: int, block_channels: Sequence[int], attention: bool = False):
    """A fresh class-conditional ``UNet2DModel`` (seed or fork the global torch RNG before calling).

    One resolution level per entry of ``block_channels`` (``len - 1`` downsamplings), one ResNet layer
    per block, self-attention in the middle level when ``attention``.
    """
    from diffusers import UNet2DModel

    levels = len(block_channels)
    middle = levels // 2
    down = tuple("AttnDownBlock2D" if attention and i == middle else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if attention and i == levels - 1 - middle else "UpBlock2D" for i in range(levels))
    groups = _groups(block_channels)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=tuple(block_channels),
        down_block_types=down,
        up_block_types=up,
        num_class_embeds=num_classes + 1,
        norm_num_groups=groups,
    )


def _groups(block_channels: Sequence[int]) -> int:
    for groups in (32, 16, 8, 4, 2, 1):
        if all(c % groups == 0 for c in block_channels):
            return groups
    return 1


def build_scheduler(timesteps: int = 1000):
    """The DDPM schedule ddcore trains its priors with (linear betas 1e-4 .. 0.02, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="linear", prediction_type="epsilon")


class PixelPrior(DiffusionPrior):
    """A class-conditional pixel UNet as a :class:`DiffusionPrior`.

    Args:
        unet: a diffusers ``UNet2DModel`` with ``num_class_embeds = len(class_names) + 1``.
        scheduler: its ``DDPMScheduler``.
        class_names: the classes the prior was trained on, in its label order.
        meta: the saved prior's metadata (``steps``, ``key``, ...), for the fingerprint.
    """

    kind = "pixel"

    def __init__(self, unet, scheduler, class_names: Sequence[str], meta: dict | None = None, device="cpu"):
        super().__init__(scheduler, device)
        self.unet = unet.to(self.device).eval()
        self.class_names = list(class_names)
        self.meta = dict(meta or {})
        self._to_prior: torch.Tensor | None = None  # run class id -> prior class id

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def native_resolution(self, image_side: int) -> int:
        return self.size

    def check(self, class_names: Sequence[str], image_shape: tuple[int, int, int], resolution: int) -> None:
        missing = [name for name in class_names if name not in self.class_names]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise PluginError(
                f"the diffusion prior was trained on other classes: it does not know {shown} "
                f"(it knows {len(self.class_names)} classes); train one for this dataset with "
                "`dd diffsel train-prior` or set plugin.diffsel.prior"
            )
        if image_shape[0] != self.channels:
            raise PluginError(
                f"the diffusion prior takes {self.channels}-channel images, the dataset has {image_shape[0]} "
                "(config key plugin.diffsel.prior)"
            )
        if resolution % self.multiple:
            raise PluginError(
                f"the diffusion prior cannot take {resolution} px images: its UNet needs a side divisible by "
                f"{self.multiple} (config key plugin.diffsel.resolution)"
            )
        self._to_prior = torch.tensor([self.class_names.index(name) for name in class_names], dtype=torch.long)

    def fingerprint(self) -> dict:
        return {"kind": self.kind, "key": self.meta.get("key"), "steps": self.meta.get("steps"),
                "weights_sha": self.meta.get("weights_sha")}  # fmt: skip

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Shape: ``[B, C, H, W]`` in ``[0, 1]`` -> ``[B, C, H, W]`` in ``[-1, 1]``."""
        return images * 2 - 1

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        null = len(self.class_names)
        if self._to_prior is None:  # run classes are the prior's own
            labels = conditions.clone()
        else:
            mapping = self._to_prior.to(conditions.device)
            labels = mapping[conditions.clamp(min=0)]
        labels = torch.where(conditions == NULL, torch.full_like(labels, null), labels)
        return self.unet(noisy, timesteps, class_labels=labels).sample


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------


def state_sha(state: dict[str, torch.Tensor]) -> str:
    """16 hex digits of the sha256 over a state dict's names and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_prior(folder: Path, unet, scheduler, class_names: Sequence[str], meta: dict[str, Any],
               training_state: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Write a prior folder atomically file by file (weights first, metadata last); returns the metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in unet.state_dict().items()}
    meta = {
        **meta,
        "format": PRIOR_FORMAT,
        "class_names": list(class_names),
        "unet_config": dict(unet.config),
        "scheduler_config": dict(scheduler.config),
        "weights_sha": state_sha(state),
    }
    if training_state is not None:
        torch_save(training_state, folder / STATE_FILE)
    torch_save({"unet": state}, folder / WEIGHTS_FILE)
    write_json(folder / META_FILE, meta)
    return meta


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The prior's metadata, or ``None`` when the folder holds no complete ddcore pixel prior."""
    path = folder / META_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == PRIOR_FORMAT else None


def load_prior(folder: Path, device="cpu") -> PixelPrior:
    """A saved pixel prior; a missing or damaged folder is a ``PluginError`` naming it."""
    from diffusers import DDPMScheduler, UNet2DModel

    meta = read_meta(folder)
    if meta is None:
        raise PluginError(f"{folder} holds no ddcore pixel prior ({META_FILE} and {WEIGHTS_FILE}) (config key plugin.diffsel.prior)")
    try:
        with torch.random.fork_rng(devices=[]):
            unet = UNet2DModel.from_config(meta["unet_config"])
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)["unet"]
        unet.load_state_dict(state)
        scheduler = DDPMScheduler.from_config(meta["scheduler_config"])
    except Exception as exc:  # damaged files: say which folder
        raise PluginError(f"{folder}: the pixel prior cannot be loaded ({type(exc).__name__}: {exc})") from None
    return PixelPrior(unet, scheduler, meta["class_names"], meta, device)


def prior_input(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], size: int) -> torch.Tensor:
    """Dataset-normalised images -> ``[0, 1]`` at ``size x size`` (bilinear, antialiased when shrinking).

    Shape: ``[B, C, H, W]`` -> ``[B, C, size, size]``.
    """
    from ddcore.data.base import denormalize

    pixels = denormalize(images, mean, std).clamp(0, 1)
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return pixels
