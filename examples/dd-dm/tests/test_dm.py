"""What DM does, on hand-built cases and in the loop (fast); end-to-end runs are in test_dm_run.py."""

from __future__ import annotations

import doctest
import io

import pytest
import torch

from dd_dm import matching, plugin
from dd_dm.config import DMConfig
from dd_dm.distiller import CALLS, DMDistiller, DistributionMatcher
from dd_dm.matching import class_loss, dm_loss, embedder, embedding_network, head, siamese_dsa
from ddcore import ConfigError, DistilledSet, hookimpl
from ddcore.augment import DSA, FAMILIES
from ddcore.models import ModelSpec


def flatten(images: torch.Tensor) -> torch.Tensor:
    """The identity embedding: ``[N, C, H, W]`` -> ``[N, C*H*W]``."""
    return images.flatten(1)


def random_images(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) + shift


@pytest.mark.parametrize("module", [matching, plugin])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted >= 1 and result.failed == 0


# ----------------------------------------------------------------------------------------------
# The loss and its gradient
# ----------------------------------------------------------------------------------------------


def test_gradient_of_the_identity_embedding_is_the_mean_gap() -> None:
    # psi = identity: L = ||mu_R - mu_S||^2, dL/ds_i = -2/Ns (mu_R - mu_S) for every synthetic image.
    real, syn = random_images(6, 0, shift=2.0), random_images(3, 1).requires_grad_(True)
    loss = class_loss(flatten, real, syn)
    loss.backward()
    gap = real.mean(0) - syn.detach().mean(0)
    assert loss.item() == pytest.approx(gap.square().sum().item(), rel=1e-5)
    assert torch.allclose(syn.grad, (-2 / 3 * gap).expand(3, -1, -1, -1), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_gradient_step_pulls_the_synthetic_mean_embedding_towards_the_real_one(seed: int) -> None:
    # Planted: the real class is bright (+1.5), the synthetic images are plain noise.
    embed = embedder(embedding_network(ModelSpec("convnet", width=16, depth=3), 10, 1, 32, seed=seed))
    real = torch.randn(32, 1, 32, 32, generator=torch.Generator().manual_seed(10 + seed)) + 1.5
    syn = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(20 + seed)).requires_grad_(True)
    loss = class_loss(embed, real, syn)
    loss.backward()
    with torch.no_grad():
        target = embed(real).mean(0)
        before = (embed(syn).mean(0) - target).norm()
        moved = syn - 0.5 * syn.grad / syn.grad.norm()  # a small step against the gradient
        after = (embed(moved).mean(0) - target).norm()
        # The step raises the synthetic images' brightness, towards the planted real class.
        assert moved.mean() > syn.mean()
    assert after < before
    assert real.grad is None  # the real side is a constant


def test_loss_is_zero_when_synthetic_equals_real_under_the_same_dsa_draw() -> None:
    embed = embedder(embedding_network(ModelSpec("convnet", width=4, depth=2), 2, 1, 16, seed=0))
    real = [torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(c)) for c in range(2)]
    dsa = DSA()
    seen = set()
    for seed in range(12):  # every family gets drawn
        generator = torch.Generator().manual_seed(seed)
        probe = torch.Generator().manual_seed(seed)
        seen.add(dsa.sample((5, 1, 16, 16), probe).family)
        assert dm_loss(embed, real, [r.clone() for r in real], dsa, generator).item() == 0.0
    assert seen == set(FAMILIES)
    # Two independent draws (not siamese) do not match: DM needs the same draw on both sides.
    a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    unpaired = sum(class_loss(embed, dsa(r, a)[0], dsa(r.clone(), b)[0]) for r in real)
    assert unpaired.item() > 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_image_i_gets_the_transform_of_real_image_i(family: str) -> None:
    real = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    dsa = DSA(family)
    real_aug, syn_aug = siamese_dsa(dsa, real, real[:2].clone(), torch.Generator().manual_seed(4))
    assert torch.equal(syn_aug, real_aug[:2])
    # More synthetic than real images: the draw covers the larger batch.
    real_aug, syn_aug = siamese_dsa(dsa, real[:2], real.clone(), torch.Generator().manual_seed(4))
    assert torch.equal(syn_aug[:2], real_aug)


def test_head_keeps_the_family_and_the_first_rows() -> None:
    params = DSA("crop").sample((5, 1, 8, 8), torch.Generator().manual_seed(0))
    first = head(params, 2)
    assert first.family == "crop" and first.batch_shape == (2, 1, 8, 8)
    assert torch.equal(first.shift, params.shift[:2])
    with pytest.raises(ValueError, match="cannot take 6 of the 5"):
        head(params, 6)


def test_embedding_network_is_seeded_frozen_and_leaves_global_random_state_alone() -> None:
    spec = ModelSpec("convnet", width=8, depth=3)
    state = torch.random.get_rng_state()
    a, b, c = (embedding_network(spec, 10, 1, 32, seed=s) for s in (5, 5, 6))
    assert torch.equal(torch.random.get_rng_state(), state)
    first = lambda net: next(net.parameters())  # noqa: E731
    assert torch.equal(first(a), first(b)) and not torch.equal(first(a), first(c))
    assert not any(p.requires_grad for p in a.parameters())
    resnet = embedding_network(ModelSpec("resnet18"), 10, 1, 32, seed=0)  # no embed(): the fc becomes the identity
    assert embedder(resnet)(torch.zeros(2, 1, 32, 32)).shape == (2, 512)


# ----------------------------------------------------------------------------------------------
# The loop inside a run context (digits, tiny evaluator network of width 8)
# ----------------------------------------------------------------------------------------------


class HalfMask:
    """A pixel-weights plugin: weight 0 on the left half of every image, 2 on the right half."""

    name = "half-mask"

    def __init__(self) -> None:
        self.steps: list[int] = []

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        self.steps.append(step)
        n, _, h, w = images.shape
        weights = torch.full((1, 1, h, w), 2.0, device=images.device)
        weights[..., : w // 2] = 0.0
        return weights


def one_per_class(ctx, per_class: int = 1) -> DistilledSet:
    dataset = ctx.dataset
    indices = [i for group in dataset.indices_by_class("train") for i in group[:per_class]]
    images, labels = dataset.load("train", indices)
    return DistilledSet(images, labels, list(dataset.class_names), dataset.mean, dataset.std, meta={"selected_by": "test"})


@pytest.mark.slow  # two run contexts
def test_pixel_weights_multiply_the_image_gradient(dd_context) -> None:
    mask = HalfMask()
    ctx = dd_context(plugins=["dm", mask], distill="dm")
    assert ctx.distill_calls == CALLS == ("dd_pixel_weights",)
    initial = one_per_class(ctx)
    options = DMConfig(batch_real=8)
    plain_ctx = dd_context(plugins=["dm"], distill="dm")
    plain = DistributionMatcher(plain_ctx, initial, options)
    plain.step()
    masked = DistributionMatcher(ctx, initial, options)
    masked.step()
    assert mask.steps == [0]
    half = initial.images.shape[-1] // 2
    # Same seed, same iteration: the same gradient, times the mask.
    assert torch.equal(masked.images.grad[..., :half], torch.zeros_like(masked.images.grad[..., :half]))
    assert torch.allclose(masked.images.grad[..., half:], 2 * plain.images.grad[..., half:])
    assert plain.images.grad[..., :half].abs().sum() > 0
    # Masked pixels never move; the others do.
    moved = (masked.images.detach().cpu() - initial.images).abs()
    assert moved[..., :half].max() == 0 and moved[..., half:].max() > 0


def test_one_iteration_lowers_the_loss_of_its_own_draw(dd_context) -> None:
    ctx = dd_context(plugins=["dm"], distill="dm")
    initial = one_per_class(ctx)
    matcher = DistributionMatcher(ctx, initial, DMConfig(batch_real=16, dsa=False, lr_img=0.5))
    first = matcher.step()["loss"]
    again = DistributionMatcher(ctx, matcher.current(), DMConfig(batch_real=16, dsa=False, lr_img=0.5))
    assert again.step()["loss"] < first  # iteration 0 again (same network and batches), after the update


@pytest.mark.slow  # ten iterations in all
def test_resume_from_a_state_dict_is_bit_identical(dd_context) -> None:
    ctx = dd_context(plugins=["dm"], distill="dm")
    initial = one_per_class(ctx, per_class=2)
    options = DMConfig(batch_real=8)
    whole = DistributionMatcher(ctx, initial, options)
    for _ in range(4):
        whole.step()
    cut = DistributionMatcher(ctx, initial, options)
    for _ in range(2):
        cut.step()
    buffer = io.BytesIO()
    torch.save(cut.state_dict(), buffer)  # through a file, as a checkpoint
    buffer.seek(0)
    resumed = DistributionMatcher(ctx, initial, options)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(2):
        resumed.step()
    assert torch.equal(resumed.images, whole.images)
    assert resumed.log == whole.log and resumed.iteration == 4


def test_result_keeps_labels_and_says_who_distilled(dd_context) -> None:
    ctx = dd_context(plugins=["dm"], distill="dm")
    initial = one_per_class(ctx)
    matcher = DistributionMatcher(ctx, initial, DMConfig(batch_real=4))
    matcher.step()
    result = matcher.current()
    result.validate()
    assert torch.equal(result.labels, initial.labels) and result.meta == {"selected_by": "test", "distilled_by": "dm"}
    assert not torch.equal(result.images, initial.images)


def test_an_embedding_the_images_do_not_fit_is_refused_by_check(dd_context) -> None:
    ctx = dd_context(plugins=["dm"], distill="dm", image_size=16)
    with pytest.raises(ConfigError, match=r"dm.embed = 'convnetd5': model convnetd5 \(depth 5\) needs an image size of at least 32 px"):
        DMDistiller(ctx, DMConfig(embed="convnetd5")).check()
    DMDistiller(ctx, DMConfig()).check()  # the run's own network fits


# ----------------------------------------------------------------------------------------------
# Registration and options
# ----------------------------------------------------------------------------------------------


def test_registers_distiller_dm_against_the_ddcore_hookspecs() -> None:
    import pluggy

    from ddcore import hookspecs
    from ddcore.distillers import DistillerRegistry

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=plugin.PLUGIN_NAME)  # validates hook and argument names
    registry = DistillerRegistry()
    pm.hook.dd_register_distillers(register=registry.registrar("dm"))
    entry = registry.entry("dm")
    assert entry.factory is DMDistiller and entry.config_class is DMConfig and entry.calls == ("dd_pixel_weights",)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"lr_img": 0}, r"'dm.lr_img' must be > 0"),
        ({"iterations": 0}, r"'dm.iterations' must be at least 1"),
        ({"momentum": 1.0}, r"'dm.momentum' must be in \[0, 1\)"),
        ({"dsa_strategy": "color_blur"}, r"'dm.dsa_strategy': unknown DSA family 'blur'"),
        ({"embed": "vit"}, r"dm.embed"),
        ({"lr": 1.0}, r"dm.lr"),
    ],
)
def test_bad_options_are_one_line_config_errors(table: dict, message: str) -> None:
    from ddcore.config import from_mapping

    with pytest.raises(ConfigError, match=message) as caught:
        from_mapping(DMConfig, table, prefix="dm.")
    assert "\n" not in str(caught.value)
