"""Experts trained together (ddcore.tm.experts, ``experts.batched``) are the experts trained one by one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.errors import ConfigError
from ddcore.models import ModelSpec
from ddcore.tm import experts as ex
from ddcore.tm.experts import ExpertRecipe, cache_key, dataset_identity, ensure_experts, train_expert, train_experts_together

SPEC = ModelSpec(width=4, depth=2)
TOL = dict(atol=1e-5, rtol=1e-4)


def separable() -> ImageDataset:
    """3 classes x 6 images of 1x8x8 whose class shifts the mean: a few epochs learn part of it."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(6)
    shift = 0.6 * (labels.view(-1, 1, 1, 1).float() - 1)
    train = torch.randn(18, 1, 8, 8, generator=generator) + shift
    test = torch.randn(18, 1, 8, 8, generator=generator) + shift
    return ImageDataset("sep", ["a", "b", "c"], TensorSplit(train, labels), TensorSplit(test, labels), (1, 8, 8), (0.0,), (1.0,))


def recipe(augment: str = "none", **overrides) -> ExpertRecipe:
    options = {"num_experts": 3, "epochs": 3, "model": SPEC, "seed": 0, "batch_size": 8, "lr": 0.1, "momentum": 0.9}
    options.update(overrides)
    return ExpertRecipe.build(augment=augment, **options)


def ctx_for(tmp_path, batched: str | None = None):
    config = SimpleNamespace(experts=SimpleNamespace(batched=batched)) if batched else None
    records: dict = {}
    return SimpleNamespace(cache_dir=tmp_path, accelerator=None, reporter=None, config=config,
                           records=records, record=records.__setitem__)  # fmt: skip


@pytest.mark.parametrize("augment", ["none", "crop"])
def test_trajectories_and_accuracies_equal_the_loops(augment):
    data, r = separable(), recipe(augment)
    together: dict[int, dict] = {}
    plan = train_experts_together(data, r, [2, 0, 1], "cpu", mode="on", on_done=lambda i, c: together.__setitem__(i, c))
    assert plan.batched and plan.groups == [[0, 1, 2]]  # positions in [2, 0, 1]
    for index in range(3):
        alone, batched = train_expert(data, r, index), together[index]
        assert batched["index"] == index and batched["param_shapes"] == alone["param_shapes"]
        assert torch.equal(batched["trajectory"][0], alone["trajectory"][0])  # same initialisation, bit for bit
        torch.testing.assert_close(batched["trajectory"], alone["trajectory"], **TOL)  # every epoch's snapshot
        assert batched["test_acc"] == pytest.approx(alone["test_acc"]) and batched["final_train_acc"] == pytest.approx(alone["final_train_acc"])
    # the experts learned something and differ from each other (three seeds, not one expert three times)
    assert not torch.allclose(together[0]["trajectory"][-1], together[0]["trajectory"][0])
    assert not torch.allclose(together[0]["trajectory"][-1], together[1]["trajectory"][-1])
    assert max(c["final_train_acc"] for c in together.values()) > 100 / 3


def test_off_is_the_loop_bit_for_bit():
    data, r = separable(), recipe("crop")
    together: dict[int, dict] = {}
    plan = train_experts_together(data, r, [0, 1], "cpu", mode="off", on_done=lambda i, c: together.__setitem__(i, c))
    assert not plan.batched and plan.reason == "one by one: batched training is off"
    for index in (0, 1):
        assert torch.equal(together[index]["trajectory"], train_expert(data, r, index)["trajectory"])


def test_ensure_experts_batched_fills_the_same_cache_as_the_loop(tmp_path):
    data, r = separable(), recipe()
    on, off = ctx_for(tmp_path / "on", "on"), ctx_for(tmp_path / "off", "off")
    batched, looped = ensure_experts(on, data, r), ensure_experts(off, data, r)
    assert batched.key == looped.key == cache_key(dataset_identity(data), r)  # batching is not in the key
    for index in range(3):
        torch.testing.assert_close(batched.trajectory(index), looped.trajectory(index), **TOL)
        assert batched.info(index)["test_acc"] == pytest.approx(looped.info(index)["test_acc"])
    plan = on.records["experts"]["batched"]
    assert plan["batched"] and plan["groups"] == [[0, 1, 2]] and on.records["experts"]["trained"] == [0, 1, 2]
    assert not off.records["experts"]["batched"]["batched"] and off.records["experts"]["batched"]["groups"] == [[0], [1], [2]]
    # a batched run reuses the loop's files: nothing is trained
    again = ctx_for(tmp_path / "off", "on")
    ensure_experts(again, data, r)
    assert again.records["experts"]["trained"] == [] and again.records["experts"]["batched"] is None


def test_auto_trains_one_by_one_on_the_cpu_and_says_why(tmp_path):
    ctx = ctx_for(tmp_path)  # no config: auto
    ensure_experts(ctx, separable(), recipe(), num_experts=2)
    plan = ctx.records["experts"]["batched"]
    assert not plan["batched"] and "GPU only" in plan["reason"]


def test_each_groups_files_are_written_when_the_group_finishes(tmp_path, monkeypatch):
    """Groups of 2: an interruption in the second group leaves the first group's files, complete; the
    next run trains only the interrupted group's expert."""
    data, r = separable(), recipe()
    calls = {"n": 0}
    real = ex.ensemble_accuracy

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # group 2's first accuracy pass (each group measures train, then test)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "ensemble_accuracy", interrupted)
    ctx = ctx_for(tmp_path, "on")
    with pytest.raises(KeyboardInterrupt):
        ensure_experts(ctx, data, r, max_group=2)
    folder = ex.experts_dir(tmp_path, cache_key(dataset_identity(data), r))
    assert sorted(p.name for p in folder.glob("expert_*.pt")) == ["expert_0.pt", "expert_1.pt"]
    monkeypatch.setattr(ex, "ensemble_accuracy", real)
    ensure_experts(ctx, data, r, max_group=2)
    assert ctx.records["experts"]["trained"] == [2] and ctx.records["experts"]["batched"]["groups"] == [[2]]


def test_on_refuses_batchnorm_and_an_unknown_mode_before_writing(tmp_path):
    bn = recipe(model=ModelSpec(width=4, depth=2, norm="batchnorm"))
    with pytest.raises(ConfigError, match=r"experts\.batched.*BatchNorm.*'auto' or 'off'"):
        ensure_experts(ctx_for(tmp_path, "on"), separable(), bn)
    with pytest.raises(ConfigError, match=r"experts\.batched.*'yes'"):
        ensure_experts(ctx_for(tmp_path, "yes"), separable(), recipe())
    assert not tmp_path.joinpath("experts").exists()
