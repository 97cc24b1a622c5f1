"""Projected peak memory of one trajectory-matching step in each unroll, and the choice of ``tm.unroll``.

**How the projection is made.** One outer step (:func:`ddcore.tm.matching.matching_backward`: the
unroll, the loss, the backward) is *run* on PyTorch's ``meta`` device with the run's network, image
size, number of images and minibatch size: every operation computes shapes only, so the cost does not
depend on the image size or the number of images (the three simulations of a plan take one to a few
seconds of Python, once per configuration and process) and no memory is used. A dispatch mode
(:class:`ddcore.memtrace.LiveTensorBytes`) follows every tensor storage the step creates and when it is freed, and
reports the peak of live bytes: the same figure the real step reaches on a device with an exact
allocator (checked against the real CPU step in ``tests/test_tm_memory.py``). It is done at
small values of ``syn_steps`` and extended linearly (both unrolls are exactly linear in ``syn_steps``:
the full one keeps one more step's graph per step, the constant one one more parameter vector).

What it leaves out: the augmentation (DSA keeps a few copies of the minibatch and a sampling grid per
step: ConvNet-D5 width 128 at 128 px measures 48.4 MiB per image per inner step with DSA against the
projected 46.0 MiB, ``bench/tm_scale.py`` (b)), the allocator's own overhead and fragmentation (both
covered by :data:`OVERHEAD`), and whatever else the process holds (the CUDA context, the data set, the
evaluator; :data:`COMFORT` and :data:`FIT` leave room for them).

**The choice** (:func:`plan_unroll`): with ``need = OVERHEAD x (projected step peak + resident state)``
and the device ``budget`` (a CUDA device's total memory; on the CPU the available RAM divided by the
processes on this host), ``auto`` takes the full unroll when ``need_full <= COMFORT x budget`` and the
constant one when ``need_constant <= FIT x budget``; an explicit ``full`` or ``constant`` must satisfy
``need <= FIT x budget``. Anything else is refused before any work with a one-line
:class:`~ddcore.ConfigError` naming the settings to lower.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from ddcore.errors import ConfigError
from ddcore.memtrace import LiveTensorBytes, peak_live_bytes  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from ddcore.context import RunContext
    from ddcore.models import ModelSpec
    from ddcore.tm.config import TMConfig

MiB = 2**20
GiB = 2**30
#: Factor on the projected tensor bytes for the augmentation (about +5%), allocator overhead and
#: fragmentation (peak RSS was 1.1x the live tensor peak in bench/tm_bench.py).
OVERHEAD = 1.2
#: ``auto`` keeps the (faster) full unroll only while it needs at most this share of the budget.
COMFORT = 0.5
#: Any mode must fit in this share of the budget (the rest: CUDA context, data, evaluation, the CAM model).
FIT = 0.9
#: ``syn_steps`` at which the full unroll is simulated; the projection is the line through the two.
_FULL_PROBES = (1, 2)
#: ``syn_steps`` at which the constant unroll is simulated. From 2 steps on its peak grows by exactly one
#: float32 vector ``theta_k [P]`` per step (``tests/test_tm_memory.py`` checks it against the real step),
#: so one simulation and that slope make the line (at 1 step the peak falls in another phase).
_CONSTANT_PROBE = 2


@dataclass(frozen=True)
class StepCosts:
    """Projected peak live tensor bytes of one outer step, ``base + per_step * syn_steps`` for each unroll.

    Attributes:
        full_base, full_per_step: the full unroll (bytes, bytes per inner step).
        constant_base, constant_per_step: the constant-memory unroll.
        batch: images per inner step the figures are for.
        params: ``P``, the network's parameter count.
        resident: bytes held across steps whatever the unroll: images, their gradient and momentum,
            learnable labels likewise, the network and one expert trajectory on the device
            (``MemoryPlan.resident_bytes``).
    """

    full_base: int
    full_per_step: int
    constant_base: int
    constant_per_step: int
    batch: int
    params: int
    resident: int

    def peak(self, mode: str, syn_steps: int) -> int:
        """Projected bytes for ``mode`` (``"full"`` or ``"constant"``) at ``syn_steps``, resident state included."""
        if mode == "full":
            return self.resident + self.full_base + self.full_per_step * syn_steps
        if mode == "constant":
            return self.resident + self.constant_base + self.constant_per_step * syn_steps
        raise ValueError(f"unknown unroll mode {mode!r}")

    @property
    def per_image_step(self) -> float:
        """Full unroll: bytes per image per inner step (the graph one more step keeps, per image)."""
        return self.full_per_step / self.batch


def _simulate(model: torch.nn.Module, shapes, num_images: int, batch: int, soft: bool, learn_labels: bool,
              channels: int, size: int, num_classes: int, syn_steps: int, mode: str) -> int:  # fmt: skip
    from ddcore.tm.matching import matching_backward

    meta = torch.device("meta")
    params = sum(math.prod(shape) for _, shape in shapes)
    images = torch.empty(num_images, channels, size, size, device=meta, requires_grad=True)
    if soft:
        labels = torch.empty(num_images, num_classes, device=meta).requires_grad_(learn_labels)
    else:
        labels = torch.empty(num_images, dtype=torch.long, device=meta)
    syn_lr = torch.empty((), device=meta, requires_grad=True)
    trajectory = torch.empty(3, params, device=meta)
    chunks = [torch.arange(batch)] * syn_steps

    def step() -> None:
        matching_backward(model, shapes, trajectory, 0, 2, images, labels, syn_lr, chunks, lambda l, d: None, None, mode)

    return peak_live_bytes(step)


@functools.lru_cache(maxsize=64)
def step_costs(
    model_spec: "ModelSpec",
    num_classes: int,
    channels: int,
    image_size: int,
    num_images: int,
    batch: int,
    soft: bool = False,
    learn_labels: bool = False,
    expert_snapshots: int = 3,
) -> StepCosts:
    """Project one outer step of both unrolls by simulating it on the ``meta`` device (module docstring).

    Args:
        model_spec: the student network; ``num_classes``, ``channels``, ``image_size`` (px) its shape.
        num_images: ``M``, synthetic images; ``batch``: images per inner step (``min(batch_syn, M)``).
        soft, learn_labels: soft labels ``[M, K]`` (learnt or not), else hard ``[M]``.
        expert_snapshots: snapshots of one expert trajectory (``epochs + 1``), moved to the device each step.

    Float32 throughout (the matcher's dtype). Cached per argument tuple (a configuration costs one to a
    few seconds once). Raises :class:`~ddcore.ConfigError` when the network cannot take the image size.
    """
    from ddcore.models import build_model
    from ddcore.tm.flatparams import param_shapes_of

    if not 1 <= batch <= num_images:
        raise ValueError(f"batch must lie in [1, {num_images}], got {batch}")
    with torch.device("meta"):
        model = build_model(model_spec, num_classes, channels, image_size)
    shapes = param_shapes_of(model)
    params = sum(math.prod(shape) for _, shape in shapes)
    fits = {}

    def simulate(syn_steps: int, mode: str) -> int:
        return _simulate(model, shapes, num_images, batch, soft, learn_labels, channels, image_size, num_classes,
                         syn_steps, mode)  # fmt: skip

    first, second = _FULL_PROBES
    low, high = simulate(first, "full"), simulate(second, "full")
    per_step = (high - low) // (second - first)
    fits["full"] = (low - per_step * first, per_step)
    per_step = 4 * params
    fits["constant"] = (simulate(_CONSTANT_PROBE, "constant") - per_step * _CONSTANT_PROBE, per_step)
    image_bytes = num_images * channels * image_size * image_size * 4
    label_bytes = num_images * num_classes * 4 if soft else num_images * 8
    resident = 3 * image_bytes + (3 if learn_labels else 1) * label_bytes + (1 + expert_snapshots) * params * 4
    return StepCosts(fits["full"][0], fits["full"][1], fits["constant"][0], fits["constant"][1], batch, params, resident)


@dataclass(frozen=True)
class MemoryPlan:
    """The unroll a run uses and why (recorded in the manifest as ``records.tm_memory``).

    Attributes:
        unroll: the chosen unroll, ``"full"`` or ``"constant"``.
        requested: ``tm.unroll`` as configured (``"auto"``, ``"full"``, ``"constant"``).
        full_bytes, constant_bytes: projected peak of one outer step per process (tensor bytes,
            resident state included, before :data:`OVERHEAD`).
        per_image_step_bytes: the full unroll's cost per image per inner step (bytes).
        budget_bytes: the memory one process may use (bytes); ``budget_source`` says where it came from.
        syn_steps, batch, image_size, num_images: the settings the projection is for.
        resident_bytes: the part of both projections held across steps (images, network, trajectory).
    """

    unroll: str
    requested: str
    full_bytes: int
    constant_bytes: int
    per_image_step_bytes: float
    budget_bytes: int
    budget_source: str
    syn_steps: int
    batch: int
    image_size: int
    num_images: int
    resident_bytes: int = 0

    @property
    def chosen_bytes(self) -> int:
        """Projected peak of the chosen unroll (bytes)."""
        return self.full_bytes if self.unroll == "full" else self.constant_bytes

    def fits(self, mode: str) -> bool:
        """Whether ``mode`` fits the budget at all (``OVERHEAD x projected <= FIT x budget``)."""
        return OVERHEAD * (self.full_bytes if mode == "full" else self.constant_bytes) <= FIT * self.budget_bytes

    def to_record(self) -> dict:
        record = asdict(self)
        record.update(
            full_gib=round(self.full_bytes / GiB, 3), constant_gib=round(self.constant_bytes / GiB, 3),
            per_image_step_mib=round(self.per_image_step_bytes / MiB, 3), budget_gib=round(self.budget_bytes / GiB, 3),
            overhead=OVERHEAD, comfort=COMFORT, fit=FIT,
        )  # fmt: skip
        return record


def device_budget(device: torch.device, num_processes: int = 1) -> tuple[int, str]:
    """``(bytes one process may use, where the figure comes from)``.

    A CUDA device: its total memory (each process has its own device). Otherwise: the host's available
    RAM (``psutil``) divided by ``num_processes`` (the processes share the host).
    """
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory), f"total memory of {device}"
    import psutil

    available = int(psutil.virtual_memory().available)
    share = f" / {num_processes} processes" if num_processes > 1 else ""
    return available // max(1, num_processes), f"available RAM{share}"


def _gib(nbytes: float) -> str:
    return f"{nbytes / GiB:.1f} GiB" if nbytes >= GiB / 10 else f"{nbytes / MiB:.0f} MiB"


def plan_unroll(
    requested: str,
    costs: StepCosts,
    syn_steps: int,
    budget: int,
    budget_source: str = "budget",
    *,
    image_size: int = 0,
    num_images: int = 0,
    batch_setting: int | None = None,
) -> MemoryPlan:
    """Choose the unroll for ``requested`` (``auto``/``full``/``constant``) under ``budget`` bytes (module docstring).

    ``batch_setting`` is ``tm.batch_syn`` as configured, for the message (``costs.batch`` when ``None``).

    Raises:
        ConfigError: one line, when the requested unroll (for ``auto``: either) does not fit, naming the
            settings to lower with their current values.
    """
    full, constant = costs.peak("full", syn_steps), costs.peak("constant", syn_steps)

    def plan(mode: str) -> MemoryPlan:
        return MemoryPlan(mode, requested, full, constant, costs.per_image_step, budget, budget_source,
                          syn_steps, costs.batch, image_size, num_images, costs.resident)  # fmt: skip

    def need(nbytes: int) -> float:
        return OVERHEAD * nbytes

    if requested == "auto" and need(full) <= COMFORT * budget:
        return plan("full")
    if requested in ("auto", "constant") and need(constant) <= FIT * budget:
        return plan("constant")
    if requested == "full" and need(full) <= FIT * budget:
        return plan("full")
    batch = costs.batch if batch_setting is None else batch_setting
    size = f"--image-size (now {image_size})" if image_size else "--image-size"
    available = f"{_gib(FIT * budget)} usable ({int(FIT * 100)}% of {_gib(budget)}, {budget_source})"
    if requested == "full" and need(constant) <= FIT * budget:
        raise ConfigError(
            f"tm.unroll = 'full' needs about {_gib(need(full))} per process for one matching step but {available} "
            f"allow less; set tm.unroll = 'constant' (about {_gib(need(constant))}, same gradients) or 'auto', "
            f"or lower tm.syn_steps (now {syn_steps}), tm.batch_syn (now {batch}) or {size}"
        )
    raise ConfigError(
        f"trajectory matching needs about {_gib(need(constant))} per process for one matching step even with "
        f"tm.unroll = 'constant' (full unroll: {_gib(need(full))}) but {available} allow less; lower tm.batch_syn "
        f"(now {batch}: images per inner step, the main cost) or {size}, or tm.syn_steps (now {syn_steps}) "
        "for the full unroll"
    )


def plan_for_run(
    ctx: "RunContext",
    options: "TMConfig",
    expert_epochs: int,
    *,
    model_spec: "ModelSpec | None" = None,
    num_images: int | None = None,
    soft: bool | None = None,
) -> MemoryPlan:
    """The :class:`MemoryPlan` of a run: its network (``ctx.model_spec``), data set shape, number of
    synthetic images (``ipc x classes``), ``[tm]`` table and device (``ctx.device``, ``ctx.num_processes``).

    ``expert_epochs``: epochs per expert trajectory. ``model_spec``, ``num_images`` and ``soft`` (soft
    labels) override what the run's config implies (the matcher knows its initial set).
    Raises :class:`~ddcore.ConfigError` (one line) when it does not fit (:func:`plan_unroll`).
    """
    channels, size, _ = ctx.dataset.image_shape
    num_classes = ctx.dataset.num_classes
    if num_images is None:
        num_images = ctx.config.ipc * num_classes
    if soft is None:
        soft = options.init == "correct" or options.learn_labels  # soft labels: logits [M, K]
    batch = min(options.batch_syn or num_images, num_images)
    costs = step_costs(model_spec or ctx.model_spec, num_classes, channels, size, num_images, batch,
                       soft, soft and options.learn_labels, expert_epochs + 1)  # fmt: skip
    budget, source = device_budget(ctx.device, ctx.num_processes)
    return plan_unroll(options.unroll, costs, options.syn_steps, budget, source,
                       image_size=size, num_images=num_images, batch_setting=options.batch_syn or num_images)  # fmt: skip


def projected_step_bytes(ctx: "RunContext") -> int | None:
    """The extra memory one matching step of this run needs at least (bytes): the smaller of the two
    unrolls' projected peaks, without the state held across steps (images, network, trajectory).

    From the manifest's ``records.tm_memory`` when the distiller's check made the plan, else projected
    now from ``ctx.config.distill_options`` (no device budget involved). ``None`` when the run does not
    match trajectories. It depends on the run's settings only, never on the device, so a bound derived
    from it is the same on every machine (EDF bounds its CAM chunks by it).
    """
    from ddcore.tm.config import TMConfig

    record = ctx.records.get("tm_memory")
    if isinstance(record, dict):
        return int(min(record["full_bytes"], record["constant_bytes"]) - record["resident_bytes"])
    options = getattr(ctx.config, "distill_options", None)
    if not isinstance(options, TMConfig) or ctx.dataset is None or ctx.model_spec is None:
        return None
    channels, size, _ = ctx.dataset.image_shape
    num_images = ctx.config.ipc * ctx.dataset.num_classes
    batch = min(options.batch_syn or num_images, num_images)
    soft = options.init == "correct" or options.learn_labels
    costs = step_costs(ctx.model_spec, ctx.dataset.num_classes, channels, size, num_images, batch, soft,
                       soft and options.learn_labels)  # fmt: skip
    return min(costs.peak("full", options.syn_steps), costs.peak("constant", options.syn_steps)) - costs.resident
