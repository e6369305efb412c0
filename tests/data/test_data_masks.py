"""Masks: fastMRI's mask functions at 4x / 8x, ACS width, determinism by seed and file name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri.data.subsample import create_mask_for_mask_type

from nirvana_mri.data import acceleration_of, center_width, make_mask, mask_to_torch
from nirvana_mri.data.masks import FASTMRI_MASK_TYPES, mask_seed

SHAPE = (640, 368)  # fastMRI knee-like k-space: 368 phase-encode columns


@pytest.mark.parametrize("mask_type", FASTMRI_MASK_TYPES)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_fastmri_masks_acceleration_and_acs(mask_type, acceleration):
    width = SHAPE[1]
    default_fraction = {4: 0.08, 8: 0.04}[acceleration]
    accelerations = []
    for seed in range(20):
        mask, num_low = make_mask(SHAPE, acceleration, mask_type, seed=seed, fname="file.h5")
        assert mask.shape == (1, width) and mask.dtype == bool
        assert num_low == round(width * default_fraction)  # fastMRI's default centre fractions
        pad = (width - num_low + 1) // 2
        assert mask[0, pad : pad + num_low].all(), "the ACS block must be fully sampled"
        assert center_width(mask) >= num_low
        accelerations.append(acceleration_of(mask, SHAPE))
    mean = float(np.mean(accelerations))
    if mask_type in ("equispaced_fraction", "magic_fraction", "random"):
        assert abs(mean - acceleration) / acceleration < 0.1, mean  # these match the target rate
    else:  # equispaced / magic keep every R-th line *plus* the centre, so they undershoot (fastMRI doc)
        assert 0.6 * acceleration < mean <= acceleration * 1.02, mean


@pytest.mark.parametrize("mask_type", FASTMRI_MASK_TYPES)
def test_masks_equal_fastmri_with_documented_seed(mask_type):
    mask, num_low = make_mask((320, 320), 4, mask_type, seed=3, fname="/some/dir/file_brain_1.h5")
    func = create_mask_for_mask_type(mask_type, [0.08], [4])
    expected, expected_low = func((1, 320, 320, 2), seed=(3, *map(ord, "file_brain_1.h5")))
    assert np.array_equal(mask[0], expected.numpy().reshape(-1) > 0)
    assert num_low == expected_low
    assert mask_seed(3, "/x/file_brain_1.h5") == (3, *map(ord, "file_brain_1.h5"))


@pytest.mark.parametrize(
    "mask_type", ["random", "equispaced_fraction", "magic_fraction", "variable_density_2d"]
)
def test_deterministic_by_seed_and_file_name(mask_type):
    a, _ = make_mask((64, 96), 4, mask_type, seed=0, fname="a.h5")
    b, _ = make_mask((64, 96), 4, mask_type, seed=0, fname="a.h5")
    c, _ = make_mask((64, 96), 4, mask_type, seed=0, fname="b.h5")
    d, _ = make_mask((64, 96), 4, mask_type, seed=1, fname="a.h5")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) or not np.array_equal(a, d)
    if mask_type in ("random", "variable_density_2d"):  # fully random patterns differ for both
        assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_unseeded_masks_vary_and_follow_torch_seed():
    draws = {make_mask((64, 128), 4, "random")[0].tobytes() for _ in range(5)}
    assert len(draws) > 1
    torch.manual_seed(123)
    first = make_mask((64, 128), 4, "random")[0]
    torch.manual_seed(123)
    assert np.array_equal(first, make_mask((64, 128), 4, "random")[0])


@pytest.mark.parametrize("width", [255, 367, 33])
def test_odd_widths(width):
    mask, num_low = make_mask((17, width), 4, "equispaced_fraction", seed=0)
    assert mask.shape == (1, width)
    assert center_width(mask) >= num_low >= 1
    assert mask[0, width // 2]


def test_variable_density_2d():
    mask, num_low = make_mask((180, 230), 8, "variable_density_2d", seed=0, fname="x.h5")
    assert mask.shape == (180, 230)
    assert abs(acceleration_of(mask) - 8) < 0.05
    box_h, box_w = round(180 * 0.04), round(230 * 0.04)
    top, left = (180 - box_h + 1) // 2, (230 - box_w + 1) // 2
    assert mask[top : top + box_h, left : left + box_w].all()
    assert num_low == box_w
    # density falls off: the centre quarter is sampled more densely than the periphery
    centre = mask[45:135, 57:172].mean()
    assert centre > 2 * mask.mean() - centre


def test_mask_to_torch_layout():
    assert mask_to_torch(np.ones((1, 7), bool)).shape == (1, 1, 7, 1)
    assert mask_to_torch(np.ones((5, 7), bool)).shape == (1, 5, 7, 1)
    assert mask_to_torch(np.ones((5, 7), bool)).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mask_type": "poisson"},
        {"acceleration": 0},
        {"center_fraction": 1.5},
        {"center_fraction": 0.0},
    ],
)
def test_bad_mask_arguments(kwargs):
    args = {"shape": (32, 32), "acceleration": 4, **kwargs}
    with pytest.raises(ValueError):
        make_mask(**args)
