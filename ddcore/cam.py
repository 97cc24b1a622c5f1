"""Class activation maps (Grad-CAM and Smooth Grad-CAM++) for a batch, each image with its own target class.

Shared by plugins that need to know where a classifier looks: EDF weights the synthetic images'
gradient with them, Comp-DD measures image complexity with them. Everything is batched: one forward
and one backward per chunk of images (all noisy copies included), never a loop over images or classes.

For a layer with activations ``A [N, K, h, w]`` and the gradient ``g = dS/dA`` of each image's target
score ``S`` (the pre-softmax logit of its target class):

- **Grad-CAM** (Selvaraju et al. 2017): ``w_k = mean_ij g_kij``; ``cam = ReLU(sum_k w_k A_k)``.
- **Smooth Grad-CAM++** (Omeiza et al. 2019): Grad-CAM++'s pixel weights with the gradient powers
  averaged over ``samples`` noisy copies ``x + noise * eps`` of each image (``eps ~ N(0, 1)``):
  ``D_p = mean over copies of g^p`` (p = 1, 2, 3),
  ``alpha_kij = D_2 / (2 D_2 + sum_ab A_kab * D_3)`` (0 where ``D_2 = 0``),
  ``w_k = sum_ij alpha_kij * ReLU(D_1)``, ``cam = ReLU(sum_k w_k A_k)``, with ``A`` from the clean
  image. With ``noise = 0`` this is exactly Grad-CAM++ (Chattopadhyay et al. 2018).

Each map is then upsampled bilinearly to the image size and min-max normalised per image to
``[0, 1]`` (min 0, max 1; a constant map becomes all zeros).

Two variants of each method (``variant``):

- ``"paper"`` (default): the formulas above; Smooth Grad-CAM++'s noise is added to the images given.
- ``"torchcam"``: the order of operations of torchcam 0.5.0 (``torchcam.methods.GradCAM`` /
  ``SmoothGradCAMpp``), the library the EDF release used. For both methods the map is min-max normalised
  at layer resolution (``(cam - min) / (max + 1e-8)``, after the ReLU) and only then upsampled bilinearly
  (so the upsampled map's extremes are not exactly 0 and 1). For Smooth Grad-CAM++ also:
  ``alpha = D_2 / (2 D_2 + sum_ab(D_3 * A_clean) + 1e-8)`` (the sum runs over the product, position by
  position; no mask where ``D_2 = 0``), ``w_k = sum_ij alpha * ReLU(g_last)`` with ``g_last`` the
  **last** noisy copy's gradient, and ``cam = ReLU(sum_k w_k A_last)`` with ``A_last`` the **last**
  noisy copy's activations (torchcam's activation hook keeps the latest forward pass). The noise is
  ``N(0, noise^2)`` added at the input of ``noise_module`` (torchcam adds it to the input of the model
  it wraps). Tested against torchcam with the same noise draws (plugins/edf/tests/test_cam_torchcam.py).

Layers are named as in ``model.named_modules()`` (``"layer4"``, ``"features.2.2"``);
:func:`resolve_layer` picks a default when no name is given.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.context import derive_seed
from ddcore.errors import PluginError

CamMethod = Literal["gradcam", "smooth_gradcampp"]
CAM_METHODS: tuple[str, ...] = ("gradcam", "smooth_gradcampp")
CamVariant = Literal["paper", "torchcam"]
CAM_VARIANTS: tuple[str, ...] = ("paper", "torchcam")

#: Guards the Grad-CAM++ denominator against underflow (as the method's reference implementations do).
EPS = 1e-8


def default_layer_name(model: nn.Module) -> str:
    """The layer whose maps are used when none is named.

    - torchvision ResNets (and anything with a ``layer4`` block): ``"layer4"``;
    - ddcore's ConvNet: the last block's activation, after its norm and ReLU and before its pooling
      (``"features.2.2"`` for depth 3: an 8x8 map at 32 px);
    - otherwise: the last ``nn.Conv2d`` in module order.

    >>> from ddcore.models import ConvNet
    >>> default_layer_name(ConvNet(10, in_channels=1, image_size=32, width=8, depth=3))
    'features.2.2'
    """
    from ddcore.models.convnet import ConvNet

    if isinstance(getattr(model, "layer4", None), nn.Module):
        return "layer4"
    if isinstance(model, ConvNet):
        return f"features.{len(model.features) - 1}.2"
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise PluginError(f"{type(model).__name__} has no Conv2d layer to compute class activation maps at")
    return convs[-1]


def resolve_layer(model: nn.Module, name: str | None, *, option: str = "the layer name") -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()``; ``None`` gives :func:`default_layer_name`.

    An unknown name is a :class:`~ddcore.PluginError` that lists the available names and mentions
    ``option`` (the config key that set it, e.g. ``"plugin.edf.cam_layer"``).
    """
    if name is None or name == "":
        name = default_layer_name(model)
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        available = ", ".join(n for n in modules if n)
        raise PluginError(f"{type(model).__name__} has no layer {name!r} ({option}); available: {available}")
    return modules[name]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode (batch norm must not mix images), then restore each one's flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _layer_activations(
    model: nn.Module, layer: nn.Module, images: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: ``(logits [B, classes], activations of layer [B, K, h, w])``, graph kept.

    The layer's output is captured and a copy is passed on, so in-place operations after the layer
    (``ReLU(inplace=True)``) never change the captured tensor. ``forward`` replaces ``model(images)``
    (:func:`cam_chunk_size` runs the model with ``meta`` parameters).
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise PluginError(f"the CAM layer {type(layer).__name__} returns {type(output).__name__}, not a tensor")
        captured.append(output)
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(images) if forward is None else forward(images)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise PluginError(
            f"the CAM layer ({type(layer).__name__}) ran {len(captured)} times in one forward pass; "
            "choose a layer that runs once (e.g. its parent block)"
        )
    activations = captured[0]
    if activations.ndim != 4:
        raise PluginError(
            f"the CAM layer ({type(layer).__name__}) produces a tensor of shape {list(activations.shape)}, "
            "not a feature map [N, K, h, w]; choose a convolutional layer"
        )
    if logits.ndim != 2:
        raise PluginError(f"the CAM model returns shape {list(logits.shape)}, expected logits [N, classes]")
    return logits, activations


def gradcam_maps(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Plain Grad-CAM at layer resolution: ``ReLU(sum_k mean_ij(g_k) * A_k)``.

    Shape: ``activations, gradients [N, K, h, w]`` -> ``[N, h, w]`` (not normalised).

    >>> a = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])       # [1, 2, 1, 2]: two channels
    >>> g = torch.tensor([[[[1.0, 1.0]], [[-1.0, -1.0]]]])     # channel 0 helps, channel 1 hurts
    >>> gradcam_maps(a, g)
    tensor([[[1., 0.]]])
    """
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return torch.relu((weights * activations).sum(dim=1))


def gradcampp_maps(activations: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ at layer resolution from (averaged) first, second and third gradient powers.

    ``alpha = d2 / (2 d2 + sum_ab(A) * d3)`` (0 where ``d2 = 0``), ``w_k = sum_ij alpha * ReLU(d1)``,
    result ``ReLU(sum_k w_k A_k)``. With ``d_p = g^p`` of one image this is Grad-CAM++; with ``d_p``
    averaged over noisy copies it is Smooth Grad-CAM++.

    Shape: ``activations, d1, d2, d3 [N, K, h, w]`` -> ``[N, h, w]`` (not normalised).

    >>> a = torch.tensor([[[[1.0, 1.0]]]])                       # one channel, two positions
    >>> g = torch.tensor([[[[1.0, 0.0]]]])
    >>> gradcampp_maps(a, g, g**2, g**3)  # alpha = 1 / (2 + 2) at the first position: w = 0.25
    tensor([[[0.2500, 0.2500]]])
    """
    total = activations.sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    denominator = 2 * d2 + total * d3
    alpha = torch.where(d2 > 0, d2 / (denominator + EPS), torch.zeros_like(d2))
    weights = (alpha * torch.relu(d1)).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return torch.relu((weights * activations).sum(dim=1))


def gradcampp_maps_torchcam(
    clean: torch.Tensor, last: torch.Tensor, g_last: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor
) -> torch.Tensor:
    """Smooth Grad-CAM++ at layer resolution in torchcam 0.5.0's order of operations (not normalised).

    ``alpha = d2 / (2 d2 + sum_ab(d3 * clean) + EPS)``, ``w_k = sum_ij alpha * ReLU(g_last)``,
    result ``ReLU(nansum_k w_k last_k)``: ``clean`` are the activations of the clean images, ``last`` and
    ``g_last`` the activations and gradient of the last noisy copy, ``d2``/``d3`` the mean second/third
    gradient powers over the copies.

    Shape: every argument ``[N, K, h, w]`` -> ``[N, h, w]``.

    >>> a = torch.tensor([[[[1.0, 1.0]]]])                       # one channel, two positions
    >>> g = torch.tensor([[[[1.0, 0.0]]]])
    >>> gradcampp_maps_torchcam(a, a, g, g**2, g**3)  # alpha = 1 / (2 + 1*1 + 0*1) at the first position
    tensor([[[0.3333, 0.3333]]])
    """
    total = (d3 * clean).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    alpha = d2 / (2 * d2 + total + EPS)
    weights = (alpha * torch.relu(g_last)).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return torch.relu(torch.nansum(weights * last, dim=1))


def normalize_low_res(maps: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """torchcam's per-map normalisation at layer resolution: ``(m - min) / (max(m - min) + eps)``.

    A constant map becomes all zeros (no NaN). Shape: ``[N, h, w]`` -> ``[N, h, w]`` float32.

    >>> normalize_low_res(torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]]))
    tensor([[[0., 1.]],
    <BLANKLINE>
            [[0., 0.]]])
    """
    maps = maps.float()
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / (maps.amax(dim=(1, 2), keepdim=True) + eps)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``) of ``maps [N, h, w]`` to ``[N, *size]``, nothing else."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def normalize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample ``maps`` bilinearly to ``size`` and min-max normalise each to ``[0, 1]``.

    A constant map (e.g. all zeros: nothing speaks for the target class) becomes all zeros.

    Shape: ``maps [N, h, w]`` -> ``[N, *size]`` float32.

    >>> normalize_maps(torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]]), (1, 2))
    tensor([[[0., 1.]],
    <BLANKLINE>
            [[0., 0.]]])
    """
    maps = maps.float()
    if tuple(maps.shape[1:]) != tuple(size):
        maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def _target_gradients(logits: torch.Tensor, activations: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``d(sum_i logits[i, targets[i]]) / d activations``: each image's gradient of its own target score.

    Images never interact in eval mode, so one backward of the summed scores gives every image's
    gradient at once. Shape: ``logits [B, classes]``, ``activations [B, K, h, w]``, ``targets [B]`` ->
    ``[B, K, h, w]``. Targets outside the label space are a :class:`~ddcore.PluginError` (not checked on
    the ``meta`` device, which has no values).
    """
    if logits.device.type != "meta" and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise PluginError(
            f"CAM targets must lie in [0, {logits.shape[1]}) for a model with {logits.shape[1]} classes, "
            f"got {int(targets.min())}..{int(targets.max())}"
        )
    scores = logits.gather(1, targets.view(-1, 1)).sum()
    (gradients,) = torch.autograd.grad(scores, activations)
    return gradients


@dataclass(frozen=True)
class NoiseSource:
    """Smooth Grad-CAM++'s noise for one chunk of ``B`` images: ``samples`` copies, and ``draw(shape)`` giving
    the scaled noise ``[samples, B, *shape]`` for inputs of per-image shape ``shape`` (the images' own, or
    the input of the module the noise is added at)."""

    samples: int
    draw: Callable[[tuple[int, ...]], torch.Tensor]

    @classmethod
    def of(cls, noise: "torch.Tensor | NoiseSource") -> "NoiseSource":
        """``noise`` as it is, or a fixed tensor ``[S, B, C, H, W]`` (already scaled) wrapped."""
        if isinstance(noise, NoiseSource):
            return noise
        return cls(noise.shape[0], lambda _shape: noise)


@contextmanager
def _noise_at(module: nn.Module, noise: NoiseSource, batch: int) -> Iterator[None]:
    """Add ``noise`` to rows ``batch:`` of ``module``'s input (rows ``:batch`` are the clean images) during
    one forward pass; the module must run exactly once."""
    calls: list[int] = []

    def hook(_module: nn.Module, args: tuple) -> tuple:
        calls.append(1)
        inputs = args[0]
        draws = noise.draw(tuple(inputs.shape[1:])).to(device=inputs.device, dtype=inputs.dtype)
        noisy = inputs[batch:] + draws.flatten(0, 1)
        return (torch.cat([inputs[:batch], noisy]), *args[1:])

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
    if len(calls) != 1:
        raise PluginError(f"the module the CAM noise is added at ({type(module).__name__}) ran {len(calls)} times in one pass")


def _chunk_maps(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    method: CamMethod,
    noise: "torch.Tensor | NoiseSource | None",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    variant: CamVariant = "paper",
    noise_module: nn.Module | None = None,
) -> torch.Tensor:
    """Layer-resolution maps ``[B, h, w]`` for one chunk, not normalised. Smooth Grad-CAM++ takes ``noise``:
    a tensor ``[S, B, C, H, W]`` (already scaled) added to the images, or a :class:`NoiseSource`, added at
    the input of ``noise_module`` when one is given."""
    x = images.detach().requires_grad_(True)  # so the layer's output has a graph even with frozen weights
    if method == "gradcam":  # both variants weigh the same way; they differ in normalisation (grad_cam)
        if x.shape[0] == 1:  # never a one-row pass (grad_cam: batch-size independence)
            x, targets = x.expand(2, *x.shape[1:]), targets.expand(2)
        logits, activations = _layer_activations(model, layer, x, forward)
        maps = gradcam_maps(activations.detach(), _target_gradients(logits, activations, targets))
        return maps[: images.shape[0]]
    assert noise is not None
    source = NoiseSource.of(noise)
    samples, batch = source.samples, images.shape[0]
    # One pass over the clean images and every noisy copy: [(S+1)*B, C, H, W], copy-major.
    if noise_module is None:
        draws = source.draw(tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)
        stacked = torch.cat([x.unsqueeze(0), x.unsqueeze(0) + draws]).flatten(0, 1)
        logits, activations = _layer_activations(model, layer, stacked, forward)
    else:
        stacked = x.unsqueeze(0).expand(samples + 1, *x.shape).flatten(0, 1)
        with _noise_at(noise_module, source, batch):
            logits, activations = _layer_activations(model, layer, stacked, forward)
    noisy = slice(batch, None)
    gradients = _target_gradients(logits[noisy], activations, targets.repeat(samples))[noisy]
    gradients = gradients.unflatten(0, (samples, batch))  # [S, B, K, h, w]
    clean = activations[:batch].detach()
    if variant == "torchcam":
        last = activations[samples * batch :].detach()  # the last noisy copy's activations
        return gradcampp_maps_torchcam(clean, last, gradients[-1], gradients.pow(2).mean(0), gradients.pow(3).mean(0))
    return gradcampp_maps(clean, gradients.mean(0), gradients.pow(2).mean(0), gradients.pow(3).mean(0))


def grad_cam(
    model: nn.Module,
    layer: nn.Module | str | None,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    method: CamMethod = "gradcam",
    samples: int = 4,
    noise: float = 0.3,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    seeds: Sequence[int] | torch.Tensor | None = None,
    variant: CamVariant = "paper",
    noise_module: nn.Module | None = None,
    noise_draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class activation maps of ``images`` for their ``targets`` at ``layer``, normalised per image.

    Args:
        model: a classifier returning logits ``[N, classes]``. It runs in eval mode (each module's
            mode is restored afterwards); its parameters and ``.grad`` are not touched.
        layer: the module (or its name in ``model.named_modules()``, or ``None`` for
            :func:`default_layer_name`) whose output ``[N, K, h, w]`` the maps are computed at.
        images: ``[N, C, H, W]`` float, normalised as the model expects, on the model's device.
        targets: ``[N]`` int64, the class of each image in the model's label space.
        method: ``"gradcam"`` (one forward and backward) or ``"smooth_gradcampp"`` (``samples`` noisy
            copies; the variant EDF's authors used).
        samples: noisy copies per image (Smooth Grad-CAM++ only), at least 1.
        noise: the noise's standard deviation in the images' (normalised) units (Smooth Grad-CAM++).
        generator: used only without ``seeds``: one draw from it gives the base seed, and image ``i`` of
            this call gets the seed ``derive_seed(base, i)``; default a fresh generator seeded with 0
            (never global state).
        batch_size: images per forward pass (``None``: all at once; :func:`cam_chunk_size` bounds it by
            memory). Smooth Grad-CAM++ puts ``(samples + 1) * batch_size`` images through the model at a time.
        seeds: ``[N]`` one seed per image (Smooth Grad-CAM++): image ``i``'s noise is
            :func:`item_noise` of ``seeds[i]``, drawn on the CPU chunk by chunk, so it depends neither on
            ``batch_size`` nor on which other images share the call (or the process).
        variant: ``"paper"`` (the formulas of the module docstring) or ``"torchcam"`` (torchcam 0.5.0's
            order of operations: normalise at layer resolution, then upsample; for Smooth Grad-CAM++ its
            alpha and its last-copy gradient and activations; see the module docstring).
        noise_module: a submodule of ``model`` (or ``model`` itself) at whose input Smooth Grad-CAM++'s
            noise is added, e.g. the classifier inside a :class:`ddcore.adapt.Adapted` wrapper, whose input
            is what torchcam adds its noise to; default ``None``: added to ``images``. It must run once per
            forward pass (a :class:`~ddcore.PluginError` otherwise).
        noise_draws: ``[samples, N, *shape]`` standard normal draws to use instead of ``seeds`` (scaled by
            ``noise``; ``shape`` is the per-image shape of the images or of ``noise_module``'s input), for
            comparing with a library that draws its own noise; ``samples`` is then its first dimension.

    The maps do not depend on ``batch_size``: each image's noise is its own, images never interact in
    eval mode, and a chunk of one image is padded to two rows (CPU convolutions take another kernel for
    a single row, whose rounding differs). Tested bit for bit on the CPU; on a GPU, kernels chosen by
    batch size can still differ in the last bits.

    Returns:
        ``[N, H, W]`` float32 on ``images.device``, detached. ``paper``: each map upsampled bilinearly
        to the image size and min-max normalised to ``[0, 1]`` (all zeros where the map is constant).
        ``torchcam``: each map normalised at layer resolution (:func:`normalize_low_res`), then upsampled
        bilinearly (values within ``[0, 1]``, the extremes not necessarily reached).
    """
    if method not in CAM_METHODS:
        raise PluginError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    if variant not in CAM_VARIANTS:
        raise PluginError(f"unknown CAM variant {variant!r}; choose one of {', '.join(CAM_VARIANTS)}")
    if images.ndim != 4:
        raise PluginError(f"grad_cam needs images [N, C, H, W], got shape {list(images.shape)}")
    if targets.shape != (images.shape[0],):
        raise PluginError(f"grad_cam needs one target per image: targets {list(targets.shape)} for {images.shape[0]} images")
    if method == "smooth_gradcampp" and (samples < 1 or noise < 0):
        raise PluginError(f"Smooth Grad-CAM++ needs samples >= 1 and noise >= 0, got {samples} and {noise}")
    if isinstance(layer, str) or layer is None:
        layer = resolve_layer(model, layer)
    targets = targets.to(device=images.device, dtype=torch.long)
    count = images.shape[0]
    if noise_draws is not None:
        if noise_draws.ndim < 2 or noise_draws.shape[1] != count:
            raise PluginError(f"grad_cam needs noise_draws [samples, {count}, ...], got shape {list(noise_draws.shape)}")
        samples = noise_draws.shape[0]
    elif method == "smooth_gradcampp":
        if seeds is None:
            if generator is None:
                generator = torch.Generator().manual_seed(0)
            base = int(torch.randint(0, 2**62, (1,), generator=generator))
            seeds = [derive_seed(base, i) for i in range(count)]
        seeds = [int(seed) for seed in seeds]
        if len(seeds) != count:
            raise PluginError(f"grad_cam needs one noise seed per image: {len(seeds)} seeds for {count} images")
    step = batch_size or count
    maps = []
    with torch.enable_grad(), _eval_mode(model):
        for begin in range(0, count, step):
            chunk = images[begin : begin + step]
            source = None
            if method == "smooth_gradcampp":  # [S, b, *shape]: each image's own draws
                source = _noise_source(seeds, noise_draws, begin, len(chunk), samples, noise, images.dtype)
            maps.append(_chunk_maps(model, layer, chunk, targets[begin : begin + step], method, source,
                                    variant=variant, noise_module=noise_module))  # fmt: skip
    size = tuple(images.shape[-2:])
    if variant == "torchcam":
        return resize_maps(normalize_low_res(torch.cat(maps).detach()), size)
    return normalize_maps(torch.cat(maps).detach(), size)


def _noise_source(
    seeds: Sequence[int] | None, draws: torch.Tensor | None, begin: int, count: int, samples: int, noise: float,
    dtype: torch.dtype,
) -> NoiseSource:
    """The scaled noise of images ``begin:begin+count``: slices of ``draws``, or each image's :func:`item_noise`."""
    if draws is not None:
        chunk = draws[:, begin : begin + count]
        return NoiseSource(samples, lambda _shape: chunk * noise)
    assert seeds is not None
    chosen = seeds[begin : begin + count]
    return NoiseSource(samples, lambda shape: item_noise(chosen, samples, shape, dtype) * noise)


def item_noise(seeds: Sequence[int], samples: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of each item from its own seed: item ``i`` is
    ``randn([samples, *shape], generator=Generator().manual_seed(seeds[i]))`` on the CPU.

    Shape: ``len(seeds)`` items -> ``[samples, len(seeds), *shape]``. An item's draws are the same in
    any batch, at any position.

    >>> a = item_noise([7, 8], 2, (3,)); b = item_noise([8], 2, (3,))
    >>> a.shape, torch.equal(a[:, 1], b[:, 0])
    (torch.Size([2, 2, 3]), True)
    """
    if not seeds:
        return torch.empty(samples, 0, *shape, dtype=dtype)
    draws = [torch.randn((samples, *shape), generator=torch.Generator().manual_seed(int(seed)), dtype=dtype) for seed in seeds]
    return torch.stack(draws, dim=1)


def cam_chunk_size(
    model: nn.Module,
    layer: nn.Module | str | None,
    image_shape: tuple[int, int, int],
    num_images: int,
    budget_bytes: int,
    *,
    method: CamMethod = "gradcam",
    samples: int = 4,
    variant: CamVariant = "paper",
    noise_module: nn.Module | None = None,
) -> int:
    """The largest chunk (``batch_size`` of :func:`grad_cam`) whose projected extra memory stays within
    ``budget_bytes``, between 1 and ``num_images``.

    The projection runs :func:`grad_cam`'s own per-chunk code for a chunk of 2 and of 3 images on the
    ``meta`` device (shapes only, no compute; the model's parameters and buffers are swapped for
    ``meta`` tensors through :func:`torch.func.functional_call`, the model itself is not touched) and
    counts the live tensor bytes (:class:`ddcore.memtrace.LiveTensorBytes`), the chunk's noisy copies
    included; the cost is linear in the chunk size.

    Args:
        model, layer, method, samples, variant, noise_module: as for :func:`grad_cam`.
        image_shape: ``(C, H, W)`` of the images.
        num_images: ``N``, the images of one refresh (the chunk never exceeds it).
        budget_bytes: the memory one chunk may take (bytes), e.g. one matching step's projected peak.
    """
    from torch.func import functional_call

    from ddcore.memtrace import peak_live_bytes

    if isinstance(layer, str) or layer is None:
        layer = resolve_layer(model, layer)
    meta = torch.device("meta")
    state = {name: torch.empty_like(t, device=meta).requires_grad_(t.requires_grad)
             for name, t in [*model.named_parameters(), *model.named_buffers()]}  # fmt: skip

    def forward(x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, state, (x,))

    def cost(batch: int) -> int:
        images = torch.empty(batch, *image_shape, device=meta)
        targets = torch.zeros(batch, dtype=torch.long, device=meta)

        def chunk() -> None:
            scaled = None
            if method == "smooth_gradcampp":
                scaled = NoiseSource(samples, lambda shape: torch.empty(samples, batch, *shape, device=meta))
            _chunk_maps(model, layer, images, targets, method, scaled, forward, variant=variant, noise_module=noise_module)

        with torch.enable_grad(), _eval_mode(model):
            return peak_live_bytes(chunk)

    # Two and three images: a one-image Grad-CAM chunk runs as two rows (see grad_cam), so cost(1) is not on the line.
    two, three = cost(2), cost(3)
    per_image = max(1, three - two)
    fits = (budget_bytes - (two - 2 * per_image)) // per_image
    return int(min(max(1, fits), max(1, num_images)))
