"""EDF's "samples predicted correctly" initialisation (ddcore.tm.correct_init) on hand-made experts.

The network is ``Flatten -> Linear(4, 3, bias=False)`` on 1x2x2 images, so with the "identity" expert
``W = [I | 0]`` an image's logits are its first three pixels; pixel 3 holds the image's position in
the training split, so every selected image can be traced back to its index.
"""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from ddcore.builtin.selection import random_per_class
from ddcore.context import derive_seed
from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.distilled import DistilledSet
from ddcore.errors import ConfigError, DDError
from ddcore.tm.flatparams import flatten_params, param_shapes_of, unflatten_params
from ddcore.models import ModelSpec, build_model
from ddcore.tm.correct_init import (
    correct_initialization,
    expert_logits,
    final_snapshots,
    select_correct,
    soft_labels_from_experts,
)

# (label, first three pixels = logits under the identity expert)
ROWS = [
    # class 0: every image correct
    *[(0, (3.0, 0.0, 0.0))] * 6,
    # class 1: four correct, two classified as 0
    (1, (0.0, 3.0, 0.0)), (1, (3.0, 0.0, 0.0)), (1, (0.0, 3.0, 0.0)),
    (1, (0.0, 3.0, 0.0)), (1, (3.0, 0.0, 0.0)), (1, (0.0, 3.0, 0.0)),
    # class 2: one correct; the misclassified ones have distinct p(class 2)
    (2, (2.0, 0.0, 1.0)), (2, (2.0, 0.0, 0.0)), (2, (0.0, 0.0, 3.0)), (2, (2.0, 0.0, 1.5)), (2, (2.0, 0.0, 0.5)),
]  # fmt: skip

IDENTITY = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
SWAP01 = IDENTITY[[1, 0, 2]]  # classifies class-0 images as 1 and vice versa
EXPERTS = torch.stack([IDENTITY.flatten(), 2 * IDENTITY.flatten(), SWAP01.flatten()])  # [E=3, P=12]


def make_dataset(rows=ROWS) -> ImageDataset:
    # interleave the classes in file order so class-major output is not an accident of the layout
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(123)).tolist()
    rows = [rows[i] for i in order]
    images = torch.tensor([[*logits, float(pos)] for pos, (_, logits) in enumerate(rows)]).view(-1, 1, 2, 2)
    labels = torch.tensor([label for label, _ in rows])
    split = TensorSplit(images, labels)
    return ImageDataset("toy", ["a", "b", "c"], split, split, (1, 2, 2), (0.0,), (1.0,))


def linear_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))


class FakeBuffer:
    """Buffer-like: ``__len__``, ``trajectory(i) -> [E+1, P]``, ``param_shapes``; counts reads."""

    def __init__(self, finals: torch.Tensor, shapes):
        self.trajectories = [torch.stack([torch.zeros_like(f), f]) for f in finals]  # row 0: init, row 1: final
        self.param_shapes = shapes
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.trajectories)

    def trajectory(self, index: int) -> torch.Tensor:
        self.reads.append(index)
        return self.trajectories[index]


def buffer() -> FakeBuffer:
    return FakeBuffer(EXPERTS, [("1.weight", (3, 4))])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def correct_under(dataset: ImageDataset, weight: torch.Tensor) -> dict[int, bool]:
    images = dataset.train.images.flatten(1)
    predicted = (images @ weight.T).argmax(1)
    return {i: bool(predicted[i] == dataset.train.labels[i]) for i in range(len(images))}


def expected_selection(dataset: ImageDataset, ipc: int, seed: int, weight=IDENTITY) -> list[list[int]]:
    """The oracle: per class, the correctly classified indices in the generator's order, first ipc."""
    right = correct_under(dataset, weight)
    generator = gen(seed)
    result = []
    for indices in dataset.indices_by_class("train"):
        order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
        result.append([i for i in order if right[i]][:ipc])
    return result


# ----------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_selects_only_correct_images_in_generator_order(seed):
    dataset = make_dataset()
    selection = select_correct(dataset, buffer(), linear_net(), 3, gen(seed), "cpu")
    expected = expected_selection(dataset, 3, seed)
    assert [len(group) for group in expected] == [3, 3, 1]  # class 2 has one correct image
    assert selection.indices[:7].tolist() == [i for group in expected for i in group]
    assert selection.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # class-major
    # the images are those of the indices (pixel 3 holds the index) and class 2 was filled
    assert torch.equal(selection.images, dataset.train.images[selection.indices])
    assert selection.meta["method"] == "correct"
    assert selection.meta["judge"] == 0
    assert selection.meta["filled"] == {2: 2}
    right = correct_under(dataset, IDENTITY)
    assert all(right[i] for i in selection.indices[:7].tolist())
    assert not any(right[i] for i in selection.indices[7:].tolist())


def test_fill_uses_highest_true_class_probability_after_the_correct_ones():
    dataset = make_dataset()
    selection = select_correct(dataset, buffer(), linear_net(), 4, gen(5), "cpu")
    class2 = selection.indices[8:].tolist()
    pixels = dataset.train.images[class2].flatten(1)[:, :3].tolist()
    # the one correct image first, then p(class 2) descending: 1.5 > 1.0 > 0.5 (0.0 left out)
    assert pixels == [[0.0, 0.0, 3.0], [2.0, 0.0, 1.5], [2.0, 0.0, 1.0], [2.0, 0.0, 0.5]]
    assert selection.meta["filled"] == {2: 3}
    assert selection.meta["evaluated"] == 6 + 6 + 5  # one chunk of 4 * ipc = 16 per class: each read whole


def test_nothing_filled_when_enough_correct_images():
    selection = select_correct(make_dataset(), buffer(), linear_net(), 1, gen(0), "cpu")
    assert selection.meta["filled"] == {}
    assert selection.indices.numel() == 3


def test_judge_index_and_tie_order_in_fill():
    # expert 2 swaps classes 0 and 1: no class-0 image is judged correct; all have the same p(class 0),
    # so the fill keeps the generator's order
    dataset = make_dataset()
    selection = select_correct(dataset, buffer(), linear_net(), 2, gen(9), "cpu", judge=2)
    generator = gen(9)
    class0 = dataset.indices_by_class()[0]
    order = [class0[i] for i in torch.randperm(len(class0), generator=generator).tolist()]
    assert selection.indices[:2].tolist() == order[:2]
    assert selection.meta["filled"][0] == 2
    assert selection.meta["judge"] == 2
    # class 1: the swapped expert accepts exactly the two images the identity rejects
    assert selection.indices[2:4].tolist() == expected_selection(dataset, 2, 9, SWAP01)[1]
    assert selection.meta["filled"] == {0: 2, 2: 1}


def test_same_as_random_selection_when_everything_is_correct():
    dataset = make_dataset([row for row in ROWS if row[1][row[0]] == max(row[1])])  # only correct images
    for seed in range(3):
        selection = select_correct(dataset, [IDENTITY.flatten()], linear_net(), 1, gen(seed), "cpu")
        assert selection.indices.tolist() == random_per_class(dataset.indices_by_class(), 1, gen(seed))
        assert selection.meta["filled"] == {}


def test_streams_chunks_instead_of_loading_whole_classes(monkeypatch):
    dataset = make_dataset()
    loads: list[list[int]] = []
    original = dataset.load

    def recording(split, indices, batch_size=256):
        loads.append(list(indices))
        return original(split, indices, batch_size)

    monkeypatch.setattr(dataset, "load", recording)
    select_correct(dataset, buffer(), linear_net(), 1, gen(0), "cpu")
    class0 = set(dataset.indices_by_class()[0])
    class0_loads = [chunk for chunk in loads if set(chunk) <= class0]
    assert [len(chunk) for chunk in class0_loads] == [4]  # 4 * ipc, then stop (the first is correct)
    generator = gen(0)
    order = [dataset.indices_by_class()[0][i] for i in torch.randperm(6, generator=generator).tolist()]
    assert class0_loads[0] == order[:4]
    assert all(len(chunk) <= 4 for chunk in loads)


def test_deterministic_with_the_generator():
    dataset = make_dataset()
    a = select_correct(dataset, buffer(), linear_net(), 2, gen(11), "cpu")
    b = select_correct(dataset, buffer(), linear_net(), 2, gen(11), "cpu")
    assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images) and a.meta == b.meta
    selections = [select_correct(dataset, buffer(), linear_net(), 2, gen(seed), "cpu") for seed in range(6)]
    others = {tuple(selection.indices.tolist()) for selection in selections}
    assert len(others) > 1


def test_only_the_judges_trajectory_is_read_and_inputs_agree():
    dataset = make_dataset()
    experts = buffer()
    from_buffer = select_correct(dataset, experts, linear_net(), 2, gen(3), "cpu")
    assert experts.reads == [0]
    from_matrix = select_correct(dataset, EXPERTS, linear_net(), 2, gen(3), "cpu")
    from_list = select_correct(dataset, list(EXPERTS), linear_net(), 2, gen(3), "cpu")
    assert from_buffer.indices.tolist() == from_matrix.indices.tolist() == from_list.indices.tolist()


def test_clear_errors():
    dataset = make_dataset()
    with pytest.raises(ConfigError, match="ipc 6 is more than the training images of class"):
        select_correct(dataset, buffer(), linear_net(), 6, gen(0), "cpu")
    with pytest.raises(ConfigError, match="judge expert 3 out of range"):
        select_correct(dataset, buffer(), linear_net(), 1, gen(0), "cpu", judge=3)
    with pytest.raises(ConfigError, match="judge must be"):
        select_correct(dataset, buffer(), linear_net(), 1, gen(0), "cpu", judge="best")
    wrong = FakeBuffer(EXPERTS, [("weight", (3, 4))])
    with pytest.raises(DDError, match="parameter shapes differ"):
        select_correct(dataset, wrong, linear_net(), 1, gen(0), "cpu")
    with pytest.raises(ConfigError, match="ipc must be"):
        select_correct(dataset, buffer(), linear_net(), 0, gen(0), "cpu")


# ----------------------------------------------------------------------------------------------
# Logits and soft labels
# ----------------------------------------------------------------------------------------------


def test_expert_logits_match_loaded_models_and_batching():
    torch.manual_seed(0)
    spec = ModelSpec(name="convnet", width=4, depth=1)
    nets = [build_model(spec, 3, 1, 2) for _ in range(2)]
    images = torch.randn(7, 1, 2, 2)
    finals = [flatten_params(net) for net in nets]
    template = build_model(spec, 3, 1, 2)
    logits = expert_logits(template, finals, param_shapes_of(template), images)
    assert logits.shape == (2, 7, 3)
    with torch.no_grad():
        direct = torch.stack([net(images) for net in nets])
    torch.testing.assert_close(logits, direct)
    batched = expert_logits(template, torch.stack(finals), param_shapes_of(template), images, batch=3)
    torch.testing.assert_close(batched, logits)
    assert not logits.requires_grad


def test_soft_labels_mean_over_correct_experts_exactly():
    logits = torch.tensor(
        [
            [[2.0, 0.0], [1.0, 3.0], [0.0, 1.0]],  # expert 0: right, right, wrong
            [[4.0, 2.0], [5.0, 1.0], [1.0, 3.0]],  # expert 1: right, wrong, wrong
            [[0.0, 6.0], [0.0, 1.0], [2.0, 5.0]],  # expert 2: wrong, right, wrong
        ]
    )
    labels = torch.tensor([0, 1, 0])
    soft = soft_labels_from_experts(logits, labels)
    # image 0: experts 0, 1; image 1: experts 0, 2; image 2: none -> all three
    assert torch.equal(soft, torch.tensor([[3.0, 1.0], [0.5, 2.0], [1.0, 3.0]]))
    with pytest.raises(ValueError):
        soft_labels_from_experts(logits[0], labels)


# ----------------------------------------------------------------------------------------------
# The initial distilled set
# ----------------------------------------------------------------------------------------------


class Reporter:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def make_ctx(seed: int = 7):
    records: dict = {}
    return types.SimpleNamespace(
        device=torch.device("cpu"),
        derive_generator=lambda *keys: torch.Generator().manual_seed(derive_seed(seed, *keys)),
        reporter=Reporter(),
        record=records.__setitem__,
        records=records,
    )


def test_correct_initialization_builds_the_distilled_set():
    dataset = make_dataset()
    ctx = make_ctx()
    experts = buffer()
    distilled = correct_initialization(ctx, dataset, experts, linear_net(), 2, 0.01)
    assert isinstance(distilled, DistilledSet)
    distilled.validate()
    assert distilled.soft and distilled.labels.shape == (6, 3) and distilled.labels.dtype == torch.float32
    assert distilled.lr == 0.01
    assert distilled.class_names == ["a", "b", "c"] and distilled.mean == (0.0,) and distilled.std == (1.0,)
    # the filled image's label (no expert right) need not argmax to its class: here a 0/2 tie -> 0
    assert distilled.hard_labels().tolist() == [0, 0, 1, 1, 2, 0]

    selection = select_correct(dataset, EXPERTS, linear_net(), 2, ctx.derive_generator("select", "correct"), "cpu")
    assert torch.equal(distilled.images, selection.images)
    # hand values: identity and 2*identity are right, the swapped expert is wrong -> mean of the two
    assert torch.equal(distilled.labels[0], torch.tensor([4.5, 0.0, 0.0]))
    assert torch.equal(distilled.labels[2], torch.tensor([0.0, 4.5, 0.0]))
    # class 2: the correct image (0, 0, 3) is labelled by experts 0, 1 and 2 (the swap keeps class 2)
    assert torch.equal(distilled.labels[4], torch.tensor([0.0, 0.0, 4.0]))  # (3 + 6 + 3) / 3
    # the filled image (2, 0, 1.5): nobody is right -> the mean over all three experts
    torch.testing.assert_close(distilled.labels[5], torch.tensor([2.0, 2.0 / 3.0, 2.0]))
    assert distilled.meta["selected_by"] == distilled.meta["initialized_by"] == "correct"
    assert distilled.meta["selection"]["filled"] == {2: 1}
    assert distilled.meta["label_experts"] == 3 and distilled.meta["label_fallback"] == 1
    assert ctx.records["tm_init"]["label_fallback"] == 1
    assert len(ctx.reporter.lines) == 1 and "filled" in ctx.reporter.lines[0]
    assert sorted(set(experts.reads)) == [0, 1, 2]


def test_correct_initialization_deterministic_and_quiet_when_nothing_to_report():
    dataset = make_dataset()
    ctx = make_ctx(3)
    a = correct_initialization(ctx, dataset, buffer(), linear_net(), 1, 0.02)
    b = correct_initialization(make_ctx(3), dataset, buffer(), linear_net(), 1, 0.02)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.meta["selection"]["filled"] == {}
    assert a.lr == 0.02


def test_with_a_model_spec_and_a_tiny_convnet():
    torch.manual_seed(1)
    dataset = make_dataset()
    spec = ModelSpec(name="convnet", width=4, depth=1)
    template = build_model(spec, 3, 1, 2)
    finals = torch.stack([flatten_params(build_model(spec, 3, 1, 2)) for _ in range(2)])
    experts = FakeBuffer(finals, param_shapes_of(template))
    selection = select_correct(dataset, experts, spec, 2, gen(0), "cpu")
    # check with the judge's (expert 0's final) parameters loaded into a real module
    judge = build_model(spec, 3, 1, 2)
    judge.load_state_dict(unflatten_params(final_snapshots(experts, [0])[0], experts.param_shapes), strict=False)
    with torch.no_grad():
        predicted = judge(selection.images).argmax(1)
    for c in range(3):
        rows = slice(2 * c, 2 * c + 2)
        right = int((predicted[rows] == c).sum())
        assert right == 2 - selection.meta["filled"].get(c, 0)
    distilled = correct_initialization(make_ctx(), dataset, experts, spec, 2, 0.01)
    distilled.validate()
