"""A working classifier from a parameters-only snapshot (one point of an expert trajectory).

Expert trajectories store parameters only (``ExpertBuffer``: ``[E+1, P]`` flat vectors), not the
buffers a network needs in eval mode. For a network with batch norm that loses the running
statistics: rebuilt with fresh buffers (mean 0, variance 1) it classifies at chance in eval mode. Every
place that turns a snapshot into a classifier (the run's classifier of :mod:`ddcore.teacher`, EDF's CAM
model, diffsel's ``teacher = "run"``, the "correct" initialisation) goes through
:func:`classifier_from_snapshot`, which:

- builds the architecture, copies the snapshot into its parameters (by name, checked against the
  shapes);
- recomputes the batch-norm running statistics (precise BN, Wu & Johnson 2021; the same procedure as
  SWA's :func:`torch.optim.swa_utils.update_bn`, which does it): forward passes in train mode, without
  gradients, over :data:`NORM_STATS_IMAGES` training images in a fixed random order (seed
  :data:`NORM_STATS_SEED`), with ``momentum = None`` so each running statistic is the plain average over
  the batches, not an exponential one dominated by the last batch;
- refuses (:class:`~ddcore.errors.DDError`) a network with any other buffer it cannot recompute;
- leaves a network without buffers (instance norm, layer norm, no norm) untouched.

Why :data:`NORM_STATS_IMAGES` = 2048: a running mean is an average over images; its standard error
falls as ``1/sqrt(n)``, about 2% of a channel's spread at 2048 images (less, since every image
contributes ``h * w`` positions), small against the differences between classes; the cost is
forward passes only, over about a fifth of a 10-class ImageNet subset's training images, and about a
second for digits (whose 1437 training images are then all used: :func:`norm_stats_count`). The images are the training split
as loaded (normalised, not augmented), the distribution the classifier is then asked about.
Unlike the statistics the expert accumulated while training (an exponential average over augmented
batches of moving weights), these belong to the snapshot's own weights.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ddcore.errors import DDError
from ddcore.tm.flatparams import param_shapes_of, unflatten_params

if TYPE_CHECKING:
    from ddcore.data.base import ImageDataset
    from ddcore.models import ModelSpec

#: Training images the batch-norm statistics are recomputed from (all of them when the split is smaller).
NORM_STATS_IMAGES = 2048

#: Seed of the order the images are drawn in (fixed: one snapshot gives one classifier whatever the run seed).
NORM_STATS_SEED = 0

#: Images per forward pass while recomputing the statistics.
NORM_STATS_BATCH = 256


def norm_stat_layers(model: nn.Module) -> list[str]:
    """Names of the modules that keep running statistics (batch norm with ``track_running_stats``).

    >>> from ddcore.models import ConvNet
    >>> norm_stat_layers(ConvNet(10, in_channels=1, image_size=32, width=8, depth=3, norm="batchnorm"))
    ['features.0.1', 'features.1.1', 'features.2.1']
    >>> norm_stat_layers(ConvNet(10, in_channels=1, image_size=32, width=8, depth=3))
    []
    """
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats]  # fmt: skip


def unrestorable_buffers(model: nn.Module) -> list[str]:
    """Buffers of ``model`` that neither a snapshot holds nor :func:`recompute_norm_stats` restores.

    Non-persistent buffers are excluded (they are computed by the module itself, not saved).
    """
    stats = set(norm_stat_layers(model))
    names = []
    for module_name, module in model.named_modules():
        for buffer_name, _ in module.named_buffers(recurse=False):
            if module_name in stats or buffer_name in module._non_persistent_buffers_set:
                continue
            names.append(f"{module_name}.{buffer_name}" if module_name else buffer_name)
    return names


def norm_stats_count(dataset: "ImageDataset", images: int = NORM_STATS_IMAGES, batch_size: int = NORM_STATS_BATCH) -> int:
    """How many training images :func:`recompute_norm_stats` uses: ``min(images, training split)``, less one
    when that would leave a last batch of a single image (batch norm in train mode refuses it).

    >>> from ddcore.testing import known_answer_dataset
    >>> norm_stats_count(known_answer_dataset("clean")), norm_stats_count(known_answer_dataset("clean"), 33, 32)
    (64, 32)
    """
    total = min(images, len(dataset.split("train")))
    return total - (total % batch_size == 1)


def recompute_norm_stats(
    model: nn.Module,
    dataset: "ImageDataset",
    *,
    images: int = NORM_STATS_IMAGES,
    seed: int = NORM_STATS_SEED,
    batch_size: int = NORM_STATS_BATCH,
    device: torch.device | str = "cpu",
) -> int:
    """Recompute ``model``'s batch-norm running statistics in place from training images; returns how many.

    ``images`` training images (all when fewer), drawn in the order of
    ``torch.randperm(n, generator=Generator().manual_seed(seed))``, go through the model in train mode
    without gradients in batches of ``batch_size`` (:func:`torch.optim.swa_utils.update_bn`: statistics
    reset, ``momentum = None`` for the cumulative average, each module's mode and momentum restored).
    Returns 0 and leaves the model untouched when it keeps no running statistics. The model must be
    on ``device``. Deterministic for a device; the global random state is not consumed.
    """
    if not norm_stat_layers(model):
        return 0
    from torch.optim.swa_utils import update_bn

    total = len(dataset.split("train"))
    # A last batch of 1 image is left out (norm_stats_count): batch norm in train mode refuses one value per channel.
    count = norm_stats_count(dataset, images, batch_size)
    indices = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].tolist()
    # A generator of its own: a DataLoader draws its base seed from the global RNG otherwise.
    loader = dataset.loader("train", batch_size, indices=indices, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        update_bn(loader, model, device=torch.device(device))
    return count


def classifier_from_snapshot(
    model: "ModelSpec | str | nn.Module",
    flat_params: torch.Tensor,
    dataset: "ImageDataset",
    *,
    shapes: Sequence[tuple[str, Sequence[int]]] | None = None,
    device: torch.device | str = "cpu",
    images: int = NORM_STATS_IMAGES,
) -> nn.Module:
    """A classifier of ``dataset`` with the parameters of one snapshot and working buffers, eval mode, on ``device``.

    Args:
        model: the snapshot's architecture: a :class:`~ddcore.models.ModelSpec` (or its name), built for
            ``dataset`` under a forked RNG (the caller's random state is not consumed), or a module
            (deep-copied; the given one is not changed) whose ``named_parameters()`` the vector follows.
        flat_params: ``[P]`` the snapshot (``ExpertBuffer.trajectory(i)[epoch]``), any device.
        dataset: the data the snapshot was trained on; its training split restores the statistics.
        shapes: ``[(name, shape), ...]`` of the vector (``ExpertBuffer.param_shapes``); checked against
            the model's. Default: the model's own.
        device: where the network is put and the statistics are computed.
        images: training images for the batch-norm statistics (:data:`NORM_STATS_IMAGES`).

    Returns:
        The network in eval mode (its parameters' ``requires_grad`` as built).

    Raises:
        DDError: the vector does not fit the model (size or parameter shapes), or the model has a
            buffer that cannot be restored from a parameters-only snapshot (named).
    """
    if isinstance(model, nn.Module):
        network = copy.deepcopy(model)
    else:
        from ddcore.models import ModelSpec, build_model

        spec = ModelSpec(name=model) if isinstance(model, str) else model
        channels, size, _ = dataset.image_shape
        with torch.random.fork_rng(devices=[]):
            network = build_model(spec, dataset.num_classes, channels, size)
    own = param_shapes_of(network)
    if shapes is not None:
        stored = [(str(name), tuple(int(s) for s in shape)) for name, shape in shapes]
        if stored != own:
            raise DDError(
                f"the snapshot's parameters ({len(stored)} tensors) do not fit {type(network).__name__} "
                f"({len(own)} tensors): was it trained with another model?"
            )
    lost = unrestorable_buffers(network)
    if lost:
        shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        raise DDError(
            f"{type(network).__name__} keeps buffers a parameters-only snapshot does not hold and ddcore cannot "
            f"recompute ({shown}); use a network whose only buffers are batch-norm statistics"
        )
    try:
        params = unflatten_params(flat_params.detach().to("cpu"), own)
    except ValueError as exc:
        raise DDError(f"the snapshot does not fit {type(network).__name__}: {exc}") from None
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            parameter.copy_(params[name])
    network = network.to(device)
    recompute_norm_stats(network, dataset, images=images, device=device)
    return network.eval()
