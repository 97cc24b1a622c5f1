"""Trained classifiers that plugins lean on: Grad-CAM models, knowledge-distillation teachers, observers.

Three ways to get one, all returning an ``nn.Module`` in eval mode:

- :func:`trained_teacher`: a network trained once on the real training split and cached under
  ``<cache_dir>/teachers/<key>.pt`` (``key`` hashes the dataset identity, including the content
  fingerprint of :mod:`ddcore.datasig`, the model, the recipe and the seed, as the experts' cache does:
  rewritten images train a new teacher). Other processes wait for the main one and load its file.
- :func:`run_classifier`: the run's own trained classifier: the final snapshot of expert 0 when the
  run has expert trajectories (``ctx.experts``), else :func:`trained_teacher` on the run's dataset.
- :func:`torchvision_classifier`: a torchvision architecture with weights from a local file
  (never a download).

Teacher file (``torch.load(path, weights_only=True)``)::

    format        TEACHER_FORMAT
    state_dict    the trained network's parameters and buffers
    recipe        the ExpertRecipe-shaped dict the key was computed from
    test_acc      top-1 accuracy (percent) on the test split
    data          data_signature of the training data (:mod:`ddcore.datasig`); a file whose
                  classes, image shape, normalisation or fingerprint differ is trained again
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddcore.atomic import torch_save
from ddcore.context import RunContext, derive_seed
from ddcore.data.base import ImageDataset
from ddcore.datasig import data_signature, require_same_data
from ddcore.errors import ConfigError, DDError
from ddcore.tm.experts import ExpertBuffer, ExpertRecipe, cache_key, dataset_identity, resolve_augment
from ddcore.models import ModelSpec, build_model
from ddcore.training import TrainingDiverged, TrainRecipe, accuracy_on, fork_devices, train_network

#: Version of the teacher file layout; part of the cache key.
TEACHER_FORMAT = 1

#: How a teacher is trained unless told otherwise (the evaluator's full-data recipe, cosine lr).
TEACHER_TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine",
}


def teacher_recipe(
    dataset: ImageDataset, model: ModelSpec, epochs: int, seed: int = 0, **train_options: Any
) -> ExpertRecipe:
    """The recipe of a teacher: one network, ``epochs`` epochs, :data:`TEACHER_TRAIN_DEFAULTS` overridden
    by ``train_options`` (keys of :class:`~ddcore.training.TrainRecipe`), the dataset's default augmentation."""
    options = {**TEACHER_TRAIN_DEFAULTS, "augment": resolve_augment("auto", dataset), **train_options}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainRecipe)})
    if unknown:
        raise ConfigError(f"teacher recipe: unknown training option(s) {', '.join(unknown)}")
    return ExpertRecipe(1, epochs, model, TrainRecipe(epochs=epochs, **options), seed=seed)


def teacher_path(cache_dir: str | Path, dataset: ImageDataset, recipe: ExpertRecipe, data_root: Any = None) -> Path:
    """``<cache_dir>/teachers/<key>.pt`` for this dataset and recipe."""
    key = cache_key({**dataset_identity(dataset, data_root), "teacher_format": TEACHER_FORMAT}, recipe)
    return Path(cache_dir) / "teachers" / f"{key}.pt"


def train_teacher(dataset: ImageDataset, recipe: ExpertRecipe, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train the teacher of ``recipe`` and return its file contents; deterministic for a device.

    The caller's RNG state is untouched: initialisation and augmentation run under a forked global
    RNG seeded by ``(seed, "teacher", "init")``; the data order comes from its own generator.

    Raises:
        TrainingDiverged: the teacher's loss or weights stopped being finite; one line naming its lr and
            weight decay (:data:`TEACHER_TRAIN_DEFAULTS` or the options of whatever asked for the teacher).
    """
    device = torch.device(device)
    channels, size, _ = dataset.image_shape
    train = recipe.train
    assert train is not None
    shuffle = torch.Generator().manual_seed(derive_seed(recipe.seed, "teacher", "shuffle"))
    loader = dataset.loader("train", train.batch_size, shuffle=True, generator=shuffle)
    with torch.random.fork_rng(devices=fork_devices(device)):
        torch.manual_seed(derive_seed(recipe.seed, "teacher", "init"))
        model = build_model(recipe.model, dataset.num_classes, channels, size)
        try:
            train_network(model, lambda _epoch: loader, train, device, size)
        except TrainingDiverged as exc:
            raise exc.advised(
                f"the teacher ({recipe.model.name}, {train.epochs} epochs)",
                f"lower its lr (now {train.lr:g}) or weight decay (now {train.weight_decay:g}) in the teacher options "
                "(ddcore.teacher.TEACHER_TRAIN_DEFAULTS, or the options of the command or plugin that trains it)",
            ) from None
        test_acc = 100.0 * accuracy_on(model, dataset.loader("test", 500), device)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return {"format": TEACHER_FORMAT, "state_dict": state, "recipe": recipe.to_dict(), "test_acc": test_acc,
            "data": data_signature(dataset)}  # fmt: skip


def trained_teacher(
    ctx: RunContext,
    dataset: ImageDataset | None = None,
    *,
    model: ModelSpec | None = None,
    epochs: int | None = None,
    **train_options: Any,
) -> nn.Module:
    """A classifier of ``dataset`` (default ``ctx.dataset``) trained once and cached; eval mode, on ``ctx.device``.

    Args:
        model: the architecture (default ``ctx.model_spec``, the run's network).
        epochs: training epochs (default: the evaluator's full-data epochs for the dataset).
        train_options: overrides of :data:`TEACHER_TRAIN_DEFAULTS` (``lr``, ``augment``, ...).

    Records ``teachers/<key>`` (path, recipe, test accuracy) in the manifest.
    """
    from ddcore.presets import dataset_eval_preset, resolve_eval

    dataset = dataset if dataset is not None else ctx.dataset
    if dataset is None:
        raise DDError("trained_teacher needs a dataset: the run has not built one yet")
    # the run's network for the run's data; for other data, the same [eval] options resolved for that data
    spec = model or (ctx.model_spec if dataset is ctx.dataset and ctx.model_spec else resolve_eval(ctx.config.eval, dataset).model)
    if epochs is None:
        epochs = dataset_eval_preset(dataset)["full_epochs"]
    recipe = teacher_recipe(dataset, spec, epochs, seed=ctx.seed, **train_options)
    path = teacher_path(ctx.cache_dir, dataset, recipe, ctx.config.data_root or None)
    with ctx.accelerator.main_process_first():
        data = _read_teacher(path, dataset)
        if data is None:
            if not ctx.is_main_process:
                raise DDError(f"teacher file {path} was not written by the main process")
            ctx.reporter.info(f"training a teacher ({spec.name}, {epochs} epochs) -> {path}")
            data = train_teacher(dataset, recipe, ctx.device)
            torch_save(data, path)
    channels, size, _ = dataset.image_shape
    with torch.random.fork_rng(devices=[]):
        network = build_model(spec, dataset.num_classes, channels, size)
    network.load_state_dict(data["state_dict"])
    ctx.record(f"teachers/{path.stem}", {"path": str(path), "recipe": recipe.to_dict(), "test_acc": data["test_acc"]})
    return network.to(ctx.device).eval()


def _read_teacher(path: Path, dataset: ImageDataset | None = None) -> dict[str, Any] | None:
    """The teacher file's contents, or ``None`` if it is missing, not a complete teacher file, or (with
    ``dataset``) recorded for other data: other classes or class order, image shape, normalisation or
    content fingerprint (files written before the ``data`` entry are judged by their key alone)."""
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(data, dict) or data.get("format") != TEACHER_FORMAT or "state_dict" not in data:
        return None
    saved = data.get("data")
    if dataset is not None and isinstance(saved, dict):
        try:
            require_same_data(saved, dataset, what=f"teacher {path}", fix="it is trained again")
        except ConfigError:
            return None
    return data


def expert_network(
    experts: ExpertBuffer, spec: ModelSpec, dataset: ImageDataset, index: int = 0, epoch: int = -1,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The network of expert ``index`` after ``epoch`` (default: the last snapshot), in eval mode on ``device``.

    Built by :func:`ddcore.snapshot.classifier_from_snapshot`: batch-norm running statistics, which the
    snapshot does not hold, are recomputed from training images.
    """
    from ddcore.snapshot import classifier_from_snapshot

    flat = experts.trajectory(index)[epoch]
    return classifier_from_snapshot(spec, flat, dataset, shapes=experts.param_shapes, device=device)


def run_classifier(ctx: RunContext) -> nn.Module:
    """The run's own trained classifier, in eval mode on ``ctx.device``.

    The final snapshot of expert 0 when the run has expert trajectories (trajectory matching), else
    :func:`trained_teacher` on ``ctx.dataset`` with the run's network.
    """
    if ctx.experts is not None and ctx.model_spec is not None and ctx.dataset is not None:
        from ddcore.snapshot import norm_stat_layers, norm_stats_count

        network = expert_network(ctx.experts, ctx.model_spec, ctx.dataset, device=ctx.device)
        restored = {"norm_stats_images": norm_stats_count(ctx.dataset)} if norm_stat_layers(network) else {}
        ctx.record("classifier", {"source": "expert", "folder": str(ctx.experts.folder), "index": 0, **restored})
        return network
    return trained_teacher(ctx)


def torchvision_classifier(arch: str, weights: str | Path, num_classes: int | None = None) -> nn.Module:
    """A torchvision classification architecture with weights read from a local file (eval mode, CPU).

    ``weights`` holds a state dict (or a dict with ``state_dict`` / ``model``; ``module.`` prefixes
    accepted). ``num_classes`` defaults to what the file's last 2-D weight says. Every problem is a
    one-line :class:`ConfigError` naming the architecture or the file (:func:`ddcore.weights.load_torchvision`).
    """
    from ddcore.weights import load_torchvision

    return load_torchvision(arch, weights, num_classes)
