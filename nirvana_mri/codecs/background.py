"""Optional last step: outside the object, the output is set to the noise floor of an RSS image.

Why: on clean scans Nirvana-MRI loses SSIM outside the head, not inside it. On validation at 4x the
foreground SSIM is 0.90-0.91 at SNR 100-1000, while the background's falls from 0.97 to 0.85
(benchmarks/results/clean_scan_probe.md). Outside the head a fastMRI target, the RSS of the fully
sampled noisy coil images, holds only its noise floor. At SNR 1000 the network's background averages
three (4x) to four (8x) times the target's, and SSIM's luminance term, with C1 = (0.01 max)^2,
penalises that hard. At SNR 30 the network paints a texture there that does not match the target's
own noise. The expected RSS of pure noise is known from the noise level measured in the k-space corners:
``sigma * Gamma(C + 1/2) / Gamma(C)`` for C coils of complex noise with E|n|^2 = sigma^2. It is also the
constant closest to such a target in mean square. The object's support is read off the calibration
lines alone: their low-resolution RSS image above ``support_fraction`` of its maximum, holes filled,
grown by ``margin`` pixels. So the network's own background is never used to decide what is background.

On validation volumes (support_fraction 0.1, margin 4, chosen there) SSIM rose at every SNR:
+0.043 / +0.008 / +0.019 / +0.053 at SNR 30 / 100 / 300 / 1000 at 4x, +0.042 / +0.009 / +0.033 / +0.077
at 8x, and no foreground pixel was replaced. Confirmed once on the held-out test volumes:
+0.032 / +0.006 / +0.025 / +0.070 at 4x, +0.036 / +0.015 / +0.056 / +0.109 at 8x
(benchmarks/results/clean_scan_probe_test.md). It rests on the background holding nothing but noise, and on
evaluation-only anatomy at SNR 300 / 1000 that failed: mean -0.050 / -0.043. Colin27 and BrainWeb-like
rose by up to +0.26, while NiChart, whose targets hold signal of 1-2 % of the maximum outside the head,
fell by 0.13-0.32 (clean_scan_probe_ood.md). ``noise_gate`` K > 0 also keeps every pixel where the
Hann-tapered calibration image exceeds K times the RSS noise floor of that image (``calibration_signal``):
real low-level signal outside the head then keeps the network's value. K = 3 is set by the noise statistics
alone; on validation volumes it keeps less of the gain (4x: +0.017 mean vs +0.023 ungated; 8x: +0.010 vs
+0.032; ``clean_scan_probe_gate_val.md``), because the low-resolution calibration image also spreads the
head itself into the background. With it, the ungated step's failure is gone: on the evaluation-only
anatomy +0.014 / +0.045 at SNR 300 / 1000 (18 of 20 volumes up, NiChart +0.0004 to +0.0018, the worst
-0.0002; ``clean_scan_probe_gate_ood.md``), and on the held-out test volumes +0.019 / +0.014 at 4x / 8x,
every volume up (six-stage model; ``clean_scan_probe_gate_test.md``). So the bundled model switches it on in
its config.json (``model_args``); ``NirvanaMRI(background=None)`` / ``reconstruct --no-background-floor``
switch it off. It only changes pixels outside the support, and it serves the fastMRI RSS-target convention:
a user who wants a zero background wants something else. Slices whose
noise cannot be measured are left alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from nirvana_mri.physics import apply_mask, low_frequency_mask, rss

from .refine import with_defaults

# support_fraction and margin chosen on validation volumes at SNR 30-1000, 4x and 8x
# (benchmarks/results/clean_scan_probe.md); noise_gate from the noise statistics (calibration_signal; 0 = off)
DEFAULT_BACKGROUND: dict[str, float] = {"support_fraction": 0.1, "margin": 4, "noise_gate": 3.0}


def check_background(options: dict[str, Any] | None) -> dict[str, float] | None:
    """Validated options (defaults filled in), or None for off; a clear error for bad ones."""
    if not options:
        return None
    merged = with_defaults("background", options, DEFAULT_BACKGROUND)
    if (not 0 < merged["support_fraction"] < 1 or int(merged["margin"]) < 0 or merged["margin"] != int(merged["margin"])
            or not merged["noise_gate"] >= 0):
        raise ValueError("background needs 0 < support_fraction < 1, an integer margin >= 0 and noise_gate >= 0; "
                         f"got {merged}")
    return merged


def noise_floor(noise: torch.Tensor, coils: int) -> torch.Tensor:
    """Mean RSS magnitude of pure noise over ``coils`` coils with per-coil complex std ``noise`` (E|n|^2)."""
    return noise * math.exp(math.lgamma(coils + 0.5) - math.lgamma(coils))


def calibration_support(masked_kspace: torch.Tensor, mask: torch.Tensor, support_fraction: float,
                        margin: int) -> torch.Tensor:
    """Object support ``bool [B, H, W]`` from the calibration lines of ``[B, C, H, W, 2]`` k-space: their
    (low-resolution) RSS image above ``support_fraction`` of its per-slice maximum, holes filled, grown by
    ``margin`` pixels (4-connected steps)."""
    calibration = rss(apply_mask(masked_kspace.float(), low_frequency_mask(mask)))
    images = calibration.detach().cpu().numpy()
    support = np.zeros(images.shape, dtype=bool)
    for b, image in enumerate(images):
        inside = ndimage.binary_fill_holes(image > support_fraction * image.max())
        if margin > 0 and inside.any():
            inside = ndimage.binary_dilation(inside, iterations=int(margin))
        support[b] = inside
    return torch.from_numpy(support).to(masked_kspace.device)


def calibration_taper(mask: torch.Tensor) -> torch.Tensor:
    """A separable Hann taper over each sample's calibration box, ``[B, 1, H or 1, W, 1]`` like ``mask``
    (zero outside the box; along an axis the box spans whole, as the rows of a 1-D mask, no taper)."""
    box = low_frequency_mask(mask)[:, 0, :, :, 0].bool()
    taper = torch.zeros(box.shape, dtype=torch.float32, device=mask.device)
    for b in range(box.shape[0]):
        rows, cols = box[b].any(1).nonzero()[:, 0], box[b].any(0).nonzero()[:, 0]
        if len(rows) == 0 or len(cols) == 0:
            continue
        row_taper = _hann(len(rows), whole=len(rows) == box.shape[1]).to(taper.device)
        col_taper = _hann(len(cols), whole=len(cols) == box.shape[2]).to(taper.device)
        taper[b, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = row_taper[:, None] * col_taper[None, :]
    return taper[:, None, :, :, None]


def _hann(n: int, whole: bool) -> torch.Tensor:
    """n interior points of a Hann window (never zero), or ones for an axis sampled whole."""
    return torch.ones(n) if whole else torch.hann_window(n + 2, periodic=False, dtype=torch.float32)[1:-1]


def calibration_signal(masked_kspace: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, gate: float,
                       margin: int) -> torch.Tensor:
    """``bool [B, H, W]``: where the Hann-tapered calibration image holds more than ``gate`` times the RSS
    noise floor it would hold from noise alone, grown by ``margin`` pixels. The taper keeps the sinc
    side lobes of the bright object (a few percent of its maximum at the band's width) below low-level
    real signal such as scalp or neck outside the brain; the noise floor of the tapered image is
    ``noise * sqrt(mean(taper^2))`` per coil. At ``gate`` 3 pure noise exceeds it with probability below
    1e-3 for any coil count (chi distribution), so nothing is tuned here."""
    taper = calibration_taper(mask)
    calibration = rss(masked_kspace.float() * taper)
    energy = (taper[:, 0, :, :, 0] ** 2).expand(-1, *masked_kspace.shape[-3:-1]).mean(dim=(-2, -1))
    floor = noise_floor(noise.float() * energy.sqrt(), masked_kspace.shape[1])
    signal = (calibration > gate * floor.view(-1, 1, 1)).cpu().numpy()
    if margin > 0:
        signal = np.stack([ndimage.binary_dilation(s, iterations=int(margin)) if s.any() else s for s in signal])
    return torch.from_numpy(signal).to(masked_kspace.device)


def background_magnitude(magnitude: torch.Tensor, masked_kspace: torch.Tensor, mask: torch.Tensor,
                         noise: torch.Tensor, options: dict[str, float]) -> torch.Tensor:
    """``magnitude`` ``[B, H, W]`` with the pixels outside the calibration support set to the noise floor,
    on the slices whose noise was measured."""
    measured = torch.isfinite(noise) & (noise > 0)
    if not bool(measured.any()):
        return magnitude
    support = calibration_support(masked_kspace, mask, options["support_fraction"], int(options["margin"]))
    if options.get("noise_gate", 0) > 0:  # also keep whatever the calibration lines show above their noise
        safe_noise = torch.where(measured, noise, torch.ones_like(noise))
        support = support | calibration_signal(masked_kspace, mask, safe_noise, options["noise_gate"],
                                               int(options["margin"]))
    floor = noise_floor(torch.where(measured, noise, torch.zeros_like(noise)).float(), masked_kspace.shape[1])
    keep = support | ~measured.view(-1, 1, 1).to(support.device)
    return torch.where(keep, magnitude, floor.view(-1, 1, 1).to(magnitude.device, magnitude.dtype))
