"""DD-Ranking's robustness scores as pure functions: the label-robust score (LRS) and the augmentation-robust
score (ARS), in **fractions** as the paper defines them.

Source: Li et al., *DD-Ranking: Rethinking the Evaluation of Dataset Distillation*, arXiv 2505.13300,
section "Label-Robust Score" and "Augmentation-Robust Score", restated in the DD-Ranking README (v0.2.0):

- hard-label recovery ``HLR = Acc(real-hard) - Acc(syn-hard)``: the full training set and the synthetic set,
  both trained with hard labels;
- improvement over random ``IOR = Acc(syn-any) - Acc(rdm-any)``: the synthetic set with the method's own
  evaluation (its labels) and a random real subset of the same size evaluated the same way;
- ``alpha = w * IOR - (1 - w) * HLR`` with ``w`` in ``[0, 1]`` (the leaderboard's ``w = 0.5``);
- ``LRS = (e^alpha - e^-1) / (e - e^-1)``;
- ``beta = gamma * (Acc(syn-aug) - Acc(rdm-aug)) + (1 - gamma) * (Acc(syn-naug) - Acc(rdm-naug))``, with
  and without the training augmentation, ``ARS = (e^beta - e^-1) / (e - e^-1)``.

Accuracies are fractions in ``[0, 1]``, so HLR, IOR and both differences lie in ``[-1, 1]``, ``alpha`` and
``beta`` too, and the normalisation maps ``[-1, 1]`` onto ``[0, 1]``: -1 -> 0, +1 -> 1, and 0 (no recovery
gap, no gain over random) -> :data:`MIDPOINT` = ``(1 - e^-1) / (e - e^-1)`` ~ 0.2689 (not 0.5: the map is
convex; it equals 1 / (1 + e)).

DD-Ranking 0.2.0 (``ddranking/metrics/hard_label.py``, ``soft_label.py``, ``aug_robust.py``) feeds the same
formula accuracies in percentage points: ``alpha`` is then up to 100 times too large, ``e^alpha`` explodes and
the "score" leaves ``[0, 1]`` (a 6-point HLR and a 15-point IOR give ``alpha = 4.5`` and 38.1 instead of
0.2885). Every function here refuses a value that cannot be a fraction, with a message saying to divide by 100
(:func:`fraction_from_percent` does so explicitly).

Importing this module imports no torch.
"""

from __future__ import annotations

import math
from typing import Sequence

#: ``e^-1``, ``e`` and the score of ``alpha = 0`` (IOR = HLR = 0): the normalisation's fixed points.
E_MINUS = math.exp(-1.0)
E_PLUS = math.e
MIDPOINT = (1.0 - E_MINUS) / (E_PLUS - E_MINUS)
#: The leaderboard's default weights (``w`` of LRS, ``gamma`` of ARS).
DEFAULT_WEIGHT = 0.5


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_accuracy(value: float, name: str = "accuracy") -> float:
    """``value`` as a float when it is an accuracy fraction in ``[0, 1]``.

    Raises:
        ValueError: not a finite number, below 0, or above 1 (the message says an accuracy in percent must be
            divided by 100 first: DD-Ranking 0.2.0's mistake).

    >>> check_accuracy(0.9167)
    0.9167
    >>> check_accuracy(91.67)
    Traceback (most recent call last):
    ValueError: accuracy must be a fraction in [0, 1], got 91.67: an accuracy in percent must be divided by 100 first
    """
    value = _finite(value, name)
    if not 0.0 <= value <= 1.0:
        hint = ": an accuracy in percent must be divided by 100 first" if 1.0 < value <= 100.0 else ""
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value:g}{hint}")
    return value


def check_difference(value: float, name: str) -> float:
    """``value`` as a float when it is a difference of two accuracy fractions, in ``[-1, 1]``.

    Raises:
        ValueError: not finite or outside ``[-1, 1]`` (then it is in percentage points: divide by 100).
    """
    value = _finite(value, name)
    if not -1.0 <= value <= 1.0:
        hint = ": a difference in percentage points must be divided by 100 first" if abs(value) <= 100.0 else ""
        raise ValueError(f"{name} must be a difference of accuracy fractions, in [-1, 1], got {value:g}{hint}")
    return value


def check_weight(value: float, name: str = "w") -> float:
    """``value`` as a float when it is a weight in ``[0, 1]``; else ``ValueError``."""
    value = _finite(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"weight {name} must be in [0, 1], got {value:g}")
    return value


def fraction_from_percent(percent: float, name: str = "accuracy") -> float:
    """An accuracy in percent (ddcore's metrics, ``[0, 100]``) as the fraction the scores take.

    >>> round(fraction_from_percent(91.67), 6)
    0.9167
    """
    value = _finite(percent, name)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be a percentage in [0, 100], got {value:g}")
    return value / 100.0


def exp_normalise(x: float, name: str = "alpha") -> float:
    """``(e^x - e^-1) / (e - e^-1)``: maps ``x`` in ``[-1, 1]`` onto ``[0, 1]`` (arXiv 2505.13300, the LRS
    normalisation; ARS "normalised similarly").

    Raises:
        ValueError: ``x`` outside ``[-1, 1]`` (a weighted sum of percentage points, not of fractions).

    >>> exp_normalise(-1.0), exp_normalise(1.0), round(exp_normalise(0.0), 4)
    (0.0, 1.0, 0.2689)
    """
    x = check_difference(x, name)
    score = (math.exp(x) - E_MINUS) / (E_PLUS - E_MINUS)
    return min(1.0, max(0.0, score))  # only float rounding at the two ends


def hard_label_recovery(acc_full_hard: float, acc_syn_hard: float) -> float:
    """``HLR = Acc(real-hard) - Acc(syn-hard)`` (fractions): how much of the full training set's accuracy the
    synthetic set, trained with hard labels, fails to recover. Lower is better; in ``[-1, 1]``.

    >>> round(hard_label_recovery(0.97, 0.91), 10)
    0.06
    """
    return check_accuracy(acc_full_hard, "Acc(real-hard)") - check_accuracy(acc_syn_hard, "Acc(syn-hard)")


def improvement_over_random(acc_syn_any: float, acc_rdm_any: float) -> float:
    """``IOR = Acc(syn-any) - Acc(rdm-any)`` (fractions): the synthetic set's gain over a random real subset of
    the same size under the same evaluation (labels, augmentation, lr). Higher is better; in ``[-1, 1]``.

    >>> round(improvement_over_random(0.91, 0.76), 10)
    0.15
    """
    return check_accuracy(acc_syn_any, "Acc(syn-any)") - check_accuracy(acc_rdm_any, "Acc(rdm-any)")


def label_robust_score(hlr: float, ior: float, w: float = DEFAULT_WEIGHT) -> float:
    """``LRS = exp_normalise(w * IOR - (1 - w) * HLR)`` in ``[0, 1]`` (arXiv 2505.13300, LRS).

    Args:
        hlr: hard-label recovery (:func:`hard_label_recovery`), a fraction difference in ``[-1, 1]``.
        ior: improvement over random (:func:`improvement_over_random`), in ``[-1, 1]``.
        w: the weight of IOR, in ``[0, 1]`` (0.5 on DD-Ranking's leaderboard).

    Raises:
        ValueError: an input outside its range (HLR or IOR in percentage points: divide by 100).

    >>> round(label_robust_score(0.06, 0.15), 4)
    0.2885
    >>> label_robust_score(0.0, 0.0) == MIDPOINT
    True
    """
    hlr = check_difference(hlr, "HLR")
    ior = check_difference(ior, "IOR")
    w = check_weight(w, "w")
    return exp_normalise(w * ior - (1.0 - w) * hlr, "alpha")


def augmentation_robust_score(aug_gain: float, naug_gain: float, gamma: float = DEFAULT_WEIGHT) -> float:
    """``ARS = exp_normalise(gamma * aug_gain + (1 - gamma) * naug_gain)`` in ``[0, 1]`` (arXiv 2505.13300, ARS).

    Args:
        aug_gain: ``Acc(syn-aug) - Acc(rdm-aug)``, fractions, both trained with the augmentation.
        naug_gain: ``Acc(syn-naug) - Acc(rdm-naug)``, both trained without any augmentation.
        gamma: the weight of the augmented gain, in ``[0, 1]``.

    >>> round(augmentation_robust_score(0.15, 0.20), 4)
    0.3503
    """
    aug_gain = check_difference(aug_gain, "Acc(syn-aug) - Acc(rdm-aug)")
    naug_gain = check_difference(naug_gain, "Acc(syn-naug) - Acc(rdm-naug)")
    gamma = check_weight(gamma, "gamma")
    return exp_normalise(gamma * aug_gain + (1.0 - gamma) * naug_gain, "beta")


def lrs_from_accuracies(acc_full_hard: float, acc_syn_hard: float, acc_syn_any: float, acc_rdm_any: float,
                        w: float = DEFAULT_WEIGHT) -> dict[str, float]:  # fmt: skip
    """One network's LRS and its parts from four accuracy fractions: ``{"hlr", "ior", "alpha", "lrs"}``.

    >>> {k: round(v, 4) for k, v in lrs_from_accuracies(0.97, 0.91, 0.91, 0.76).items()}
    {'hlr': 0.06, 'ior': 0.15, 'alpha': 0.045, 'lrs': 0.2885}
    """
    hlr = hard_label_recovery(acc_full_hard, acc_syn_hard)
    ior = improvement_over_random(acc_syn_any, acc_rdm_any)
    w = check_weight(w, "w")
    return {"hlr": hlr, "ior": ior, "alpha": w * ior - (1.0 - w) * hlr, "lrs": label_robust_score(hlr, ior, w)}


def ars_from_accuracies(acc_syn_aug: float, acc_rdm_aug: float, acc_syn_naug: float, acc_rdm_naug: float,
                        gamma: float = DEFAULT_WEIGHT) -> dict[str, float]:  # fmt: skip
    """One network pair's ARS and its parts from four accuracy fractions: ``{"aug_gain", "naug_gain", "beta", "ars"}``.

    >>> {k: round(v, 4) for k, v in ars_from_accuracies(0.91, 0.76, 0.85, 0.65).items()}
    {'aug_gain': 0.15, 'naug_gain': 0.2, 'beta': 0.175, 'ars': 0.3503}
    """
    aug_gain = check_accuracy(acc_syn_aug, "Acc(syn-aug)") - check_accuracy(acc_rdm_aug, "Acc(rdm-aug)")
    naug_gain = check_accuracy(acc_syn_naug, "Acc(syn-naug)") - check_accuracy(acc_rdm_naug, "Acc(rdm-naug)")
    gamma = check_weight(gamma, "gamma")
    beta = gamma * aug_gain + (1.0 - gamma) * naug_gain
    return {"aug_gain": aug_gain, "naug_gain": naug_gain, "beta": beta, "ars": augmentation_robust_score(aug_gain, naug_gain, gamma)}


def per_run(fn, *rows: Sequence[float], **weights: float) -> dict[str, list[float]]:
    """``fn`` (:func:`lrs_from_accuracies` or :func:`ars_from_accuracies`) applied to repeat ``r`` of every row
    (accuracy fractions, paired by repeat): ``{part: [value of repeat 0, 1, ...]}``.

    Raises:
        ValueError: the rows differ in length or are empty.

    >>> per_run(lrs_from_accuracies, [0.97], [0.91], [0.91], [0.76])["hlr"] == [hard_label_recovery(0.97, 0.91)]
    True
    """
    lengths = {len(row) for row in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"per_run: rows of {sorted(len(row) for row in rows)} values cannot be paired by repeat")
    parts = [fn(*values, **weights) for values in zip(*rows)]
    return {key: [part[key] for part in parts] for key in parts[0]}
