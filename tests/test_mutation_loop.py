"""ddcore.tm.loop, cases found by mutation testing (bench/mutation.py).

The matching step itself is tested elsewhere (tests/test_mutation_matching.py); here it is replaced by a
stand-in that hands the outer loop known gradients and a known loss, so the loop's own arithmetic has
hand-computed answers: MTT's outer optimisers (SGD, momentum 0.5 for the images and ``syn_lr``, 0.9
for learned labels), the skip rule, the guards and their one-line messages, the periodic evaluation's
choice, checkpoints and resuming."""

from __future__ import annotations

import io
import math

import pytest
import torch

import ddcore.tm.loop as loop
from ddcore import DistilledSet
from ddcore import hookimpl as loop_hookimpl
from ddcore.errors import ConfigError, DDError
from ddcore.models import ModelSpec, build_model
from ddcore.runner import Pipeline
from ddcore.tm.config import TMConfig
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.loop import SYN_LR_FLOOR, TrajectoryMatcher, distill_tm, sample_start_epoch
from ddcore.tm.matching import StepResult

SPEC = ModelSpec(width=4, depth=1)


class Walks:
    """Random-walk trajectories of the run's network (the stand-in step never reads them)."""

    def __init__(self, count: int = 3, epochs: int = 4):
        torch.manual_seed(0)
        model = build_model(SPEC, 10, 1, 32)
        start = flatten_params(model)
        g = torch.Generator().manual_seed(1)
        self.param_shapes = param_shapes_of(model)
        self.trajectories = [torch.cumsum(torch.cat([start[None], 0.01 * torch.randn(epochs, start.numel(), generator=g)]), 0)
                             for _ in range(count)]  # fmt: skip

    def __len__(self):
        return len(self.trajectories)

    def trajectory(self, index):
        return self.trajectories[index]


class Stand_in:
    """Replaces ``matching_step``: sets the gradients to ``image_grad`` (and 1 for labels, ``lr_grad`` for
    syn_lr) and returns the next loss of ``losses``; notes the arguments it was called with."""

    def __init__(self, losses, image_grad=1.0, lr_grad=1.0, label_grad=1.0):
        self.losses, self.image_grad, self.lr_grad, self.label_grad = list(losses), image_grad, lr_grad, label_grad
        self.calls = []

    def __call__(self, model, shapes, trajectory, start, expert_epochs, images, labels, syn_lr, chunks, **kw):
        self.calls.append({"start": start, "expert_epochs": expert_epochs, "chunks": [c.clone() for c in chunks],
                           "mode": kw["mode"], "augment": kw["augment"], "trajectory": trajectory})  # fmt: skip
        images.grad = torch.full_like(images, self.image_grad)
        syn_lr.grad = torch.full_like(syn_lr, self.lr_grad)
        if labels.requires_grad:
            labels.grad = torch.full_like(labels, self.label_grad)
        return StepResult(loss=self.losses.pop(0), kept_fraction=0.75, pixel_weighted=False)


@pytest.fixture(scope="module")
def digits():
    pipeline = Pipeline({"ipc": 1, "workers": 0, "distill": "tm", "eval": {"runs": 0}}, write=False)
    dataset = pipeline.build_dataset()
    return pipeline, dataset


def _setup(digits, soft=False, lr=None, **tm):
    pipeline, dataset = digits
    by_class = dataset.indices_by_class("train")
    images, labels = dataset.load("train", [by_class[0][0], by_class[1][0]])
    if soft:
        labels = torch.nn.functional.one_hot(labels, 10).float() * 2.0
    initial = DistilledSet(images, labels, dataset.class_names, dataset.mean, dataset.std, lr=lr)
    options = {"iterations": 3, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "augment": "none",
               "lr_img": 10.0, "lr_lr": 1e-3, "lr_teacher": 0.01, "unroll": "full", **tm}  # fmt: skip
    return pipeline.ctx, initial, TMConfig(**options)


def test_outer_optimisers_are_sgd_with_mtts_momenta(digits, monkeypatch):
    """Gradient 1 every step: SGD with momentum m moves by lr, then lr (1 + m), then lr (1 + m + m^2)."""
    ctx, initial, config = _setup(digits, soft=True, learn_labels=True, lr_y=2.0, lr_lr=4e-3, lr_teacher=0.1)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0, 1.0, 1.0]))
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    moves = []
    for _ in range(3):
        before = (matcher.images.detach().clone(), float(matcher.syn_lr.detach()), matcher.labels.detach().clone())
        matcher.step()
        moves.append((float((before[0] - matcher.images.detach()).mean()), before[1] - float(matcher.syn_lr.detach()),
                      float((before[2] - matcher.labels.detach()).mean())))  # fmt: skip
    for (image, lr, label), k in zip(moves, range(3)):
        assert math.isclose(image, 10.0 * sum(0.5**i for i in range(k + 1)), rel_tol=1e-5)
        assert math.isclose(lr, 4e-3 * sum(0.5**i for i in range(k + 1)), rel_tol=1e-4)
        assert math.isclose(label, 2.0 * sum(0.9**i for i in range(k + 1)), rel_tol=1e-5)


def test_a_step_hands_the_matching_step_the_runs_settings_and_logs_a_row(digits, monkeypatch):
    ctx, initial, config = _setup(digits, batch_syn=1, syn_steps=3, expert_epochs=2, lr=0.02)
    stand_in = Stand_in([2.5])
    monkeypatch.setattr(loop, "matching_step", stand_in)
    experts = Walks()
    matcher = TrajectoryMatcher(ctx, initial, experts, SPEC, config)
    assert matcher.unroll == "full" and math.isclose(float(matcher.syn_lr.detach()), 0.02, rel_tol=1e-6)  # the initial set's lr
    row = matcher.step()
    call = stand_in.calls[0]
    assert call["expert_epochs"] == 2 and call["mode"] == "full" and call["augment"] is None
    assert [len(c) for c in call["chunks"]] == [1, 1, 1]  # batch_syn 1, syn_steps 3
    assert any(torch.equal(call["trajectory"], t) for t in experts.trajectories)
    assert row == {"iteration": 0, "experts": row["experts"], "start_epoch": call["start"], "loss": 2.5, "kept": 0.75,
                   "skipped": False, "syn_lr": float(matcher.syn_lr.detach())}  # fmt: skip
    assert 0 <= row["experts"][0] < 3 and 0 <= call["start"] < 1 and matcher.iteration == 1 and matcher.log == [row]


def test_the_learned_lr_starts_at_lr_teacher_without_one(digits):
    ctx, initial, config = _setup(digits, lr_teacher=0.03)
    assert math.isclose(float(TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).syn_lr.detach()), 0.03, rel_tol=1e-6)


def test_batch_syn_zero_is_the_whole_set(digits, monkeypatch):
    ctx, initial, config = _setup(digits, batch_syn=0, syn_steps=2)
    stand_in = Stand_in([1.0])
    monkeypatch.setattr(loop, "matching_step", stand_in)
    TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()
    assert [sorted(c.tolist()) for c in stand_in.calls[0]["chunks"]] == [[0, 1], [0, 1]]


def test_dsa_augments_each_process_with_its_own_stream(digits, monkeypatch):
    ctx, initial, config = _setup(digits, augment="dsa")
    stand_in = Stand_in([1.0])
    monkeypatch.setattr(loop, "matching_step", stand_in)
    TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()
    augment = stand_in.calls[0]["augment"]
    expected = ctx.derive_generator("tm", "dsa", 0)
    assert augment is not None and torch.equal(augment.generator.get_state(), expected.get_state())


def test_the_skip_rule_is_loss_above_the_threshold(digits, monkeypatch):
    ctx, initial, config = _setup(digits, skip_threshold=0.5)
    monkeypatch.setattr(loop, "matching_step", Stand_in([0.5, 0.7, 0.2]))
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    images = []
    for _ in range(3):
        matcher.step()
        images.append(matcher.images.detach().clone())
    assert [row["skipped"] for row in matcher.log] == [False, True, False]
    assert torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])
    ctx, initial, config = _setup(digits, skip_threshold=0.0)  # 0: never skip
    monkeypatch.setattr(loop, "matching_step", Stand_in([1e9]))
    assert TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()["skipped"] is False


def test_a_nan_loss_before_any_update_blames_no_learning_rate(digits, monkeypatch):
    ctx, initial, config = _setup(digits)
    monkeypatch.setattr(loop, "matching_step", Stand_in([float("nan")]))
    with pytest.raises(DDError) as caught:
        TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()
    assert str(caught.value).startswith(
        "trajectory matching diverged at iteration 0, before any update: the matching loss is nan, so no learning "
        "rate is the cause; check the expert trajectories")  # fmt: skip
    assert str(caught.value).endswith("and the plugins' dd_supervision_weights (all zero gives 0/0)")


@pytest.mark.parametrize("learn_labels, updates", [(False, 1), (False, 2), (True, 2)])
def test_a_later_divergence_names_the_updates_and_the_rates(digits, monkeypatch, learn_labels, updates):
    ctx, initial, config = _setup(digits, soft=learn_labels, learn_labels=learn_labels, lr_y=3.0, skip_threshold=5.0,
                                  iterations=4)  # fmt: skip
    # a skipped step (loss 9 > 5) is not an update
    losses = [1.0] * updates + [9.0, float("inf")]
    monkeypatch.setattr(loop, "matching_step", Stand_in(losses, lr_grad=0.0))
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    with pytest.raises(DDError) as caught:
        for _ in range(updates + 2):
            matcher.step()
    rates = "tm.lr_img (now 10) or tm.lr_lr (now 0.001)" + (" or tm.lr_y (now 3)" if learn_labels else "")
    plural = "s" if updates > 1 else ""
    assert str(caught.value) == (f"trajectory matching diverged at iteration {updates + 1}, after {updates} update{plural}: "
                                 f"the matching loss is inf (syn_lr 0.01); lower {rates}")  # fmt: skip


@pytest.mark.parametrize("what, options, grads, key", [
    ("synthetic images", {}, {"image_grad": float("inf")}, "lr_img (now 10)"),
    ("learned labels", {"soft": True, "learn_labels": True, "lr_y": 3.0}, {"label_grad": float("nan")}, "lr_y (now 3)"),
    ("learned student lr (syn_lr)", {}, {"lr_grad": float("inf")}, "lr_lr (now 0.001)"),
])  # fmt: skip
def test_an_update_that_leaves_a_value_non_finite_is_named(digits, monkeypatch, what, options, grads, key):
    ctx, initial, config = _setup(digits, **options)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0], **grads))
    with pytest.raises(DDError) as caught:
        TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()
    assert str(caught.value) == (f"trajectory matching diverged at iteration 0: its update made the {what} non-finite; "
                                 f"lower tm.{key}")  # fmt: skip


def test_a_syn_lr_at_the_floor_is_a_failed_distillation(digits, monkeypatch):
    # syn_lr 0.02 - lr_lr 1e-3 * gradient 30 = -0.01 <= 1e-8
    ctx, initial, config = _setup(digits, lr=0.02)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0], lr_grad=30.0))
    with pytest.raises(DDError) as caught:
        TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()
    assert str(caught.value) == (
        "trajectory matching failed at iteration 0: the learned student lr (syn_lr) fell from 0.02 to -0.01, at or "
        f"below {SYN_LR_FLOOR:g}, so the images no longer train a network and no set is distilled; lower tm.lr_lr (now 0.001)")
    # just above the floor is fine: 0.01 - 1e-3 * 9.99 = 1e-5
    ctx, initial, config = _setup(digits)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0], lr_grad=9.99))
    assert TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).step()["syn_lr"] > SYN_LR_FLOOR


def test_construction_errors(digits):
    ctx, initial, config = _setup(digits)
    with pytest.raises(ConfigError, match=r"^trajectory matching needs at least one expert trajectory$"):
        TrajectoryMatcher(ctx, initial, Walks(count=0), SPEC, config)
    ctx, initial, config = _setup(digits, learn_labels=True)
    with pytest.raises(ConfigError, match=r"^tm.learn_labels needs soft labels from the initialisation \(logits \[N, K\]\)$"):
        TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)


def test_start_epochs_cover_the_window(digits):
    config = TMConfig(min_start_epoch=1, max_start_epoch=4, cur_max_start_epoch=3)
    g = torch.Generator().manual_seed(0)
    assert {sample_start_epoch(config, 0, g) for _ in range(200)} == {1, 2}
    narrow = TMConfig(min_start_epoch=2, max_start_epoch=3, cur_max_start_epoch=3)
    assert {sample_start_epoch(narrow, 0, g) for _ in range(50)} == {2}


def test_the_current_set_and_the_result_without_evaluation(digits, monkeypatch):
    ctx, initial, config = _setup(digits, soft=True)
    initial.meta["selected_by"] = "random-real"
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0, 1.0, 1.0]))
    distilled, log = distill_tm(ctx, initial, Walks(), SPEC, config)
    assert len(log) == 3 and distilled.meta == {"selected_by": "random-real", "distilled_by": "tm"}
    assert distilled.class_names == initial.class_names and distilled.mean == initial.mean and distilled.std == initial.std
    assert torch.equal(distilled.labels, initial.labels)  # not learned
    assert math.isclose(distilled.lr, log[-1]["syn_lr"]) and isinstance(distilled.lr, float)
    assert "best_iteration" not in distilled.meta


def test_periodic_evaluation_ties_keep_the_earlier_set_and_the_choice_is_reported(digits, monkeypatch):
    ctx, initial, config = _setup(digits, iterations=4, eval_every=2)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 4))
    said = []
    monkeypatch.setattr(ctx.reporter, "info", said.append)
    scores = iter([40.0, 60.0, 60.0])
    distilled, log = distill_tm(ctx, initial, Walks(), SPEC, config, evaluate=lambda d: next(scores))
    assert distilled.meta["best_iteration"] == 1 and distilled.meta["best_accuracy"] == 60.0
    assert distilled.meta["initial_accuracy"] == 40.0
    assert said == ["trajectory matching kept the set after iteration 1: validation accuracy 60.00%; initial set 40.00%"]
    ctx, initial, config = _setup(digits, iterations=2, eval_every=2)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 2))
    said.clear()
    monkeypatch.setattr(ctx.reporter, "info", said.append)
    scores = iter([70.0, 70.0])
    distilled, _ = distill_tm(ctx, initial, Walks(), SPEC, config, evaluate=lambda d: next(scores))
    assert distilled.meta["best_iteration"] == -1 and torch.equal(distilled.images, initial.images)
    assert said == ["trajectory matching kept the initial set (iteration -1): validation accuracy 70.00%; initial set 70.00%"]


def test_evaluation_at_the_end_when_eval_every_does_not_divide_the_iterations(digits, monkeypatch):
    ctx, initial, config = _setup(digits, iterations=3, eval_every=2)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 3))
    scores = iter([10.0, 20.0, 30.0])
    _, log = distill_tm(ctx, initial, Walks(), SPEC, config, evaluate=lambda d: next(scores))
    assert [row.get("val_acc") for row in log] == [None, 20.0, 30.0]


class Session:
    """The parts of a DistillSession the loop uses."""

    def __init__(self, resume_state=None):
        self.resume_state, self.saved, self.artifacts = resume_state, [], {}

    def save_checkpoint(self, step, state):  # written out at once, as the real session does
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        self.saved.append((step, torch.load(buffer, weights_only=False)))

    def add_artifact(self, name, value):
        self.artifacts[name] = value


def test_checkpoints_every_so_many_iterations_and_at_the_end_and_resume(digits, monkeypatch):
    ctx, initial, config = _setup(digits, iterations=5, checkpoint_every=2, augment="dsa")
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 5))
    session = Session()
    whole, log = distill_tm(ctx, initial, Walks(), SPEC, config, session=session)
    assert [step for step, _ in session.saved] == [2, 4, 5]
    assert session.artifacts["tm_log.json"] is log
    state = session.saved[0][1]
    assert state["iteration"] == 2 and state["format"] == loop.STATE_FORMAT and state["unroll"] == "full"
    assert len(state["log"]) == 2 and len(state["streams"]) == 1 and state["streams"][0][1] is not None
    # resuming from iteration 2 ends where the uninterrupted run ended, with the same log
    ctx, initial, config = _setup(digits, iterations=5, checkpoint_every=2, augment="dsa")
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 3))
    resumed, resumed_log = distill_tm(ctx, initial, Walks(), SPEC, config, session=Session(state))
    assert torch.equal(resumed.images, whole.images) and resumed.lr == whole.lr
    assert [row["start_epoch"] for row in resumed_log] == [row["start_epoch"] for row in log]
    assert [row["experts"] for row in resumed_log] == [row["experts"] for row in log]


def test_a_checkpoint_of_another_process_count_is_refused(digits):
    ctx, initial, config = _setup(digits)
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    state = matcher.state_dict()
    state["streams"] = state["streams"] * 2
    with pytest.raises(DDError, match=r"^the checkpoint was written by 2 processes; resume with the same number \(now 1\)$"):
        TrajectoryMatcher(ctx, initial, Walks(), SPEC, config).load_state_dict(state)


def test_a_resumed_auto_run_keeps_the_checkpoints_unroll(digits):
    ctx, initial, config = _setup(digits, unroll="auto")
    said = []
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    other = "constant" if matcher.unroll == "full" else "full"
    state = matcher.state_dict()
    state["unroll"] = other
    ctx.reporter.info = said.append  # type: ignore[method-assign]
    try:
        resumed = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
        first = resumed.unroll
        resumed.load_state_dict(state)
    finally:
        del ctx.reporter.info
    assert resumed.unroll == other and said == [f"resuming with the checkpoint's tm.unroll = '{other}' (auto chose '{first}')"]
    # a fixed tm.unroll is kept
    ctx, initial, config = _setup(digits, unroll="full")
    fixed = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    state["unroll"] = "constant"
    fixed.load_state_dict(state)
    assert fixed.unroll == "full"


def _steps(ctx, initial, config, monkeypatch, n=2, global_seed=0):
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * n))
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    torch.manual_seed(global_seed)  # must not matter
    return [(row["experts"], row["start_epoch"]) for row in (matcher.step() for _ in range(n))], matcher


def test_draws_come_from_the_runs_streams_not_the_global_rng(digits, monkeypatch):
    ctx, initial, config = _setup(digits, batch_syn=1, syn_steps=2, max_start_epoch=3, cur_max_start_epoch=3)
    first, a = _steps(ctx, initial, config, monkeypatch, 4, global_seed=1)
    chunks_a = [c.tolist() for call in loop.matching_step.calls for c in call["chunks"]]
    second, b = _steps(ctx, initial, config, monkeypatch, 4, global_seed=2)
    chunks_b = [c.tolist() for call in loop.matching_step.calls for c in call["chunks"]]
    assert first == second and chunks_a == chunks_b


class _Hooks:
    name = "hooks"

    def __init__(self):
        self.seen = []

    @loop_hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        self.seen.append(("supervision", ctx, distances, step))

    @loop_hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        self.seen.append(("pixel", ctx, labels, step))


def test_the_weighting_hooks_get_the_run_the_distances_labels_and_step():
    hooks = _Hooks()
    pipeline = Pipeline({"ipc": 1, "workers": 0, "distill": "tm", "eval": {"runs": 0}}, [hooks], write=False)
    dataset = pipeline.build_dataset()
    images, labels = dataset.load("train", [dataset.indices_by_class("train")[k][0] for k in range(2)])
    initial = DistilledSet(images, labels, dataset.class_names, dataset.mean, dataset.std)
    config = TMConfig(iterations=2, syn_steps=2, max_start_epoch=2, cur_max_start_epoch=1, augment="none", unroll="full")
    matcher = TrajectoryMatcher(pipeline.ctx, initial, Walks(), SPEC, config)
    matcher.step()
    matcher.step()
    kinds = [(kind, step) for kind, *_, step in hooks.seen]
    assert ("supervision", 0) in kinds and ("pixel", 1) in kinds and all(ctx is pipeline.ctx for _, ctx, *_ in hooks.seen)
    for kind, _, value, _ in hooks.seen:
        if kind == "pixel":
            assert torch.equal(value, labels)
        else:
            assert isinstance(value, torch.Tensor) and value.ndim == 1 and (value > 0).all()  # per-parameter distances


def test_the_best_set_and_the_initial_accuracy_survive_a_resume(digits):
    ctx, initial, config = _setup(digits)
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    matcher.consider(42.0)
    saved = matcher.state_dict()
    resumed = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    resumed.load_state_dict(saved)
    assert resumed.initial_accuracy == 42.0 and resumed.best["accuracy"] == 42.0 and resumed.best["iteration"] == -1


def test_resuming_restores_the_dsa_stream(digits):
    ctx, initial, config = _setup(digits, augment="dsa")
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    matcher.augment.dsa.sample((2, 1, 32, 32), matcher.augment.generator)  # the stream moves on
    saved = matcher.state_dict()
    resumed = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.augment.generator.get_state(), matcher.augment.generator.get_state())


def test_an_auto_resume_switches_to_the_checkpoints_unroll_only_where_it_fits(digits):
    ctx, initial, config = _setup(digits, unroll="auto")
    ctx.records["tm_memory"] = {"unroll": "constant"}
    matcher = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    state = matcher.state_dict()
    state["unroll"] = "full"
    resumed = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    resumed.unroll = "constant"  # as if auto had chosen it here
    resumed.plan = type("Plan", (), {"fits": staticmethod(lambda unroll: unroll == "full")})()
    resumed.load_state_dict(state)
    assert resumed.unroll == "full" and ctx.records["tm_memory"]["unroll"] == "full"
    state["unroll"] = "constant"
    other = TrajectoryMatcher(ctx, initial, Walks(), SPEC, config)
    other.unroll = "full"
    other.plan = resumed.plan
    other.load_state_dict(state)  # constant does not fit: stay
    assert other.unroll == "full"


def test_distill_tm_uses_the_runs_plan(digits, monkeypatch):
    ctx, initial, config = _setup(digits, unroll="auto", iterations=1)
    stand_in = Stand_in([1.0])
    monkeypatch.setattr(loop, "matching_step", stand_in)
    plan = type("Plan", (), {"unroll": "constant", "fits": staticmethod(lambda unroll: True)})()
    distill_tm(ctx, initial, Walks(), SPEC, config, plan=plan)
    assert stand_in.calls[0]["mode"] == "constant"


def test_progress_trackers_and_no_evaluation_without_an_evaluator(digits, monkeypatch):
    from contextlib import contextmanager

    ctx, initial, config = _setup(digits, iterations=2, eval_every=1)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.5, 2.5]))
    calls, tracked = [], []

    @contextmanager
    def progress(description, total):
        calls.append((description, total))
        yield lambda *a, **kw: calls.append((a, kw))

    monkeypatch.setattr(ctx.reporter, "progress", progress)
    monkeypatch.setattr(loop, "log_iteration", lambda c, row, initial_accuracy: tracked.append((c, row, initial_accuracy)))
    distilled, log = distill_tm(ctx, initial, Walks(), SPEC, config)  # eval_every without an evaluator: no evaluation
    assert "best_iteration" not in distilled.meta
    assert calls[0] == ("trajectory matching", 2) and calls[1] == ((0,), {})
    assert calls[2:] == [((1,), {"loss": 1.5, "syn_lr": log[0]["syn_lr"]}), ((1,), {"loss": 2.5, "syn_lr": log[1]["syn_lr"]})]
    assert [(c is ctx, row, acc) for c, row, acc in tracked] == [(True, log[0], None), (True, log[1], None)]


def test_the_kept_set_after_iteration_0_is_named_so(digits, monkeypatch):
    ctx, initial, config = _setup(digits, iterations=2, eval_every=1)
    monkeypatch.setattr(loop, "matching_step", Stand_in([1.0] * 2))
    said, tracked = [], []
    monkeypatch.setattr(ctx.reporter, "info", said.append)
    monkeypatch.setattr(loop, "log_iteration", lambda c, row, initial_accuracy: tracked.append(initial_accuracy))
    scores = iter([10.0, 50.0, 20.0])
    distilled, _ = distill_tm(ctx, initial, Walks(), SPEC, config, evaluate=lambda d: next(scores))
    assert distilled.meta["best_iteration"] == 0 and tracked == [10.0, 10.0]
    assert said == ["trajectory matching kept the set after iteration 0: validation accuracy 50.00%; initial set 10.00%"]


def test_a_single_expert_and_the_auto_plan(digits):
    from ddcore.tm.memory import plan_for_run

    ctx, initial, config = _setup(digits, unroll="auto")
    matcher = TrajectoryMatcher(ctx, initial, Walks(count=1, epochs=3), SPEC, config)
    expected = plan_for_run(ctx, config, 3, model_spec=SPEC, num_images=2, soft=False)
    assert matcher.plan == expected and matcher.unroll == expected.unroll
    assert torch.equal(matcher.generator.get_state(), ctx.derive_generator("tm", 0).get_state())
    soft_ctx, soft_initial, _ = _setup(digits, soft=True)
    soft = TrajectoryMatcher(soft_ctx, soft_initial, Walks(count=1, epochs=3), SPEC, config)
    assert soft.plan == plan_for_run(ctx, config, 3, model_spec=SPEC, num_images=2, soft=True)
    fixed_ctx, fixed_initial, fixed = _setup(digits, unroll="constant")
    assert TrajectoryMatcher(fixed_ctx, fixed_initial, Walks(), SPEC, fixed).plan is None
