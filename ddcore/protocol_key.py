"""The evaluation protocol of a finished run: what two accuracies must share to be compared.

An accuracy is only comparable with another one measured the same way: the same evaluator (the
built-in ``eval`` or a plugin's, e.g. the Comp-DD protocol), network (architecture, width, depth,
norm), training recipe (epochs, batch, optimiser, lr, momentum, weight decay, schedule,
augmentation), labels, learned-lr rule and image shape. :func:`run_protocol` reads that from a run's
``manifest.json``; reports and run comparisons group by the :class:`EvalProtocol` it returns and never
pool or subtract accuracies across two different ones (``dd compdd report`` does; a future
``dd compare`` can too).

Where it is read: an evaluator whose metrics are ``<name>/acc_runs`` records its resolved settings
(:meth:`ddcore.presets.ResolvedEval.to_dict` or any JSON mapping) with
``ctx.record("<name>/protocol", ...)`` or ``ctx.record("<name>", ...)``: the built-in evaluator
records ``"eval"``, the Comp-DD plugin ``"compdd/protocol"``. Every recorded setting is part of the key
except :data:`NOT_COMPARED` (how many networks were trained, which baselines ran beside, the test
batch size, the full-data baseline's recipe): unknown new settings count, so a new option can never be
silently pooled over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ddcore.errors import DDError

#: Recorded settings that do not change what one accuracy measures (sample size, side jobs).
NOT_COMPARED = frozenset({"runs", "baseline", "test_batch_size", "full_recipe"})


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if not prefix and key in NOT_COMPARED:
            continue
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _frozen(value)
    return flat


@dataclass(frozen=True)
class EvalProtocol:
    """How an accuracy was measured; equal keys mean comparable accuracies (hashable).

    Attributes:
        evaluator: the metric namespace of the evaluator (``"eval"``, ``"compdd"``, ...).
        settings: ``(dotted name, value)`` pairs, sorted (e.g. ``("recipe.epochs", 300)``).
    """

    evaluator: str
    settings: tuple[tuple[str, Any], ...]

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.settings).get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator, "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in self.settings}}

    def label(self) -> str:
        """One line for a reader, e.g. ``eval: convnet w32 d3 instancenorm, 300 epochs, batch 256, sgd lr 0.01 ...``.

        >>> EvalProtocol("eval", (("model.name", "convnet"), ("recipe.epochs", 300))).label()
        'eval: convnet, 300 epochs'
        """
        s = dict(self.settings)
        parts = []
        model = " ".join(str(x) for x in (s.get("model.name"), s.get("model.width") and f"w{s['model.width']}",
                                          s.get("model.depth") and f"d{s['model.depth']}", s.get("model.norm")) if x)  # fmt: skip
        if model:
            parts.append(model)
        if "recipe.epochs" in s:
            parts.append(f"{s['recipe.epochs']} epochs")
        if "recipe.batch_size" in s:
            parts.append(f"batch {s['recipe.batch_size']}")
        optimiser = " ".join(f"{name} {s[key]}" if name else str(s[key]) for name, key in (
            ("", "recipe.optimizer"), ("lr", "recipe.lr"), ("momentum", "recipe.momentum"), ("wd", "recipe.weight_decay"),
            ("", "recipe.schedule")) if key in s)  # fmt: skip
        if optimiser:
            parts.append(optimiser)
        if "recipe.augment" in s:
            parts.append(f"augment {s['recipe.augment']}")
        if "labels" in s:
            parts.append(f"labels {s['labels']}")
        if s.get("use_learned_lr"):
            parts.append("learned lr")
        if "image_shape" in s:
            parts.append("x".join(map(str, s["image_shape"])) + " px")
        shown = {"model.name", "model.width", "model.depth", "model.norm", "recipe.epochs", "recipe.batch_size",
                 "recipe.optimizer", "recipe.lr", "recipe.momentum", "recipe.weight_decay", "recipe.schedule",
                 "recipe.augment", "labels", "use_learned_lr", "image_shape"}  # fmt: skip
        parts += [f"{k} {v}" for k, v in self.settings if k not in shown]
        return f"{self.evaluator}: " + ", ".join(parts)

    def differences(self, other: "EvalProtocol", limit: int = 4) -> str:
        """What differs, one line: ``evaluator compdd vs eval; recipe.batch_size 128 vs 256; ...``.

        >>> EvalProtocol("compdd", (("recipe.epochs", 300),)).differences(EvalProtocol("eval", (("recipe.epochs", 50),)))
        'evaluator compdd vs eval; recipe.epochs 300 vs 50'
        """
        mine, theirs = dict(self.settings), dict(other.settings)
        diffs = [f"evaluator {self.evaluator} vs {other.evaluator}"] if self.evaluator != other.evaluator else []
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key, "unset") != theirs.get(key, "unset"):
                diffs.append(f"{key} {_show(mine.get(key, 'unset'))} vs {_show(theirs.get(key, 'unset'))}")
        more = len(diffs) - limit
        return "; ".join(diffs[:limit]) + (f"; and {more} more" if more > 0 else "") if diffs else "nothing"


def _show(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def protocol_of(evaluator: str, settings: Mapping[str, Any], image_shape: Any = None) -> EvalProtocol:
    """The key of an evaluator's recorded ``settings`` (and the images' ``[C, H, W]`` when known).

    >>> a = protocol_of("eval", {"runs": 3, "recipe": {"epochs": 300}}, [1, 32, 32])
    >>> a == protocol_of("eval", {"runs": 10, "recipe": {"epochs": 300}}, [1, 32, 32]), a.get("recipe.epochs")
    (True, 300)
    """
    flat = _flatten(settings)
    if image_shape is not None:
        flat["image_shape"] = _frozen(image_shape)
    return EvalProtocol(str(evaluator), tuple(sorted(flat.items())))


def recorded_settings(manifest: Mapping[str, Any], evaluator: str) -> Mapping[str, Any] | None:
    """What ``evaluator`` recorded in the manifest (``records["<name>/protocol"]``, else ``records["<name>"]``)."""
    records = manifest.get("records") or {}
    for key in (f"{evaluator}/protocol", evaluator):
        value = records.get(key)
        if isinstance(value, Mapping):
            return value
    return None


def run_protocol(manifest: Mapping[str, Any], evaluator: str, *, run: str = "the run") -> EvalProtocol:
    """The protocol behind ``<evaluator>/acc_runs`` of the run whose ``manifest.json`` is ``manifest``.

    Raises:
        DDError: one line naming ``run`` when the manifest does not record the evaluator's settings
            (nothing then says what its accuracies mean next to another run's).
    """
    settings = recorded_settings(manifest, evaluator)
    if settings is None:
        raise DDError(
            f"{run} does not record how its {evaluator} accuracies were measured (no records[{evaluator + '/protocol'!r}] "
            f"or records[{evaluator!r}] in manifest.json), so they cannot be compared with another run's; evaluate it again"
        )
    shape = (manifest.get("dataset") or {}).get("image_shape")
    return protocol_of(evaluator, settings, shape)
