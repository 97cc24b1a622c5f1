"""Training K networks of one architecture together (``torch.func``): evaluation repeats, baselines, experts.

Dataset distillation trains many small networks on tiny sets (an evaluation is 5-100 trainings of a
ConvNet on 10-500 images); one such training leaves a GPU mostly idle (kernels too small). This module
trains K of them as one batched computation: the K networks' parameters are stacked
(:func:`torch.func.stack_module_state`), one forward/backward runs all of them
(:func:`torch.func.vmap` over :func:`torch.func.functional_call`), and one ``torch.optim`` optimiser
updates the stacked tensors.

**Same meaning as one by one.** Each network is a :class:`Member`: its own seed, its own ``batches`` (data
order, and its own training set when it has one, e.g. the random-real baseline's fresh subset) and its
recipe (:class:`~ddcore.training.TrainRecipe`: optimiser, schedule, weight decay, momentum, augmentation,
learned lr). Network ``k`` sees exactly the random draws it would see in
:func:`~ddcore.training.train_network` run under ``torch.random.fork_rng`` + ``torch.manual_seed(seed)``:
every network keeps its own copy of the global RNG state (CPU, and the CUDA device's), switched in for
its initialisation, its ``batches`` iterator and its augmentation (crop/flip draws, the DSA generator's
seed), so its initial weights, data order and augmentation draws are bit-identical to the sequential
path's, and the trained parameters agree to float tolerance (batched convolutions round differently).
Soft labels (2-D ``labels``) use :func:`~ddcore.training.soft_cross_entropy`, as in the sequential path.

**The optimiser.** SGD (momentum, weight decay), Adam and AdamW update every parameter element by
element, and the K networks take the same number of steps, so one optimiser over the stacked ``[K, ...]``
tensors is exactly K independent optimisers *when they share the lr*: members are grouped by recipe
(equal recipes, hence equal lr and schedule, share a group; a learned lr that differs makes its own group).

**What is not batched** (trained one by one with :func:`~ddcore.training.train_network`, same seeds,
same results): networks with buffers (BatchNorm running statistics do not vmap cleanly) or dropout
(:func:`unbatchable_reason`), ``mode="off"``, and ``mode="auto"`` on the CPU (a small ConvNet's step is
compute-bound there: batching saves dispatch overhead but measured no faster on the 2-core CPU; ``"on"``
batches there too). Members whose batches differ in shape at the same step
(training sets of different sizes) cannot share a group: :func:`train_ensemble` raises ``ValueError``.

**Memory guard.** :func:`plan_group_size` projects the bytes one network needs while training (parameters,
gradients, optimiser state, activations of one batch kept for backward) and fits as many as the device
has room for (CUDA: 80% of free memory; CPU: half the available memory); larger ensembles are trained in
groups one after the other. The plan (:class:`EnsemblePlan`) says what was done; record it.

**Other training loops.** A recipe :func:`train_ensemble` cannot express (knowledge distillation against a
teacher's logits: ``ddcore_diffsel.kd.train_students``) drives :class:`StackedNetworks` (the stacked
parameters and one vmapped forward) in its own loop, with :func:`plan_groups` as its memory guard.
:func:`shard_ensemble` deals repeats over the Accelerate processes (as
:func:`ddcore.evaluation.shard_repeats`) and hands each process its whole share, so the share can be
batched; ``on_group`` lets a caller save each group's results as soon as it is done (expert trajectories).

Example::

    members = [Member(seed=s, batches=tensor_batches(x, y, 256, torch.Generator().manual_seed(s)), recipe=recipe)
               for s in seeds]
    run = train_ensemble(lambda: build_model(spec, 10, 1, 32), members, device, (1, 32, 32))
    accuracies = ensemble_accuracy(run.models, test_loader, device)   # [K] floats in [0, 1]
    ctx.record("ensemble", run.plan.to_dict())
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.errors import ConfigError
from ddcore.training import (
    Batches,
    TrainingDiverged,
    TrainRecipe,
    lr_factor,
    make_optimizer,
    optimizer_step,
    accuracy_on,
    fork_devices,
    make_augment,
    soft_cross_entropy,
    train_network,
)

BatchedMode = Literal["auto", "on", "off"]
#: ``auto``: batch on a GPU where the network allows it and there are at least two networks, else the loop
#: (on the CPU the loop: a small ConvNet's step is FLOP-bound there, batching measured no faster, see
#: bench/ensemble_bench.py); ``on``: batch on any device (an error when the network cannot be batched);
#: ``off``: one by one.
BATCHED_MODES = ("auto", "on", "off")
#: Fraction of the device's free memory a batch of networks may use (CUDA), and of the available RAM (CPU).
CUDA_MEMORY_FRACTION = 0.8
CPU_MEMORY_FRACTION = 0.5

EpochCallback = Callable[[int, int, Mapping[str, torch.Tensor]], None]
#: ``on_group(member_indices, trained_models)``: a group of networks has finished training.
GroupCallback = Callable[[list[int], list[nn.Module]], None]


@dataclass(frozen=True)
class Member:
    """One network of an ensemble.

    Attributes:
        seed: seeds the global torch RNG before the network is built: its initialisation, and every draw
            the training makes from the global RNG (crop/flip augmentation, the DSA generator's seed, a
            ``DataLoader`` without its own generator), exactly as ``fork_rng`` + ``manual_seed(seed)``
            around :func:`~ddcore.training.train_network`.
        batches: epoch ``e`` -> its minibatches ``(images [b, C, H, W], labels [b] or soft [b, classes])``
            (:func:`~ddcore.training.tensor_batches` with the network's own shuffle generator, or a loader).
            Training advances its generator: build fresh members to train again.
        recipe: how it is trained.
    """

    seed: int
    batches: Batches
    recipe: TrainRecipe


@dataclass
class EnsemblePlan:
    """How an ensemble was trained (JSON-able with :meth:`to_dict`; record it in the run's manifest).

    Attributes:
        batched: whether the networks were trained as vmapped batches.
        reason: why (batched or not), in words.
        networks: the number of networks.
        group_size: the most networks trained together (1 when not batched).
        groups: the member indices of each group, in training order.
        bytes_per_network: projected bytes one network needs while training (0 when not batched).
        budget_bytes: the memory the groups were sized to (0 when not batched).
        device: the device, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    batched: bool
    reason: str
    networks: int
    group_size: int
    groups: list[list[int]] = field(default_factory=list)
    bytes_per_network: int = 0
    budget_bytes: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def one_by_one(cls, reason: str, networks: int, device: torch.device | str) -> "EnsemblePlan":
        """The plan of ``networks`` trained one by one because of ``reason`` (:func:`loop_reason`)."""
        return cls(False, f"one by one: {reason}", networks, 1, [[i] for i in range(networks)], device=str(device))


@dataclass
class EnsembleRun:
    """The trained networks (``models[k]`` is member ``k``'s, an ordinary ``nn.Module``) and the
    :class:`EnsemblePlan`."""

    models: list[nn.Module]
    plan: EnsemblePlan


def unbatchable_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a vmapped batch, in words, or ``None`` when it can.

    A network with buffers (BatchNorm's running statistics, updated in place) or dropout (random draws
    inside the forward) is trained one by one; ConvNets with instance/layer norm or none are batched.
    """
    for name, module in model.named_modules():
        label = name or type(model).__name__
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
            return f"{label} is a BatchNorm layer (its running statistics do not vmap cleanly)"
        if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
            return f"{label} is a dropout layer (random draws inside the forward)"
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the network has buffers ({', '.join(buffers[:3])}) that training would update in place"
    return None


def loop_reason(model: nn.Module, mode: BatchedMode, device: torch.device | str, networks: int) -> str | None:
    """Why ``networks`` networks like ``model`` are trained one by one under ``mode`` on ``device``, or ``None``
    when :func:`train_ensemble` batches them (the rule it applies; callers that keep their own one-by-one
    path use it to choose).

    Raises :class:`ConfigError` for an unknown ``mode``, or ``mode="on"`` with a network
    :func:`unbatchable_reason` rejects.
    """
    if mode not in BATCHED_MODES:
        raise ConfigError(f"batched training: unknown mode {mode!r}; choose one of {', '.join(BATCHED_MODES)}")
    if mode == "off":
        return "batched training is off"
    reason = unbatchable_reason(model)
    if mode == "on" and reason is not None:
        raise ConfigError(f"batched training was asked for ('on') but {reason}; set it to 'auto' or 'off'")
    if reason is None and mode == "auto":
        if torch.device(device).type != "cuda":
            reason = "'auto' batches on a GPU only (on the CPU batching measured no faster: bench/ensemble_bench.py)"
        elif networks < 2:
            reason = "only one network"
    return reason


def network_bytes(model: nn.Module, recipe: TrainRecipe, input_shape: Sequence[int]) -> int:
    """Projected bytes one network needs while training with ``recipe`` on batches of ``input_shape``
    (``(C, H, W)``): parameters, their gradients and the optimiser state (1 buffer for SGD with momentum,
    2 for Adam/AdamW), plus twice the outputs of every leaf module for one batch (kept for backward, and
    their gradients) and the batch itself. A projection, not a measurement: the plan records it.
    """
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    states = {"sgd": 1 if recipe.momentum > 0 else 0, "adam": 2, "adamw": 2}.get(recipe.optimizer, 2)
    outputs = _leaf_output_bytes(model, input_shape)
    batch = recipe.batch_size
    input_bytes = batch * int(torch.tensor(input_shape).prod()) * 4
    return param_bytes * (2 + states) + 2 * outputs * batch + input_bytes


def activation_bytes(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes of the outputs of every leaf module of ``model`` for one input of ``input_shape`` (``(C, H, W)``):
    what one image's forward pass holds (shapes only, on the meta device where the modules allow it). Multiply
    by the batch size for a batch; :func:`network_bytes` counts it twice (outputs kept for backward and their
    gradients)."""
    return _leaf_output_bytes(model, input_shape)


@torch.no_grad()
def _leaf_output_bytes(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Bytes of the outputs of every leaf module of ``model`` for one input of ``input_shape``: on the meta
    device (shapes only), else on a CPU copy for a module without meta kernels."""
    for device in ("meta", "cpu"):
        total = [0]

        def count(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
            total[0] += out.numel() * out.element_size()

        try:
            probe = copy.deepcopy(model).to(device)
            for module in probe.modules():
                if not list(module.children()):
                    module.register_forward_hook(count)
            probe(torch.zeros(1, *input_shape, device=device))
            return total[0]
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def memory_budget(device: torch.device) -> int:
    """Bytes a batch of networks may use on ``device``: CUDA, :data:`CUDA_MEMORY_FRACTION` of the free
    memory (``torch.cuda.mem_get_info``); CPU, :data:`CPU_MEMORY_FRACTION` of the available RAM (psutil)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION)
    import psutil

    return int(psutil.virtual_memory().available * CPU_MEMORY_FRACTION)


def plan_group_size(per_network: int, budget: int, networks: int, max_group: int | None = None) -> int:
    """How many networks to train together: as many as ``budget // per_network`` (at least 1), at most
    ``networks`` and ``max_group``.

    >>> plan_group_size(100, 1000, 6), plan_group_size(100, 250, 6), plan_group_size(100, 50, 6)
    (6, 2, 1)
    >>> plan_group_size(1, 10**9, 6, max_group=4)
    4
    """
    size = max(1, min(networks, budget // max(1, per_network)))
    return max(1, min(size, max_group)) if max_group else size


def plan_groups(probe: nn.Module, recipe: TrainRecipe, input_shape: Sequence[int], networks: int,
                device: torch.device | str, *, reason: str, extra_bytes: int = 0,
                max_group: int | None = None) -> EnsemblePlan:  # fmt: skip
    """The memory guard for a caller's own batched loop (:class:`StackedNetworks`): ``networks`` networks like
    ``probe`` trained with ``recipe`` on batches of ``input_shape`` (``(C, H, W)``), split into consecutive
    groups of as many as fit the device (:func:`network_bytes` + ``extra_bytes`` per network, e.g. a teacher's
    activations on that network's batch; :func:`memory_budget`), at most ``max_group``.

    Returns a batched :class:`EnsemblePlan` (``reason`` says how they are trained) whose ``groups`` are
    ``[[0, .., s-1], [s, ..], ..]``.
    """
    device = torch.device(device)
    per_network = network_bytes(probe, recipe, input_shape) + int(extra_bytes)
    budget = memory_budget(device)
    size = plan_group_size(per_network, budget, networks, max_group)
    groups = [list(range(start, min(start + size, networks))) for start in range(0, networks, size)]
    return EnsemblePlan(True, reason, networks, size, groups, per_network, budget, str(device))


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return soft_cross_entropy(logits, labels) if labels.ndim == 2 else F.cross_entropy(logits, labels)


def _recipe_groups(members: Sequence[Member]) -> list[list[int]]:
    groups: dict[TrainRecipe, list[int]] = {}
    for index, member in enumerate(members):
        groups.setdefault(member.recipe, []).append(index)
    return list(groups.values())


def _train_group(
    build: Callable[[], nn.Module],
    members: Sequence[Member],
    indices: Sequence[int],
    device: torch.device,
    image_size: int,
    on_epoch: EpochCallback | None,
) -> list[nn.Module]:
    """Train ``members[i] for i in indices`` (one recipe) as one vmapped batch; the caller forked the RNG."""
    from torch.func import functional_call, stack_module_state, vmap

    recipe = members[indices[0]].recipe
    models, augments, states = [], [], []
    for index in indices:
        torch.manual_seed(members[index].seed)
        model = build().to(device).train()
        augments.append(make_augment(recipe.augment, image_size))  # after the model, as train_network does
        states.append(_rng_state(device))
        models.append(model)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def one_loss(p, b, images, labels):
        return _loss(functional_call(base, (p, b), (images,)), labels)

    losses_of = vmap(one_loss)
    optimizer = make_optimizer(recipe, params.values())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe.schedule, recipe.epochs))
    for epoch in range(recipe.epochs):
        totals = torch.zeros(len(indices), device=device)
        iterators = []
        for k, index in enumerate(indices):
            _set_rng_state(states[k], device)
            iterators.append(iter(members[index].batches(epoch)))
            states[k] = _rng_state(device)
        step = 0
        while True:
            images, labels = [], []
            for k, iterator in enumerate(iterators):
                _set_rng_state(states[k], device)
                item = next(iterator, None)
                if item is not None:
                    x, y = item[0].to(device), item[1].to(device)
                    if augments[k] is not None:
                        x = augments[k](x)
                    images.append(x)
                    labels.append(y)
                states[k] = _rng_state(device)
            if not images:
                break
            shapes = {(tuple(x.shape), tuple(y.shape)) for x, y in zip(images, labels)}
            if len(images) != len(iterators) or len(shapes) != 1:
                raise ValueError(
                    f"ensemble members {list(indices)} have batches of different shapes or counts at epoch {epoch} "
                    f"step {step}; networks trained together need training sets of the same size (train them apart)"
                )
            losses = losses_of(params, buffers, torch.stack(images), torch.stack(labels))
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # network k's gradient is that of its own mean loss
            optimizer_step(optimizer, epoch, recipe.epochs, member=indices[0])  # one recipe: all overflow alike
            totals += losses.detach()
            step += 1
        scheduler.step()
        _check_finite(indices, epoch, recipe.epochs, totals, params)
        if on_epoch is not None:
            for k, index in enumerate(indices):
                on_epoch(index, epoch, {name: value[k].detach() for name, value in params.items()})
    with torch.no_grad():
        for k, model in enumerate(models):
            for name, value in model.named_parameters():
                value.copy_(params[name][k])
            for name, value in model.named_buffers():
                value.copy_(buffers[name][k])
    return models


def _check_finite(indices: Sequence[int], epoch: int, epochs: int, totals: torch.Tensor,
                  params: Mapping[str, torch.Tensor]) -> None:  # fmt: skip
    """Raise :class:`~ddcore.training.TrainingDiverged` for the first network of the group whose summed epoch
    loss (``totals [K]``) or stacked weights (``params``, each ``[K, ...]``) are not finite."""
    finite = torch.stack([torch.isfinite(v.detach()).flatten(1).all(dim=1) for v in params.values()]).all(dim=0)
    loss_ok, weights_ok = torch.isfinite(totals).tolist(), finite.tolist()
    for k, index in enumerate(indices):
        if not loss_ok[k] or not weights_ok[k]:
            raise TrainingDiverged(epoch, epochs, float(totals[k]), member=index, weights=loss_ok[k])


def train_ensemble(
    build: Callable[[], nn.Module],
    members: Sequence[Member],
    device: torch.device | str,
    input_shape: Sequence[int],
    *,
    mode: BatchedMode = "auto",
    max_group: int | None = None,
    on_epoch: EpochCallback | None = None,
    on_group: GroupCallback | None = None,
) -> EnsembleRun:
    """Train one fresh network per member (same meaning as one by one: module docstring) and return them.

    Args:
        build: a fresh, randomly initialised network (drawing from the global RNG), the same architecture
            every call, e.g. ``lambda: build_model(spec, classes, channels, size)``.
        members: the networks' seeds, batches and recipes.
        device: where they train.
        input_shape: one image's ``(C, H, W)`` (the memory projection; ``W`` sizes crop augmentation's padding).
        mode: ``"auto"``, ``"on"`` or ``"off"`` (:data:`BATCHED_MODES`).
        max_group: at most this many networks together (``None``: as many as memory allows).
        on_epoch: ``on_epoch(member_index, epoch, params)`` after each epoch of each network, ``params``
            its parameters by name (detached; copy them to keep them). Members of a group report epoch by
            epoch together, so calls of different members interleave.
        on_group: ``on_group(member_indices, models)`` as soon as a group has finished training (one by
            one: each network), before the next group starts: a caller that saves results (expert
            trajectories) writes each group's when it is done, so an interruption loses the group in training.

    Returns an :class:`EnsembleRun`: ``models[k]`` trained for ``members[k]``, and the plan.
    The caller's RNG state is left untouched.

    Raises:
        ConfigError: ``mode="on"`` for a network that cannot be batched (:func:`unbatchable_reason`), or an
            unknown ``mode``.
        ValueError: members of one group whose batches differ in shape or count.
        TrainingDiverged: a network's loss or weights stopped being finite (``member`` says which; checked
            after every epoch, as :func:`~ddcore.training.train_network` does).
    """
    device = torch.device(device)
    members = list(members)
    input_shape = tuple(int(n) for n in input_shape)
    image_size = input_shape[-1]
    with torch.random.fork_rng(devices=fork_devices(device)):
        probe = build()
    reason = loop_reason(probe, mode, device, len(members))
    if reason is not None:
        models = []
        with torch.random.fork_rng(devices=fork_devices(device)):
            for index, member in enumerate(members):
                torch.manual_seed(member.seed)
                model = build()
                report = None
                if on_epoch is not None:
                    report = lambda e, i=index, m=model: on_epoch(  # noqa: E731
                        i, e, {n: p.detach() for n, p in m.named_parameters()}
                    )
                try:
                    models.append(train_network(model, member.batches, member.recipe, device, image_size, on_epoch=report))
                except TrainingDiverged as exc:
                    exc.member = index
                    raise
                if on_group is not None:
                    on_group([index], [model])
        return EnsembleRun(models, EnsemblePlan.one_by_one(reason, len(members), device))

    per_network = max((network_bytes(probe, m.recipe, input_shape) for m in members), default=0)
    budget = memory_budget(device)
    size = plan_group_size(per_network, budget, len(members), max_group)
    groups = [group[start : start + size] for group in _recipe_groups(members) for start in range(0, len(group), size)]
    models: list[nn.Module | None] = [None] * len(members)
    with torch.random.fork_rng(devices=fork_devices(device)):
        for group in groups:
            trained = _train_group(build, members, group, device, image_size, on_epoch)
            for index, model in zip(group, trained):
                models[index] = model
            if on_group is not None:
                on_group(list(group), trained)
    plan = EnsemblePlan(
        True,
        f"batched (torch.func.vmap) in groups of at most {size} by recipe",
        len(members), size, groups, per_network, budget, str(device),
    )  # fmt: skip
    return EnsembleRun([m for m in models if m is not None], plan)


@torch.no_grad()
def ensemble_accuracy(
    models: Sequence[nn.Module],
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    *,
    group_size: int | None = None,
    batched: bool = True,
) -> list[float]:
    """Top-1 accuracy in [0, 1] of each of ``models`` over every batch of ``loader``: ``[K]`` floats, the
    same as :func:`~ddcore.training.accuracy_on` for each (one pass over the data per group of
    ``group_size`` networks, vmapped; one by one when ``batched`` is false or for networks
    :func:`unbatchable_reason` rejects).
    The caller's RNG state is left untouched (a ``DataLoader`` may draw its base seed from it).
    """
    from torch.func import functional_call, stack_module_state, vmap

    device = torch.device(device)
    models = list(models)
    if not models:
        return []
    with torch.random.fork_rng(devices=fork_devices(device)):
        if not batched or len(models) == 1 or unbatchable_reason(models[0]) is not None:
            return [accuracy_on(model, loader, device) for model in models]
        size = group_size or len(models)
        accuracies: list[float] = []
        for start in range(0, len(models), size):
            group = models[start : start + size]
            for model in group:
                model.eval()
            params, buffers = stack_module_state(group)
            base = copy.deepcopy(group[0]).to("meta").eval()
            logits_of = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, None))
            correct = torch.zeros(len(group), dtype=torch.long, device=device)
            total = 0
            for images, labels in loader:
                labels = torch.as_tensor(labels).to(device)
                predictions = logits_of(params, buffers, images.to(device)).argmax(dim=-1)
                correct += (predictions == labels).sum(dim=1)
                total += labels.numel()
            accuracies.extend(c / max(1, total) for c in correct.tolist())
        return accuracies


class StackedNetworks:
    """K networks of one architecture as one vmapped function, for a caller's own training loop (e.g.
    knowledge distillation, where the targets come from a teacher): their parameters stacked ``[K, ...]``
    (:func:`torch.func.stack_module_state`), one forward for all of them.

    ``stacked(images)`` maps ``[K, B, C, H, W]`` (network ``k``'s batch at ``images[k]``) to logits
    ``[K, B, classes]``; :meth:`parameters` go to one ``torch.optim`` optimiser (element-wise updates: K
    independent optimisers when they share the lr, :func:`~ddcore.training.make_optimizer`);
    :meth:`write_back` copies the trained values into the K modules and returns them.

    Raises ``ValueError`` for no models or a network :func:`unbatchable_reason` rejects.
    """

    def __init__(self, models: Sequence[nn.Module]):
        from torch.func import functional_call, stack_module_state, vmap

        self.models = list(models)
        if not self.models:
            raise ValueError("StackedNetworks: no networks")
        reason = unbatchable_reason(self.models[0])
        if reason is not None:
            raise ValueError(f"StackedNetworks: {reason}")
        self.params, self.buffers = stack_module_state(self.models)
        base = copy.deepcopy(self.models[0]).to("meta")
        self._forward = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))

    def __len__(self) -> int:
        return len(self.models)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._forward(self.params, self.buffers, images)

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters (leaf tensors ``[K, ...]``, ``requires_grad``)."""
        return list(self.params.values())

    def finite(self) -> list[bool]:
        """Whether each network's parameters are all finite: ``[K]`` bools (one host sync)."""
        flags = [torch.isfinite(v.detach()).flatten(1).all(dim=1) for v in self.params.values()]
        return torch.stack(flags).all(dim=0).tolist()

    @torch.no_grad()
    def write_back(self) -> list[nn.Module]:
        """Copy network ``k``'s stacked parameters and buffers into ``models[k]``; return the modules."""
        for k, model in enumerate(self.models):
            for name, value in model.named_parameters():
                value.copy_(self.params[name][k])
            for name, value in model.named_buffers():
                value.copy_(self.buffers[name][k])
        return self.models


def shard_ensemble(ctx, runs: int, train_many: Callable[[list[int], Callable[[int], None]], tuple[list, EnsemblePlan]],
                   *, title: str | None = None) -> tuple[list, EnsemblePlan | None]:  # fmt: skip
    """Repeats ``0 .. runs-1`` dealt round-robin to the run's processes (repeat ``r`` to process ``r mod N``, as
    :func:`ddcore.evaluation.shard_repeats` deals them), each process's share trained with **one** call
    ``train_many(repeats, advance)`` (so they can be trained together) -> ``(results, plan)``, ``results[i]``
    for ``repeats[i]`` (picklable); ``advance(n)`` moves the progress bar ``title`` by ``n`` networks.

    Returns every repeat's result in repeat order (the same list on every process) and this process's
    :class:`EnsemblePlan` (``None`` when it had no repeats). Seed each repeat from its number, never from the
    process, so the results do not depend on the number of processes.
    """
    from contextlib import nullcontext

    processes, rank = ctx.num_processes, ctx.process_index
    share = list(range(runs))[rank::processes]
    plan: EnsemblePlan | None = None
    results: list = []
    if share:
        bar = ctx.reporter.progress(title, total=len(share)) if title else nullcontext(lambda _n=1: None)
        with bar as advance:
            results, plan = train_many(share, advance)
        if len(results) != len(share):
            raise ValueError(f"shard_ensemble: {len(results)} results for {len(share)} repeats")
    rows = list(zip(share, results))
    if processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    return [value for _, value in sorted(rows, key=lambda row: row[0])], plan
