"""A run's *fingerprint*: everything that shapes its result, so that saved state is only ever continued
by the run that made it.

``dd run --resume RUN_DIR`` continues a run from what its directory holds (``checkpoints/initial.pt``,
the newest ``checkpoints/<distiller>-<step>.pt``, ``distilled.pt``). Each of these records the
fingerprint of the run that wrote it (``manifest.json``, ``checkpoints/initial-records.json``, and
inside each checkpoint), and a resume whose fingerprint differs is refused with one line naming the
first differing key (:func:`first_difference`: config keys before ``data.*``, so the option the user
changed is named rather than the data signature it changed with it).

The fingerprint is a flat mapping ``{dotted key: value}`` (JSON-able) of

* the resolved run config (:meth:`ddcore.config.RunConfig.to_dict`, the distiller's table after its
  preset) without the keys in :data:`NOT_SHAPING` (where the run writes, how many loader workers,
  which folder the data or the cache is in, the run's display name);
* ``plugins``: the names of the active plugins that a resume re-activates (entry points and files);
* ``data.*``: :func:`ddcore.datasig.data_signature` of the run's dataset (classes, image shape,
  normalisation and the content fingerprint).

Once the distilled set is saved, ``eval.*`` no longer shapes it: :func:`first_difference` with
``distilled=True`` ignores those keys, so a failed evaluation can be redone with other ``[eval]``
options (``dd run --resume RUN_DIR --set eval.labels=hard``).
"""

from __future__ import annotations

import functools

from typing import Any, Mapping, Sequence

#: Top-level config keys that never change what a run computes.
NOT_SHAPING = frozenset({"name", "out", "overwrite", "workers", "cache_dir", "data_root", "cpu", "plugins", "log_with"})

#: Key prefixes that concern only the evaluation, which follows the distilled set.
EVALUATION_ONLY = ("eval.", "robustness.")

#: The flags of ``dd run`` for config keys, to name the option in messages.
FLAGS = {
    "dataset": "--dataset", "image_size": "--image-size", "ipc": "--ipc", "seed": "--seed",
    "select": "--select", "initialize": "--initialize", "distill": "--distill", "plugins": "--plugin",
    "eval.runs": "--eval-runs", "eval.epochs": "--eval-epochs", "eval.model": "--eval-model", "eval.labels": "--labels",
}  # fmt: skip


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in sorted(value, key=str):
            _flatten(value[key], f"{prefix}{key}.", into)
    else:
        into[prefix[:-1]] = list(value) if isinstance(value, tuple) else value


def run_fingerprint(config: Mapping[str, Any], plugins: Sequence[str], data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fingerprint of a run (module docstring).

    Args:
        config: the resolved config as a mapping (``RunConfig.to_dict()``).
        plugins: names of the active plugins a resume re-activates, in activation order.
        data: :func:`ddcore.datasig.data_signature` of the run's dataset (``None`` before it is built).

    Returns ``{dotted key: JSON-able value}``.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key not in NOT_SHAPING:
            _flatten(value, f"{key}.", flat)
    flat["plugins"] = list(plugins)
    if data is not None:
        _flatten(dict(data), "data.", flat)
    return flat


def first_difference(saved: Mapping[str, Any], now: Mapping[str, Any], *, distilled: bool = False) -> str | None:
    """The first differing key between two fingerprints, or ``None`` when they agree.

    Config keys (and ``plugins``) are compared first, in sorted order, and only then the ``data.*`` keys:
    a changed option (``image_size``, ``tm.eval_every`` carving a validation split) also changes the data
    signature, and the option is what the user has to fix. With ``distilled`` (the distilled set is
    saved), :data:`EVALUATION_ONLY` keys are not compared. A key present on one side only counts as a
    difference, except a config key the saved run does not record whose value now is ddcore's default:
    an option added by a later ddcore, left at its default, cannot have shaped the earlier run.
    """
    defaults = default_fingerprint()
    for key in sorted(set(saved) | set(now), key=lambda k: (k.startswith("data."), k)):
        if distilled and key.startswith(EVALUATION_ONLY):
            continue
        if key not in saved and key in now and key in defaults and _normal(now[key]) == _normal(defaults[key]):
            continue
        if key not in saved or key not in now or _normal(saved[key]) != _normal(now[key]):
            return key
    return None


@functools.lru_cache(maxsize=1)
def default_fingerprint() -> dict[str, Any]:
    """The config part of the fingerprint of ``RunConfig()`` (every key at its default)."""
    from ddcore.config import RunConfig

    return run_fingerprint(RunConfig().to_dict(), [], None)


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def describe_difference(key: str, saved: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """``"tm.iterations (the run has 200, now 5; option --set tm.iterations=)"`` for messages."""
    flag = FLAGS.get(key)
    option = f"option {flag}" if flag else ("the data (--data-root / --dataset)" if key.startswith("data.") else f"option --set {key}=")
    old = _short(saved.get(key, "(not recorded)"))
    new = _short(now.get(key, "(not set)"))
    return f"{key} (the run has {old}, now {new}; {option})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
