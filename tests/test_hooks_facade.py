"""The hook facade (:class:`ddcore.hooks.Hooks`): strategy choice, weight products, metrics, attribution."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from core_support import assert_cli_error, write_plugin_file
from ddcore import ConfigError, PluginCallError, PluginError, PluginLoadError, Selection, hookimpl
from ddcore.data.registry import DatasetRegistry
from ddcore.hooks import Hooks, PluginCrash
from ddcore.plugins import DDPluginManager, PluginInfo

N, H, W = 2, 4, 4


def bare_hooks(*plugins: object, **kwargs) -> Hooks:
    """A facade over a manager holding only ``plugins`` (no built-ins), each registered under ``.name``."""
    pm = DDPluginManager()
    for plugin in plugins:
        pm.register_plugin(plugin, PluginInfo(name=plugin.name, source="object", value=type(plugin).__name__))
    pm.check()
    return Hooks(pm, **kwargs)


def fake_ctx() -> SimpleNamespace:
    return SimpleNamespace()


# ----------------------------------------------------------------------------------------------
# Plugins used below
# ----------------------------------------------------------------------------------------------


class Selector:
    """``dd_select``: the first (or last) ``ipc`` training images of each class, or None."""

    def __init__(self, name: str, pick: str = "first", answer: bool = True):
        self.name, self.pick, self.answer = name, pick, answer
        self.calls = 0

    @hookimpl
    def dd_select(self, ctx, dataset, ipc):
        self.calls += 1
        if not self.answer:
            return None
        by_class = dataset.indices_by_class("train")
        chosen = [i for idx in by_class for i in (idx[:ipc] if self.pick == "first" else idx[-ipc:])]
        images, labels = dataset.load("train", chosen)
        return Selection(images=images, labels=labels, indices=torch.tensor(chosen))


class Initializer:
    def __init__(self, name: str):
        self.name = name

    @hookimpl
    def dd_initialize(self, ctx, selection):
        return None


class PixelWeights:
    def __init__(self, name: str, weights: torch.Tensor | None):
        self.name, self.weights = name, weights
        self.seen: list[int] = []

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        self.seen.append(step)
        return self.weights


class SupervisionWeights:
    def __init__(self, name: str, weights: torch.Tensor | None):
        self.name, self.weights = name, weights

    @hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        return self.weights


class Metrics:
    def __init__(self, name: str, metrics: object):
        self.name, self.metrics = name, metrics

    @hookimpl
    def dd_evaluate(self, ctx, distilled):
        return self.metrics


class Datasets:
    def __init__(self, name: str, *datasets: str):
        self.name, self.datasets = name, datasets

    @hookimpl
    def dd_register_datasets(self, register):
        for dataset in self.datasets:
            register(dataset, lambda options: None, description=f"from {self.name}")


class Crashing:
    name = "crashy"

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        raise ZeroDivisionError("division by zero in the mask")


# ----------------------------------------------------------------------------------------------
# Strategy hooks: dd_select / dd_initialize
# ----------------------------------------------------------------------------------------------


def test_two_selectors_are_ambiguous(dd_pm):
    with pytest.raises(ConfigError) as info:
        Hooks(dd_pm([Selector("herding"), Selector("kcenter", pick="last")]))
    message = str(info.value)
    assert '"herding"' in message and '"kcenter"' in message
    assert "dd_select" in message and "--select" in message
    assert "\n" not in message


def test_two_selectors_via_the_cli_stop_before_any_work(cli, tiny_run_args, tmp_path):
    source = """
        from ddcore import hookimpl

        @hookimpl
        def dd_select(ctx, dataset, ipc):
            raise AssertionError("must not be called")
    """
    first = write_plugin_file(tmp_path, "herding", source)
    second = write_plugin_file(tmp_path, "kcenter", source)

    assert_cli_error(
        cli(*tiny_run_args("--plugin", first, "--plugin", second)), '"herding"', '"kcenter"', "--select", "dd_select"
    )
    assert not (tmp_path / "run").exists()


def test_two_initializers_are_ambiguous(dd_pm):
    with pytest.raises(ConfigError, match=r'dd_initialize.*"a-init" and "b-init".*--initialize'):
        Hooks(dd_pm([Initializer("b-init"), Initializer("a-init")]))


def test_a_builtin_and_one_plugin_are_not_ambiguous(dd_pm):
    hooks = Hooks(dd_pm([Selector("herding")]))
    assert hooks.strategy == {"dd_select": None, "dd_initialize": None}


@pytest.mark.parametrize("chosen", ["first", "last"])
def test_choosing_one_selector(run_tiny, chosen):
    plugins = {"first": Selector("first"), "last": Selector("last", pick="last")}

    result = run_tiny(plugins=list(plugins.values()), select=chosen, eval={"runs": 0})

    assert result.distilled.meta["selected_by"] == chosen
    assert plugins[chosen].calls == 1
    other = next(name for name in plugins if name != chosen)
    assert plugins[other].calls == 0
    assert set(result.manifest["hook_calls"]["dd_select"]) == {chosen}
    assert result.distilled.images.shape[0] == 10


def test_choosing_a_plugin_that_does_not_select(dd_pm):
    with pytest.raises(ConfigError, match=r"'select' names \"nobody\".*implementers: first, random-real"):
        Hooks(dd_pm([Selector("first")]), select="nobody")


def test_chosen_selector_returning_none_is_an_error(run_tiny):
    with pytest.raises(PluginCallError) as info:
        run_tiny(plugins=[Selector("lazy", answer=False), Selector("first")], select="lazy", eval={"runs": 0})
    assert info.value.hook == "dd_select" and info.value.plugin == "lazy"
    assert str(info.value) == 'dd_select: plugin "lazy" was chosen with --select but returned None'


def test_unchosen_selector_returning_none_falls_back_to_random_real(run_tiny):
    lazy = Selector("lazy", answer=False)

    result = run_tiny(plugins=[lazy], eval={"runs": 0})

    assert lazy.calls == 1
    assert result.distilled.meta["selected_by"] == "random-real"
    assert result.distilled.meta["initialized_by"] == "as-selected"


# ----------------------------------------------------------------------------------------------
# Weighting hooks: products, shapes, abstention
# ----------------------------------------------------------------------------------------------


def images_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(N, 3, H, W), torch.arange(N)


def test_pixel_weights_wrong_shape_names_the_plugin(dd_pm):
    hooks = Hooks(dd_pm([PixelWeights("edf", torch.ones(N, 3, H, W))]))
    images, labels = images_and_labels()

    with pytest.raises(PluginCallError) as info:
        hooks.pixel_weights(fake_ctx(), images, labels, step=0)

    assert (info.value.hook, info.value.plugin) == ("dd_pixel_weights", "edf")
    message = str(info.value)
    assert message.startswith('dd_pixel_weights: plugin "edf"')
    assert f"[{N}, 3, {H}, {W}]" in message and f"[{N}, 1, {H}, {W}]" in message


@pytest.mark.parametrize(
    "bad",
    [torch.ones(N + 1, 1, H, W), torch.ones(1, 1, H + 1, W), torch.ones(1, N, 1, H, W), torch.ones(N, 1, H, W, dtype=torch.long), [[1.0]]],
    ids=["batch", "height", "too-many-dims", "integer", "not-a-tensor"],
)
def test_pixel_weights_rejected_answers(dd_pm, bad):
    hooks = Hooks(dd_pm([PixelWeights("edf", bad)]))
    with pytest.raises(PluginCallError, match=r'^dd_pixel_weights: plugin "edf" returned'):
        hooks.pixel_weights(fake_ctx(), *images_and_labels(), step=3)


def test_pixel_weights_product_is_elementwise_and_order_independent(dd_pm):
    mask = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(0))  # one mask for every image
    scale = torch.tensor([0.5, 2.0]).view(N, 1, 1, 1)  # one factor per image
    full = torch.rand(N, 1, H, W, generator=torch.Generator().manual_seed(1))
    expected = mask * scale * full
    images, labels = images_and_labels()

    answers = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        plugins = [PixelWeights(name, w) for name, w in (("mask", mask), ("scale", scale), ("full", full))]
        hooks = Hooks(dd_pm([plugins[i] for i in order]))
        product = hooks.pixel_weights(fake_ctx(), images, labels, step=7)
        assert all(p.seen == [7] for p in plugins)
        answers.append(product)

    for product in answers:
        assert product.shape == (N, 1, H, W)
        torch.testing.assert_close(product, expected)
    assert torch.equal(answers[0], answers[1]) and torch.equal(answers[0], answers[2])


def test_pixel_weights_none_abstains(dd_pm):
    images, labels = images_and_labels()
    assert Hooks(dd_pm()).pixel_weights(fake_ctx(), images, labels, step=0) is None
    assert Hooks(dd_pm([PixelWeights("a", None), PixelWeights("b", None)])).pixel_weights(
        fake_ctx(), images, labels, step=0
    ) is None

    weights = torch.full((N, 1, 1, 1), 0.25)
    product = Hooks(dd_pm([PixelWeights("a", None), PixelWeights("b", weights)])).pixel_weights(
        fake_ctx(), images, labels, step=0
    )
    torch.testing.assert_close(product, weights)


def test_supervision_weights(dd_pm):
    losses, distances = torch.rand(6), torch.rand(6)
    a, b = torch.rand(6), torch.rand(6)
    for pair in ([a, b], [b, a]):
        hooks = Hooks(dd_pm([SupervisionWeights(f"w{i}", w) for i, w in enumerate(pair)] + [SupervisionWeights("x", None)]))
        torch.testing.assert_close(hooks.supervision_weights(fake_ctx(), losses, distances, step=1), a * b)
    assert Hooks(dd_pm([SupervisionWeights("x", None)])).supervision_weights(fake_ctx(), losses, distances, 1) is None


@pytest.mark.parametrize("bad", [torch.ones(7), torch.ones(1), torch.ones(6, 1)], ids=["longer", "broadcast", "2d"])
def test_supervision_weights_wrong_shape(dd_pm, bad):
    hooks = Hooks(dd_pm([SupervisionWeights("dropout", bad)]))
    with pytest.raises(PluginCallError) as info:
        hooks.supervision_weights(fake_ctx(), torch.rand(6), torch.rand(6), step=0)
    assert (info.value.hook, info.value.plugin) == ("dd_supervision_weights", "dropout")
    assert "the shape of losses, [6]" in str(info.value)


# ----------------------------------------------------------------------------------------------
# dd_evaluate: namespaced metrics, validated values
# ----------------------------------------------------------------------------------------------


def test_evaluate_metrics_are_namespaced():
    hooks = bare_hooks(
        Metrics("alpha", {"score": 1.5, "runs": [1, 2.5]}),
        Metrics("beta", {"score": 2}),
        Metrics("quiet", None),
    )
    assert hooks.evaluate(fake_ctx(), distilled=None) == {"alpha/score": 1.5, "alpha/runs": [1, 2.5], "beta/score": 2}


def test_evaluate_metrics_through_a_run(run_tiny):
    result = run_tiny(plugins=[Metrics("alpha", {"score": 1.5}), Metrics("beta", {"score": 2.5})], eval={"runs": 0})
    assert result.metrics == {"alpha/score": 1.5, "beta/score": 2.5}


@pytest.mark.parametrize(
    "metrics, kind",
    [({"acc": "high"}, "str"), ({"acc": True}, "bool"), ({"acc": torch.tensor(1.0)}, "Tensor"), ({"acc": [1.0, "x"]}, "list"), ({"acc": None}, "NoneType")],
)
def test_evaluate_rejects_non_numeric_metrics(metrics, kind):
    hooks = bare_hooks(Metrics("alpha", metrics))
    with pytest.raises(PluginCallError) as info:
        hooks.evaluate(fake_ctx(), distilled=None)
    assert info.value.plugin == "alpha"
    assert str(info.value) == (
        f"dd_evaluate: plugin \"alpha\" metric 'acc' is {kind}, expected a number or list of numbers"
    )


def test_evaluate_rejects_a_non_dict():
    with pytest.raises(PluginCallError, match=r'^dd_evaluate: plugin "alpha" returned list, expected a dict$'):
        bare_hooks(Metrics("alpha", [1.0])).evaluate(fake_ctx(), distilled=None)


# ----------------------------------------------------------------------------------------------
# Attribution of failures
# ----------------------------------------------------------------------------------------------


def test_plugin_exception_becomes_plugin_crash(dd_pm):
    hooks = Hooks(dd_pm([Crashing()]))
    with pytest.raises(PluginCrash) as info:
        hooks.pixel_weights(fake_ctx(), *images_and_labels(), step=0)
    crash = info.value
    assert (crash.hook, crash.plugin) == ("dd_pixel_weights", "crashy")
    assert str(crash) == 'dd_pixel_weights: plugin "crashy" raised ZeroDivisionError: division by zero in the mask'
    assert isinstance(crash.__cause__, ZeroDivisionError)
    assert hooks.stats_dict()["dd_pixel_weights"]["crashy"]["calls"] == 1


def test_plugin_crash_via_the_cli(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(
        tmp_path,
        "crashy",
        """
        from ddcore import hookimpl

        @hookimpl
        def dd_select(ctx, dataset, ipc):
            raise RuntimeError("boom in selection")
        """,
    )

    code, out, err = cli(*tiny_run_args("--plugin", path))

    assert code == 1, err
    last = err.rstrip("\n").splitlines()[-1]
    assert last == 'Error: dd_select: plugin "crashy" raised RuntimeError: boom in selection'
    assert "crashy.py" in err  # the short traceback points into the plugin's file
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "crashy" in manifest["error"]


def test_plugin_error_is_reported_with_the_plugins_name(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(
        tmp_path,
        "picky",
        """
        from ddcore import PluginError, hookimpl

        @hookimpl
        def dd_evaluate(ctx, distilled):
            raise PluginError("teacher checkpoint not found; pass --set plugin.picky.teacher=PATH")
        """,
    )

    code, out, err = cli(*tiny_run_args("--plugin", path, "--quiet"))

    assert code == 2
    assert err == "Error [picky]: teacher checkpoint not found; pass --set plugin.picky.teacher=PATH\n"
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "failed"


def test_plugin_error_keeps_an_explicit_plugin_name():
    class Explicit:
        name = "wrapper"

        @hookimpl
        def dd_evaluate(self, ctx, distilled):
            raise PluginError("inner problem", plugin="inner")

    with pytest.raises(PluginError) as info:
        bare_hooks(Explicit()).evaluate(fake_ctx(), distilled=None)
    assert info.value.cli_message() == "Error [inner]: inner problem"


def test_hook_wrappers_are_refused():
    class Wrapper:
        name = "wrapping"

        @hookimpl(wrapper=True)
        def dd_evaluate(self, ctx, distilled):
            return (yield)

    class OldStyle:
        name = "old-wrapping"

        @hookimpl(hookwrapper=True)
        def dd_pixel_weights(self, ctx, images, labels, step):
            yield

    # Refused when the plugin is registered, before any work (not when the hook is first called).
    for plugin, hook in ((Wrapper(), "dd_evaluate"), (OldStyle(), "dd_pixel_weights")):
        with pytest.raises(PluginLoadError, match=rf'Plugin "{plugin.name}" .*implements {hook} as a hook wrapper'):
            bare_hooks(plugin)


# ----------------------------------------------------------------------------------------------
# dd_register_datasets
# ----------------------------------------------------------------------------------------------


def test_dataset_name_clash_names_both_plugins():
    hooks = bare_hooks(Datasets("compdd", "bird-hard", "toy"), Datasets("toys", "toy"))
    with pytest.raises(PluginError) as info:
        hooks.register_datasets(DatasetRegistry())
    assert '"compdd"' in str(info.value) and '"toys"' in str(info.value) and '"toy"' in str(info.value)
    assert info.value.plugin in ("compdd", "toys")


def test_dataset_name_clash_with_a_builtin(dd_pm):
    hooks = Hooks(dd_pm([Datasets("mine", "digits")]))
    with pytest.raises(PluginError) as info:
        hooks.register_datasets(DatasetRegistry())
    message = str(info.value)
    assert message.startswith('dataset "digits" is registered by both ')
    assert '"datasets"' in message and '"mine"' in message


def test_dataset_name_clash_via_the_cli(cli, tmp_path):
    source = """
        from ddcore import hookimpl

        @hookimpl
        def dd_register_datasets(register):
            register("toy", lambda options: None)
    """
    first = write_plugin_file(tmp_path, "toysa", source)
    second = write_plugin_file(tmp_path, "toysb", source)

    assert_cli_error(cli("datasets", "--plugin", first, "--plugin", second), '"toy"', '"toysa"', '"toysb"')


def test_plugin_error_from_a_dataset_factory_names_the_plugin(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(
        tmp_path,
        "toyset",
        """
        from ddcore import PluginError, hookimpl

        def build(options):
            raise PluginError("toy archive missing; pass --data-root")

        @hookimpl
        def dd_register_datasets(register):
            register("toy", build)
        """,
    )
    code, out, err = cli(*tiny_run_args("--plugin", path, "--dataset", "toy"))
    assert (code, err) == (2, "Error [toyset]: toy archive missing; pass --data-root\n")


def test_crash_in_a_dataset_factory_names_the_plugin(cli, tiny_run_args, tmp_path):
    path = write_plugin_file(
        tmp_path,
        "toyset",
        """
        from ddcore import hookimpl

        def build(options):
            raise RuntimeError("bad toy")

        @hookimpl
        def dd_register_datasets(register):
            register("toy", build)
        """,
    )
    try:
        code, out, err = cli(*tiny_run_args("--plugin", path, "--dataset", "toy"))
    except RuntimeError as exc:
        pytest.fail(f"raw {type(exc).__name__} escaped dd run: {exc}")
    assert code == 1
    assert "toyset" in err.splitlines()[-1] and "RuntimeError: bad toy" in err.splitlines()[-1]
