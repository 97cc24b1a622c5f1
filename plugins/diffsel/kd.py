"""The evaluation protocol of selection methods (RDED / SRe2L): knowledge distillation from a teacher.

A fresh student trains on the distilled images only; every step augments a batch (random resized
crop, optional flip, CutMix), asks the teacher for its logits on exactly that batch, and minimises
``T^2 * KL(softmax(teacher / T) || softmax(student / T))``. AdamW, half-cosine learning rate over the
steps. The distilled labels are not used: the teacher supervises. Top-1 on the real test split.

Randomness: student initialisation under a forked global RNG seeded by ``(seed, "diffsel-kd", run,
"init")``; order, crops, flips and CutMix from a generator seeded by ``(seed, "diffsel-kd", run)``.

Several students at once (:func:`train_students`, ``eval.batched``): K students of one architecture are
trained as one vmapped batch (:class:`ddcore.ensemble.StackedNetworks`). Each keeps its own generator, so its
order, crops, flips and CutMix are its own (the K augmented batches differ, so the teacher is asked for
each student's batch: one teacher forward over the K batches concatenated, ``[K * B, C, H, W]``); one AdamW
over the stacked parameters is K AdamWs (element-wise updates, the same cosine lr at every step). Every
student's weights equal :func:`train_student`'s with the same generator to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.ensemble import StackedNetworks
from ddcore.training import TrainingDiverged, finite_parameters, optimizer_step
from ddcore_diffsel.scorers import random_resized_boxes
from ddcore_diffsel.windows import crop_resize


@dataclass(frozen=True)
class KDRecipe:
    """A resolved KD recipe (nothing on ``auto``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    temperature: float
    cutmix: float
    min_scale: float
    flip: bool


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, mean over the batch.

    Shape: ``student [B, K]``, ``teacher [B, K]`` -> scalar.

    >>> z = torch.tensor([[1.0, 2.0]]); abs(float(kd_loss(z, z, 4.0))) < 1e-5
    True
    """
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def augment_batch(images: torch.Tensor, recipe: KDRecipe, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (back to the image size), optional horizontal flip, then CutMix.

    CutMix pastes a box of each image's partner (a random permutation) with area ``1 - lam``,
    ``lam ~ Beta(cutmix, cutmix)`` (one ``lam`` per batch); the teacher sees the mixed images, so no
    label mixing is needed. Shape: ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    """
    b, _, h, w = images.shape
    boxes = random_resized_boxes(b, h, w, recipe.min_scale, generator)
    out = crop_resize(images, boxes, h) if h == w else images
    if recipe.flip:
        flips = torch.rand(b, generator=generator) < 0.5
        out = torch.where(flips.view(-1, 1, 1, 1).to(out.device), out.flip(-1), out)
    if recipe.cutmix > 0 and b > 1:
        lam = beta_draw(recipe.cutmix, generator)
        partner = torch.randperm(b, generator=generator)
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).long().tolist()
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        if y1 > y0 and x1 > x0:
            out = out.clone()
            out[:, :, y0:y1, x0:x1] = out[partner.to(out.device)][:, :, y0:y1, x0:x1]
    return out


def beta_draw(a: float, generator: torch.Generator) -> float:
    """One ``Beta(a, a)`` draw, seeded from ``generator`` (numpy's own generator, no global state).

    >>> g = torch.Generator().manual_seed(0); 0 <= beta_draw(1.0, g) <= 1
    True
    """
    import numpy as np

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(a, a))


def train_student(student: nn.Module, teacher: nn.Module, images: torch.Tensor, recipe: KDRecipe,
                  generator: torch.Generator, device) -> nn.Module:  # fmt: skip
    """Train ``student`` in place on ``images [N, C, H, W]`` (normalised) with the teacher's soft targets.

    Raises:
        TrainingDiverged: the KD loss summed over an epoch, or a weight, is NaN or infinite (checked after
            every epoch); one line naming ``plugin.diffsel.kd.lr`` and ``plugin.diffsel.kd.weight_decay``.
    """
    student.to(device).train()
    teacher.eval()
    optimizer = torch.optim.AdamW(student.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = images.shape[0]
    per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * per_epoch
    step = 0
    for epoch in range(recipe.epochs):
        summed = torch.zeros((), device=device)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, recipe.batch_size):
            batch = augment_batch(images[order[start : start + recipe.batch_size]], recipe, generator).to(device)
            with torch.no_grad():
                target = teacher(batch).float()
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
            loss = kd_loss(student(batch), target, recipe.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            try:
                optimizer_step(optimizer, epoch, recipe.epochs)
            except TrainingDiverged as exc:
                raise exc.advised("the KD student", _advice(recipe)) from None
            summed += loss.detach()
            step += 1
        loss_value = float(summed)
        if not math.isfinite(loss_value) or not finite_parameters(student):
            raise TrainingDiverged(epoch, recipe.epochs, loss_value, subject="the KD student",
                                   weights=math.isfinite(loss_value), advice=_advice(recipe))  # fmt: skip
    return student.eval()


def train_students(students: list[nn.Module], teacher: nn.Module, images: torch.Tensor, recipe: KDRecipe,
                   generators: list[torch.Generator], device) -> list[nn.Module]:  # fmt: skip
    """Train ``students`` (one architecture, no BatchNorm or dropout) in place together, student ``k`` with
    ``generators[k]``: the same as ``train_student(students[k], teacher, images, recipe, generators[k], device)``
    for each (module docstring), to float rounding. Returns them in eval mode.

    Shapes: ``images [N, C, H, W]``; per step the students' batches ``[K, B, C, H, W]``, the teacher's logits
    ``[K, B, classes]``.

    Raises:
        TrainingDiverged: a student's KD loss summed over an epoch, or a weight, is NaN or infinite (checked
            after every epoch; ``member`` is its index); one line naming ``plugin.diffsel.kd.lr`` and
            ``plugin.diffsel.kd.weight_decay``.
        ValueError: ``students`` and ``generators`` differ in length, or a student cannot be batched.
    """
    if len(students) != len(generators):
        raise ValueError(f"train_students: {len(students)} students but {len(generators)} generators")
    stacked = StackedNetworks([s.to(device).train() for s in students])
    teacher.eval()
    optimizer = torch.optim.AdamW(stacked.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n, count = images.shape[0], len(students)
    per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * per_epoch
    step = 0
    for epoch in range(recipe.epochs):
        summed = torch.zeros(count, device=device)
        orders = [torch.randperm(n, generator=g) for g in generators]
        for start in range(0, n, recipe.batch_size):
            batches = [augment_batch(images[order[start : start + recipe.batch_size]], recipe, g).to(device)
                       for order, g in zip(orders, generators)]  # fmt: skip
            batch = torch.stack(batches)  # [K, B, C, H, W]
            with torch.no_grad():
                target = teacher(batch.flatten(0, 1)).float().unflatten(0, batch.shape[:2])  # [K, B, classes]
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
            logits = stacked(batch)
            losses = torch.stack([kd_loss(logits[k], target[k], recipe.temperature) for k in range(count)])
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # student k's gradient is that of its own loss
            try:
                optimizer_step(optimizer, epoch, recipe.epochs)
            except TrainingDiverged as exc:
                raise exc.advised("the KD student", _advice(recipe)) from None
            summed += losses.detach()
            step += 1
        loss_values, weights_ok = summed.tolist(), stacked.finite()
        for k, (loss_value, ok) in enumerate(zip(loss_values, weights_ok)):
            if not math.isfinite(loss_value) or not ok:
                raise TrainingDiverged(epoch, recipe.epochs, loss_value, member=k, subject="the KD student",
                                       weights=math.isfinite(loss_value), advice=_advice(recipe))  # fmt: skip
    return [student.eval() for student in stacked.write_back()]


def _advice(recipe: KDRecipe) -> str:
    return f"lower plugin.diffsel.kd.lr (now {recipe.lr:g}) or plugin.diffsel.kd.weight_decay (now {recipe.weight_decay:g})"
