"""codecs/background.py (used by benchmarks/clean_scan_probe.py): the noise floor is the mean RSS of pure
noise, the support comes from the calibration lines, and only the background is replaced."""

from __future__ import annotations

import pytest
import torch
from inference_steps import assert_inference_only, plain_and_stepped

from nirvana_mri.codecs.background import (
    background_magnitude,
    calibration_signal,
    calibration_support,
    calibration_taper,
    check_background,
    noise_floor,
)
from nirvana_mri.physics import fft2c, rss


def test_noise_floor_is_the_mean_rss_of_pure_noise():
    gen = torch.Generator().manual_seed(0)
    for coils in (1, 8, 16):
        sigma = 0.7  # per-coil complex noise with E|n|^2 = sigma^2: real and imaginary std sigma / sqrt(2)
        noise = torch.randn(coils, 200_000, 2, generator=gen, dtype=torch.float64) * sigma / 2**0.5
        mean_rss = noise.square().sum(dim=(0, 2)).sqrt().mean()
        torch.testing.assert_close(noise_floor(torch.tensor(sigma, dtype=torch.float64), coils), mean_rss,
                                   rtol=3e-3, atol=0)


def _disk_scan(size=64, coils=4, sigma=1e-3, seed=0):
    """A bright disk seen by smooth coils, plus noise; a 1-D 4x mask with 8 calibration columns."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2).double()
    phases = torch.linspace(0, 3, coils, dtype=torch.float64)[:, None, None]
    coil_images = torch.stack([disk * torch.cos(phases + xx / size), disk * torch.sin(phases + yy / size)], -1)
    coil_images = coil_images + sigma / 2**0.5 * torch.randn(coil_images.shape, generator=gen, dtype=torch.float64)
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.float64)
    mask[..., ::4, :] = 1
    mask[..., size // 2 - 4 : size // 2 + 4, :] = 1
    return fft2c(coil_images)[None] * mask, mask, disk.bool()


def test_support_covers_the_object_and_not_the_corners():
    kspace, mask, disk = _disk_scan()
    support = calibration_support(kspace, mask, 0.1, 2)[0]
    assert support[disk].all()
    assert not support[:6, :6].any() and not support[-6:, -6:].any()
    assert calibration_support(kspace, mask, 0.1, 6)[0].sum() > support.sum()  # the margin grows it


def test_only_the_background_is_set_to_the_floor_and_unmeasured_slices_are_left_alone():
    kspace, mask, _ = _disk_scan()
    kspace = torch.cat([kspace, kspace])
    mask = mask.expand(2, -1, -1, -1, -1)
    magnitude = rss(kspace)
    noise = torch.tensor([1e-3, float("nan")], dtype=torch.float64)
    options = check_background({})  # {} is off
    assert options is None
    options = check_background({"margin": 2, "noise_gate": 0})  # ungated: everything outside the support
    out = background_magnitude(magnitude, kspace, mask, noise, options)
    support = calibration_support(kspace, mask, options["support_fraction"], 2)
    torch.testing.assert_close(out[0][support[0]], magnitude[0][support[0]])
    floor = noise_floor(noise[:1], kspace.shape[1])
    torch.testing.assert_close(out[0][~support[0]], floor.expand(int((~support[0]).sum())))
    torch.testing.assert_close(out[1], magnitude[1])  # its noise was not measured


def test_options_are_validated():
    assert check_background(None) is None
    assert check_background({"margin": 0}) == {"support_fraction": 0.1, "margin": 0, "noise_gate": 3.0}
    with pytest.raises(ValueError, match="unknown: lam"):
        check_background({"lam": 1.0})
    with pytest.raises(ValueError, match="support_fraction"):
        check_background({"support_fraction": 1.5})
    with pytest.raises(ValueError, match="integer margin"):
        check_background({"margin": 2.5})
    with pytest.raises(ValueError, match="noise_gate"):
        check_background({"noise_gate": -1.0})


def test_model_step_runs_at_inference_only_and_keeps_the_kspace():
    plain, stepped = plain_and_stepped(background={"margin": 1})
    kspace, mask, _ = _disk_scan(size=32, coils=4, sigma=1e-2)
    kspace, mask = kspace.float().expand(2, -1, -1, -1, -1), mask.float()
    assert_inference_only(plain, stepped, kspace, mask)


def test_calibration_taper_is_a_hann_window_over_the_calibration_box_only():
    _, mask, _ = _disk_scan(size=32)  # 1-D: 8 central columns sampled whole in the rows
    taper = calibration_taper(mask)[0, 0, :, :, 0]
    assert taper.shape == (1, 32)
    assert (taper[0, 12:20] > 0).all() and (taper[0, :12] == 0).all() and (taper[0, 20:] == 0).all()
    torch.testing.assert_close(taper[0, 12:20], taper[0, 12:20].flip(0))  # symmetric, peak in the middle
    assert taper[0, 15] > taper[0, 12]
    box = torch.zeros(1, 1, 16, 16, 1)
    box[:, :, 6:10, 5:11] = 1  # 2-D: a 4 x 6 box, tapered along both axes
    taper = calibration_taper(box)[0, 0, :, :, 0]
    assert (taper[6:10, 5:11] > 0).all() and taper.sum() == taper[6:10, 5:11].sum()
    torch.testing.assert_close(taper[6:10, 5:11], torch.outer(taper[6:10, 7] / taper[7, 7], taper[7, 5:11]))


def test_noise_gate_ignores_pure_noise_and_keeps_low_level_signal_outside_the_object():
    size, sigma = 64, 1e-3
    kspace, mask, disk = _disk_scan(size=size, sigma=sigma)
    noise = torch.tensor([sigma], dtype=torch.float64)
    signal = calibration_signal(kspace, mask, noise, gate=3.0, margin=0)[0]
    far = torch.zeros(size, size, dtype=torch.bool)
    far[:8, :8] = far[:8, -8:] = far[-8:, :8] = far[-8:, -8:] = True  # corners: nothing but noise
    assert signal[far].float().mean() < 0.01
    # a faint (2 % of the disk) smooth patch in one corner, as scalp or neck outside a brain
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    patch = 0.02 * torch.exp(-((yy - 6.0) ** 2 + (xx - 6.0) ** 2) / 20)
    coil_patch = torch.stack([patch, torch.zeros_like(patch)], -1).expand(kspace.shape[1], -1, -1, -1)
    with_patch = kspace + fft2c(coil_patch)[None] * mask
    signal = calibration_signal(with_patch, mask, noise, gate=3.0, margin=0)[0]
    assert signal[3:10, 3:10].all()
    magnitude = rss(with_patch)
    plain = background_magnitude(magnitude, with_patch, mask, noise, check_background({"margin": 2, "noise_gate": 0}))
    gated = background_magnitude(magnitude, with_patch, mask, noise, check_background({"margin": 2, "noise_gate": 3}))
    torch.testing.assert_close(gated[0, 3:10, 3:10], magnitude[0, 3:10, 3:10])  # the gate keeps the patch
    assert not torch.allclose(plain[0, 3:10, 3:10], magnitude[0, 3:10, 3:10])  # without it the floor replaces it
    kept = calibration_signal(with_patch, mask, noise, gate=3.0, margin=2)[0]
    other_corners = far.clone()
    other_corners[:8] = False  # the bottom corners: the patch blurs (and wraps) along the top rows
    assert (~kept[other_corners]).float().mean() > 0.95
    floored = gated[0][other_corners & ~kept]  # the noise-only corners are still set to the floor
    torch.testing.assert_close(floored, noise_floor(noise, kspace.shape[1]).expand(floored.numel()))
