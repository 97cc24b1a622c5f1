"""Expert trajectories: training, the cache (keys, reuse, resume, repair), the buffer and `dd experts`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from ddcore.tm import experts as ex
from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.errors import ConfigError, DDError
from ddcore.tm.experts import ExpertBuffer, ExpertRecipe, cache_key, dataset_identity, ensure_experts, train_expert
from ddcore.models import ModelSpec, build_model

SPEC = ModelSpec(width=4, depth=3)


def tiny(name: str = "tiny", shift: float = 1.0) -> ImageDataset:
    """3 classes x 4 images of 1x8x8, in memory."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(4)
    train = torch.randn(12, 1, 8, 8, generator=generator) + shift * labels.view(-1, 1, 1, 1)
    test = torch.randn(12, 1, 8, 8, generator=generator) + shift * labels.view(-1, 1, 1, 1)
    return ImageDataset(name, ["a", "b", "c"], TensorSplit(train, labels), TensorSplit(test, labels), (1, 8, 8), (0.0,), (1.0,))


def recipe(**overrides) -> ExpertRecipe:
    options = {"num_experts": 2, "epochs": 2, "model": SPEC, "seed": 0, "batch_size": 4, "lr": 0.05}
    options.update(overrides)
    return ExpertRecipe.build(**options)


def make_ctx(tmp_path, accelerator=None):
    return SimpleNamespace(cache_dir=tmp_path / "cache", accelerator=accelerator, reporter=None)


@pytest.fixture
def calls(monkeypatch):
    """Indices passed to train_expert (which still trains)."""
    seen: list[int] = []
    real = ex.train_expert

    def spy(dataset, recipe, index, *args, **kwargs):
        seen.append(index)
        return real(dataset, recipe, index, *args, **kwargs)

    monkeypatch.setattr(ex, "train_expert", spy)
    return seen


def n_params(dataset: ImageDataset, spec: ModelSpec = SPEC) -> int:
    return sum(p.numel() for p in build_model(spec, dataset.num_classes, 1, 8).parameters())


# ----------------------------------------------------------------------------------------------
# One expert
# ----------------------------------------------------------------------------------------------


def test_trajectory_shape_initial_snapshot_and_progress():
    data, r = tiny(), recipe(epochs=3)
    state = torch.random.get_rng_state()
    result = train_expert(data, r, index=1)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's RNG must be left untouched"
    trajectory = result["trajectory"]
    assert trajectory.dtype == torch.float32
    assert tuple(trajectory.shape) == (4, n_params(data))
    with torch.random.fork_rng():
        torch.manual_seed(ex.derive_seed(0, "expert", 1, "init"))
        fresh = build_model(SPEC, 3, 1, 8)
    assert torch.equal(trajectory[0], torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]))
    for before, after in zip(trajectory[:-1], trajectory[1:]):
        assert not torch.equal(before, after)
    assert [name for name, _ in result["param_shapes"]] == [name for name, _ in fresh.named_parameters()]
    assert 0.0 <= result["final_train_acc"] <= 100.0 and 0.0 <= result["test_acc"] <= 100.0


def test_determinism_same_seed_same_trajectory_other_seed_or_index_differs():
    data = tiny()
    first = train_expert(data, recipe(), 0)["trajectory"]
    assert torch.equal(first, train_expert(data, recipe(), 0)["trajectory"])
    assert not torch.equal(first, train_expert(data, recipe(seed=1), 0)["trajectory"])
    assert not torch.equal(first, train_expert(data, recipe(), 1)["trajectory"])


@pytest.mark.parametrize("augment", ["crop_flip", "dsa"])
def test_augmented_training_is_deterministic_too(augment):
    data = tiny()
    a = train_expert(data, recipe(augment=augment, epochs=1), 0)["trajectory"]
    assert torch.equal(a, train_expert(data, recipe(augment=augment, epochs=1), 0)["trajectory"])
    assert not torch.equal(a, train_expert(data, recipe(epochs=1), 0)["trajectory"])  # it did augment


# ----------------------------------------------------------------------------------------------
# Recipe and cache key
# ----------------------------------------------------------------------------------------------


def test_recipe_defaults_and_errors():
    r = ExpertRecipe(num_experts=3, epochs=5)
    assert r.train.epochs == 5 and r.train.schedule == "constant" and r.train.lr == 0.01
    assert r.train.momentum == 0.0 and r.train.weight_decay == 0.0 and r.train.batch_size == 256
    for bad, fragment in (
        ({"epochs": 0}, "epochs"),
        ({"num_experts": 0}, "num_experts"),
        ({"lr": 0.0}, "lr"),
        ({"augment": "mixup"}, "augmentation"),
        ({"model": ModelSpec(name="vgg")}, "model"),
    ):
        with pytest.raises(ConfigError, match=fragment) as info:
            recipe(**bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown training option"):
        ExpertRecipe.build(1, 1, nesterov=True)


def test_cache_key_depends_on_what_shapes_trajectories_only():
    data = tiny()
    identity = dataset_identity(data)
    key = cache_key(identity, recipe())
    assert len(key) == 16 and key == cache_key(dataset_identity(tiny()), recipe())
    assert key == cache_key(identity, recipe(num_experts=7))
    assert key != cache_key(identity, recipe(lr=0.02))
    assert key != cache_key(identity, recipe(model=ModelSpec(width=8, depth=3)))
    assert key != cache_key(identity, recipe(seed=1))
    assert key != cache_key(identity, recipe(epochs=3))
    assert key != cache_key(dataset_identity(tiny(name="other")), recipe())
    assert key != cache_key(dataset_identity(data, data_root="/some/where"), recipe())


# ----------------------------------------------------------------------------------------------
# The cache: reuse, growth, repair, sharding
# ----------------------------------------------------------------------------------------------


def test_cache_reuse_growth_and_repair(tmp_path, calls, monkeypatch):
    data, r = tiny(), recipe()
    ctx = make_ctx(tmp_path)
    buffer = ensure_experts(ctx, data, r)
    assert calls == [0, 1] and len(buffer) == 2
    folder = tmp_path / "cache" / "experts" / cache_key(dataset_identity(data), r)
    assert buffer.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["expert_0.pt", "expert_1.pt", "recipe.json"]
    described = json.loads((folder / "recipe.json").read_text())
    assert described["key"] == folder.name and described["epochs"] == 2 and "num_experts" not in described
    saved = {i: buffer.trajectory(i).clone() for i in range(2)}

    calls.clear()
    again = ensure_experts(ctx, data, r)  # everything cached: no training at all
    assert calls == []
    assert torch.equal(again.trajectory(1), saved[1])

    bigger = ensure_experts(ctx, data, r, num_experts=3)  # only the new one is trained
    assert calls == [2] and len(bigger) == 3

    calls.clear()
    (folder / "expert_1.pt").unlink()
    (folder / "expert_2.pt").write_bytes(b"not a torch file")
    repaired = ensure_experts(ctx, data, r, num_experts=3)
    assert calls == [1, 2]
    assert torch.equal(repaired.trajectory(1), saved[1])  # retrained identically

    calls.clear()
    path = folder / "expert_0.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a truncated file
    ensure_experts(ctx, data, r, num_experts=3)
    assert calls == [0]


def test_wrong_shape_file_is_retrained(tmp_path, calls):
    data, r = tiny(), recipe()
    ctx = make_ctx(tmp_path)
    buffer = ensure_experts(ctx, data, r, num_experts=1)
    stored = torch.load(buffer.path(0), weights_only=True)
    stored["trajectory"] = stored["trajectory"][:2]
    torch.save(stored, buffer.path(0))
    calls.clear()
    ensure_experts(ctx, data, r, num_experts=1)
    assert calls == [0]


def test_unreadable_file_when_loading_is_a_one_line_error_naming_it(tmp_path):
    data, r = tiny(), recipe()
    buffer = ensure_experts(make_ctx(tmp_path), data, r, num_experts=1)
    buffer.path(0).write_bytes(b"garbage")
    with pytest.raises(DDError, match="expert_0.pt") as info:
        buffer.trajectory(0)
    assert "\n" not in str(info.value)


def test_processes_share_the_missing_experts(tmp_path, calls, monkeypatch):
    """Process 1 of 2 trains missing experts 1 and 3 only; experts the others failed to write are an error."""
    monkeypatch.setattr(ex, "_agree", lambda accelerator, value: [0, 1, 2, 3])  # the main process's list
    waited = []
    accelerator = SimpleNamespace(
        num_processes=2, process_index=1, is_main_process=False, device=torch.device("cpu"),
        wait_for_everyone=lambda: waited.append(True),
    )  # fmt: skip
    with pytest.raises(DDError, match="expert_0.pt"):
        ensure_experts(make_ctx(tmp_path, accelerator), tiny(), recipe(epochs=1), num_experts=4)
    assert calls == [1, 3] and waited == [True]


def test_failing_retrain_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "torch_save", lambda obj, path: path.write_bytes(b"broken"))
    with pytest.raises(DDError, match=r"expert_0\.pt.*after training"):
        ensure_experts(make_ctx(tmp_path), tiny(), recipe(epochs=1), num_experts=1)


def test_same_seed_in_another_cache_gives_identical_experts(tmp_path):
    data = tiny()
    a = ensure_experts(make_ctx(tmp_path / "a"), data, recipe())
    b = ensure_experts(make_ctx(tmp_path / "b"), data, recipe())
    c = ensure_experts(make_ctx(tmp_path / "c"), data, recipe(seed=5))
    assert torch.equal(a.trajectory(1), b.trajectory(1))
    assert not torch.equal(a.trajectory(1), c.trajectory(1))


# ----------------------------------------------------------------------------------------------
# The buffer
# ----------------------------------------------------------------------------------------------


def test_unflatten_round_trips_into_a_model(tmp_path):
    data = tiny()
    buffer = ensure_experts(make_ctx(tmp_path), data, recipe(), num_experts=1)
    final = buffer.trajectory(0)[-1]
    model = build_model(SPEC, 3, 1, 8)
    model.load_state_dict(buffer.unflatten(final), strict=True)  # instance norm: no buffers
    assert torch.equal(ex.flatten_params(model), final)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, buffer.unflatten(final)[name])
    # functional use, as trajectory matching does it: the same logits, and gradients reach the flat vector
    theta = final.clone().requires_grad_(True)
    x = data.train.images[:5]
    logits = torch.func.functional_call(model, buffer.unflatten(theta), (x,))
    assert torch.allclose(logits, model(x))
    logits.sum().backward()
    assert theta.grad is not None and theta.grad.shape == theta.shape
    with pytest.raises(ValueError):
        buffer.unflatten(final[:-1])


def test_buffer_keeps_few_experts_in_memory_and_samples(tmp_path):
    data = tiny()
    ensure_experts(make_ctx(tmp_path), data, recipe(epochs=1), num_experts=3)
    folder = next((tmp_path / "cache" / "experts").iterdir())
    shapes = ex.expected_param_shapes(data, recipe(epochs=1))
    buffer = ExpertBuffer(folder, 3, 1, shapes, max_loaded=2)
    for i in range(3):
        buffer.trajectory(i)
    assert list(buffer._loaded) == [1, 2]
    index, trajectory = buffer.sample(torch.Generator().manual_seed(0))
    assert 0 <= index < 3 and torch.equal(trajectory, buffer.trajectory(index))
    assert set(buffer.info(0)) == {"index", "final_train_acc", "test_acc", "path"}
    with pytest.raises(IndexError):
        buffer.trajectory(3)


# ----------------------------------------------------------------------------------------------
# dd experts
# ----------------------------------------------------------------------------------------------


def test_experts_command_trains_then_reuses(tmp_path):
    from click.testing import CliRunner

    from ddcore_cli.experts_cmd import experts_command

    cache = tmp_path / "cache"
    window = ["--set", "tm.max_start_epoch=0", "--set", "tm.cur_max_start_epoch=0", "--set", "tm.expert_epochs=1"]
    args = ["--dataset", "digits", "--image-size", "8", "--width", "4", *window,  # 1 epoch: what this window needs
            "--workers", "0", "--cache-dir", str(cache), "--quiet", "--cpu"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(experts_command, [*args, "--num-experts", "1"])
    assert first.exit_code == 0, first.output
    assert "expert_0.pt (new)" in first.output and "1 trained, 0 reused" in first.output
    second = runner.invoke(experts_command, [*args, "--num-experts", "2"])
    assert second.exit_code == 0, second.output
    assert "expert_1.pt (new)" in second.output and "1 trained, 1 reused" in second.output
    folders = list((cache / "experts").iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].glob("*.pt")) == ["expert_0.pt", "expert_1.pt"]
    assert "1 epochs" in second.output
    bad = runner.invoke(experts_command, [*args, "--num-experts", "0"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
