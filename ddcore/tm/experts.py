"""Expert trajectories: networks trained on the real data, one parameter snapshot per epoch.

Trajectory matching (MTT/FTD/DATM/EDF) needs a buffer of *experts*: ``num_experts`` networks trained
on the real training split for ``epochs`` epochs, with the parameters saved before training and after
every epoch. This module trains them, caches them and loads them back lazily.

Cache layout (under the run's cache directory, ``RunContext.cache_dir``)::

    <cache_dir>/experts/<key>/recipe.json      what the key stands for (written atomically)
    <cache_dir>/experts/<key>/expert_<i>.pt    one file per expert (written atomically)

``key`` (:func:`cache_key`) hashes everything that changes a trajectory: the dataset's identity
(:func:`dataset_identity`, which includes a fingerprint of the data's content, so rewriting the images
under the same names trains new experts), the model, the training recipe, the epochs, the seed and the file format.
It does **not** include ``num_experts``: asking for more experts later reuses the ones on disk and
trains only the missing ones. Expert ``i`` is seeded by ``(seed, "expert", i)`` alone, so its
trajectory is the same however many experts are requested and however many processes train them
(the numbers themselves depend on the device and library versions, which the key does not record).

An expert file is a dict (``torch.load(path, weights_only=True)`` reads it)::

    format            FORMAT (int)
    trajectory        float32 tensor [epochs + 1, P]: row 0 = initial parameters, row e = after epoch e
    param_shapes      list of (name, shape) in ``model.named_parameters()`` order; P = sum of numel
    final_train_acc   top-1 accuracy (percent) of the final network on the training split
    test_acc          top-1 accuracy (percent) of the final network on the test split
    index, seed       the expert's index and the recipe seed

Flat parameters are ``torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])``:
parameters only, never buffers. ConvNets with instance norm (the trajectory-matching default) have
no buffers; with batch norm the running statistics are **not** stored, so a network rebuilt from a
snapshot runs with fresh statistics (or in train mode).

Resuming works per expert: complete, loadable files are skipped; a missing, partial or corrupt file
is (re)trained. An expert interrupted mid-training starts again from epoch 0.

With several Accelerate processes the missing experts are dealt round-robin (process ``p`` trains
missing experts ``p, p + N, ...``); each process writes only the files of the experts it trained,
then all wait for each other.

**Batched experts** (``experts.batched``, or ``ensure_experts(batched=...)``: ``auto`` | ``on`` | ``off``, the
rule of :func:`ddcore.ensemble.loop_reason`: ``auto`` batches on a GPU only). A process's missing experts
are trained together as vmapped groups (:func:`train_experts_together`, :mod:`ddcore.ensemble`), each with
the seeds it has alone (initialisation and augmentation from ``expert_seed(.., "init")``, data order from
``expert_seed(.., "shuffle")``), so every snapshot equals the one-by-one trajectory to float rounding
(batched convolutions round differently; ``off`` is bit for bit the loop). Each expert's file is written
atomically as soon as its **group** has finished (the memory guard sizes the groups); an interruption loses
the group in training, whose experts are retrained from epoch 0 next time. The cache key does **not** record
batching: the trajectories mean the same (same recipe, same seeds), and the key already leaves out the device
and library versions, which change the rounding just as much; so experts trained batched are reused by a
run that trains one by one, and the reverse. The plan is recorded as ``experts.batched``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ddcore.atomic import torch_save, write_json
from ddcore.context import derive_seed
from ddcore.data.base import ImageDataset
from ddcore.datasig import dataset_fingerprint
from ddcore.errors import ConfigError, DDError
from ddcore.tm.flatparams import ParamShapes, flatten_params, num_params, param_shapes_of, unflatten_params
from ddcore.models import MODEL_NAMES, NORMS, ModelSpec, build_model
from ddcore.training import TrainingDiverged, TrainRecipe, accuracy_on, fork_devices, train_network
from ddcore.ensemble import (
    BATCHED_MODES,
    EnsemblePlan,
    Member,
    ensemble_accuracy,
    loop_reason,
    train_ensemble,
    unbatchable_reason,
)
from ddcore.vocab import AUGMENTS, EXPERT_DEFAULTS, OPTIMIZERS, SCHEDULES, resolve_augment  # noqa: F401 (re-exported)

#: Version of the expert file layout; part of the cache key, so a new layout never reads old files.
FORMAT = 1

#: How experts are trained unless told otherwise (:data:`ddcore.vocab.EXPERT_DEFAULTS`, the one source of
#: the ``[experts]`` and ``dd experts`` defaults), with no augmentation: a bare recipe has no dataset to
#: resolve ``auto`` against (:func:`recipe_for_dataset` does).
EXPERT_TRAIN_DEFAULTS: dict[str, Any] = {
    **{key: value for key, value in EXPERT_DEFAULTS.items() if key != "num"},
    "augment": "none",
}

#: Batch size used to measure the experts' accuracies (no effect on training).
ACCURACY_BATCH = 500


# ----------------------------------------------------------------------------------------------
# The recipe and its cache key
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpertRecipe:
    """How the experts are trained.

    Attributes:
        num_experts: how many experts a run wants (not part of the cache key).
        epochs: epochs per expert; a trajectory has ``epochs + 1`` snapshots. The authority on
            epochs: ``train.epochs`` is replaced by this value.
        model: the expert network.
        train: the optimiser, lr, schedule, batch size and augmentation (``None``: the MTT-style
            :data:`EXPERT_TRAIN_DEFAULTS`: SGD lr 0.01, no momentum, no weight decay, constant lr,
            batch 256, no augmentation).
        seed: expert ``i`` is seeded with ``derive_seed(seed, "expert", i, ...)``.

    Impossible values raise :class:`ConfigError`. Build one from flat options with :meth:`build`.
    """

    num_experts: int
    epochs: int
    model: ModelSpec = ModelSpec()
    train: TrainRecipe | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("num_experts", self.num_experts, 1)
        _check_int("epochs", self.epochs, 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"expert recipe: seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.model, ModelSpec):
            raise ConfigError(f"expert recipe: model must be a ModelSpec, got {type(self.model).__name__}")
        if self.model.name not in MODEL_NAMES:
            raise ConfigError(f"expert recipe: unknown model {self.model.name!r}; choose one of {', '.join(MODEL_NAMES)}")
        if self.model.norm not in NORMS:
            raise ConfigError(f"expert recipe: unknown norm {self.model.norm!r}; choose one of {', '.join(NORMS)}")
        _check_int("model width", self.model.width, 1)
        _check_int("model depth", self.model.depth, 1)
        train = self.train
        if train is None:
            train = TrainRecipe(epochs=self.epochs, **EXPERT_TRAIN_DEFAULTS)
        elif not isinstance(train, TrainRecipe):
            raise ConfigError(f"expert recipe: train must be a TrainRecipe, got {type(train).__name__}")
        elif train.epochs != self.epochs:
            train = dataclasses.replace(train, epochs=self.epochs)
        _check_train(train)
        object.__setattr__(self, "train", train)

    @classmethod
    def build(
        cls,
        num_experts: int,
        epochs: int,
        model: ModelSpec | str = ModelSpec(),
        seed: int = 0,
        **train_options: Any,
    ) -> "ExpertRecipe":
        """A recipe from flat options: ``ExpertRecipe.build(5, 10, ModelSpec(width=32), lr=0.02, augment="crop")``.

        ``train_options`` override :data:`EXPERT_TRAIN_DEFAULTS` (keys of :class:`TrainRecipe`).
        """
        unknown = sorted(set(train_options) - set(EXPERT_TRAIN_DEFAULTS))
        if unknown:
            raise ConfigError(f"expert recipe: unknown training option(s) {', '.join(unknown)}")
        spec = ModelSpec(name=model) if isinstance(model, str) else model
        train = TrainRecipe(epochs=epochs, **{**EXPERT_TRAIN_DEFAULTS, **train_options})
        return cls(num_experts=num_experts, epochs=epochs, model=spec, train=train, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recipe_for_dataset(
    dataset: ImageDataset,
    num_experts: int,
    epochs: int,
    *,
    model: str = "convnet",
    width: int = 0,
    depth: int = 0,
    norm: str = "instancenorm",
    seed: int = 0,
    augment: str = "auto",
    **train_options: Any,
) -> ExpertRecipe:
    """An :class:`ExpertRecipe` with ``0``/``"auto"`` resolved from the dataset.

    ``width 0``: the evaluator's preset width for the dataset (32 for digits, 128 otherwise);
    ``depth 0``: the literature's depth for the image size (3 at 32 px, 4 at 64, 5 at 128);
    ``augment "auto"``: :func:`resolve_augment`. A run's experts (``dd run --distill tm`` and ``dd experts``
    alike) come from :func:`ddcore.tm.distiller.resolve_expert_recipe`, which calls this with the run's
    network and ``[experts]`` options, so that the same options give the same cache key.
    """
    from ddcore.presets import resolve_model

    spec = resolve_model(dataset, model, width, depth, norm)  # the one rule, also the evaluator's
    return ExpertRecipe.build(
        num_experts, epochs, spec, seed=seed, augment=resolve_augment(augment, dataset), **train_options
    )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"expert recipe: {name} must be an integer >= {low}, got {value!r}")


def _check_train(train: TrainRecipe) -> None:
    _check_int("batch_size", train.batch_size, 1)
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"expert recipe: unknown optimizer {train.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"expert recipe: unknown schedule {train.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if train.augment not in AUGMENTS:
        raise ConfigError(f"expert recipe: unknown augmentation {train.augment!r}; choose one of {', '.join(AUGMENTS)}")
    for name in ("lr", "momentum", "weight_decay"):
        value = getattr(train, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"expert recipe: {name} must be a finite number, got {value!r}")
    if train.lr <= 0:
        raise ConfigError(f"expert recipe: lr must be > 0, got {train.lr}")
    if train.momentum < 0 or train.weight_decay < 0:
        raise ConfigError("expert recipe: momentum and weight_decay must be >= 0")


def dataset_identity(dataset: ImageDataset, data_root: str | Path | None = None) -> dict[str, Any]:
    """What names a dataset in the cache key: name, image shape, normalisation, train size, class names
    in label order, data root, ``extra["version"]`` when the dataset declares one, and the content
    ``fingerprint`` (:func:`ddcore.datasig.dataset_fingerprint`).

    ``data_root`` (``config.data_root``) is resolved to an absolute path; ``None``/empty for built-in
    data such as ``digits``. The fingerprint changes when the data's content changes (in-memory
    tensors are hashed; for files, their names, sizes, times and inodes), so rewriting, swapping or
    replacing images under the same names gives a new key: the cache misses and trains again.
    """
    root = str(Path(data_root).expanduser().resolve()) if data_root else None
    identity = {
        "name": dataset.name,
        "image_shape": [int(v) for v in dataset.image_shape],
        "mean": [float(v) for v in dataset.mean],
        "std": [float(v) for v in dataset.std],
        "train_size": len(dataset.train),
        "class_names": [str(c) for c in dataset.class_names],
        "data_root": root,
        "fingerprint": dataset_fingerprint(dataset),
    }
    if "version" in dataset.extra:  # a generated dataset bumps it when its pixels change
        identity["version"] = dataset.extra["version"]
    return identity


def cache_key(identity: Mapping[str, Any], recipe: ExpertRecipe) -> str:
    """16 hex digits of the sha256 of a canonical JSON of everything that shapes the trajectories.

    Includes the dataset identity, ``recipe.model``, ``recipe.train``, ``recipe.epochs``,
    ``recipe.seed`` and :data:`FORMAT`; not ``num_experts``.
    """
    return hashlib.sha256(_canonical(key_contents(identity, recipe)).encode()).hexdigest()[:16]


def key_contents(identity: Mapping[str, Any], recipe: ExpertRecipe) -> dict[str, Any]:
    """The dict :func:`cache_key` hashes (also written to ``recipe.json``)."""
    return {
        "format": FORMAT,
        "dataset": dict(identity),
        "model": dataclasses.asdict(recipe.model),
        "train": recipe.train.to_dict(),  # type: ignore[union-attr]
        "epochs": recipe.epochs,
        "seed": recipe.seed,
    }


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def experts_dir(cache_dir: str | Path, key: str) -> Path:
    """``<cache_dir>/experts/<key>``."""
    return Path(cache_dir) / "experts" / key


def expert_path(folder: str | Path, index: int) -> Path:
    """``<folder>/expert_<index>.pt``."""
    return Path(folder) / f"expert_{index}.pt"


# ----------------------------------------------------------------------------------------------
# Flat parameters
# ----------------------------------------------------------------------------------------------


def expected_param_shapes(dataset: ImageDataset, recipe: ExpertRecipe) -> ParamShapes:
    """The experts' parameter shapes, from a model built on the meta device (no memory, no RNG use)."""
    channels, size, _ = dataset.image_shape
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_model(recipe.model, dataset.num_classes, channels, size)
    return param_shapes_of(model)


# ----------------------------------------------------------------------------------------------
# Training one expert
# ----------------------------------------------------------------------------------------------


def expert_seed(recipe: ExpertRecipe, index: int, purpose: str) -> int:
    """The seed of expert ``index`` for ``purpose``: ``"init"`` (model init and augmentation, the
    global RNG forked) or ``"shuffle"`` (the data order's generator)."""
    return derive_seed(recipe.seed, "expert", index, purpose)


def train_expert(
    dataset: ImageDataset,
    recipe: ExpertRecipe,
    index: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train expert ``index`` and return its file contents (see the module docstring).

    Deterministic for a given device: the model is built and trained under
    ``torch.random.fork_rng`` seeded with ``expert_seed(recipe, index, "init")`` (initialisation and
    augmentation), and the training split is streamed by ``dataset.loader("train", batch_size,
    shuffle=True)`` with a generator seeded by ``expert_seed(recipe, index, "shuffle")``. The caller's
    RNG state is left untouched. ``on_epoch(e)`` is called after each epoch ``e`` (0-based).

    Raises:
        TrainingDiverged: the expert's loss or weights stopped being finite; one line naming ``experts.lr``
            and ``experts.weight_decay`` (``dd experts --lr/--weight-decay``), nothing returned to save.
    """
    device = torch.device(device)
    channels, size, _ = dataset.image_shape
    train = recipe.train
    assert train is not None
    shuffle = torch.Generator().manual_seed(expert_seed(recipe, index, "shuffle"))
    loader = dataset.loader("train", train.batch_size, shuffle=True, generator=shuffle)
    with torch.random.fork_rng(devices=fork_devices(device)):
        torch.manual_seed(expert_seed(recipe, index, "init"))
        model = build_model(recipe.model, dataset.num_classes, channels, size)
        shapes = param_shapes_of(model)
        trajectory = torch.empty(recipe.epochs + 1, num_params(shapes), dtype=torch.float32)
        trajectory[0] = flatten_params(model)

        def snapshot(epoch: int) -> None:
            trajectory[epoch + 1] = flatten_params(model)
            if on_epoch is not None:
                on_epoch(epoch)

        try:
            train_network(model, lambda _epoch: loader, train, device, size, on_epoch=snapshot)
        except TrainingDiverged as exc:
            raise exc.advised(f"expert {index}", _divergence_advice(train)) from None
        # inside the fork too: an unshuffled DataLoader still draws its base seed from the global RNG
        final_train_acc = 100.0 * accuracy_on(model, dataset.loader("train", ACCURACY_BATCH), device)
        test_acc = 100.0 * accuracy_on(model, dataset.loader("test", ACCURACY_BATCH), device)
    return {
        "format": FORMAT,
        "trajectory": trajectory,
        "param_shapes": shapes,
        "final_train_acc": final_train_acc,
        "test_acc": test_acc,
        "index": index,
        "seed": recipe.seed,
    }


def _divergence_advice(train: TrainRecipe) -> str:
    return (f"lower experts.lr (now {train.lr:g}) or experts.weight_decay (now {train.weight_decay:g}) "
            "(dd experts: --lr, --weight-decay)")  # fmt: skip


def expert_member(dataset: ImageDataset, recipe: ExpertRecipe, index: int) -> Member:
    """Expert ``index`` as a :class:`ddcore.ensemble.Member`: the seed of :func:`train_expert` (``"init"``) and
    the training split streamed with its own shuffle generator (``"shuffle"``)."""
    train = recipe.train
    assert train is not None
    shuffle = torch.Generator().manual_seed(expert_seed(recipe, index, "shuffle"))
    loader = dataset.loader("train", train.batch_size, shuffle=True, generator=shuffle)
    return Member(expert_seed(recipe, index, "init"), lambda _epoch: loader, train)


def train_experts_together(
    dataset: ImageDataset,
    recipe: ExpertRecipe,
    indices: Sequence[int],
    device: torch.device | str = "cpu",
    *,
    mode: str = "on",
    max_group: int | None = None,
    on_epoch: Callable[[int], None] | None = None,
    on_done: Callable[[int, dict[str, Any]], None] | None = None,
) -> EnsemblePlan:
    """Train experts ``indices`` together (:func:`ddcore.ensemble.train_ensemble` under ``mode``, groups sized by
    its memory guard, at most ``max_group``); each expert's file contents are those of :func:`train_expert`
    (the same seeds: its trajectory equals the one-by-one one to float rounding; ``mode="off"``: bit for bit).

    ``on_done(index, contents)`` is called for every expert of a group as soon as that group has finished (save
    it there); ``on_epoch(e)`` after each epoch of each expert (progress). Returns the
    :class:`~ddcore.ensemble.EnsemblePlan`. The caller's RNG state is left untouched.

    Raises:
        TrainingDiverged: an expert's loss or weights stopped being finite; one line naming the expert,
            ``experts.lr`` and ``experts.weight_decay``; the experts of earlier groups are already handed to
            ``on_done``.
        ConfigError: ``mode="on"`` for a network that cannot be batched (BatchNorm).
    """
    device = torch.device(device)
    indices = list(indices)
    channels, size, _ = dataset.image_shape
    train = recipe.train
    assert train is not None
    build = lambda: build_model(recipe.model, dataset.num_classes, channels, size)  # noqa: E731
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        shapes = param_shapes_of(build())
    trajectories: dict[int, torch.Tensor] = {}
    for k, index in enumerate(indices):  # row 0: the initial weights, built under the expert's own seed
        with torch.random.fork_rng(devices=fork_devices(device)):
            torch.manual_seed(expert_seed(recipe, index, "init"))
            trajectories[k] = torch.empty(recipe.epochs + 1, num_params(shapes), dtype=torch.float32)
            trajectories[k][0] = flatten_params(build())

    def snapshot(k: int, epoch: int, params: Mapping[str, torch.Tensor]) -> None:
        trajectories[k][epoch + 1] = torch.cat([params[name].reshape(-1) for name, _ in shapes]).cpu()
        if on_epoch is not None:
            on_epoch(epoch)

    def finished(group: list[int], models: list[nn.Module]) -> None:
        train_acc = ensemble_accuracy(models, dataset.loader("train", ACCURACY_BATCH), device)
        test_acc = ensemble_accuracy(models, dataset.loader("test", ACCURACY_BATCH), device)
        for k, a_train, a_test in zip(group, train_acc, test_acc):
            contents = {
                "format": FORMAT, "trajectory": trajectories.pop(k), "param_shapes": shapes,
                "final_train_acc": 100.0 * a_train, "test_acc": 100.0 * a_test, "index": indices[k], "seed": recipe.seed,
            }  # fmt: skip
            if on_done is not None:
                on_done(indices[k], contents)

    members = [expert_member(dataset, recipe, index) for index in indices]
    try:
        run = train_ensemble(build, members, device, dataset.image_shape, mode=mode,  # type: ignore[arg-type]
                             max_group=max_group, on_epoch=snapshot, on_group=finished)  # fmt: skip
    except TrainingDiverged as exc:
        raise exc.advised(f"expert {indices[exc.member or 0]}", _divergence_advice(train)) from None
    return run.plan


# ----------------------------------------------------------------------------------------------
# Reading and checking expert files
# ----------------------------------------------------------------------------------------------


def read_expert(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` an expert file (weights only, on the CPU); ``mmap`` maps the tensor lazily."""
    return torch.load(Path(path), map_location="cpu", weights_only=True, mmap=mmap)


def check_expert(data: Any, epochs: int, shapes: ParamShapes | None) -> str | None:
    """Why ``data`` is not a complete expert of ``epochs`` epochs with ``shapes`` (``None``: it is)."""
    if not isinstance(data, dict):
        return f"not a dict but {type(data).__name__}"
    if data.get("format") != FORMAT:
        return f"format {data.get('format')!r}, expected {FORMAT}"
    trajectory = data.get("trajectory")
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim != 2 or trajectory.dtype != torch.float32:
        return "no float32 trajectory matrix"
    try:
        stored = [(str(name), tuple(int(s) for s in shape)) for name, shape in data["param_shapes"]]
    except (KeyError, TypeError, ValueError):
        return "no valid param_shapes"
    if shapes is not None and stored != [(n, tuple(s)) for n, s in shapes]:
        return "parameter shapes differ from the model's"
    expected = (epochs + 1, num_params(stored))
    if tuple(trajectory.shape) != expected:
        return f"trajectory shape {tuple(trajectory.shape)}, expected {expected}"
    for name in ("final_train_acc", "test_acc"):
        if not isinstance(data.get(name), (int, float)):
            return f"no {name}"
    return None


def expert_problem(path: Path, epochs: int, shapes: ParamShapes | None) -> str | None:
    """``None`` when ``path`` holds a complete expert, else why not (missing, unreadable, wrong shape).

    Cheap: the file is memory-mapped, so the trajectory is not read.
    """
    if not path.is_file():
        return "missing"
    try:
        data = read_expert(path, mmap=True)
    except Exception as exc:  # any unreadable file: truncated zip, pickle garbage, ...
        return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return check_expert(data, epochs, shapes)


# ----------------------------------------------------------------------------------------------
# The buffer
# ----------------------------------------------------------------------------------------------


class ExpertBuffer:
    """Experts ``0 .. num_experts-1`` of one cache folder, loaded lazily.

    At most ``max_loaded`` trajectories are kept in memory (least recently used are dropped)::

        buffer = ensure_experts(ctx, dataset, recipe)
        theta = buffer.trajectory(3)[t]     # [P]: expert 3 after epoch t
        params = buffer.unflatten(theta)    # {name: tensor} for torch.func.functional_call

    Attributes:
        folder: ``<cache_dir>/experts/<key>``; ``key``: the cache key.
        epochs: snapshots per trajectory minus one; ``param_shapes``: ``[(name, shape), ...]``.
    """

    def __init__(
        self,
        folder: str | Path,
        num_experts: int,
        epochs: int,
        param_shapes: Sequence[tuple[str, Sequence[int]]],
        *,
        max_loaded: int = 4,
    ):
        self.folder = Path(folder)
        self.key = self.folder.name
        self.epochs = epochs
        self.param_shapes: ParamShapes = [(name, tuple(int(s) for s in shape)) for name, shape in param_shapes]
        self.num_params = num_params(self.param_shapes)
        self.max_loaded = max(1, max_loaded)
        self._size = num_experts
        self._loaded: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"ExpertBuffer({self.folder}, experts={self._size}, epochs={self.epochs}, params={self.num_params})"

    def path(self, index: int) -> Path:
        self._check_index(index)
        return expert_path(self.folder, index)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._size:
            raise IndexError(f"expert {index} out of range (0..{self._size - 1})")

    def load(self, index: int) -> dict[str, Any]:
        """The whole file of expert ``index`` (cached); :class:`DDError` naming the file if unreadable."""
        self._check_index(index)
        if index in self._loaded:
            self._loaded.move_to_end(index)
            return self._loaded[index]
        path = self.path(index)
        try:
            data = read_expert(path)
        except Exception as exc:
            raise DDError(f"expert file {path} cannot be read ({type(exc).__name__}); delete it and run again") from None
        problem = check_expert(data, self.epochs, self.param_shapes)
        if problem:
            raise DDError(f"expert file {path} is not a valid expert: {problem}; delete it and run again")
        self._loaded[index] = data
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        return data

    def trajectory(self, index: int) -> torch.Tensor:
        """Expert ``index``'s snapshots: float32 ``[epochs + 1, P]`` on the CPU (row 0 = initial)."""
        return self.load(index)["trajectory"]

    def info(self, index: int) -> dict[str, Any]:
        """``{"index", "final_train_acc", "test_acc", "path"}`` without reading the trajectory."""
        path = self.path(index)
        try:
            data = read_expert(path, mmap=True)
        except Exception as exc:
            raise DDError(f"expert file {path} cannot be read ({type(exc).__name__}); delete it and run again") from None
        return {
            "index": index,
            "final_train_acc": float(data.get("final_train_acc", float("nan"))),
            "test_acc": float(data.get("test_acc", float("nan"))),
            "path": str(path),
        }

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[P]`` -> ``{name: tensor}`` views in the model's shapes (see :func:`unflatten_params`)."""
        return unflatten_params(flat, self.param_shapes)

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, torch.Tensor]:
        """A uniformly drawn expert: ``(index, trajectory [epochs + 1, P])``."""
        index = int(torch.randint(self._size, (1,), generator=generator).item())
        return index, self.trajectory(index)


# ----------------------------------------------------------------------------------------------
# Training what is missing
# ----------------------------------------------------------------------------------------------


def _agree(accelerator: Any, value: Any) -> Any:
    """The main process's ``value`` on every process."""
    if accelerator is None or accelerator.num_processes <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def ensure_experts(
    ctx: Any,
    dataset: ImageDataset,
    recipe: ExpertRecipe,
    num_experts: int | None = None,
    *,
    data_root: str | Path | None = None,
    batched: str | None = None,
    max_group: int | None = None,
) -> ExpertBuffer:
    """Make sure experts ``0 .. num_experts-1`` exist in the cache, training the missing ones.

    Args:
        ctx: a :class:`~ddcore.context.RunContext`, or any object with ``cache_dir``, ``accelerator``
            (``None``: one process on the CPU) and ``reporter`` (``None``: silent).
        dataset: the real data the experts learn.
        recipe: how they are trained.
        num_experts: how many are needed (default ``recipe.num_experts``).
        data_root: the dataset's root for the cache key (default ``ctx.config.data_root`` if any).
        batched: ``"auto"``, ``"on"`` or ``"off"`` (default ``ctx.config.experts.batched``, else ``"auto"``):
            train this process's missing experts together (:func:`train_experts_together`; module docstring).
        max_group: at most this many experts trained together (``None``: as many as memory allows).

    The main process decides which experts are missing (absent or not loadable) and tells the
    others; process ``p`` of ``N`` trains missing experts ``p, p + N, ...`` and writes their files
    atomically; then every process waits for the others and checks every file. Records
    ``experts`` (key, folder, count, trained) in ``ctx.records`` when ``ctx`` has ``record``.
    """
    count = recipe.num_experts if num_experts is None else num_experts
    _check_int("num_experts", count, 1)
    if data_root is None:
        data_root = getattr(getattr(ctx, "config", None), "data_root", None) or None
    accelerator = getattr(ctx, "accelerator", None)
    reporter = getattr(ctx, "reporter", None)
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    is_main = accelerator is None or accelerator.is_main_process
    processes = 1 if accelerator is None else accelerator.num_processes
    rank = 0 if accelerator is None else accelerator.process_index

    if batched is None:
        batched = getattr(getattr(getattr(ctx, "config", None), "experts", None), "batched", None) or "auto"
    if batched not in BATCHED_MODES:
        raise ConfigError(f"config key 'experts.batched' is {batched!r}; choose one of {', '.join(BATCHED_MODES)}")
    if batched == "on":
        channels, size, _ = dataset.image_shape
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            reason = unbatchable_reason(build_model(recipe.model, dataset.num_classes, channels, size))
        if reason is not None:
            raise ConfigError(f"config key 'experts.batched' is 'on' but {reason}; set experts.batched to 'auto' or 'off'")

    identity = dataset_identity(dataset, data_root)
    key = cache_key(identity, recipe)
    folder = experts_dir(ctx.cache_dir, key)
    shapes = expected_param_shapes(dataset, recipe)

    missing: list[int] = []
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        description = {
            **key_contents(identity, recipe),
            "key": key,
            "num_params": num_params(shapes),
            "param_shapes": [[name, list(shape)] for name, shape in shapes],
            "files": "expert_<i>.pt (i = 0, 1, ...); num_experts is not part of the key",
        }
        recipe_file = folder / "recipe.json"
        try:
            current = json.loads(recipe_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if current != json.loads(json.dumps(description, default=str)):
            write_json(recipe_file, description)
        missing = [i for i in range(count) if expert_problem(expert_path(folder, i), recipe.epochs, shapes)]
    missing = list(_agree(accelerator, missing))
    mine = missing[rank::processes]

    plan: EnsemblePlan | None = None
    if mine:
        title = f"training experts ({len(missing)} of {count} missing" + (f", {len(mine)} here)" if processes > 1 else ")")
        progress = reporter.progress(title, total=len(mine) * recipe.epochs) if reporter is not None else None
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            reason = loop_reason(build_model(recipe.model, dataset.num_classes, *dataset.image_shape[:2]), batched,
                                 device, len(mine))  # type: ignore[arg-type]  # fmt: skip
        with (progress if progress is not None else _null_progress()) as advance:
            if reason is not None:  # one by one, as always: train_expert per expert, its file written at once
                for index in mine:
                    result = train_expert(dataset, recipe, index, device, on_epoch=lambda _e: advance(1))
                    torch_save(result, expert_path(folder, index))
                plan = EnsemblePlan.one_by_one(reason, len(mine), device)
                plan.groups = [[index] for index in mine]
            else:  # together, each group's files written as soon as the group has finished
                plan = train_experts_together(
                    dataset, recipe, mine, device, mode=batched, max_group=max_group,
                    on_epoch=lambda _e: advance(1), on_done=lambda index, result: torch_save(result, expert_path(folder, index)),
                )  # fmt: skip
                plan.groups = [[mine[k] for k in group] for group in plan.groups]  # expert indices, not positions
    if accelerator is not None and processes > 1:
        accelerator.wait_for_everyone()

    for index in range(count):
        path = expert_path(folder, index)
        problem = expert_problem(path, recipe.epochs, shapes)
        if problem:
            raise DDError(f"expert file {path} is not usable after training ({problem}); delete it and run again")
    if hasattr(ctx, "record"):
        ctx.record(
            "experts",
            {
                "key": key, "folder": str(folder), "num_experts": count, "trained": missing,
                "fingerprint": identity["fingerprint"], "recipe": recipe.to_dict(),
                "batched": plan.to_dict() if plan is not None else None,
            },  # fmt: skip
        )
    return ExpertBuffer(folder, count, recipe.epochs, shapes)


class _null_progress:
    def __enter__(self) -> Callable[[int], None]:
        return lambda n=1: None

    def __exit__(self, *exc: Any) -> None:
        return None
