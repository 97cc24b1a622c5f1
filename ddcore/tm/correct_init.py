"""EDF's initialisation for trajectory matching: "samples predicted correctly" with expert soft labels.

The recipe (``/work/shared/spec/edf.md``, "Initialisation used by EDF"):

1. **Selection** (:func:`select_correct`). For each class ``c`` in order, walk that class's training
   images in a random order (one ``torch.randperm`` per class, drawn from the caller's generator) and
   keep those that the *judging expert* classifies as ``c``, until ``ipc`` are kept. The judging expert
   is, by default, the **final snapshot of expert 0** (``judge="first"``; an int picks another
   expert). Images are loaded and judged in chunks (``4 * ipc`` by default), so a class is read only as
   far as needed.
2. **Soft labels** (:func:`soft_labels_from_experts`). The label of each chosen image is the mean of
   the logits of the experts (final snapshots, all experts of the buffer) that classify it correctly;
   when none does, the mean over all experts.
3. **Learning rate**: the synthetic learning rate starts at ``lr_teacher``.

:func:`correct_initialization` does all three and returns the initial
:class:`~ddcore.distilled.DistilledSet`.

Experts are given as a buffer (anything with ``__len__``, ``trajectory(i) -> [E+1, P]`` and
``param_shapes``, such as :class:`~ddcore.tm.experts.ExpertBuffer`), as a ``[n, P]`` tensor of final
snapshots, or as a list of ``[P]`` vectors. The network is a :class:`~ddcore.models.ModelSpec` (built
for the dataset) or any ``nn.Module`` whose ``named_parameters()`` match the flat vectors. A network
without running statistics is run with :func:`torch.func.functional_call` and each expert's
parameters. A network with batch norm, whose running statistics the snapshots do not hold, is rebuilt
per expert by :func:`ddcore.snapshot.classifier_from_snapshot` (statistics recomputed from training
images) and judges in eval mode, so an image's logits never depend on the other images of its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from ddcore.distilled import DistilledSet, Selection
from ddcore.errors import ConfigError, DDError
from ddcore.snapshot import classifier_from_snapshot, norm_stat_layers
from ddcore.tm.flatparams import ParamShapes, num_params, param_shapes_of, unflatten_params
from ddcore.models import ModelSpec, build_model

if TYPE_CHECKING:
    from ddcore.data.base import ImageDataset

#: Forward-pass batch size used when judging and labelling images.
LOGITS_BATCH = 500

#: Candidates loaded and judged at a time, as a multiple of ``ipc``.
CHUNK_FACTOR = 4


# ----------------------------------------------------------------------------------------------
# Experts as final snapshots
# ----------------------------------------------------------------------------------------------


def _is_buffer(experts: Any) -> bool:
    return hasattr(experts, "trajectory") and hasattr(experts, "__len__")


def num_experts(experts: Any) -> int:
    """How many experts ``experts`` holds (a buffer, an ``[n, P]`` tensor, a ``[P]`` vector or a list).

    >>> num_experts(torch.zeros(3, 8)), num_experts(torch.zeros(8)), num_experts([torch.zeros(8)] * 2)
    (3, 1, 2)
    """
    if isinstance(experts, torch.Tensor):
        if experts.ndim not in (1, 2):
            raise ValueError(f"final snapshots must be [P] or [n, P], got shape {tuple(experts.shape)}")
        return 1 if experts.ndim == 1 else experts.shape[0]
    return len(experts)


def final_snapshot(experts: Any, index: int) -> torch.Tensor:
    """Expert ``index``'s final parameters ``[P]`` (a copy: a buffer's whole trajectory is not kept alive).

    >>> final_snapshot(torch.arange(6.0).view(2, 3), 1)
    tensor([3., 4., 5.])
    """
    count = num_experts(experts)
    if not 0 <= index < count:
        raise IndexError(f"expert {index} out of range (0..{count - 1})")
    if _is_buffer(experts):
        trajectory = experts.trajectory(index)
        if trajectory.ndim != 2:
            raise ValueError(f"expert {index}: trajectory must be [E+1, P], got shape {tuple(trajectory.shape)}")
        return trajectory[-1].detach().clone()
    if isinstance(experts, torch.Tensor):
        flat = experts if experts.ndim == 1 else experts[index]
    else:
        flat = experts[index]
    if flat.ndim != 1:
        raise ValueError(f"expert {index}: final parameters must be a vector [P], got shape {tuple(flat.shape)}")
    return flat.detach()


def final_snapshots(experts: Any, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
    """The final parameters ``[P]`` of the given experts (default: all), one vector each."""
    chosen = range(num_experts(experts)) if indices is None else indices
    return [final_snapshot(experts, int(i)) for i in chosen]


def resolve_judge(judge: str | int, count: int) -> int:
    """The index of the judging expert: ``"first"`` is expert 0; an int is taken as is.

    >>> resolve_judge("first", 5), resolve_judge(3, 5)
    (0, 3)
    """
    if judge == "first":
        index = 0
    elif isinstance(judge, int) and not isinstance(judge, bool):
        index = judge
    else:
        raise ConfigError(f"judge must be 'first' or an expert index, got {judge!r}")
    if not 0 <= index < count:
        raise ConfigError(f"judge expert {index} out of range: {count} expert(s) available")
    return index


def network_for(model_spec: ModelSpec | str | nn.Module, dataset: "ImageDataset") -> nn.Module:
    """``model_spec`` as a module: an ``nn.Module`` is returned as is; a spec is built for ``dataset``.

    The spec is built under a forked RNG (the caller's global random state is not consumed); its
    initial weights are irrelevant, since every call replaces them with an expert's.
    """
    if isinstance(model_spec, nn.Module):
        return model_spec
    channels, size, _ = dataset.image_shape
    with torch.random.fork_rng(devices=[]):
        return build_model(model_spec, dataset.num_classes, channels, size)


def _shapes_for(experts: Any, model: nn.Module) -> ParamShapes:
    """The buffer's ``param_shapes`` (checked against the model's) or, for bare vectors, the model's."""
    shapes = param_shapes_of(model)
    stored = getattr(experts, "param_shapes", None) if _is_buffer(experts) else None
    if stored is not None:
        stored = [(str(name), tuple(int(s) for s in shape)) for name, shape in stored]
        if stored != shapes:
            raise DDError(
                "the experts' parameter shapes differ from the model's; was the buffer trained with another model?"
            )
    return shapes


# ----------------------------------------------------------------------------------------------
# Logits
# ----------------------------------------------------------------------------------------------


def snapshot_logits(
    model: nn.Module,
    flat: torch.Tensor,
    shapes: Sequence[tuple[str, Sequence[int]]],
    device: torch.device,
    dataset: "ImageDataset | None" = None,
    batch: int = LOGITS_BATCH,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``images [M, C, H, W] -> logits [M, K]`` (no gradients) of ``model`` with the snapshot ``flat [P]``.

    Without running statistics: :func:`torch.func.functional_call` of ``model`` (on ``device``) with the
    snapshot's parameters. With batch norm: the network rebuilt once by
    :func:`~ddcore.snapshot.classifier_from_snapshot` from ``dataset``'s training images, in eval mode; a
    :class:`DDError` when no ``dataset`` is given (the statistics cannot be restored without data).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if norm_stat_layers(model):
        if dataset is None:
            raise DDError(
                f"{type(model).__name__} keeps batch-norm running statistics, which expert snapshots do not hold: "
                "pass the dataset to recompute them"
            )
        network = classifier_from_snapshot(model, flat, dataset, shapes=shapes, device=device)

        def forward(chunk: torch.Tensor) -> torch.Tensor:
            return network(chunk)
    else:
        params = unflatten_params(flat.detach().to(device), shapes)

        def forward(chunk: torch.Tensor) -> torch.Tensor:
            return functional_call(model, params, (chunk,))

    def logits(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            # split() of an empty batch yields one empty chunk, whose forward pass still gives [0, K]
            return torch.cat([forward(chunk) for chunk in images.to(device).split(batch)])

    return logits


def expert_logits(
    model: nn.Module,
    trajectories: Sequence[torch.Tensor] | torch.Tensor,
    shapes: Sequence[tuple[str, Sequence[int]]],
    images: torch.Tensor,
    batch: int = LOGITS_BATCH,
    dataset: "ImageDataset | None" = None,
) -> torch.Tensor:
    """The logits of every expert on every image, without gradients.

    Args:
        model: the architecture; run with :func:`torch.func.functional_call` and each expert's
            parameters (its own parameters are ignored; its buffers and mode are used), or, when it keeps
            batch-norm statistics, rebuilt per expert by :func:`snapshot_logits` from ``dataset``. It
            must be on ``images.device``.
        trajectories: the experts' final snapshots: a list of ``[P]`` vectors or an ``[E, P]`` tensor
            (moved to ``images.device``).
        shapes: ``[(name, shape), ...]`` of the flat vectors (``ExpertBuffer.param_shapes``).
        images: ``[M, C, H, W]``.
        batch: images per forward pass.
        dataset: the experts' training data, needed (only) for a network with batch norm.

    Returns:
        ``[E, M, K]`` float logits on ``images.device``.

    >>> net = nn.Linear(2, 3, bias=False)
    >>> w = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 2.0, 0.0, 0.0]])  # [E=2, P=6]
    >>> expert_logits(net, w, [("weight", (3, 2))], torch.tensor([[1.0, 2.0]]))
    tensor([[[1., 2., 3.]],
    <BLANKLINE>
            [[2., 4., 0.]]])
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    rows = [snapshot_logits(model, flat, shapes, images.device, dataset, batch)(images) for flat in trajectories]
    if not rows:
        raise ValueError("expert_logits needs at least one expert")
    return torch.stack(rows)


def soft_labels_from_experts(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image, the mean logits of the experts that classify it correctly.

    An expert classifies image ``m`` correctly when ``argmax_k logits[e, m, k] == labels[m]`` (ties: the
    first maximum, as :func:`torch.argmax`). Images that no expert classifies correctly get the mean
    over **all** experts instead.

    Args:
        logits: ``[E, M, K]`` (from :func:`expert_logits`).
        labels: ``[M]`` int class ids.

    Returns:
        ``[M, K]`` in ``logits.dtype``.

    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],
    ...                        [[4.0, 2.0], [3.0, 1.0]]])   # E=2 experts, M=2 images, K=2
    >>> soft_labels_from_experts(logits, torch.tensor([0, 1]))  # image 1: only expert 0 is right
    tensor([[3., 1.],
            [0., 1.]])
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [E, M, K], got shape {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[1]:
        raise ValueError(f"labels must be [M] with M = {logits.shape[1]}, got shape {tuple(labels.shape)}")
    correct = logits.argmax(dim=2) == labels.to(logits.device).view(1, -1)  # [E, M]
    none = ~correct.any(dim=0)  # [M]
    weights = (correct | none.view(1, -1)).to(logits.dtype)  # [E, M]
    return (weights.unsqueeze(2) * logits).sum(dim=0) / weights.sum(dim=0).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------


def select_correct(
    dataset: "ImageDataset",
    buffer_or_final_params: Any,
    model_spec: ModelSpec | str | nn.Module,
    ipc: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    judge: str | int = "first",
    *,
    chunk: int | None = None,
    batch: int = LOGITS_BATCH,
) -> Selection:
    """``ipc`` training images per class that the judging expert classifies correctly.

    For each class ``c`` in order: ``order = torch.randperm(n_c, generator=generator)`` over the class's
    training indices (:meth:`~ddcore.data.base.ImageDataset.indices_by_class`, file order); candidates
    are loaded and judged ``chunk`` at a time (default ``4 * ipc``) in that order, and the correctly
    classified ones are kept, in that order, until ``ipc`` are kept. The generator is used for exactly
    one ``randperm`` per class, so when every image is judged correctly the result is the same as the
    built-in random selection (:func:`~ddcore.builtin.selection.random_per_class`) with the same
    generator.

    If a class has fewer than ``ipc`` correctly classified images, the whole class has been judged; the
    rest are filled with the misclassified images of highest softmax probability of class ``c`` (ties:
    the random order), placed after the correct ones, and ``meta["filled"][c]`` says how many. A class
    with fewer than ``ipc`` training images is a :class:`ConfigError`.

    Args:
        dataset: the real data (``train`` split).
        buffer_or_final_params: the experts (see the module docstring); only the judge's final snapshot
            is read.
        model_spec: the experts' architecture (a spec, built for ``dataset``) or a module.
        ipc: images per class, ``>= 1``.
        generator: the random order's source.
        device: where the judge runs (a given module is moved there).
        judge: ``"first"`` (expert 0's final snapshot) or an expert index.
        chunk: candidates per load (default ``4 * ipc``); ``batch``: images per forward pass.

    Returns:
        A :class:`Selection`: ``images [K*ipc, C, H, W]`` (CPU), ``labels [K*ipc]``, ``indices
        [K*ipc]`` into ``dataset.train``, class-major; ``meta = {"method": "correct", "judge": index,
        "filled": {class: n, ...} (only classes with n > 0), "evaluated": images judged}``.
    """
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise ConfigError(f"ipc must be an integer >= 1, got {ipc!r}")
    chunk = CHUNK_FACTOR * ipc if chunk is None else chunk
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    device = torch.device(device)
    judge_index = resolve_judge(judge, num_experts(buffer_or_final_params))
    model = network_for(model_spec, dataset).to(device)
    shapes = _shapes_for(buffer_or_final_params, model)
    judge_params = final_snapshot(buffer_or_final_params, judge_index)
    if judge_params.numel() != num_params(shapes):
        raise DDError(
            f"the judge's final snapshot has {judge_params.numel()} parameters, the model {num_params(shapes)}"
        )
    judge_logits = snapshot_logits(model, judge_params, shapes, device, dataset, batch)  # built once

    by_class = dataset.indices_by_class("train")
    short = [(c, len(ix)) for c, ix in enumerate(by_class) if len(ix) < ipc]
    if short:
        names = ", ".join(f"{dataset.class_names[c]!r} ({n})" for c, n in short)
        raise ConfigError(f"ipc {ipc} is more than the training images of class(es) {names}")

    images: list[torch.Tensor] = []
    chosen: list[int] = []
    filled: dict[int, int] = {}
    evaluated = 0
    for c, class_indices in enumerate(by_class):
        order = [class_indices[i] for i in torch.randperm(len(class_indices), generator=generator).tolist()]
        kept_images: list[torch.Tensor] = []
        kept: list[int] = []
        missed_index: list[int] = []  # misclassified candidates, in random order, with p(c)
        missed_prob: list[torch.Tensor] = []
        for start in range(0, len(order), chunk):
            candidates = order[start : start + chunk]
            batch_images, _ = dataset.load("train", candidates)
            logits = judge_logits(batch_images).float().cpu()
            evaluated += len(candidates)
            right = logits.argmax(dim=1) == c
            take = right.nonzero().view(-1)[: ipc - len(kept)]
            kept_images.append(batch_images[take])
            kept.extend(candidates[i] for i in take.tolist())
            if len(kept) == ipc:
                break
            wrong = (~right).nonzero().view(-1)
            missed_index.extend(candidates[i] for i in wrong.tolist())
            missed_prob.append(logits.softmax(dim=1)[wrong, c])
        need = ipc - len(kept)
        if need:
            probs = torch.cat(missed_prob)
            best = torch.sort(probs, descending=True, stable=True).indices[:need].tolist()
            extra = [missed_index[i] for i in best]
            kept_images.append(dataset.load("train", extra)[0])
            kept.extend(extra)
            filled[c] = need
        images.append(torch.cat(kept_images))
        chosen.extend(kept)

    num_classes = len(by_class)
    return Selection(
        images=torch.cat(images),
        labels=torch.arange(num_classes).repeat_interleave(ipc),
        indices=torch.tensor(chosen, dtype=torch.long),
        meta={"method": "correct", "judge": judge_index, "filled": filled, "evaluated": evaluated},
    )


# ----------------------------------------------------------------------------------------------
# The initial distilled set
# ----------------------------------------------------------------------------------------------


def correct_initialization(
    ctx: Any,
    dataset: "ImageDataset",
    buffer: Any,
    model_spec: ModelSpec | str | nn.Module,
    ipc: int,
    lr_teacher: float,
    *,
    judge: str | int = "first",
    batch: int = LOGITS_BATCH,
) -> DistilledSet:
    """EDF's initial distilled set: :func:`select_correct` images, expert soft labels, ``lr = lr_teacher``.

    The random order comes from ``ctx.derive_generator("select", "correct")``; the work runs on
    ``ctx.device``. Soft labels (``[K*ipc, K]`` float32 logits) are :func:`soft_labels_from_experts` over
    the final snapshots of **all** experts in ``buffer`` (each expert's trajectory is read once).

    ``meta``: ``selected_by``/``initialized_by`` ``"correct"``, ``selection`` (the selection's meta),
    ``label_experts`` (how many experts labelled), ``label_fallback`` (images no expert classified
    correctly, labelled by all experts). Filled classes and fallbacks are also reported through
    ``ctx.reporter.info`` and everything is kept in ``ctx.record("tm_init", ...)`` when ``ctx`` has them.
    """
    device = torch.device(getattr(ctx, "device", "cpu"))
    generator = ctx.derive_generator("select", "correct")
    model = network_for(model_spec, dataset).to(device)
    selection = select_correct(dataset, buffer, model, ipc, generator, device, judge, batch=batch)
    shapes = _shapes_for(buffer, model)
    logits = expert_logits(model, final_snapshots(buffer), shapes, selection.images.to(device), batch, dataset)
    labels = selection.labels.to(device)
    soft = soft_labels_from_experts(logits.float(), labels)
    fallback = int((~(logits.argmax(dim=2) == labels.view(1, -1)).any(dim=0)).sum())
    info = {
        "selection": selection.meta,
        "label_experts": int(logits.shape[0]),
        "label_fallback": fallback,
    }
    reporter = getattr(ctx, "reporter", None)
    if reporter is not None and (selection.meta["filled"] or fallback):
        filled = selection.meta["filled"]
        parts = []
        if filled:
            parts.append(f"{sum(filled.values())} image(s) in {len(filled)} class(es) filled with misclassified ones")
        parts.append(f"{fallback} image(s) labelled by all experts (none classified them correctly)")
        reporter.info("correct initialisation: " + "; ".join(parts))
    if hasattr(ctx, "record"):
        ctx.record("tm_init", info)
    return DistilledSet(
        images=selection.images.detach().cpu().clone(),
        labels=soft.detach().cpu().float(),
        class_names=list(dataset.class_names),
        mean=tuple(dataset.mean),
        std=tuple(dataset.std),
        lr=float(lr_teacher),
        meta={"selected_by": "correct", "initialized_by": "correct", **info},
    )
