"""The ``[dm]`` table: options of the ``dm`` distiller (``distill = "dm"``), named as in the DM paper and code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

from ddcore import ConfigError
from ddcore.config import Range

#: ``embed`` values: ``run`` (the run's network, ``ctx.model_spec``) or a ddcore model name
#: (``ddcore.models.MODEL_NAMES``) built with the run's width, depth and norm.
EmbedName = Literal["run", "convnet", "convnetd3", "convnetd4", "convnetd5", "resnet18"]


@dataclass
class DMConfig:
    """``[dm]``: Distribution Matching (Zhao & Bilen, WACV 2023).

    The reference (``main_DM.py``) runs 20000 iterations with ``lr_img = 1``, ``batch_real = 256``,
    SGD momentum 0.5 and a ConvNet-128 embedding. The defaults here are sized for the embedded
    ``digits`` on a CPU (see the README): 200 iterations, 64 real images per class, the run's network
    (ConvNet-D3 width 32 on digits), and ``lr_img = ipc`` when unset (filled in by the plugin's
    ``configure``, :func:`dd_dm.plugin.configure`).

    Attributes:
        iterations: outer iterations; each draws a fresh randomly initialised embedding network.
        lr_img: SGD learning rate on the synthetic images (unset in a run: the run's ``ipc``).
        momentum: SGD momentum on the synthetic images (0.5 in the reference).
        batch_real: real images per class per iteration (all of a class when it has fewer).
        embed: the embedding network: ``run`` (the run's network, ``[eval]`` model), or a model name
            built with the run's width/depth/norm; its penultimate features are matched.
        embed_width: the embedding network's width (``0``: the run's).
        dsa: differentiable siamese augmentation: one draw per class per iteration, applied to the
            real and the synthetic batch alike.
        dsa_strategy: DSA families joined by ``_`` (``ddcore.augment``).
        checkpoint_every: save a checkpoint every so many iterations and at the end (``0``: never; no resume).
        eval_every: evaluate the current set every so many iterations and log the accuracy (``0``: off).
            Logged only: the final set is returned, never the best by test accuracy.
        eval_runs: networks per periodic evaluation (the ``[eval]`` recipe).
    """

    # Ranges are declared on the fields (ddcore.config.Range) and checked by ddcore before any work.
    iterations: Annotated[int, Range(ge=1)] = 200
    lr_img: Annotated[float, Range(gt=0)] = 1.0
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.5
    batch_real: Annotated[int, Range(ge=1)] = 64
    embed: EmbedName = "run"
    embed_width: Annotated[int, Range(ge=0, note="0: the run's")] = 0
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    checkpoint_every: Annotated[int, Range(ge=0, note="0: never")] = 50
    eval_every: Annotated[int, Range(ge=0, note="0: off")] = 0
    eval_runs: Annotated[int, Range(ge=1)] = 1

    def __post_init__(self) -> None:
        from ddcore.augment import parse_strategy

        try:
            parse_strategy(self.dsa_strategy)
        except ValueError as exc:
            raise ConfigError(f"config key 'dm.dsa_strategy': {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
