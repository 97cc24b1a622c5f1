"""The typed facade in front of the plugin manager: the only code that calls hook implementations.

It applies each hook's combination rule (see :mod:`ddcore.hookspecs`), validates every answer,
times every call, and names the plugin behind any failure. Implementations are called one by one,
in pluggy's order, so each answer is attributed to its plugin.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable

import torch
from pluggy import HookImpl

from ddcore.distilled import DistilledSet, Selection
from ddcore.errors import ConfigError, PluginCallError, PluginCrash, attributed_to  # noqa: F401 (PluginCrash re-exported)
from ddcore.plugins import BUILTIN_NAMES, DDPluginManager

if TYPE_CHECKING:
    import click

    from ddcore.context import RunContext
    from ddcore.data.base import ImageDataset
    from ddcore.data.registry import DatasetRegistry
    from ddcore.distillers import DistillerRegistry

logger = logging.getLogger("ddcore.hooks")

#: The firstresult hooks and the config key that picks one implementer.
STRATEGY_HOOKS = {"dd_select": "select", "dd_initialize": "initialize"}


class Hooks:
    """Call hooks through validated, attributed, order-independent entry points.

    Args:
        pm: the run's plugin manager.
        select: name of the plugin that must answer ``dd_select`` (``""``: decide automatically).
        initialize: likewise for ``dd_initialize``.
        trace: log every call with its result (also ``DD_TRACE_HOOKS=1``).
    """

    def __init__(self, pm: DDPluginManager, *, select: str = "", initialize: str = "", trace: bool | None = None):
        self.pm = pm
        self.trace = bool(os.environ.get("DD_TRACE_HOOKS")) if trace is None else trace
        self.stats: dict[str, dict[str, dict[str, float]]] = defaultdict(
            lambda: defaultdict(lambda: {"calls": 0, "seconds": 0.0})
        )
        self.strategy = {
            "dd_select": self._resolve_strategy("dd_select", select),
            "dd_initialize": self._resolve_strategy("dd_initialize", initialize),
        }

    # -- plumbing ------------------------------------------------------------------------------

    def _impls(self, hook: str) -> list[HookImpl]:
        """Implementations in pluggy's call order (tryfirst first, trylast last, LIFO otherwise)."""
        impls = list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))
        for impl in impls:
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                raise PluginCallError(
                    "uses a hook wrapper, which ddcore 0.1 does not support", hook=hook, plugin=impl.plugin_name
                )
        return impls

    def _dist(self, plugin: str) -> str | None:
        info = self.pm.infos.get(plugin)
        return info.label() if info and info.distribution else None

    def _call(self, hook: str, impl: HookImpl, **kwargs: Any) -> Any:
        """Call one implementation with the arguments it declares; attribute any failure."""
        args = {name: kwargs[name] for name in impl.argnames}
        started = time.perf_counter()
        try:
            with attributed_to(hook, impl.plugin_name, self._dist(impl.plugin_name)):
                result = impl.function(**args)
        finally:
            record = self.stats[hook][impl.plugin_name]
            record["calls"] += 1
            record["seconds"] += time.perf_counter() - started
        if self.trace:
            logger.warning("[hook] %s <- %s: %s", hook, impl.plugin_name, _summarise(result))
        return result

    def _error(self, hook: str, plugin: str, message: str) -> PluginCallError:
        return PluginCallError(message, hook=hook, plugin=plugin, dist=self._dist(plugin))

    # -- strategy hooks ---------------------------------------------------------------------------

    def _resolve_strategy(self, hook: str, chosen: str) -> str | None:
        """Decide, before any work, which plugin answers a firstresult hook (``None``: automatic)."""
        implementers = [impl.plugin_name for impl in self._impls(hook)]
        optional = [name for name in implementers if name not in BUILTIN_NAMES]
        key = STRATEGY_HOOKS[hook]
        if chosen:
            if chosen not in implementers:
                offered = ", ".join(implementers) or "none"
                raise ConfigError(
                    f"config key '{key}' names \"{chosen}\", which does not implement {hook} "
                    f"among the active plugins (implementers: {offered})"
                )
            return chosen
        if len(optional) > 1:
            names = " and ".join(f'"{name}"' for name in sorted(optional))
            raise ConfigError(
                f"{hook} is answered by two plugins, {names}; choose one with --{key} NAME (config key '{key}')"
            )
        return None

    def optional_implementers(self, hook: str) -> list[str]:
        """Requested (non-built-in) plugins implementing ``hook``."""
        return [impl.plugin_name for impl in self._impls(hook) if impl.plugin_name not in BUILTIN_NAMES]

    def _first_result(self, hook: str, **kwargs: Any) -> tuple[str, Any]:
        impls = self._impls(hook)
        chosen = self.strategy[hook]
        if chosen:
            impl = next(impl for impl in impls if impl.plugin_name == chosen)
            result = self._call(hook, impl, **kwargs)
            if result is None:
                raise self._error(hook, chosen, f"was chosen with --{STRATEGY_HOOKS[hook]} but returned None")
            return chosen, result
        optional = [impl for impl in impls if impl.plugin_name not in BUILTIN_NAMES]
        defaults = [impl for impl in impls if impl.plugin_name in BUILTIN_NAMES]
        for impl in optional + defaults:
            result = self._call(hook, impl, **kwargs)
            if result is not None:
                return impl.plugin_name, result
        raise PluginCallError("no plugin answered (the built-in default is missing)", hook=hook, plugin="-")

    def select(self, ctx: "RunContext", dataset: "ImageDataset", ipc: int) -> Selection:
        """``dd_select``: the chosen (or only) plugin's selection, else the built-in default."""
        plugin, selection = self._first_result("dd_select", ctx=ctx, dataset=dataset, ipc=ipc)
        if not isinstance(selection, Selection):
            raise self._error("dd_select", plugin, f"returned {type(selection).__name__}, expected ddcore.Selection")
        images, labels = selection.images, selection.labels
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(dataset.image_shape):
            raise self._error(
                "dd_select", plugin, f"returned images of shape {tuple(images.shape)}, expected [M, *{dataset.image_shape}]"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise self._error("dd_select", plugin, f"returned labels of shape {tuple(labels.shape)} for {images.shape[0]} images")
        problem = _selection_problem(selection, dataset)
        if problem:
            raise self._error("dd_select", plugin, f"returned {problem}")
        selection.meta.setdefault("selected_by", plugin)
        return selection

    def initialize(self, ctx: "RunContext", selection: Selection) -> DistilledSet:
        """``dd_initialize``: the chosen (or only) plugin's initial set, else the selection as it is."""
        plugin, distilled = self._first_result("dd_initialize", ctx=ctx, selection=selection)
        if not isinstance(distilled, DistilledSet):
            raise self._error("dd_initialize", plugin, f"returned {type(distilled).__name__}, expected ddcore.DistilledSet")
        try:
            distilled.validate()
        except ValueError as exc:
            raise self._error("dd_initialize", plugin, f"returned an invalid distilled set: {exc}") from exc
        problem = _distilled_problem(distilled, getattr(ctx, "dataset", None))
        if problem:
            raise self._error("dd_initialize", plugin, f"returned an invalid distilled set: {problem}")
        distilled.meta.setdefault("selected_by", selection.meta.get("selected_by"))
        distilled.meta.setdefault("initialized_by", plugin)
        return distilled

    # -- weighting hooks -------------------------------------------------------------------------

    def _product(self, hook: str, accepts: Callable[[torch.Size], bool], expected: str, **kwargs: Any) -> torch.Tensor | None:
        product = None
        for impl in self._impls(hook):
            weights = self._call(hook, impl, **kwargs)
            if weights is None:
                continue
            if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
                raise self._error(hook, impl.plugin_name, f"returned {type(weights).__name__}, expected a float tensor or None")
            if not accepts(weights.shape):
                raise self._error(hook, impl.plugin_name, f"returned weights of shape {list(weights.shape)}, expected {expected}")
            problem = _weights_problem(weights)
            if problem:
                raise self._error(hook, impl.plugin_name, f"returned {problem}; weights must be finite and >= 0")
            product = weights if product is None else product * weights
        return product

    def pixel_weights(self, ctx: "RunContext", images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor | None:
        """Product of the ``dd_pixel_weights`` answers, each broadcastable to ``[N, 1, H, W]``; ``None`` if all abstain."""
        n, _, h, w = images.shape
        target = (n, 1, h, w)
        return self._product(
            "dd_pixel_weights",
            lambda shape: _broadcastable(shape, target),
            f"a shape broadcastable to {list(target)}",
            ctx=ctx, images=images, labels=labels, step=step,
        )

    def supervision_weights(
        self, ctx: "RunContext", losses: torch.Tensor, distances: torch.Tensor, step: int
    ) -> torch.Tensor | None:
        """Product of the ``dd_supervision_weights`` answers, each of ``losses.shape``; ``None`` if all abstain.

        Raises:
            PluginCallError: an answer of the wrong shape or type, or with a NaN, infinite or negative
                value; it names the hook and the plugin that answered.
        """
        hook = "dd_supervision_weights"
        product = None
        for impl in self._impls(hook):
            weights = self._call(hook, impl, ctx=ctx, losses=losses, distances=distances, step=step)
            if weights is None:
                continue
            if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
                raise self._error(hook, impl.plugin_name, f"returned {type(weights).__name__}, expected a float tensor or None")
            if tuple(weights.shape) != tuple(losses.shape):
                raise self._error(
                    hook, impl.plugin_name,
                    f"returned weights of shape {list(weights.shape)}, expected the shape of losses, {list(losses.shape)}",
                )
            problem = _weights_problem(weights)
            if problem:
                raise self._error(hook, impl.plugin_name, f"returned {problem}; weights must be finite and >= 0")
            product = weights if product is None else product * weights
        return product

    # -- evaluation and registration --------------------------------------------------------------

    def evaluate(self, ctx: "RunContext", distilled: DistilledSet) -> dict[str, Any]:
        """Every plugin's metrics, keys namespaced ``"<plugin>/<metric>"``."""
        merged: dict[str, Any] = {}
        for impl in self._impls("dd_evaluate"):
            answer = self._call("dd_evaluate", impl, ctx=ctx, distilled=distilled)
            if answer is None:
                continue
            if not isinstance(answer, dict):
                raise self._error("dd_evaluate", impl.plugin_name, f"returned {type(answer).__name__}, expected a dict")
            for key, value in answer.items():
                if not _is_metric(value):
                    raise self._error(
                        "dd_evaluate", impl.plugin_name, f"metric {key!r} is {type(value).__name__}, expected a number or list of numbers"
                    )
                bad = _non_finite(value)
                if bad is not None:
                    raise self._error(
                        "dd_evaluate", impl.plugin_name, f"metric {key!r} is {bad}; a metric must be a finite number"
                    )
                full = f"{impl.plugin_name}/{key}"
                if full in merged:
                    raise self._error("dd_evaluate", impl.plugin_name, f"metric {full!r} is reported twice")
                merged[full] = value
        return merged

    def register_datasets(self, registry: "DatasetRegistry") -> "DatasetRegistry":
        """Let every plugin add datasets; a name clash names both plugins.

        Each factory is wrapped so that the dataset it builds is checked where it is produced
        (:func:`dataset_problem`): an inconsistent dataset is a :class:`PluginCallError` naming the
        dataset and the plugin that registered it.
        """
        for impl in self._impls("dd_register_datasets"):
            register = _checked_registrar(registry.registrar(impl.plugin_name), impl.plugin_name, self)
            self._call("dd_register_datasets", impl, register=register)
        return registry

    def register_distillers(self, registry: "DistillerRegistry") -> "DistillerRegistry":
        """Let every plugin add distillers (the built-in ``tm`` among them); a name clash names both plugins."""
        for impl in self._impls("dd_register_distillers"):
            self._call("dd_register_distillers", impl, register=registry.registrar(impl.plugin_name))
        return registry

    # -- plugin state in checkpoints ---------------------------------------------------------------

    def state_dicts(self, ctx: "RunContext") -> dict[str, Any]:
        """``{plugin: state}`` of every plugin answering ``dd_state_dict`` (abstainers left out)."""
        states: dict[str, Any] = {}
        for impl in self._impls("dd_state_dict"):
            state = self._call("dd_state_dict", impl, ctx=ctx)
            if state is None:
                continue
            if not isinstance(state, dict):
                raise self._error("dd_state_dict", impl.plugin_name, f"returned {type(state).__name__}, expected a dict or None")
            states[impl.plugin_name] = state
        return states

    def load_state_dicts(self, ctx: "RunContext", states: dict[str, Any]) -> None:
        """Hand each plugin the state it saved (``dd_load_state_dict``); a saved state nobody takes is an error."""
        takers = {impl.plugin_name: impl for impl in self._impls("dd_load_state_dict")}
        for plugin, state in states.items():
            if plugin not in takers:
                raise ConfigError(
                    f"the checkpoint holds the state of plugin '{plugin}', which is not active (or cannot load it); "
                    f"resume with --plugin {plugin}"
                )
            self._call("dd_load_state_dict", takers[plugin], ctx=ctx, state=state)

    def register_commands(self, cli: "click.Group") -> None:
        """Let every plugin add subcommands; taking an existing name is an error naming the plugin."""
        for impl in self._impls("dd_register_commands"):
            before = dict(cli.commands)
            self._call("dd_register_commands", impl, cli=cli)
            replaced = sorted(name for name, command in before.items() if cli.commands.get(name) is not command)
            if replaced:
                cli.commands.update(before)
                raise self._error("dd_register_commands", impl.plugin_name, f"tried to replace the command(s) {', '.join(replaced)}")

    def stats_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """Calls and seconds per hook and plugin (recorded in the manifest)."""
        return {hook: {plugin: dict(rec) for plugin, rec in per.items()} for hook, per in self.stats.items()}


# -- answer checks: each returns a phrase describing the first problem, or None ------------------


def _checked_registrar(register: Callable[..., None], plugin: str, hooks: "Hooks") -> Callable[..., None]:
    """``register`` with every factory wrapped by :func:`_checked_factory`."""

    def checked(name: str, factory: Callable[..., Any], **kwargs: Any) -> None:
        register(name, _checked_factory(name, factory, plugin, hooks) if callable(factory) else factory, **kwargs)

    return checked


def _checked_factory(name: str, factory: Callable[..., Any], plugin: str, hooks: "Hooks") -> Callable[..., Any]:
    def build(options: Any) -> Any:
        dataset = factory(options)
        from ddcore.data.base import ImageDataset

        if isinstance(dataset, ImageDataset):  # other types: the registry's own error
            problem = dataset_problem(dataset)
            if problem:
                raise hooks._error(
                    "dd_register_datasets", plugin, f'dataset "{name}" factory returned an inconsistent dataset: {problem}'
                )
        return dataset

    build.__wrapped__ = factory  # type: ignore[attr-defined]
    return build


def dataset_problem(dataset: "ImageDataset") -> str | None:
    """The first inconsistency of a dataset a factory built, or ``None``.

    Checked without reading more than one image per split: class names (non-empty, unique strings),
    ``image_shape`` (three positive ints), ``mean``/``std`` (one finite value per channel, std > 0),
    each split non-empty with one target per item and targets in ``[0, num_classes)``, every class
    present in ``train``, and the first image of each split a finite ``image_shape`` tensor.
    """
    names = list(dataset.class_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        return f"class_names must be distinct non-empty strings, got {names[:5]!r}{'...' if len(names) > 5 else ''}"
    shape = tuple(dataset.image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        return f"image_shape must be (C, H, W) of positive ints, got {shape!r}"
    mean, std = list(dataset.mean), list(dataset.std)
    if len(mean) != shape[0] or len(std) != shape[0]:
        return f"mean and std need one value per channel ({shape[0]}), got {len(mean)} and {len(std)}"
    if not all(math.isfinite(float(m)) for m in mean) or not all(math.isfinite(float(s)) and float(s) > 0 for s in std):
        return f"mean must be finite and std finite and > 0, got mean {mean} std {std}"
    k = len(names)
    for split_name in ("train", "test", "val"):
        split = getattr(dataset, split_name, None)
        if split is None:
            if split_name == "val":
                continue
            return f"the {split_name} split is missing"
        n = len(split)
        if n == 0:
            return f"the {split_name} split is empty"
        targets = getattr(split, "targets", None)
        if targets is None or len(targets) != n:
            return f"the {split_name} split has {n} items but {'no' if targets is None else len(targets)} targets"
        labels = torch.as_tensor(list(targets) if not isinstance(targets, torch.Tensor) else targets)
        if labels.is_floating_point() or int(labels.min()) < 0 or int(labels.max()) >= k:
            return f"the {split_name} split's targets must be class ids in [0, {k}) for {k} class names, got {_range(labels)}"
        if split_name == "train":
            missing = sorted(set(range(k)) - set(labels.tolist()))
            if missing:
                return f"class {names[missing[0]]!r} has no training image ({len(missing)} class(es) without any)"
        first = _first_image(split)
        if not isinstance(first, torch.Tensor) or tuple(first.shape) != shape:
            got = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
            return f"the {split_name} split's images are {got}, but image_shape is {shape}"
        if not bool(torch.isfinite(first).all()):
            return f"the {split_name} split's first image holds NaN or infinite values"
    return None


def _first_image(split: Any) -> Any:
    images = getattr(split, "images", None)
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images[0]
    return split[0][0]


def _range(values: torch.Tensor) -> str:
    if values.numel() == 0:
        return "none"
    return f"{values.min().item()} .. {values.max().item()}"


def _weights_problem(weights: torch.Tensor) -> str | None:
    """``None`` when every weight is finite and >= 0, else what is wrong (how many NaN, inf, negative)."""
    detached = weights.detach()
    nan = int(torch.isnan(detached).sum())
    if nan:
        return f"{nan} NaN weight(s)"
    inf = int(torch.isinf(detached).sum())
    if inf:
        return f"{inf} infinite weight(s)"
    negative = int((detached < 0).sum())
    if negative:
        return f"{negative} negative weight(s) (min {detached.min().item():.4g})"
    return None


def _selection_problem(selection: Selection, dataset: "ImageDataset") -> str | None:
    """Value checks of a ``dd_select`` answer (shapes are checked before): see the hook's contract."""
    images, labels, indices = selection.images, selection.labels, selection.indices
    if images.shape[0] == 0:
        return "no images"
    if not images.is_floating_point():
        return f"images of dtype {images.dtype}, expected float32"
    if not bool(torch.isfinite(images.detach()).all()):
        return f"images with {int((~torch.isfinite(images.detach())).sum())} NaN or infinite value(s)"
    if labels.is_floating_point() or labels.dtype == torch.bool:
        return f"labels of dtype {labels.dtype}, expected int64 class ids"
    k = dataset.num_classes
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        bad = labels[(labels < 0) | (labels >= k)]
        return f"label {int(bad[0])}, outside the dataset's classes 0 .. {k - 1}"
    if indices is not None:
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or tuple(indices.shape) != (images.shape[0],):
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            return f"indices {shape}, expected None or [{images.shape[0]}] int64 positions in dataset.train"
        n = len(dataset.train)
        if int(indices.min()) < 0 or int(indices.max()) >= n:
            return f"indices outside dataset.train (0 .. {n - 1}): {_range(indices)}"
        targets = torch.as_tensor([int(dataset.train.targets[i]) for i in indices.tolist()])
        wrong = (targets != labels.cpu().to(targets.dtype)).nonzero().flatten()
        if wrong.numel():
            i = int(wrong[0])
            return (
                f"label {int(labels[i])} for training image {int(indices[i])}, whose class is {int(targets[i])} "
                f"({wrong.numel()} such mismatch(es))"
            )
    return None


def _distilled_problem(distilled: DistilledSet, dataset: "ImageDataset | None") -> str | None:
    """Value checks of a ``dd_initialize`` answer beyond :meth:`DistilledSet.validate`."""
    images, labels = distilled.images, distilled.labels
    if images.shape[0] == 0:
        return "no images"
    if not bool(torch.isfinite(images.detach()).all()):
        return f"images with {int((~torch.isfinite(images.detach())).sum())} NaN or infinite value(s)"
    if labels.is_floating_point() and not bool(torch.isfinite(labels.detach()).all()):
        return "soft labels with NaN or infinite values"
    lr = distilled.lr
    if lr is not None:
        value = float(lr.detach().reshape(-1)[0]) if isinstance(lr, torch.Tensor) and lr.numel() == 1 else lr
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            return f"lr = {value!r}, expected None or a finite number > 0"
    if dataset is not None and list(distilled.class_names) != list(dataset.class_names):
        return f"{len(distilled.class_names)} class names that differ from the dataset's ({len(dataset.class_names)})"
    return None


def _non_finite(value: Any) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, float) and not math.isfinite(item):
            return repr(item) if not isinstance(value, (list, tuple)) else f"a list holding {item!r}"
    return None


def _broadcastable(shape: torch.Size, target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    for have, want in zip(reversed(tuple(shape)), reversed(target)):
        if have not in (1, want):
            return False
    return True


def _is_metric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _summarise(result: Any) -> str:
    if isinstance(result, torch.Tensor):
        return f"tensor{list(result.shape)} min={result.min().item():.4g} max={result.max().item():.4g}"
    if isinstance(result, (Selection, DistilledSet)):
        return f"{type(result).__name__}(images={list(result.images.shape)}, labels={list(result.labels.shape)})"
    return repr(result)[:200]
