"""Distribution Matching (Zhao & Bilen, WACV 2023) as tensor functions; no run context needed here.

One DM iteration draws a randomly initialised embedding network ``psi`` (its penultimate features),
and for every class ``c`` a batch of real images ``R_c`` and the class's synthetic images ``S_c``.
Both batches go through the same DSA draw ``A`` and the loss is::

    L = sum_c || mean_{x in R_c} psi(A(x)) - mean_{s in S_c} psi(A(s)) ||^2

with the real side a constant (no gradient). Its gradient moves each synthetic image so that the
synthetic class mean embedding moves towards the real one.

>>> net = embedding_network(ModelSpec("convnet", width=4, depth=1), 2, 1, 4, seed=0)
>>> real = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
>>> float(class_loss(embedder(net), real, real.clone()))  # the same images: the same mean embedding
0.0
>>> float(class_loss(embedder(net), real, real[:1] + 1.0)) > 0
True
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from ddcore.augment import DSA, DSAParams
from ddcore.models import ModelSpec, build_model

Embed = Callable[[torch.Tensor], torch.Tensor]


def embedding_network(spec: ModelSpec, num_classes: int, channels: int, size: int, seed: int) -> nn.Module:
    """A freshly, randomly initialised network from ``seed`` (on the CPU), frozen, in training mode as in DM.

    The global torch random state is forked, so building it neither reads nor changes it. A network
    without an ``embed`` method (ResNet-18) gets an identity head, so that its output is its penultimate
    features.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_model(spec, num_classes, channels, size)
    if not hasattr(network, "embed") and isinstance(getattr(network, "fc", None), nn.Linear):
        network.fc = nn.Identity()
    return network.train().requires_grad_(False)


def embedder(network: nn.Module) -> Embed:
    """The function DM matches: ``network.embed`` (penultimate features) when it has one, else the network.

    Shape: ``[N, C, H, W]`` -> ``[N, D]``.
    """
    embed = getattr(network, "embed", None)
    return embed if callable(embed) else network


def head(params: DSAParams, n: int) -> DSAParams:
    """The first ``n`` images' parameters of a DSA draw (the same family, the same per-image values)."""
    batch = params.batch_shape
    if not 0 <= n <= batch[0]:
        raise ValueError(f"cannot take {n} of the {batch[0]} images the DSA parameters were drawn for")
    return dataclasses.replace(params, batch_shape=(n, *batch[1:]), **{k: v[:n] for k, v in params.tensors().items()})


def siamese_dsa(dsa: DSA, real: torch.Tensor, syn: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a real and a synthetic batch with ONE DSA draw: one family, and image ``i`` of either batch
    gets the draw's ``i``-th parameters (the draw is made for the larger batch).

    Shape: ``real [Nr, C, H, W]``, ``syn [Ns, C, H, W]`` -> the same shapes; differentiable in ``syn``.
    """
    n = max(real.shape[0], syn.shape[0])
    params = dsa.sample((n, *real.shape[1:]), generator)
    return dsa.apply(real, head(params, real.shape[0])), dsa.apply(syn, head(params, syn.shape[0]))


def class_loss(embed: Embed, real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """``|| mean psi(real) - mean psi(syn) ||^2``, a scalar; the real side carries no gradient.

    Shape: ``real [Nr, C, H, W]``, ``syn [Ns, C, H, W]`` -> ``[]``.
    """
    with torch.no_grad():
        target = embed(real).mean(dim=0)
    return (target - embed(syn).mean(dim=0)).square().sum()


def dm_loss(
    embed: Embed,
    real: list[torch.Tensor],
    syn: list[torch.Tensor],
    dsa: DSA | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The DM loss summed over classes: ``real[c]`` and ``syn[c]`` are class ``c``'s batches.

    With ``dsa``, each class's pair is augmented by one draw from ``generator`` (:func:`siamese_dsa`),
    classes in order. Classes with no synthetic image are skipped.
    """
    if len(real) != len(syn):
        raise ValueError(f"{len(real)} real batches for {len(syn)} synthetic ones")
    total = torch.zeros(())
    for real_c, syn_c in zip(real, syn):
        if syn_c.shape[0] == 0:
            continue
        if dsa is not None:
            if generator is None:
                raise ValueError("dsa needs a generator")
            real_c, syn_c = siamese_dsa(dsa, real_c, syn_c, generator)
        total = total.to(syn_c.device) + class_loss(embed, real_c, syn_c)
    return total
