"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen 2021) in kornia's sample-then-apply split.

Trajectory matching (MTT, DATM, EDF) augments every synthetic minibatch with DSA before the unrolled
student steps, and the image gradient has to flow back through the augmentation. The recipe, per
call: pick ONE family of the strategy string uniformly at random (DSA's "single" mode), draw that
family's parameters independently for every image, apply them.

Families (``strategy="color_crop_cutout_flip_scale_rotate"``, joined by ``"_"``; a family named twice
is picked twice as often, as in DSA):

=========  ==============================================================================================
``color``  brightness ``x + b``, ``b ~ U(-0.5, 0.5) * brightness``; then saturation
           ``(x - mean_C x) * s + mean_C x``, ``s ~ U(0, 1) * saturation``; then contrast
           ``(x - mean_CHW x) * c + mean_CHW x``, ``c ~ U(0, 1) + contrast`` (no clamping: inputs are
           normalised images)
``crop``   integer shift by up to ``round(crop_pad * size)`` pixels per axis, zero fill (DSA's pad-and-crop)
``cutout`` zero a ``round(cutout * H) x round(cutout * W)`` box centred at a random pixel (clipped at the
           borders, as in DSA)
``flip``   horizontal flip with p = 0.5
``scale``  independent x/y sampling scale ``s ~ U(1/scale, scale)`` about the image centre, bilinear, zero fill
``rotate`` rotation by ``U(-rotate, rotate)`` degrees about the image centre, bilinear, zero fill
=========  ==============================================================================================

``scale`` and ``rotate`` go through :func:`kornia.geometry.transform.warp_affine` with
``align_corners=True`` (the same sampling grid as DSA's ``F.affine_grid``/``F.grid_sample``); the
others are plain tensor ops. Every op is differentiable with respect to the images (linear, or
affine for brightness) and never writes into its input.

Randomness comes only from the ``torch.Generator`` passed in: parameters are drawn on the
generator's device (CPU for ``ctx.generator``) and then moved to the images' device, so a seed gives
the same parameters on every device. Applying one :class:`DSAParams` to two batches of the same shape
applies the same transform to both (the "siamese" part).

>>> dsa = DSA("flip_rotate")
>>> g = torch.Generator().manual_seed(0)
>>> params = dsa.sample((4, 3, 8, 8), g)
>>> params.family in ("flip", "rotate"), tuple(dsa.apply(torch.zeros(4, 3, 8, 8), params).shape)
(True, (4, 3, 8, 8))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")

_TENSOR_FIELDS = ("brightness", "saturation", "contrast", "shift", "cutout_box", "flip", "scale", "angle")


@dataclass(frozen=True)
class DSAParams:
    """One sampled DSA transform: the family and its per-image parameters (the others are ``None``).

    All tensors have a leading batch dimension ``N`` equal to ``batch_shape[0]``.

    Attributes:
        family: one of ``color``, ``crop``, ``cutout``, ``flip``, ``scale``, ``rotate``.
        batch_shape: ``(N, C, H, W)`` the parameters were sampled for; :meth:`DSA.apply` accepts any
            batch with the same ``N``, ``H`` and ``W`` (``C`` may differ).
        brightness: ``[N]`` float, added to every pixel (``color``).
        saturation: ``[N]`` float, factor of the deviation from the per-pixel channel mean (``color``).
        contrast: ``[N]`` float, factor of the deviation from the per-image mean (``color``).
        shift: ``[N, 2]`` long ``(dx, dy)``: content moves right by ``dx`` and down by ``dy`` pixels,
            ``out[..., i, j] = in[..., i - dy, j - dx]`` (zero where that is outside) (``crop``).
        cutout_box: ``[N, 4]`` long ``(x0, y0, x1, y1)``, half-open; pixels with ``x0 <= j < x1`` and
            ``y0 <= i < y1`` are zeroed. The box may reach past the borders (``cutout``).
        flip: ``[N]`` bool, images flipped left-right (``flip``).
        scale: ``[N, 2]`` float ``(sx, sy)`` sampling scale as in DSA: output pixel ``p`` reads the input
            at ``c + s * (p - c)`` (``c`` the centre), so ``s > 1`` shrinks the content (``scale``).
        angle: ``[N]`` float degrees, counter-clockwise as displayed (kornia's convention) (``rotate``).
    """

    family: str
    batch_shape: tuple[int, int, int, int]
    brightness: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    cutout_box: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    angle: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> DSAParams:
        """The same parameters with every tensor on ``device``."""
        return replace(self, **{name: value.to(device) for name, value in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The parameters this family uses, by field name."""
        return {name: getattr(self, name) for name in _TENSOR_FIELDS if getattr(self, name) is not None}


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """``"color_crop_flip"`` -> ``("color", "crop", "flip")``; an unknown or empty name is a ``ValueError``.

    >>> parse_strategy("flip_rotate")
    ('flip', 'rotate')
    """
    names = tuple(strategy.split("_")) if isinstance(strategy, str) and strategy else ()
    unknown = [name for name in names if name not in FAMILIES]
    if not names or unknown:
        what = f"unknown DSA family {', '.join(map(repr, unknown))}" if unknown else "empty DSA strategy"
        raise ValueError(f"{what} in strategy {strategy!r}; valid families (joined by '_'): {', '.join(FAMILIES)}")
    return names


@dataclass(frozen=True)
class DSA:
    """Differentiable siamese augmentation with DSA's defaults (one family per call, per-image parameters).

    Args:
        strategy: families joined by ``"_"`` (see the module docstring).
        brightness: ``b ~ U(-0.5, 0.5) * brightness``.
        saturation: ``s ~ U(0, saturation)``.
        contrast: ``c ~ U(contrast, contrast + 1)``.
        crop_pad: maximal shift as a fraction of the size (``round(crop_pad * H)`` pixels).
        cutout: side of the zeroed box as a fraction of the size.
        scale: ``s ~ U(1 / scale, scale)`` per axis; must be >= 1.
        rotate: maximal rotation in degrees.

    Shape: ``images [N, C, H, W]`` (any ``C``, e.g. 1 or 3) -> ``[N, C, H, W]``, same dtype and device.
    """

    strategy: str = "color_crop_cutout_flip_scale_rotate"
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_pad: float = 0.125
    cutout: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0

    def __post_init__(self) -> None:
        parse_strategy(self.strategy)
        if self.scale < 1.0:
            raise ValueError(f"DSA scale must be >= 1 (samples U(1/scale, scale)), got {self.scale}")
        if not 0.0 <= self.crop_pad < 1.0:
            raise ValueError(f"DSA crop_pad must be in [0, 1), got {self.crop_pad}")
        if not 0.0 <= self.cutout <= 1.0:
            raise ValueError(f"DSA cutout must be in [0, 1], got {self.cutout}")
        for name in ("brightness", "saturation", "contrast", "rotate"):
            if getattr(self, name) < 0:
                raise ValueError(f"DSA {name} must be >= 0, got {getattr(self, name)}")

    @property
    def families(self) -> tuple[str, ...]:
        """The strategy's families in order (repeats kept: each entry is one equally likely pick)."""
        return parse_strategy(self.strategy)

    def to_dict(self) -> dict:
        return asdict(self)

    # -- sample ---------------------------------------------------------------------------------

    def sample(
        self,
        batch_shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator,
        device: torch.device | str | None = None,
        family: str | None = None,
    ) -> DSAParams:
        """Draw one family (uniformly over :attr:`families`) and its per-image parameters.

        Args:
            batch_shape: ``(N, C, H, W)`` of the batch(es) the parameters will be applied to.
            generator: the only source of randomness; the draws happen on its device.
            device: where the returned tensors live (default: the generator's device).
            family: force this family instead of drawing one (no draw is spent on the choice).

        Same generator state -> same parameters.
        """
        if len(batch_shape) != 4:
            raise ValueError(f"batch_shape must be (N, C, H, W), got {tuple(batch_shape)}")
        n, c, h, w = (int(s) for s in batch_shape)
        on = generator.device
        if family is None:
            families = self.families
            family = families[int(torch.randint(len(families), (1,), generator=generator, device=on).item())]
        elif family not in FAMILIES:
            parse_strategy(family)  # raises, naming the valid families

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=on)

        def integers(low: int, high: int, size: int) -> torch.Tensor:  # [low, high)
            return torch.randint(low, high, (size,), generator=generator, device=on)

        values: dict[str, torch.Tensor] = {}
        if family == "color":
            values["brightness"] = (uniform(n) - 0.5) * self.brightness
            values["saturation"] = uniform(n) * self.saturation
            values["contrast"] = uniform(n) + self.contrast
        elif family == "crop":
            pad_x, pad_y = int(w * self.crop_pad + 0.5), int(h * self.crop_pad + 0.5)
            values["shift"] = torch.stack([integers(-pad_x, pad_x + 1, n), integers(-pad_y, pad_y + 1, n)], dim=1)
        elif family == "cutout":
            size_x, size_y = int(w * self.cutout + 0.5), int(h * self.cutout + 0.5)
            # DSA: centre in [0, size + (1 - side % 2)), box [centre - side // 2, centre - side // 2 + side)
            x0 = integers(0, w + (1 - size_x % 2), n) - size_x // 2
            y0 = integers(0, h + (1 - size_y % 2), n) - size_y // 2
            values["cutout_box"] = torch.stack([x0, y0, x0 + size_x, y0 + size_y], dim=1)
        elif family == "flip":
            values["flip"] = uniform(n) < 0.5
        elif family == "scale":
            low = 1.0 / self.scale
            values["scale"] = uniform(n, 2) * (self.scale - low) + low
        elif family == "rotate":
            values["angle"] = (uniform(n) - 0.5) * 2.0 * self.rotate
        if device is not None:
            values = {name: value.to(device) for name, value in values.items()}
        return DSAParams(family=family, batch_shape=(n, c, h, w), **values)

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, images: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Apply sampled ``params`` to ``images``; differentiable with respect to ``images``.

        Shape: ``images [N, C, H, W]`` -> ``[N, C, H, W]``; ``N``, ``H``, ``W`` must match
        ``params.batch_shape``. Float parameters are cast to ``images.dtype`` and moved to its device.
        """
        if images.ndim != 4:
            raise ValueError(f"DSA expects images of shape [N, C, H, W], got {tuple(images.shape)}")
        n, _, h, w = images.shape
        pn, _, ph, pw = params.batch_shape
        if (n, h, w) != (pn, ph, pw):
            raise ValueError(
                f"DSA params were sampled for N, H, W = {(pn, ph, pw)}, got images of shape {tuple(images.shape)}"
            )
        return apply_family(images, params.to(images.device))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, DSAParams]:
        """Sample parameters for ``images [N, C, H, W]`` from ``generator`` and apply them.

        Returns ``(augmented [N, C, H, W], params)``; ``params`` replays the same transform on another batch.
        """
        params = self.sample(images.shape, generator, device=images.device)
        return self.apply(images, params), params


def apply_family(images: torch.Tensor, params: DSAParams) -> torch.Tensor:
    """The pure-tensor half of :meth:`DSA.apply` (no shape checks, params already on the device)."""
    family = params.family
    if family == "color":
        return _color(images, params.brightness, params.saturation, params.contrast)
    if family == "crop":
        return _translate(images, params.shift)
    if family == "cutout":
        return _cutout(images, params.cutout_box)
    if family == "flip":
        return _flip(images, params.flip)
    if family == "scale":
        return _scale(images, params.scale)
    if family == "rotate":
        return _rotate(images, params.angle)
    parse_strategy(family)  # raises with the valid names
    raise AssertionError(family)


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, 1, 1, 1)


def _color(
    images: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor
) -> torch.Tensor:
    x = images + _per_image(brightness, images)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _per_image(saturation, images) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_image(contrast, images) + mean


def _translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``out[n, :, i, j] = images[n, :, i - dy_n, j - dx_n]``, zero outside; exact (a gather, no resampling)."""
    n, c, h, w = images.shape
    shift = shift.to(device=images.device, dtype=torch.long)
    pad_x, pad_y = int(shift[:, 0].abs().max()) if n else 0, int(shift[:, 1].abs().max()) if n else 0
    padded = torch.nn.functional.pad(images, (pad_x, pad_x, pad_y, pad_y))
    rows = torch.arange(h, device=images.device)[None, :] - shift[:, 1:2] + pad_y  # [N, H]
    cols = torch.arange(w, device=images.device)[None, :] - shift[:, 0:1] + pad_x  # [N, W]
    picked_rows = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return picked_rows.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _cutout(images: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    _, _, h, w = images.shape
    box = box.to(images.device)
    xs = torch.arange(w, device=images.device)[None, :]
    ys = torch.arange(h, device=images.device)[None, :]
    in_x = (xs >= box[:, 0:1]) & (xs < box[:, 2:3])  # [N, W]
    in_y = (ys >= box[:, 1:2]) & (ys < box[:, 3:4])  # [N, H]
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # [N, H, W]
    return images * keep[:, None].to(images.dtype)


def _flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.transform import hflip

    return torch.where(flip.to(images.device).view(-1, 1, 1, 1), hflip(images), images)


def _centre(images: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    return torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=images.dtype, device=images.device).expand(n, 2)


def _warp(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.transform import warp_affine

    _, _, h, w = images.shape
    return warp_affine(images, matrix, (h, w), mode="bilinear", padding_mode="zeros", align_corners=True)


def _scale(images: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.transform import get_rotation_matrix2d

    scale = scale.to(images.dtype)
    angle = torch.zeros(images.shape[0], dtype=images.dtype, device=images.device)
    # kornia's matrix maps source to destination pixels: content scaled by 1/s about the centre.
    return _warp(images, get_rotation_matrix2d(_centre(images), angle, 1.0 / scale))


def _rotate(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.transform import get_rotation_matrix2d

    angle = angle.to(images.dtype)
    ones = torch.ones(images.shape[0], 2, dtype=images.dtype, device=images.device)
    return _warp(images, get_rotation_matrix2d(_centre(images), angle, ones))


class DSAugment(nn.Module):
    """``DSA`` as an ``augment`` module for training loops: every call samples fresh parameters.

    The last parameters are kept in :attr:`last_params` so a caller can replay them on another batch.

    Shape: ``[N, C, H, W]`` -> ``[N, C, H, W]``.

    >>> augment = DSAugment(DSA("flip"), torch.Generator().manual_seed(0))
    >>> augment(torch.ones(2, 1, 4, 4)).shape
    torch.Size([2, 1, 4, 4])
    """

    def __init__(self, dsa: DSA, generator: torch.Generator) -> None:
        super().__init__()
        self.dsa = dsa
        self.generator = generator
        self.last_params: DSAParams | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        augmented, self.last_params = self.dsa(images, self.generator)
        return augmented

    def extra_repr(self) -> str:
        return f"strategy={self.dsa.strategy!r}"
