"""``[plugin.diffsel]`` options, validated by ddcore into :class:`DiffselConfig` before any work.

Every choice the method spec leaves open is an option here (see ``docs/diffsel.md``)::

    [plugin.diffsel]
    scorer = "diffusion"          # or "observer" (RDED-style baseline)
    prior = "auto"                # self-trained pixel prior; or "local-dir:PATH", "hf-hub:ORG/NAME"
    timesteps = [500]
    n_noise = 4

    [plugin.diffsel.train]        # the self-trained prior (prior = "auto")
    steps = 500

    [plugin.diffsel.kd]           # the knowledge-distillation evaluator (runs = 0: off)
    runs = 3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ddcore import ConfigError
from ddcore.config import Range

KEY = "plugin.diffsel"

#: Numeric field types (ranges checked by ddcore before any work, see :class:`ddcore.config.Range`).
Count = Annotated[int, Range(ge=1)]
CountOrAuto = Annotated[int, Range(ge=0, note="0: automatic")]
Fraction = Annotated[float, Range(gt=0, le=1)]


@dataclass
class PriorTrainConfig:
    """``[plugin.diffsel.train]``: how ddcore trains its own class-conditional pixel prior.

    Attributes:
        steps: optimiser steps in total (asking for more later resumes the cached prior).
        size: side of the images the prior is trained on (0: a quarter of the image side, at least 8
            and at most 32: 8 px for the 32 px digits, which carry 8 px of information; each halving
            of the side makes a step about four times cheaper).
        channels: ``block_out_channels`` of the UNet (one down/up level per entry).
        attention: put self-attention in the middle resolution level.
        batch_size: images per step (split over Accelerate processes).
        lr: AdamW learning rate (constant after ``warmup`` steps).
        warmup: linear warm-up steps.
        p_uncond: probability a training label is replaced by the null class (classifier-free training).
        timesteps: diffusion steps of the DDPM schedule (linear betas).
        checkpoint_every: save a resumable checkpoint every so many steps (0: only at the end).
    """

    steps: Count = 500
    size: Annotated[int, Range(ge=0, note="0: a quarter of the image side")] = 0
    channels: list[int] = field(default_factory=lambda: [32, 64])
    attention: bool = False
    batch_size: Count = 64
    lr: Annotated[float, Range(gt=0)] = 1e-3
    warmup: Annotated[int, Range(ge=0)] = 50
    p_uncond: Annotated[float, Range(ge=0, lt=1)] = 0.1
    timesteps: Annotated[int, Range(ge=2)] = 1000
    checkpoint_every: Annotated[int, Range(ge=0, note="0: only at the end")] = 100

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 or c % 8 for c in self.channels):
            raise ConfigError(f"config key '{KEY}.train.channels' must be a non-empty list of multiples of 8, got {self.channels}")


@dataclass
class ObserverConfig:
    """``[plugin.diffsel.observer]``: the RDED-style observer scorer (``scorer = "observer"``).

    Attributes:
        crops: random resized crops scored per image (RDED: 5).
        min_scale: smallest crop area as a fraction of the image (RandomResizedCrop scale, RDED: 0.08).
        view: how the observer sees a crop smaller than the image: ``pad`` (the crop at cell size in
            the middle of a zero canvas, zero being the dataset mean) or ``resize`` (the crop resized to
            the full image).
    """

    crops: Count = 5
    min_scale: Fraction = 0.08
    view: Literal["pad", "resize"] = "pad"


@dataclass
class KDConfig:
    """``[plugin.diffsel.kd]``: the RDED/SRe2L knowledge-distillation evaluator (``runs = 0``: off).

    A fresh student trains on the distilled images with the teacher's soft targets computed on every
    augmented batch (random resized crop, flip, CutMix): loss ``T^2 * KL(teacher/T || student/T)``,
    AdamW, half-cosine lr. Reported as ``diffsel/kd_acc_*`` (top-1 % on the real test split).

    Attributes:
        runs: students trained (0: the evaluator is off).
        epochs: passes over the distilled set (0: 300, the spec's value).
        temperature: ``T``.
        lr / weight_decay: AdamW.
        batch_size: images per step.
        cutmix: Beta(cutmix, cutmix) mixing ratio; 0 turns CutMix off.
        min_scale: RandomResizedCrop's smallest area fraction.
        flip: horizontal flips: ``auto`` is on unless the dataset's default augmentation is ``crop``
            (digits, which flips would corrupt).
        model: the student network (``""``: the run's ``[eval]`` network).
    """

    runs: Annotated[int, Range(ge=0, note="0: the evaluator is off")] = 0
    epochs: Annotated[int, Range(ge=0, note="0: 300")] = 0
    temperature: Annotated[float, Range(gt=0)] = 20.0
    lr: Annotated[float, Range(gt=0)] = 1e-3
    weight_decay: Annotated[float, Range(ge=0)] = 0.01
    batch_size: Count = 64
    cutmix: Annotated[float, Range(ge=0, note="0: CutMix off")] = 1.0
    min_scale: Fraction = 0.08
    flip: Literal["auto", "yes", "no"] = "auto"
    model: str = ""


@dataclass
class DiffselConfig:
    """``[plugin.diffsel]`` options.

    Stage I (scoring):
        scorer: ``diffusion`` (the method) or ``observer`` (RDED's observer-scored random crops).
        prior: the diffusion prior: ``auto`` (ddcore's own class-conditional pixel prior for the run's
            dataset, trained and cached on first use), ``local-dir:PATH`` (a saved ddcore pixel prior
            or a diffusers Stable-Diffusion folder) or ``hf-hub:ORG/NAME`` (already in the Hugging Face
            cache; never downloaded).
        prompt: the text prompt of latent text priors; ``{name}`` is the class name.
        sd_variant: the weight files of a Stable Diffusion folder to load: ``""`` the plain ones,
            ``"fp16"`` the ``*.fp16.*`` ones (computed in float32).
        resolution: side the prior sees (images resized to it; 0: the pixel prior's training size, the
            image size for latent priors).
        timesteps: diffusion timesteps averaged over (spec: one mid-range step, 500 of 1000).
        n_noise: noise draws averaged over per timestep.
        contrast: ``null`` (error without the class vs with it) or ``others`` (the mean error under the
            other classes instead of the null condition).
        pool_per_class: real images scored per class (seeded random subset; all when fewer).
        batch_size: images per prior call (memory is bounded by it and by the kept candidates).
        factor: output images are ``factor x factor`` stitched patches (0: 2 for images of 64 px and
            more, else 1).
        window: side in pixels of the candidate windows (0: ``image side // factor``).
        stride: step between candidate windows (0: ``max(1, window // 4)``).
        per_image: best windows kept per image.
        max_iou: windows kept from one image overlap less than this (intersection over union).

    Stage II (diversity):
        features: patch embedding for clustering: ``teacher`` (penultimate features), ``pixels``
            (8x8-pooled patch), ``latents`` (the prior's encoding, 4x4-pooled); ``auto``: ``teacher``
            when ``teacher`` is set, else ``pixels``.
        ranking: ``bisecting`` (nested bisecting k-means: the winners of a smaller IPC are a prefix
            of a larger one's), ``kmeans`` (one flat k-means with IPC x factor^2 clusters, the spec's
            reading), ``score`` (top scores, no clustering, as RDED); ``auto``: ``bisecting`` for the
            diffusion scorer, ``score`` for the observer.
        assembly: ``rded`` (cell k of image q from winner k*IPC+q, winners by score) or ``prefix``
            (image q from winners q*f^2 .. q*f^2+f^2-1 in entry order, so a larger IPC's images extend
            a smaller one's).
        labels: ``hard``, or ``teacher`` (the teacher's logits on each assembled image, soft labels).
        teacher: ``""`` (none configured; the KD evaluator, the observer and ``labels = "teacher"``
            then use a teacher trained once and cached), ``trained`` (that cached teacher, also for
            features), ``run`` (the run's own classifier: expert 0 when the run has experts) or
            ``torchvision:ARCH:PATH`` (weights from a local file).
        teacher_epochs: epochs of the cached teacher (0: ddcore's default for the dataset).
        reuse_pool: reuse a saved Stage-I pool with the same key (the consistency property).
    """

    scorer: Literal["diffusion", "observer"] = "diffusion"
    prior: str = "auto"
    prompt: str = "a photo of a {name}"
    sd_variant: str = ""
    resolution: CountOrAuto = 0
    timesteps: list[Annotated[int, Range(ge=0)]] = field(default_factory=lambda: [500])
    n_noise: Count = 4
    contrast: Literal["null", "others"] = "null"
    pool_per_class: Count = 300
    batch_size: Count = 32
    factor: CountOrAuto = 0
    window: CountOrAuto = 0
    stride: CountOrAuto = 0
    per_image: Count = 1
    max_iou: Fraction = 0.5
    features: Literal["auto", "teacher", "pixels", "latents"] = "auto"
    ranking: Literal["auto", "bisecting", "kmeans", "score"] = "auto"
    assembly: Literal["rded", "prefix"] = "rded"
    labels: Literal["hard", "teacher"] = "hard"
    teacher: str = ""
    teacher_epochs: CountOrAuto = 0
    reuse_pool: bool = True
    train: PriorTrainConfig = field(default_factory=PriorTrainConfig)
    observer: ObserverConfig = field(default_factory=ObserverConfig)
    kd: KDConfig = field(default_factory=KDConfig)

    def __post_init__(self) -> None:
        if not self.timesteps:
            raise ConfigError(f"config key '{KEY}.timesteps' must list at least one timestep")
        if self.prior == "auto" and max(self.timesteps) >= self.train.timesteps:  # before the prior is trained
            raise ConfigError(
                f"config key '{KEY}.timesteps': {max(self.timesteps)} is beyond the trained prior's schedule "
                f"(timesteps 0..{self.train.timesteps - 1}, '{KEY}.train.timesteps' = {self.train.timesteps})"
            )
        if "{name}" not in self.prompt:
            raise ConfigError(f"config key '{KEY}.prompt' must contain {{name}}, got {self.prompt!r}")
        if self.teacher and self.teacher not in ("trained", "run") and not self.teacher.startswith("torchvision:"):
            raise ConfigError(
                f"config key '{KEY}.teacher': expected '', 'trained', 'run' or 'torchvision:ARCH:PATH', got {self.teacher!r}"
            )
        if self.teacher.startswith("torchvision:"):  # open and match the weights file now, before any work
            from ddcore_diffsel.features import check_teacher_weights

            check_teacher_weights(self.teacher)
        if self.features == "teacher" and not self.teacher:
            raise ConfigError(f"config key '{KEY}.features' = 'teacher' needs '{KEY}.teacher' (e.g. 'trained')")
        prefixes = ("local-dir:", "hf-hub:")
        if self.prior != "auto" and not (self.prior.startswith(prefixes) and self.prior.split(":", 1)[1]):
            raise ConfigError(
                f"config key '{KEY}.prior': expected 'auto', 'local-dir:PATH' or 'hf-hub:ORG/NAME', got {self.prior!r}"
            )

    def resolved_ranking(self) -> str:
        if self.ranking != "auto":
            return self.ranking
        return "bisecting" if self.scorer == "diffusion" else "score"

    def resolved_features(self) -> str:
        if self.features != "auto":
            return self.features
        return "teacher" if self.teacher else "pixels"
