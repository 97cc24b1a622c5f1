"""KD students trained together (``ddcore_diffsel.kd.train_students``, ``eval.batched``) are the students
trained one by one: same weights to float rounding, same accuracies, each with its own augmentation draws."""

from __future__ import annotations

import pytest
import torch

from ddcore.ensemble import ensemble_accuracy
from ddcore.errors import ConfigError
from ddcore.models import ModelSpec, build_model
from ddcore.testing import KnownAnswerDatasets, known_answer_images
from ddcore.training import accuracy_on
from ddcore_diffsel.kd import KDRecipe, train_student, train_students

#: norm "none": a conv bias in front of instance norm gets a zero gradient up to rounding, which AdamW's
#: normalised step turns into +-lr of noise, so its value would not be comparable between two computations
SPEC = ModelSpec("convnet", 8, 2, "none")
#: min_scale 1, no flip, no CutMix: every crop is the whole image, so the students see the images as they are
PLAIN = KDRecipe(epochs=3, batch_size=8, lr=0.01, weight_decay=0.01, temperature=4.0, cutmix=0.0, min_scale=1.0, flip=False)
AUGMENTED = KDRecipe(epochs=3, batch_size=8, lr=0.01, weight_decay=0.01, temperature=4.0, cutmix=1.0, min_scale=0.5, flip=True)
TOL = dict(atol=2e-5, rtol=1e-4)


def student(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(SPEC, 4, 1, 16)


@pytest.fixture(scope="module")
def setup():
    images, labels = known_answer_images(4, seed=1, noise=1.0)  # 16 images of 1x16x16, 4 classes: 2 batches
    teacher = student(99).eval()
    test = [(images, labels)]
    return images, teacher, test


def trained(setup, recipe, seeds, gens, together: bool):
    images, teacher, _ = setup
    students = [student(s) for s in seeds]
    generators = [torch.Generator().manual_seed(g) for g in gens]
    if together:
        return train_students(students, teacher, images, recipe, generators, "cpu")
    return [train_student(m, teacher, images, recipe, g, "cpu") for m, g in zip(students, generators)]


def assert_close(a, b):
    for x, y in zip(a, b):
        for (name, p), (_, q) in zip(x.named_parameters(), y.named_parameters()):
            torch.testing.assert_close(p, q, **TOL, msg=name)


@pytest.mark.parametrize("recipe", [PLAIN, AUGMENTED], ids=["augmentation off", "crops, flips, CutMix"])
def test_students_trained_together_equal_the_loop(setup, recipe):
    seeds, gens = (1, 2, 3), (11, 12, 13)
    together, alone = trained(setup, recipe, seeds, gens, True), trained(setup, recipe, seeds, gens, False)
    assert_close(together, alone)
    test = setup[2]
    assert ensemble_accuracy(together, test, "cpu") == [accuracy_on(m, test, "cpu") for m in alone]
    untrained = student(1)
    assert not torch.allclose(together[0].classifier.weight, untrained.classifier.weight)  # it learned
    assert not torch.allclose(together[0].classifier.weight, together[1].classifier.weight)  # three students


def test_each_students_draws_are_its_own_and_reproducible(setup):
    # the same init and generator seed twice: identical students only if the draws come from their own generator
    first = trained(setup, AUGMENTED, (1, 1, 1), (11, 11, 12), True)
    torch.testing.assert_close(first[0].classifier.weight, first[1].classifier.weight, rtol=0, atol=0)
    assert not torch.allclose(first[0].classifier.weight, first[2].classifier.weight)
    again = trained(setup, AUGMENTED, (1, 1, 1), (11, 11, 12), True)
    assert_close(first, again)


def test_mismatched_generators_are_refused(setup):
    with pytest.raises(ValueError, match="2 students but 1 generators"):
        train_students([student(1), student(2)], setup[1], setup[0], PLAIN, [torch.Generator()], "cpu")


def kd_run(run_tiny, mode: str, **kd):
    return run_tiny(
        plugins=[KnownAnswerDatasets(), "diffsel"], dataset="ka/clean", select="random-real",
        eval={"runs": 0, "width": 8, "batch_size": 16, "batched": mode},
        plugin={"diffsel": {"teacher_epochs": 2, "kd": {"runs": 3, "epochs": 2, "lr": 0.01, **kd}}},
    )  # fmt: skip


@pytest.mark.slow
def test_the_kd_evaluator_gives_the_same_accuracies_batched_and_records_how(run_tiny):
    on, off, auto = (kd_run(run_tiny, mode) for mode in ("on", "off", "auto"))
    assert len(on.metrics["diffsel/kd_acc_runs"]) == 3
    assert on.metrics["diffsel/kd_acc_runs"] == pytest.approx(off.metrics["diffsel/kd_acc_runs"], abs=1e-9)
    assert auto.metrics["diffsel/kd_acc_runs"] == off.metrics["diffsel/kd_acc_runs"]  # auto on the CPU: the loop
    plans = {name: r.manifest["records"]["diffsel/kd"]["batched"] for name, r in (("on", on), ("off", off), ("auto", auto))}
    assert plans["on"]["batched"] and plans["on"]["groups"] == [[0, 1, 2]] and plans["on"]["bytes_per_network"] > 0
    assert not plans["off"]["batched"] and plans["off"]["reason"] == "one by one: batched training is off"
    assert not plans["auto"]["batched"] and "GPU only" in plans["auto"]["reason"]


def test_on_refuses_a_batchnorm_student_naming_the_keys(run_tiny):
    with pytest.raises(ConfigError, match=r"eval\.batched.*plugin\.diffsel\.kd\.model = 'resnet18'.*BatchNorm"):
        kd_run(run_tiny, "on", model="resnet18")
