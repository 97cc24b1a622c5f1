"""Training a fresh network on a (small) labelled set and measuring it on real test data.

Pure functions over tensors and loaders; the built-in evaluator (``ddcore.builtin.evaluate``) and
later stages (experts, teachers) call them. A training whose loss or weights stop being finite (a learning
rate or weight decay too large) raises :class:`TrainingDiverged` instead of returning a broken network,
whose chance-level accuracy would otherwise be reported as a result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.errors import DDError
from ddcore.vocab import AUGMENTS, OPTIMIZERS, SCHEDULES, Augment, Optimizer, Schedule

Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class TrainingDiverged(DDError):
    """A network's training diverged: its loss (summed over an epoch) or its weights are NaN or infinite.

    Raised by :func:`train_network` (and :func:`ddcore.ensemble.train_ensemble`) at the end of the first
    epoch where it happens (both are checked after every epoch), so nothing downstream measures or saves the broken network. Callers that know
    which options shaped the training re-raise it with :meth:`advised` (one line naming the options to
    lower); the ``dd`` command prints it and exits 2.

    Attributes:
        epoch: the 0-based epoch at whose end the divergence was found.
        epochs: the epochs the recipe asked for.
        loss: that epoch's summed training loss (``nan``/``inf``; finite when only the weights are not).
        weights: whether the loss was finite but the weights were not.
        detail: what happened, when neither (an optimiser step that overflows float32).
        member: which network of an ensemble (index into its members), ``None`` for a single one.
        subject: what was being trained, in words (``"the network"`` by default).
        advice: what to change (``""``: none given yet).

    >>> str(TrainingDiverged(2, 20, float("nan")))
    'training of the network diverged at epoch 3 of 20: the training loss is nan'
    >>> str(TrainingDiverged(0, 5, float("inf")).advised("the evaluation network", "lower eval.lr (now 1e+06)"))
    'training of the evaluation network diverged at epoch 1 of 5: the training loss is inf; lower eval.lr (now 1e+06)'
    """

    def __init__(self, epoch: int, epochs: int, loss: float, *, member: int | None = None,
                 subject: str = "the network", advice: str = "", weights: bool = False, detail: str = ""):  # fmt: skip
        self.epoch, self.epochs, self.loss, self.member = epoch, epochs, loss, member
        self.subject, self.advice, self.weights, self.detail = subject, advice, weights, detail
        what = detail or ("its weights are no longer finite" if weights else f"the training loss is {loss}")
        message = f"training of {subject} diverged at epoch {epoch + 1} of {epochs}: {what}"
        super().__init__(f"{message}; {advice}" if advice else message)

    def advised(self, subject: str, advice: str) -> "TrainingDiverged":
        """The same divergence, saying what was trained (``subject``) and which options to lower (``advice``)."""
        return TrainingDiverged(self.epoch, self.epochs, self.loss, member=self.member, subject=subject,
                                advice=advice, weights=self.weights, detail=self.detail)  # fmt: skip


def finite_parameters(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one reduction per tensor, one sync)."""
    flags = [torch.isfinite(p.detach()).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


@dataclass(frozen=True)
class TrainRecipe:
    """How a network is trained. ``schedule="step"`` multiplies the lr by 0.1 at half the epochs.

    The accepted optimisers, schedules and augmentations are :mod:`ddcore.vocab`'s.
    """

    epochs: int
    batch_size: int = 256
    optimizer: Optimizer = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "step"
    augment: Augment = "none"

    def to_dict(self) -> dict:
        return asdict(self)


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum_k -log_softmax(logits)_k * softmax(target_logits)_k``.

    Shape: ``logits [B, K]``, ``target_logits [B, K]`` -> scalar.

    >>> z = torch.tensor([[2.0, 0.0]]); round(soft_cross_entropy(z, torch.tensor([[50.0, 0.0]])).item(), 4)
    0.1269
    """
    return -(F.log_softmax(logits, dim=1) * F.softmax(target_logits, dim=1)).sum(dim=1).mean()


def make_augment(kind: str, image_size: int) -> nn.Module | None:
    """A kornia augmentation applied to each training batch, or ``None`` for ``"none"``.

    ``crop``: pad by ``image_size // 8`` (reflect) and crop back at a random position;
    ``crop_flip``: the same plus a horizontal flip with p=0.5 (for natural images, not digits);
    ``dsa``: differentiable siamese augmentation (:mod:`ddcore.augment`, one family per batch), its
    generator seeded from the global torch RNG (call under ``fork_rng`` with a seed).
    Shape: ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    """
    import kornia.augmentation as K

    if kind == "none":
        return None
    if kind == "dsa":
        from ddcore.augment import DSA, DSAugment

        seed = int(torch.randint(0, 2**62, (1,)))
        return DSAugment(DSA(), torch.Generator().manual_seed(seed))
    pad = max(1, image_size // 8)
    crop = K.RandomCrop((image_size, image_size), padding=pad, padding_mode="reflect")
    if kind == "crop":
        return crop
    if kind == "crop_flip":
        return nn.Sequential(crop, K.RandomHorizontalFlip(p=0.5))
    raise ValueError(f"unknown augmentation {kind!r} ({', '.join(AUGMENTS)})")


def tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> Batches:
    """Epoch ``e`` -> shuffled minibatches of ``(images [b, C, H, W], labels [b] or [b, K])``."""

    def epoch(_: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            yield images[chosen], labels[chosen]

    return epoch


def fork_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must fork for work on ``device`` (none on CPU)."""
    return [device.index or 0] if device.type == "cuda" else []


def make_optimizer(recipe: TrainRecipe, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The recipe's optimiser (``sgd`` with momentum, ``adam``, ``adamw``; ``weight_decay`` as torch applies it)
    over ``params``. Every update is elementwise, so one optimiser over stacked parameters ``[K, ...]`` is K
    independent ones (:mod:`ddcore.ensemble` relies on it)."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r} ({', '.join(OPTIMIZERS)})")


def lr_factor(schedule: str, epochs: int) -> Callable[[int], float]:
    """``epoch -> multiplier`` of the base lr: ``step`` x0.1 from half the epochs on (MTT's evaluator),
    ``cosine`` annealing to 0, ``constant`` 1 (for ``torch.optim.lr_scheduler.LambdaLR``)."""
    if schedule == "step":
        return lambda e: 0.1 if e >= epochs // 2 else 1.0
    if schedule == "cosine":
        return lambda e: 0.5 * (1 + math.cos(math.pi * e / max(1, epochs)))
    if schedule == "constant":
        return lambda e: 1.0
    raise ValueError(f"unknown schedule {schedule!r} ({', '.join(SCHEDULES)})")


def train_network(
    model: nn.Module,
    batches: Batches,
    recipe: TrainRecipe,
    device: torch.device,
    image_size: int,
    on_epoch: Callable[[int], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place for ``recipe.epochs`` epochs; soft targets (2-D labels) use soft CE.

    Randomness (shuffling aside, which ``batches`` owns) comes from the global torch RNG: call it
    under ``torch.random.fork_rng()`` with a seed for a reproducible, side-effect-free run.

    Raises:
        TrainingDiverged: the loss summed over an epoch is NaN or infinite, or a weight is; found at the
            end of that epoch, before ``on_epoch`` sees it (two host syncs per epoch). Also an optimiser step
            that overflows float32 (:func:`optimizer_step`), when it happens.
    """
    model.to(device).train()
    augment = make_augment(recipe.augment, image_size)
    optimizer = make_optimizer(recipe, model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe.schedule, recipe.epochs))
    for epoch in range(recipe.epochs):
        total = torch.zeros((), device=device)
        for images, labels in batches(epoch):
            images, labels = images.to(device), labels.to(device)
            if augment is not None:
                images = augment(images)
            logits = model(images)
            loss = soft_cross_entropy(logits, labels) if labels.ndim == 2 else F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_step(optimizer, epoch, recipe.epochs)
            total += loss.detach()
        scheduler.step()
        summed = float(total)
        if not math.isfinite(summed):
            raise TrainingDiverged(epoch, recipe.epochs, summed)
        if not finite_parameters(model):
            raise TrainingDiverged(epoch, recipe.epochs, summed, weights=True)
        if on_epoch is not None:
            on_epoch(epoch)
    return model


def optimizer_step(optimizer: torch.optim.Optimizer, epoch: int, epochs: int, member: int | None = None) -> None:
    """``optimizer.step()``; a step whose size overflows float32 (torch refuses it, e.g. Adam's ``lr /
    bias_correction`` beyond 3.4e38) is :class:`TrainingDiverged` at ``epoch`` instead of a torch traceback."""
    try:
        optimizer.step()
    except RuntimeError as exc:
        if "overflow" not in str(exc):
            raise
        raise TrainingDiverged(epoch, epochs, math.inf, member=member,
                               detail=f"the optimiser's step overflows float32 ({exc})") from None  # fmt: skip


@torch.no_grad()
def accuracy_on(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` over every batch of ``loader``."""
    model.eval()
    correct = total = 0
    for images, labels in loader:
        labels = torch.as_tensor(labels).to(device)
        predictions = model(images.to(device)).argmax(dim=1)
        correct += (predictions == labels).sum().item()
        total += labels.numel()
    return correct / max(1, total)
