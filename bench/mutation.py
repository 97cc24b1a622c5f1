#!/usr/bin/env python3
"""Mutation testing of ddcore's result-computing modules with mutmut 3 (issue 18, part 6).

Usage (from the repository root, in a venv with ``pip install -e '.[test]' mutmut==3.8.1``)::

    OMP_NUM_THREADS=1 python bench/mutation.py                 # every module in MODULES
    OMP_NUM_THREADS=1 python bench/mutation.py edf.dae cam     # some of them
    python bench/mutation.py --list                            # the module -> tests mapping

Each module runs on its own, against only its focused tests: the package that holds it is copied
into a staging folder (``$DD_MUTATION_WORK``, default ``/tmp/ddcore-mutation``) under its *import*
name (``plugins/edf`` -> ``ddcore_edf``), so that mutmut's path-derived module names equal the
imported ones and ``mutants/`` shadows the editable install on ``sys.path``. mutmut then mutates
that one file and runs the listed test files for every mutant (a forked pytest per mutant, only
the tests that reach the mutated function).

Survivors that are *equivalent* (no input can tell them apart) are listed in ``EQUIVALENT`` with
the reason; the score is ``killed / (generated - equivalent)``. Real survivors left alive on purpose
are in ``KNOWN_SURVIVORS`` (they count against the score). Mutant names are numbered by
mutmut from the source, so an edit to a module renumbers its mutants: a survivor not in
``EQUIVALENT`` is printed as "unexplained" and must be looked at (``mutmut show NAME`` in the
module's staging folder). The report table goes to stdout (markdown) and to
``$DD_MUTATION_WORK/report.json`` (and ``<module>/report.json``).

``--rerun-survivors`` (after adding tests, the module itself unchanged) runs only the last run's
survivors against the current focused tests and keeps every other verdict: a mutant killed before
is still killed, since the tests that killed it are still selected (the test list only grows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).with_name("mutmut")

#: import name of the package -> its folder in the repository
PACKAGES = {
    "ddcore": "ddcore",
    "ddcore_edf": "plugins/edf",
    "ddcore_diffsel": "plugins/diffsel",
    "ddcore_compdd": "plugins/compdd",
}

#: key -> (file to mutate, as import-package/relative path; focused test files, repository paths)
MODULES: dict[str, tuple[str, list[str]]] = {
    "edf.dae": ("ddcore_edf/dae.py", [
        "plugins/edf/tests/test_edf_dae.py", "plugins/edf/tests/test_mutation_dae.py"]),
    "edf.cpd": ("ddcore_edf/cpd.py", [
        "plugins/edf/tests/test_edf_cpd.py", "plugins/edf/tests/test_mutation_cpd.py"]),
    "compdd.complexity": ("ddcore_compdd/complexity.py", [
        "plugins/compdd/tests/test_compdd_complexity.py", "plugins/compdd/tests/test_mutation_complexity.py"]),
    "diffsel.windows": ("ddcore_diffsel/windows.py", [
        "plugins/diffsel/tests/test_diffsel_windows.py", "plugins/diffsel/tests/test_mutation_windows.py"]),
    "diffsel.ranking": ("ddcore_diffsel/ranking.py", [
        "plugins/diffsel/tests/test_diffsel_ranking.py", "plugins/diffsel/tests/test_mutation_ranking.py"]),
    "diffsel.scorers": ("ddcore_diffsel/scorers.py", [
        "plugins/diffsel/tests/test_diffsel_planted.py", "plugins/diffsel/tests/test_mutation_scorers.py"]),
    "tm.matching": ("ddcore/tm/matching.py", [
        "tests/test_matching.py", "tests/test_mutation_matching.py"]),
    "augment": ("ddcore/augment.py", [
        "tests/test_augment.py", "tests/test_mutation_augment.py"]),
    "cam": ("ddcore/cam.py", [
        "tests/test_cam.py", "tests/test_cam_chunk.py", "tests/test_mutation_cam.py"]),
    "training": ("ddcore/training.py", [
        "tests/test_training.py", "tests/test_mutation_training.py"]),
    "builtin.evaluate": ("ddcore/builtin/evaluate.py", [
        "tests/test_headline.py", "tests/test_mutation_evaluate.py"]),
    "tm.loop": ("ddcore/tm/loop.py", [
        "tests/test_tm.py", "tests/test_mutation_loop.py"]),
    "tm.unroll": ("ddcore/tm/unroll.py", [
        "tests/test_tm_unroll.py", "tests/test_mutation_unroll.py"]),
}

#: mutant name -> why no test can kill it (checked by reading the mutant: ``mutmut show NAME``)
EQUIVALENT: dict[str, str] = {
    # compdd.complexity
    "ddcore_compdd.complexity.x_class_complexity__mutmut_41": 'float("NAN") is float("nan")',
    # diffsel.windows
    "ddcore_diffsel.windows.x_window_grid__mutmut_30": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.windows.x_window_grid__mutmut_32": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.windows.x_square_windows__mutmut_17": 'meshgrid indexing=None is the default "ij" (a warning only)',
    "ddcore_diffsel.windows.x_square_windows__mutmut_20": 'meshgrid without indexing is the default "ij" (a warning only)',
    "ddcore_diffsel.windows.x_box_means__mutmut_14": "an extra padding row after the last one: never indexed (row stride unchanged)",
    "ddcore_diffsel.windows.x_box_means__mutmut_23": "DEVICE: boxes.to(None) is a no-op; differs only with maps on a GPU",
    "ddcore_diffsel.windows.x_box_means__mutmut_57": "int64 area divides a float64 sum to float64 either way",
    "ddcore_diffsel.windows.x_best_windows__mutmut_15": "DEVICE: boxes.to(None); differs only with scores on a GPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_20": "torch.full(..., -1) infers int64 without dtype=",
    "ddcore_diffsel.windows.x_best_windows__mutmut_24": "torch.full(..., -1) infers int64 without dtype=",
    "ddcore_diffsel.windows.x_best_windows__mutmut_21": "DEVICE: device=None is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_25": "DEVICE: no device= is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_26": "initial fill of picked is overwritten: every column gets where(valid, best, -1)",
    "ddcore_diffsel.windows.x_best_windows__mutmut_27": "initial fill of picked is overwritten: every column gets where(valid, best, -1)",
    "ddcore_diffsel.windows.x_best_windows__mutmut_32": "DEVICE: device=None is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_36": "DEVICE: no device= is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_39": 'float("-INF") is float("-inf")',
    "ddcore_diffsel.windows.x_best_windows__mutmut_42": "DEVICE: device=None is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_44": "DEVICE: no device= is the CPU",
    "ddcore_diffsel.windows.x_best_windows__mutmut_78": 'float("-INF") is float("-inf")',
    "ddcore_diffsel.windows.x_best_windows__mutmut_82": 'float("-INF") is float("-inf")',
    "ddcore_diffsel.windows.x_crop_resize__mutmut_15": "DEVICE: boxes.to(None) is a no-op",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_20": "roi_align casts float32 rois to the input's dtype itself",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_26": "DEVICE: device=None is the CPU",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_29": "DEVICE: no device= is the CPU",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_27": "int64 batch index is promoted by torch.stack, then .to(images.dtype)",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_30": "int64 batch index is promoted by torch.stack, then .to(images.dtype)",
    "ddcore_diffsel.windows.x_crop_resize__mutmut_53": "spatial_scale=1.0 is roi_align's default",
    # diffsel.ranking
    "ddcore_diffsel.ranking.x_score_order__mutmut_17": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.ranking.x_score_order__mutmut_19": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.ranking.x__two_means__mutmut_9": "all points close to points[0] iff all close to points[1] (n >= 2; up to allclose's tolerance)",
    "ddcore_diffsel.ranking.x__two_means__mutmut_19": "KMeans n_init default 'auto' is 1 run with k-means++ init",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_33": "a singleton's SSE is 0; a maximum of 0 falls back to scores exactly as -1 does",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_36": "any negative SSE marker (-2 vs -1) is never chosen before the fall-back",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_44": "a 0-SSE cluster is tried, found unsplittable and marked; the next round falls back with the same winners",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_71": "splittable None is falsy like False",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_79": "halves swapped: keep/new are then chosen by which half holds the winner",
    "ddcore_diffsel.ranking.x__two_means__mutmut_1": "identical points (n >= 2) then reach KMeans, which gives them one label: None all the same",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_108": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_110": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.ranking.x_kmeans_order__mutmut_30": "len == k enters the fill with k - len = 0: adds nothing",
    "ddcore_diffsel.ranking.x_kmeans_order__mutmut_50": "torch.tensor(list of int) is int64 without dtype=",
    "ddcore_diffsel.ranking.x_kmeans_order__mutmut_52": "torch.tensor(list of int) is int64 without dtype=",
    # augment (DSA)
    "ddcore.augment.x_apply_family__mutmut_49": "unreachable: parse_strategy raises for every family not handled above",
    "ddcore.augment.x__translate__mutmut_3": "shift.to(device=None): apply_family's params are already on the images' device (DSA.apply moves them)",
    "ddcore.augment.x__translate__mutmut_5": "shift.to(dtype) without device=: as above",
    "ddcore.augment.x__translate__mutmut_12": "padding 1 instead of 0 for an empty batch: the output is empty either way",
    "ddcore.augment.x__translate__mutmut_17": "padding 1 instead of 0 for an empty batch: the output is empty either way",
    "ddcore.augment.x__translate__mutmut_27": "DEVICE: arange(device=None) is the CPU; differs only for images on a GPU",
    "ddcore.augment.x__translate__mutmut_29": "DEVICE: arange without device= is the CPU",
    "ddcore.augment.x__translate__mutmut_36": "DEVICE: arange(device=None) is the CPU",
    "ddcore.augment.x__translate__mutmut_38": "DEVICE: arange without device= is the CPU",
    "ddcore.augment.x__translate__mutmut_31": "shift[:, 1:3] is shift[:, 1:2]: shift has 2 columns",
    "ddcore.augment.x__cutout__mutmut_3": "box.to(None): apply_family's params are already on the images' device",
    "ddcore.augment.x__cutout__mutmut_29": "box[:, 3:5] is box[:, 3:4]: the box has 4 columns",
    "ddcore.augment.x__cutout__mutmut_34": "images * bool mask promotes to the images' dtype with the same values",
    "ddcore.augment.x__flip__mutmut_15": "flip.to(None): apply_family's params are already on the images' device",
    "ddcore.augment.x__warp__mutmut_7": "align_corners=None: kornia normalises the pixel matrix for the same convention (same warp, 1.6e-15 in float64)",
    "ddcore.augment.x__warp__mutmut_13": "align_corners dropped: kornia's default is True",
    "ddcore.augment.x__warp__mutmut_18": "align_corners=False: kornia normalises the pixel matrix for the same convention (same warp, 1.6e-15 in float64)",
    "ddcore.augment.x__warp__mutmut_11": "mode dropped: kornia's default is bilinear",
    "ddcore.augment.x__warp__mutmut_12": "padding_mode dropped: kornia's default is zeros",
    # training
    "ddcore.training.x_soft_cross_entropy__mutmut_5": "log_softmax(dim=None) picks dim 1 for 2-D logits [B, K] (a deprecation warning only)",
    "ddcore.training.x_soft_cross_entropy__mutmut_7": "log_softmax without dim picks dim 1 for 2-D logits [B, K]",
    "ddcore.training.x_soft_cross_entropy__mutmut_10": "softmax(dim=None) picks dim 1 for 2-D targets [B, K]",
    "ddcore.training.x_soft_cross_entropy__mutmut_12": "softmax without dim picks dim 1 for 2-D targets [B, K]",
    "ddcore.training.x_make_augment__mutmut_12": "randint(2**62) is randint(0, 2**62)",
    "ddcore.training.x_train_network__mutmut_1": "DEVICE: model.to(None) leaves it where it is (the CPU here)",
    "ddcore.training.x_train_network__mutmut_24": "DEVICE: the epoch's loss total on device=None is the CPU",
    "ddcore.training.x_train_network__mutmut_26": "DEVICE: the epoch's loss total without device= is on the CPU",
    "ddcore.training.x_train_network__mutmut_29": "DEVICE: images.to(None) is a no-op",
    "ddcore.training.x_train_network__mutmut_30": "DEVICE: labels.to(None) is a no-op",
    # diffsel.scorers
    "ddcore_diffsel.scorers.x_random_resized_boxes__mutmut_64": "the no-fit marker -2 instead of -1: only its sign (first >= 0) is read",
    "ddcore_diffsel.scorers.x_random_resized_boxes__mutmut_112": "clamp(max=height + 1) never binds: top <= height - h <= height - 1",
    "ddcore_diffsel.scorers.x_random_resized_boxes__mutmut_121": "clamp(max=width + 1) never binds: left <= width - w <= width - 1",
    "ddcore_diffsel.scorers.x_observer_views__mutmut_3": "patches are square cells [B, C, s, s]: shape[-2] is shape[-1]",
    "ddcore_diffsel.scorers.x_observer_views__mutmut_11": "interpolate align_corners=None means False",
    "ddcore_diffsel.scorers.x_observer_views__mutmut_15": "interpolate without align_corners means False",
    # builtin.evaluate
    "ddcore.builtin.evaluate.x_train_once__mutmut_13": "DEVICE: fork_rng(devices=None) forks every CUDA device; there are none on the CPU",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_16": "DEVICE: fork_rng(devices=None) forks every CUDA device; there are none on the CPU",
    "ddcore.builtin.evaluate.x_train_once__mutmut_28": "DEVICE: train_network(device=None) leaves everything on the CPU",
    "ddcore.builtin.evaluate.x_evaluate_splits__mutmut_16": "DEVICE: accuracy_on(device=None) leaves everything on the CPU",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_22": "DEVICE: loop_reason reads the network count only on a GPU ('only one network')",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_101": "ensemble_accuracy is accuracy_on of each network however it groups them (group_size: memory only)",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_106": "ensemble_accuracy without group_size: all networks in one group, the same accuracies",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_102": "ensemble_accuracy batched=None (falsy): one by one, the same accuracies",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_107": "ensemble_accuracy batched default: vmapped instead of one by one, the same accuracies",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_111": "test loader at its default batch size: accuracy does not depend on the batch size",
    "ddcore.builtin.evaluate.x_evaluate_splits__mutmut_23": "test loader at its default batch size: accuracy does not depend on the batch size",
    "ddcore.builtin.evaluate.x_paired_initial__mutmut_6": "RunContext always has an initial attribute (default None): getattr never needs its default",
    "ddcore.builtin.evaluate.x_describe_rows__mutmut_24": "paired_difference writes both ends of the interval or neither: 'and' and 'or' agree on its metrics",
    # tm.loop
    'ddcore.tm.loop.x_sample_start_epoch__mutmut_15': 'max(upper, min - 1): never binds, as max(upper, min + 1) never does: TMConfig makes min_start_epoch < cur_max_start_epoch <= upper',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_43': 'DEVICE: device None: the model, images, labels and syn_lr stay on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_45': 'DEVICE: model.to(None) stays on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_56': 'DEVICE: images.to(None) stays on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_59': 'DEVICE: labels.to(None) stays on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_69': 'DEVICE: syn_lr on device=None is on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ__init____mutmut_72': 'DEVICE: syn_lr without device= is on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_19': 'DEVICE: trajectory.to(None) stays on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_33': 'zero_grad(set_to_none=None) zeroes instead of dropping: matching_step then adds the same gradients to 0',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_34': 'zero_grad(set_to_none=False): as above',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_81': 'MULTI-PROCESS: averaging nothing across processes is a no-op in one process',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_86': 'num_processes >= 1: in one process the mean of one loss and the gather of one expert are the same values',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁ_check_update__mutmut_21': 'syn_lr < floor vs <= floor: syn_lr is float32, and no float32 equals the float64 1e-8',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstate_dict__mutmut_4': "num_processes >= 1: gather_object in one process returns the one process's list, the same as [streams]",
    'ddcore.tm.loop.xǁTrajectoryMatcherǁload_state_dict__mutmut_4': 'DEVICE: state images .to(None) stay on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁload_state_dict__mutmut_8': 'DEVICE: state labels .to(None) stay on the CPU',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_87': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_88': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_89': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_90': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_91': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_92': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_93': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_94': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_95': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_96': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_97': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_98': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstep__mutmut_99': 'MULTI-PROCESS: the branch for num_processes > 1 (loss mean, gathered experts); tested only by the two-process runs, whose child processes import the installed package, never the mutants',
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstate_dict__mutmut_5': "MULTI-PROCESS: the gather of every process's random streams (num_processes > 1); as above",
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstate_dict__mutmut_6': "MULTI-PROCESS: the gather of every process's random streams (num_processes > 1); as above",
    'ddcore.tm.loop.xǁTrajectoryMatcherǁstate_dict__mutmut_7': "MULTI-PROCESS: the gather of every process's random streams (num_processes > 1); as above",
    # tm.unroll
    "ddcore.tm.unroll.x_backward__mutmut_105": "DEVICE: index.to(None) stays on the CPU; differs only for a gradient on a GPU",
    "ddcore.tm.unroll.x_backward__mutmut_118": "DEVICE: index.to(None) stays on the CPU; differs only for a gradient on a GPU",
    # cam
    "ddcore.cam.x_resolve_layer__mutmut_14": 'unreachable: an empty name was replaced by the default layer two lines above',
    "ddcore.cam.x_normalize_maps__mutmut_3": "always resizes: a bilinear resize to the same size is the identity (bit for bit)",
    "ddcore.cam.x_normalize_maps__mutmut_11": "interpolate align_corners=None means False",
    "ddcore.cam.x_normalize_maps__mutmut_15": "interpolate without align_corners means False",
    "ddcore.cam.x_normalize_maps__mutmut_45": "span == 0 means maps == low everywhere: (maps - low) / tiny is 0, the same zeros",
    "ddcore.cam.x__chunk_maps__mutmut_14": "a one-image chunk runs as 3 rows instead of 2: multi-row CPU passes give a row the same bits (the guard is against the 1-row kernel)",
    "ddcore.cam.x_grad_cam__mutmut_36": "DEVICE: targets.to(device=None) stays on the CPU; differs only with images on a GPU",
    "ddcore.cam.x_grad_cam__mutmut_38": "DEVICE: targets.to(dtype) without device=: as above",
    "ddcore.cam.x_grad_cam__mutmut_37": "targets.to(dtype=None) keeps int32 targets: torch's gather takes an int32 index as well (same maps, checked)",
    "ddcore.cam.x_grad_cam__mutmut_39": "targets.to(device) without dtype=: as above",
    "ddcore.cam.x_grad_cam__mutmut_56": "randint(2**62) is randint(0, 2**62)",
    "ddcore.cam.x_grad_cam__mutmut_88": "the noise argument of a plain Grad-CAM chunk is never read",
    "ddcore.cam.x_grad_cam__mutmut_107": "DEVICE: noise.to(None) stays on the CPU; differs only with images on a GPU",
    "ddcore.cam.x_grad_cam__mutmut_128": "images.shape[+2:] is images.shape[-2:] for the 4-D images checked above",
    "ddcore.cam.x_cam_chunk_size__mutmut_11": "device None: the projection runs on CPU tensors (garbage values) instead of meta ones; the same shapes, so the same bytes, only slower",
    "ddcore.cam.x_cam_chunk_size__mutmut_36": "targets on the CPU next to meta logits: torch's meta gather accepts them; the same shapes",
    "ddcore.cam.x_cam_chunk_size__mutmut_39": "targets without device=: as above",
    "ddcore.cam.x_cam_chunk_size__mutmut_51": "with forward given, _chunk_maps never calls the model argument",
    "ddcore.cam.x_cam_chunk_size__mutmut_77": "max(2, ...) differs only if one image costs under 2 bytes",
    "ddcore.cam.x_cam_chunk_size__mutmut_80": "int() of a true division truncates like // for the positive case; a negative fit is raised to 1 either way",
}

#: surviving mutants that are NOT equivalent but are left alive on purpose (counted against the score)
KNOWN_SURVIVORS: dict[str, str] = {
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_67": "split = 1 (seed stream of splits >= 2): needs a 3rd split whose 2-means depends on random_state",
    "ddcore_diffsel.ranking.x_bisecting_order__mutmut_69": "split += 2 (seed stream of splits >= 2): as above",
    "ddcore_diffsel.ranking.x_kmeans_order__mutmut_20": "n_init 4 vs 3: best of more k-means++ restarts; same clusters on any input whose optimum 3 restarts find",
    "ddcore_diffsel.ranking.x_rank_class__mutmut_14": "random_state=None (unseeded k-means): right answer on well separated data; a seed-sensitive test would be flaky",
    "ddcore.augment.xǁDSAǁsample__mutmut_158": "flip when u <= 0.5 instead of u < 0.5: differs only for a float32 draw of exactly 0.5 (2^-24 per image)",
    "ddcore.training.x_make_augment__mutmut_15": "DSA seed drawn from [1, 2**62) instead of [0, 2**62): another, equally good stream; pinning it pins torch's randint arithmetic",
    "ddcore.training.x_train_network__mutmut_49": "zero_grad(set_to_none=None) zeroes instead of dropping grads: differs only for a parameter that gets a gradient in one step and none in a later one (momentum/decay would move it)",
    "ddcore.training.x_train_network__mutmut_50": "zero_grad(set_to_none=False): as above",
    "ddcore.builtin.evaluate.x_train_jobs__mutmut_78": "k = exc.member and 0: names repeat 0 when a later member of a batched group diverges first; no fast input makes member 1 diverge before member 0",
    'ddcore.tm.loop.xǁTrajectoryMatcherǁload_state_dict__mutmut_25': "augment is not None OR dsa: loading a DSA run's checkpoint into a run without DSA would fail; the resume check refuses a changed tm.augment before (not tested here)",
    'ddcore.tm.loop.x_distill_tm__mutmut_31': 'tm_log_picture(ctx, None): the picture is drawn only for a run that writes files; its test (tests/test_tm_log_plot.py) is not in the focused list',
    'ddcore.tm.loop.x_distill_tm__mutmut_88': 'periodic OR best: the kept-set line also for a resumed periodic run continued without an evaluator; no test',
    'ddcore.tm.loop.x_distill_tm__mutmut_103': "the '; initial set' part when initial_accuracy is None: only for a checkpoint written before the initial set was evaluated",
    'ddcore.tm.loop.x_distill_tm__mutmut_105': 'as above',
    "ddcore_diffsel.scorers.x_random_resized_boxes__mutmut_104": "positions drawn as [n, 3] uniforms instead of [n, 2]: the same distribution; only a replay of the generator's exact stream tells",
}

PYPROJECT = """\
[tool.pytest.ini_options]
# multiprocess tests run the installed package in child processes, never the mutants: left out
addopts = "-ra --strict-markers -p no:cacheprovider -m 'not multiprocess'"
markers = [
    "slow: end-to-end tests that take more than a few seconds",
    "multiprocess: tests that launch two real processes",
]
filterwarnings = ["ignore::UserWarning:torch.distributed.*"]

[tool.mutmut]
source_paths = [{package!r}]
only_mutate = [{target!r}]
also_copy = {also_copy}
pytest_add_cli_args_test_selection = {tests}
use_git_change_detection = false
track_dependencies = false
"""


def stage(key: str, work: Path) -> Path:
    target, tests = MODULES[key]
    package = target.split("/")[0]
    dest = work / key
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / PACKAGES[package], dest / package, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    test_dirs = sorted({str(Path(t).parent) for t in tests})
    for folder in test_dirs:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    tests = [t for t in tests if (ROOT / t).exists()]
    (dest / "pyproject.toml").write_text(PYPROJECT.format(
        package=package, target=target, also_copy=json.dumps(test_dirs), tests=json.dumps(tests)))
    return dest


def results(dest: Path) -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=dest, capture_output=True, text=True).stdout
    status = {}
    for line in out.splitlines():
        name, sep, state = line.strip().partition(": ")
        if sep and "__mutmut_" in name:
            status[name] = state.strip()
    return status


def restage_tests(key: str, dest: Path) -> None:
    """Refresh the focused tests (and their list) of an existing staging folder, keeping its mutants."""
    target, tests = MODULES[key]
    package = target.split("/")[0]
    staged = dest / package / target.split("/", 1)[1]
    if staged.read_bytes() != (ROOT / PACKAGES[package] / target.split("/", 1)[1]).read_bytes():
        raise SystemExit(f"{key}: {target} changed since its last full run (mutants renumbered): run it in full")
    test_dirs = sorted({str(Path(t).parent) for t in tests})
    for folder in test_dirs:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    tests = [t for t in tests if (ROOT / t).exists()]
    (dest / "pyproject.toml").write_text(PYPROJECT.format(
        package=package, target=target, also_copy=json.dumps(test_dirs), tests=json.dumps(tests)))


def run_module(key: str, work: Path, children: int, report_only: bool = False, rerun: bool = False) -> dict:
    previous: dict[str, str] = {}
    if report_only:  # re-read the last run's results (e.g. after editing EQUIVALENT)
        dest, wall, returncode = work / key, 0.0, 0
        if (dest / "report.json").exists():  # the wall time of that run
            wall = json.loads((dest / "report.json").read_text())["wall_s"]
    else:
        names: list[str] = []
        if rerun:  # only the last run's survivors, against the refreshed tests (the others stay killed)
            dest = work / key
            saved = dest / "status.json"
            previous = json.loads(saved.read_text()) if saved.exists() else results(dest)
            names = [n for n, s in previous.items() if s not in ("killed", "timeout")]
            restage_tests(key, dest)
        else:
            dest = stage(key, work)
        start = time.monotonic()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if rerun and not names:  # nothing survived: mutmut without names would rerun every mutant
            returncode = 0
        else:
            proc = subprocess.run([str(MUTMUT), "run", "--max-children", str(children), *names], cwd=dest, env=env,
                                  capture_output=True, text=True)
            returncode = proc.returncode
            (dest / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
        wall = time.monotonic() - start
    saved = dest / "status.json"
    status = json.loads(saved.read_text()) if report_only and saved.exists() else results(dest)
    if previous:
        # adding tests can only add kills: a mutant killed before is killed by the same test now
        status = {n: (s if s in ("killed", "timeout") else status.get(n, s)) for n, s in previous.items()}
    if not report_only:
        (dest / "status.json").write_text(json.dumps(status, indent=0))
    # a mutant that makes a test hang (mutmut's "timeout") is detected too: counted as killed
    killed = [n for n, s in status.items() if s in ("killed", "timeout")]
    survived = [n for n, s in status.items() if s not in ("killed", "timeout")]
    equivalent = [n for n in survived if n in EQUIVALENT]
    gaps = [n for n in survived if n not in EQUIVALENT and n not in KNOWN_SURVIVORS]
    denominator = len(status) - len(equivalent)
    return {
        "module": key, "file": MODULES[key][0], "tests": MODULES[key][1], "generated": len(status),
        "killed": len(killed), "survived": len(survived), "equivalent": len(equivalent),
        "score": (len(killed) / denominator) if denominator else None, "wall_s": round(wall, 1),
        "survivors": {n: status[n] for n in survived}, "unexplained": gaps, "returncode": returncode,
        "rerun_of_survivors": bool(previous),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"keys of MODULES (default: all): {', '.join(MODULES)}")
    parser.add_argument("--children", type=int, default=int(os.environ.get("DD_MUTATION_CHILDREN", "2")))
    parser.add_argument("--list", action="store_true", help="print the module -> tests mapping and exit")
    parser.add_argument("--report-only", action="store_true", help="no run: tabulate the last run in the work folder")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="rerun only the last run's survivors with the current tests (module source unchanged)")
    args = parser.parse_args(argv)
    if args.list:
        for key, (target, tests) in MODULES.items():
            print(f"{key:18} {target:32} {' '.join(tests)}")
        return 0
    work = Path(os.environ.get("DD_MUTATION_WORK", "/tmp/ddcore-mutation"))
    keys = args.modules or list(MODULES)
    rows = []
    for key in keys:
        if not (ROOT / PACKAGES[MODULES[key][0].split("/")[0]] / MODULES[key][0].split("/", 1)[1]).exists():
            print(f"{key}: module not present, skipped", file=sys.stderr)
            continue
        if (args.report_only or args.rerun_survivors) and not (work / key / "mutants").is_dir():
            print(f"{key}: no previous run in {work / key}, skipped", file=sys.stderr)
            continue
        row = run_module(key, work, args.children, args.report_only, args.rerun_survivors)
        if not args.report_only:
            (work / key / "report.json").write_text(json.dumps(row, indent=1))
        rows.append(row)
        print(f"{key}: {row['killed']}/{row['generated']} killed, {row['survived']} survived "
              f"({row['equivalent']} equivalent), {row['wall_s']} s", file=sys.stderr, flush=True)
    print("| module | generated | killed | survived | equivalent | score | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        score = "n/a" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"| {r['file']} | {r['generated']} | {r['killed']} | {r['survived']} | {r['equivalent']} | {score} "
              f"| {r['wall_s']} |")
    unexplained = [(r["module"], n, r["survivors"][n]) for r in rows for n in r["unexplained"]]
    if unexplained:
        print("\nUnexplained survivors (real gaps, or equivalent mutants not yet listed in EQUIVALENT):")
        for module, name, state in unexplained:
            print(f"  {module}: {name} ({state})")
    work.mkdir(parents=True, exist_ok=True)
    for r in rows:
        for name, state in r["survivors"].items():
            why = EQUIVALENT.get(name) or ("kept alive: " + KNOWN_SURVIVORS[name] if name in KNOWN_SURVIVORS
                                           else f"UNEXPLAINED ({state})")
            print(f"  {name}: {why}", file=sys.stderr)
    (work / ("report-only.json" if args.report_only else "report.json")).write_text(json.dumps(rows, indent=1))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
