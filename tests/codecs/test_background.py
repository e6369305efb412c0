"""codecs/background.py (used by benchmarks/clean_scan_probe.py): the noise floor is the mean RSS of pure
noise, the support comes from the calibration lines, and only the background is replaced."""

from __future__ import annotations

import pytest
import torch
from inference_steps import plain_and_stepped

from nirvana_mri.codecs.background import (
    background_magnitude,
    calibration_support,
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
    options = check_background({"margin": 2})
    out = background_magnitude(magnitude, kspace, mask, noise, options)
    support = calibration_support(kspace, mask, options["support_fraction"], 2)
    torch.testing.assert_close(out[0][support[0]], magnitude[0][support[0]])
    floor = noise_floor(noise[:1], kspace.shape[1])
    torch.testing.assert_close(out[0][~support[0]], floor.expand(int((~support[0]).sum())))
    torch.testing.assert_close(out[1], magnitude[1])  # its noise was not measured


def test_options_are_validated():
    assert check_background(None) is None
    assert check_background({"margin": 0}) == {"support_fraction": 0.1, "margin": 0}
    with pytest.raises(ValueError, match="unknown: lam"):
        check_background({"lam": 1.0})
    with pytest.raises(ValueError, match="support_fraction"):
        check_background({"support_fraction": 1.5})
    with pytest.raises(ValueError, match="integer margin"):
        check_background({"margin": 2.5})


def test_model_step_runs_at_inference_only_and_keeps_the_kspace():
    plain, stepped = plain_and_stepped(background={"margin": 1})
    kspace, mask, _ = _disk_scan(size=32, coils=4, sigma=1e-2)
    kspace, mask = kspace.float().expand(2, -1, -1, -1, -1), mask.float()
    with torch.no_grad():
        mag_plain, k_plain = plain(kspace, mask, return_kspace=True)
        mag_step, k_step = stepped(kspace, mask, return_kspace=True)
        stepped.train()
        mag_train = stepped(kspace, mask)
    torch.testing.assert_close(k_step, k_plain)  # the returned k-space stays the network's
    assert not torch.allclose(mag_step, mag_plain)  # the step ran
    torch.testing.assert_close(mag_train, mag_plain)  # never while training
