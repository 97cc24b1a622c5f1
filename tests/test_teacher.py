"""ddcore.teacher: cached teachers, the run's own classifier, torchvision weights from a local file."""

from __future__ import annotations

import pytest
import torch

from ddcore.errors import ConfigError
from ddcore.models import ModelSpec
from ddcore import teacher as teacher_module
from ddcore.teacher import expert_network, run_classifier, torchvision_classifier, trained_teacher

TINY = ModelSpec(width=8, depth=3)


def test_teacher_is_trained_once_then_loaded_from_the_cache(dd_context, monkeypatch):
    ctx = dd_context()
    calls = []
    real_train = teacher_module.train_teacher
    monkeypatch.setattr(teacher_module, "train_teacher", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    first = trained_teacher(ctx, model=TINY, epochs=2)
    second = trained_teacher(ctx, model=TINY, epochs=2)
    assert calls == [1]
    assert not first.training and not second.training
    images, _ = ctx.dataset.load("test", range(20))
    torch.testing.assert_close(first(images), second(images))
    [record] = [v for k, v in ctx.records.items() if k.startswith("teachers/")]
    assert record["test_acc"] > 30.0  # chance is 10%: two epochs already learn something
    trained_teacher(ctx, model=TINY, epochs=3)  # another recipe is another cache entry
    assert calls == [1, 1]


def test_teacher_is_deterministic_and_leaves_the_global_rng_alone(dd_context):
    dataset = dd_context().dataset
    recipe = teacher_module.teacher_recipe(dataset, TINY, 1)
    state = torch.random.get_rng_state()
    a = teacher_module.train_teacher(dataset, recipe)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = teacher_module.train_teacher(dataset, recipe)
    for name in a["state_dict"]:
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name


def test_a_corrupt_teacher_file_is_retrained(dd_context):
    ctx = dd_context()
    trained_teacher(ctx, model=TINY, epochs=1)
    [path] = (ctx.cache_dir / "teachers").glob("*.pt")
    path.write_bytes(b"not a torch file")
    network = trained_teacher(ctx, model=TINY, epochs=1)
    assert isinstance(network, torch.nn.Module)
    assert torch.load(path, weights_only=True)["format"] == teacher_module.TEACHER_FORMAT


def test_run_classifier_is_the_final_snapshot_of_expert_0(dd_context):
    from ddcore.tm.experts import ensure_experts, recipe_for_dataset

    ctx = dd_context()
    recipe = recipe_for_dataset(ctx.dataset, 1, 2, width=8, depth=3)
    ctx.experts, ctx.model_spec = ensure_experts(ctx, ctx.dataset, recipe), recipe.model
    network = run_classifier(ctx)
    final = ctx.experts.trajectory(0)[-1]
    flat = torch.cat([p.detach().reshape(-1) for p in network.parameters()])
    assert torch.equal(flat, final)
    assert ctx.records["classifier"]["source"] == "expert"
    assert torch.equal(
        torch.cat([p.reshape(-1) for p in expert_network(ctx.experts, recipe.model, ctx.dataset, epoch=0).parameters()]),
        ctx.experts.trajectory(0)[0],
    )


def test_torchvision_classifier_round_trips_a_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=7).eval()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = torchvision_classifier("resnet18", path)  # 7 classes read from the file
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), source(images))


@pytest.mark.parametrize(
    "arch, contents, fragment",
    [
        ("resnet17", None, "unknown torchvision architecture 'resnet17'"),
        ("resnet18", "missing", "does not exist"),
        ("resnet18", b"garbage", "cannot be read"),
        ("resnet18", {"fc.weight": torch.zeros(3, 5)}, "does not fit resnet18"),
    ],
)
def test_torchvision_classifier_errors_name_the_problem(tmp_path, arch, contents, fragment):
    path = tmp_path / "weights.pth"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    elif isinstance(contents, dict):
        torch.save(contents, path)
    with pytest.raises(ConfigError, match=fragment) as info:
        torchvision_classifier(arch, path)
    assert "\n" not in str(info.value)
