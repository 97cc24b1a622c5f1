"""A network's parameters as one flat vector ``[P]`` and back: the currency of expert trajectories."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

ParamShapes = list[tuple[str, tuple[int, ...]]]


def flatten_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one detached vector ``[P]`` (``named_parameters`` order, same dtype/device).

    >>> flatten_params(nn.Linear(3, 2)).shape
    torch.Size([8])
    """
    return torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])


def param_shapes_of(model: nn.Module) -> ParamShapes:
    """``[(name, shape), ...]`` of ``model.named_parameters()``."""
    return [(name, tuple(int(s) for s in p.shape)) for name, p in model.named_parameters()]


def num_params(shapes: Sequence[tuple[str, Sequence[int]]]) -> int:
    return sum(math.prod(shape) for _, shape in shapes)


def unflatten_params(flat: torch.Tensor, shapes: Sequence[tuple[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
    """Split ``flat [P]`` into ``{name: tensor of shape}`` views (differentiable, no copy).

    Feed the result to ``torch.func.functional_call(model, params, x)`` or
    ``model.load_state_dict(params, strict=False)`` (buffers are not part of it).
    """
    sizes = [math.prod(shape) for _, shape in shapes]
    if flat.ndim != 1 or flat.numel() != sum(sizes):
        raise ValueError(f"expected a flat vector of {sum(sizes)} parameters, got shape {tuple(flat.shape)}")
    return {name: part.view(tuple(shape)) for (name, shape), part in zip(shapes, torch.split(flat, sizes))}
