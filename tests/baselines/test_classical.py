"""Classical baselines on small synthetic multi-coil slices (Shepp-Logan, Gaussian coil maps, noise)."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri.app as mri_app

from nirvana_mri import metrics
from nirvana_mri.baselines import classical
from nirvana_mri.baselines.classical import (
    CLASSICAL,
    acs_region,
    cs_l1_wavelet,
    espirit_maps,
    sense,
    zero_filled,
)

from .synth import equispaced_mask, phantom_slice


@pytest.fixture(scope="module")
def slice4():
    kspace, target = phantom_slice(64, 64, coils=4, noise=0.001, seed=3)
    mask, num_low = equispaced_mask(64, 4, seed=0)
    return kspace, target, mask, num_low


def test_registry_names():
    assert list(CLASSICAL) == ["zero_filled", "sense", "cs_l1_wavelet"]


@pytest.mark.parametrize("method", ["sense", "cs_l1_wavelet"])
def test_beats_zero_filled_at_4x(slice4, method):
    kspace, target, mask, num_low = slice4
    masked = kspace * mask
    zf = metrics.ssim(target, zero_filled(masked, mask, num_low))
    recon = CLASSICAL[method](masked, mask, num_low)
    assert recon.shape == target.shape and recon.dtype == np.float32
    score = metrics.ssim(target, recon)
    assert score > zf + 0.08, f"{method} SSIM {score:.3f} vs zero-filled {zf:.3f}"
    assert metrics.psnr(target, recon) > metrics.psnr(target, zero_filled(masked, mask)) + 3


def test_zero_filled_of_full_kspace_is_the_rss_target(slice4):
    kspace, target, _, _ = slice4
    np.testing.assert_allclose(zero_filled(kspace, None), target, rtol=1e-4, atol=1e-6 * target.max())


def test_fully_sampled_sense_reproduces_rss_target(slice4):
    kspace, target, _, _ = slice4
    full = np.ones(kspace.shape[-2:], dtype=bool)
    recon = sense(kspace, full)
    assert metrics.nmse(target, recon) < 2e-3
    assert metrics.ssim(target, recon) > 0.98
    # on the RSS scale, not the sensitivities' normalisation
    assert abs(recon.sum() / target.sum() - 1) < 0.02


def test_output_scale_follows_kspace_scale(slice4):
    kspace, _, mask, num_low = slice4
    a = cs_l1_wavelet(kspace * mask, mask, num_low, max_iter=20)
    b = cs_l1_wavelet(1000 * kspace * mask, mask, num_low, max_iter=20)
    np.testing.assert_allclose(b, 1000 * a, rtol=2e-3, atol=1e-3 * b.max())


def test_single_coil_works():
    kspace, target = phantom_slice(48, 48, coils=1, noise=0.001, seed=1)
    mask, num_low = equispaced_mask(48, 4, seed=1)
    masked = kspace * mask
    for name, fn in CLASSICAL.items():
        recon = fn(masked, mask, num_low)
        assert recon.shape == (48, 48) and np.isfinite(recon).all(), name
    maps = espirit_maps(masked, mask, num_low)
    assert maps.shape == (1, 48, 48) and np.all(maps == 1)
    # SENSE with a unit map is the zero-filled image shrunk by 1 / (1 + lamda)
    np.testing.assert_allclose(
        sense(masked, mask, num_low),
        zero_filled(masked, mask) / (1 + classical.SENSE_LAMBDA),
        rtol=1e-3,
        atol=1e-4 * target.max(),
    )


def test_odd_sizes_and_8x():
    kspace, target = phantom_slice(63, 57, coils=4, noise=0.001, seed=2)
    for accel in (4, 8):
        mask, num_low = equispaced_mask(57, accel, seed=2)
        for name, fn in CLASSICAL.items():
            recon = fn(kspace * mask, mask, num_low)
            assert recon.shape == (63, 57) and np.isfinite(recon).all(), (name, accel)


def test_two_dimensional_mask():
    kspace, target = phantom_slice(64, 64, coils=4, noise=0.001, seed=4)
    rng = np.random.default_rng(0)
    mask = rng.random((64, 64)) < 0.2
    mask[32 - 8 : 32 + 8, 32 - 8 : 32 + 8] = True
    rows, cols = acs_region(mask)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (16, 16)
    masked = kspace * mask
    zf = metrics.ssim(target, zero_filled(masked, mask))
    for name in ("sense", "cs_l1_wavelet"):
        recon = CLASSICAL[name](masked, mask, None)
        assert recon.shape == (64, 64)
        assert metrics.ssim(target, recon) > zf, name


@pytest.mark.parametrize("shape", [(64,), (1, 64), (64, 64), (1, 1, 64)])
def test_mask_shapes_broadcast(slice4, shape):
    kspace, _, mask, num_low = slice4
    reference = zero_filled(kspace * mask, mask)
    other = np.broadcast_to(mask, (64, 64)) if shape == (64, 64) else mask.reshape(shape)
    np.testing.assert_allclose(zero_filled(kspace, other, num_low), reference, rtol=1e-6)


def test_bad_inputs_are_refused(slice4):
    kspace, _, mask, _ = slice4
    with pytest.raises(ValueError, match="complex"):
        zero_filled(np.abs(kspace), mask)
    with pytest.raises(ValueError, match="broadcast"):
        zero_filled(kspace, np.ones(10, bool))


def test_acs_region_of_column_mask(slice4):
    _, _, mask, num_low = slice4
    rows, cols = acs_region(np.broadcast_to(mask, (64, 64)))
    assert rows == slice(0, 64)
    assert cols.stop - cols.start >= num_low and mask[0, cols].all()


def test_espirit_matches_sigpy_on_a_square_calibration_region():
    kspace, _ = phantom_slice(48, 48, coils=4, noise=0.001, seed=5)
    reference = mri_app.EspiritCalib(kspace, calib_width=24, crop=0.95, max_iter=100, show_pbar=False).run()
    square = np.zeros((48, 48), bool)
    square[12:36, 12:36] = True  # sigpy's centred 24 x 24 calibration block (large enough for 6 x 6 kernels)
    ours = espirit_maps(kspace * square, square, crop=0.95, power_iters=100)
    diff = np.abs(ours - reference).max(axis=0)
    assert np.median(diff) < 1e-4
    assert np.percentile(diff, 98) < 1e-2  # a few pixels have near-equal leading eigenvalues
    assert ((np.abs(ours).sum(0) > 0) == (np.abs(reference).sum(0) > 0)).mean() > 0.99


def test_tiny_acs_falls_back_to_ratio_maps():
    kspace, target = phantom_slice(64, 64, coils=4, noise=0.001, seed=6)
    mask, num_low = equispaced_mask(64, 8, seed=0)  # 3 ACS columns only
    maps = espirit_maps(kspace * mask, mask, num_low)
    np.testing.assert_allclose(np.sqrt((np.abs(maps) ** 2).sum(0)), 1, atol=1e-3)
    assert metrics.ssim(target, sense(kspace * mask, mask, num_low)) > 0.3
