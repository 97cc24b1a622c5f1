"""Per-dataset defaults: what ``"auto"`` and ``0`` mean in the ``[eval]`` configuration.

The literature's evaluator is a ConvNet of width 128 trained for 300-1000 epochs; on a 2-core CPU
that costs minutes per network even for 100 images, so the embedded ``digits`` data uses width 32
(measured ~1000 images/s for a training step on 2 cores, against ~130 for width 128). Every value
is recorded, resolved, in the run's manifest.

The network follows one rule, :func:`resolve_model` (``eval.depth = 0``: the depth from the image size,
:func:`convnet_depth`), used by the evaluator, the experts (hence the matcher), the teachers and the
bundled plugins' protocols; the run records the result as ``records["model"]``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ddcore.config import EvalConfig
from ddcore.data.base import ImageDataset
from ddcore.models import ModelSpec
from ddcore.training import TrainRecipe
from ddcore.vocab import resolve_augment

#: dataset name -> eval defaults that differ from the general ones.
EVAL_PRESETS: dict[str, dict] = {
    "digits": {"width": 32, "epochs": 300, "full_epochs": 50},
}
GENERAL_EVAL = {"width": 128, "epochs": 300, "full_epochs": 50}


@dataclass(frozen=True)
class ResolvedEval:
    """The built-in evaluator's settings with nothing left on ``auto``."""

    runs: int
    model: ModelSpec
    recipe: TrainRecipe
    full_recipe: TrainRecipe
    labels: str
    use_learned_lr: bool
    baseline: tuple[str, ...]
    test_batch_size: int

    def to_dict(self) -> dict:
        return asdict(self)


def convnet_depth(image_size: int) -> int:
    """The literature's ConvNet depth for a square image of side ``image_size`` px: 3 at 32, 4 at 64, 5 at 128.

    >>> convnet_depth(32), convnet_depth(64), convnet_depth(128), convnet_depth(28)
    (3, 4, 5, 3)
    """
    return max(1, round(math.log2(image_size)) - 2)


def dataset_eval_preset(dataset: ImageDataset) -> dict:
    """The evaluator defaults for ``dataset``: :data:`GENERAL_EVAL` updated by the preset of its family
    (``dataset.extra["presets"]``, set from ``register(..., presets=...)``) or of its name."""
    family = dataset.extra.get("presets") or dataset.name
    return {**GENERAL_EVAL, **EVAL_PRESETS.get(family, {})}


def resolve_model(
    dataset: ImageDataset, model: str = "auto", width: int = 0, depth: int = 0, norm: str = "instancenorm"
) -> ModelSpec:
    """The one rule that turns ``0``/``"auto"`` network options into a :class:`~ddcore.models.ModelSpec` for ``dataset``.

    Every place that builds the run's network goes through it: the evaluator (:func:`resolve_eval`), the
    experts (:func:`ddcore.tm.experts.recipe_for_dataset`), hence the matcher, the teachers, and the
    plugins' protocols (Comp-DD's evaluation, diffsel's KD student), so that a run's experts, matching
    and evaluation agree at every image size.

    Args:
        dataset: the data the network is for; its image side ``dataset.image_shape[-1]`` (px) decides the depth.
        model: a name of :data:`ddcore.models.MODEL_NAMES`; ``"auto"`` is ``"convnet"``.
        width: ConvNet width; ``0`` takes the dataset's evaluator preset (:func:`dataset_eval_preset`:
            32 for ``digits`` and its family, 128 otherwise).
        depth: ConvNet depth for ``model = "convnet"``; ``0`` takes :func:`convnet_depth` of the image
            size (3 at 32 px, 4 at 64, 5 at 128). ``convnetd3/4/5`` carry their depth in the name; the
            spec then records that depth.
        norm: the normalisation layer.

    """
    name = "convnet" if model == "auto" else model
    if name.startswith("convnetd") and name[len("convnetd"):].isdigit():
        depth = int(name[len("convnetd"):])
    width = width or dataset_eval_preset(dataset)["width"]
    return ModelSpec(name=name, width=width, depth=depth or convnet_depth(dataset.image_shape[-1]), norm=norm)


def resolve_eval(config: EvalConfig, dataset: ImageDataset) -> ResolvedEval:
    """The ``[eval]`` options with every ``0``/``"auto"`` resolved for ``dataset`` (network: :func:`resolve_model`)."""
    preset = dataset_eval_preset(dataset)
    model = resolve_model(dataset, config.model, config.width, config.depth, config.norm)
    augment = resolve_augment(config.augment, dataset)
    recipe = TrainRecipe(
        epochs=config.epochs or preset["epochs"],
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        augment=augment,
    )
    full_recipe = TrainRecipe(**{**recipe.to_dict(), "epochs": config.full_epochs or preset["full_epochs"]})
    return ResolvedEval(
        runs=config.runs,
        model=model,
        recipe=recipe,
        full_recipe=full_recipe,
        labels=config.labels,
        use_learned_lr=config.use_learned_lr,
        baseline=tuple(dict.fromkeys(config.baseline)),
        test_batch_size=config.test_batch_size,
    )
