"""The option vocabularies and the expert defaults, in one place (no torch: the config and the CLI import it).

Every list of accepted values for an optimiser, a learning-rate schedule or a training augmentation is
one of the ``Literal`` types below; :class:`~ddcore.config.EvalConfig`, :class:`~ddcore.config.ExpertsConfig`,
:class:`~ddcore.tm.config.TMConfig`, the expert recipe (:mod:`ddcore.tm.experts`), the ``dd`` options
(``click.Choice``) and plugins refer to them instead of writing the values out again. The tuples
(``OPTIMIZERS``, ...) are the same values for ``in`` checks and messages.

>>> OPTIMIZERS, SCHEDULES, AUGMENTS
(('sgd', 'adam', 'adamw'), ('step', 'cosine', 'constant'), ('none', 'crop', 'crop_flip', 'dsa'))
>>> AUGMENT_CHOICES[0], LABEL_MODES
('auto', ('auto', 'hard', 'soft'))
"""

from __future__ import annotations

from typing import Any, Literal, get_args

#: Optimisers of :class:`~ddcore.training.TrainRecipe` (the evaluator, experts, teachers).
Optimizer = Literal["sgd", "adam", "adamw"]
#: Learning-rate schedules: ``step`` (x0.1 at half the epochs), ``cosine``, ``constant``.
Schedule = Literal["step", "cosine", "constant"]
#: Training augmentations of a :class:`~ddcore.training.TrainRecipe` (see :func:`ddcore.training.make_augment`).
Augment = Literal["none", "crop", "crop_flip", "dsa"]
#: A training augmentation as configured: ``auto`` is the dataset's default (:func:`resolve_augment`).
AugmentOption = Literal["auto", "none", "crop", "crop_flip", "dsa"]
#: The differentiable augmentation of trajectory matching's unrolled student (``tm.augment``).
MatchAugment = Literal["dsa", "none"]
#: Which labels the evaluator trains with (``eval.labels``).
LabelMode = Literal["auto", "hard", "soft"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
AUGMENTS: tuple[str, ...] = get_args(Augment)
AUGMENT_CHOICES: tuple[str, ...] = get_args(AugmentOption)
MATCH_AUGMENTS: tuple[str, ...] = get_args(MatchAugment)
LABEL_MODES: tuple[str, ...] = get_args(LabelMode)

#: The augmentation ``auto`` means for a dataset that names none (``dataset.extra["default_augment"]``).
DEFAULT_AUGMENT = "crop_flip"

#: How expert trajectories are trained unless told otherwise (MTT's buffer recipe, minus its DSA):
#: the defaults of ``[experts]`` (:class:`~ddcore.config.ExpertsConfig`), of ``dd experts`` and of
#: :meth:`ddcore.tm.experts.ExpertRecipe.build` (which takes ``augment = "none"`` when not given, since
#: it has no dataset to resolve ``auto`` against). ``epochs`` is not here: ``0`` means what the
#: ``[tm]`` window needs (:func:`ddcore.tm.distiller.resolve_expert_recipe`).
EXPERT_DEFAULTS: dict[str, Any] = {
    "num": 5,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": "constant",
    "augment": "auto",
}


def default_augment(dataset: Any) -> str:
    """The augmentation ``auto`` stands for on ``dataset``: its ``extra["default_augment"]`` (``crop`` for
    digits: no flips for digits), else :data:`DEFAULT_AUGMENT`."""
    return dataset.extra.get("default_augment", DEFAULT_AUGMENT)


def resolve_augment(name: str, dataset: Any) -> str:
    """``"auto"`` -> :func:`default_augment` of ``dataset``; any other name is returned as is."""
    return default_augment(dataset) if name == "auto" else name
