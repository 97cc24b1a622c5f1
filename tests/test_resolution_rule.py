"""One rule resolves the network for experts, matching, evaluation, teachers and plugins (issue kind 4).

``eval.depth = 0`` (the default) takes the depth from the image size (3 at 32 px, 4 at 64, 5 at 128), and
every place that builds the run's network goes through :func:`ddcore.presets.resolve_model`, so the
experts ``dd experts`` trains are the ones ``dd run --distill tm`` reuses at any size, and a Comp-DD set
is matched and evaluated with the same depth.
"""

from __future__ import annotations

import pytest

from ddcore.config import EvalConfig, build_config
from ddcore.errors import ConfigError
from ddcore.models import ModelSpec
from ddcore.presets import convnet_depth, resolve_eval, resolve_model
from ddcore.testing import TINY_EVAL, KnownAnswerDatasets, known_answer_dataset


def test_the_default_depth_comes_from_the_image_size():
    assert EvalConfig().depth == 0
    for side, depth in ((16, 2), (32, 3), (64, 4), (128, 5)):
        data = known_answer_dataset("clean", side=side)
        assert convnet_depth(side) == depth
        assert resolve_eval(EvalConfig(), data).model == ModelSpec("convnet", 128, depth, "instancenorm")
    # an explicit depth wins; a convnetdN name records its own depth, not a default
    data = known_answer_dataset("clean", side=64)
    assert resolve_eval(EvalConfig(depth=2), data).model.depth == 2
    assert resolve_model(data, "convnetd3").depth == 3 and resolve_model(data, "convnetd3").resolved_depth() == 3
    with pytest.raises(ConfigError, match=r"config key 'eval.depth' must be at least 0, got -1"):
        build_config({"eval": {"depth": -1}})


def test_experts_matching_and_evaluation_agree_at_64_px(dd_context):
    """``dd experts`` (resolve_expert_recipe on the run's context) and the run's matcher/evaluator: one network."""
    from ddcore.tm.distiller import resolve_expert_recipe

    ctx = dd_context([KnownAnswerDatasets(side=64)], dataset="ka/clean", distill="tm", tm={"preset": "digits-ipc1"})
    evaluator = resolve_eval(ctx.config.eval, ctx.dataset).model
    experts = resolve_expert_recipe(ctx).model
    assert evaluator.depth == 4 and evaluator.width == TINY_EVAL["width"]
    assert experts == ctx.model_spec == evaluator
    assert ctx.records["model"] == {**evaluator.__dict__, "image_size": 64}  # the manifest records the result


def test_a_compdd_subset_at_128_px_is_matched_and_evaluated_at_depth_5(dd_context):
    from ddcore_compdd.protocol import protocol_settings

    subset = known_answer_dataset("clean", side=128, extra={"compdd_subset": "toy-hard"})
    ctx = dd_context()
    matched = resolve_eval(build_config({}).eval, subset).model  # the run's network on that data (default [eval])
    protocol = protocol_settings(ctx, subset, runs=1).model
    assert matched == protocol == ModelSpec("convnet", 128, 5, "instancenorm")


def test_diffsel_kd_student_follows_the_rule(dd_context):
    from ddcore_diffsel.config import DiffselConfig, KDConfig
    from ddcore_diffsel.evaluate import student_spec

    ctx = dd_context([KnownAnswerDatasets(side=64)], dataset="ka/clean")
    assert student_spec(ctx, DiffselConfig()) == ctx.model_spec
    ctx.model_spec = None  # a context that resolved no network yet: the same rule, not ModelSpec()'s depth 3
    assert student_spec(ctx, DiffselConfig()).depth == 4
    assert student_spec(ctx, DiffselConfig(kd=KDConfig(model="convnetd5"))).depth == 5


def test_teacher_for_other_data_resolves_for_that_data(dd_context, monkeypatch):
    """``trained_teacher(ctx, other_dataset)`` builds the network for the data it trains on, not the run's."""
    from ddcore import teacher

    seen = {}

    def fake_recipe(dataset, spec, epochs, **kwargs):
        seen["spec"] = spec
        raise RuntimeError("stop")

    monkeypatch.setattr(teacher, "teacher_recipe", fake_recipe)
    ctx = dd_context()  # digits, 32 px: depth 3
    with pytest.raises(RuntimeError, match="stop"):
        teacher.trained_teacher(ctx, known_answer_dataset("clean", side=128))
    assert seen["spec"].depth == 5
    with pytest.raises(RuntimeError, match="stop"):
        teacher.trained_teacher(ctx)
    assert seen["spec"] == ctx.model_spec and seen["spec"].depth == 3
