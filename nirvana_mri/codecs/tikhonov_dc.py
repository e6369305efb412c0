"""Optional last step at inference: Tikhonov (SENSE-type) data consistency toward the network's image.

Why: the network's own data consistency keeps each coil's measured samples but does not use the coils'
redundancy. This solves, from the network's coil-combined image ``x_net`` and its learned sensitivities S,

    x* = argmin_x ||M F S x - y||^2 + lam ||x - x_net||^2,   lam = (sigma / (r * s))^2

with a few conjugate-gradient steps started at ``x_net`` (sigma: the k-space noise std measured in the
corners; s: the zero-filled image's 99th percentile; r: the network's assumed relative error), and adds
the change this makes to the RSS magnitude, ``rss(DC(S x*)) - rss(DC(S x_net))``, to the network's own
output, so that a noisy scan (large lam) is left almost exactly as it was. On validation volumes
(benchmarks/results/prior_dc_probe_update.md, r 0.01, 3 steps, 4x): SSIM +0.003 / +0.007 / +0.006 /
+0.006 and PSNR +0.6 / +0.9 / +1.2 / +1.5 dB at SNR 100 / 200 / 300 / 1000, unchanged at SNR 30. The
returned k-space stays the network's. Slices whose noise cannot be measured are left alone.
On the held-out test volumes (benchmarks/results/quality.md, row nirvana_mri_4stages_tdc) it gave 4x SSIM
+0.003 (12 of 16 volumes up) and PSNR +0.8 dB, but at 8x, where it was never validated, SSIM -0.005 (-0.018
at SNR 1000: it amplifies noise where the coils are poorly conditioned). So it is off by default
(``NirvanaMRI(tikhonov_dc={...})`` or ``model_args`` in a model's config.json).
"""

from __future__ import annotations

from typing import Any

import torch

from nirvana_mri.physics import apply_mask, data_consistency, rss, sens_expand, sens_reduce

from .refine import with_defaults

DEFAULT_TIKHONOV_DC: dict[str, float] = {"relative_error": 0.01, "iters": 3}


def check_tikhonov_dc(options: dict[str, Any] | None) -> dict[str, float] | None:
    """Validated options (defaults filled in), or None for off; a clear error for bad ones."""
    if not options:
        return None
    merged = with_defaults("tikhonov_dc", options, DEFAULT_TIKHONOV_DC)
    if merged["relative_error"] <= 0 or int(merged["iters"]) < 1:
        raise ValueError(f"tikhonov_dc needs relative_error > 0 and iters >= 1; got {merged}")
    return merged


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)  # real inner product of complex-as-real tensors, per slice


def tikhonov_dc_iterates(network_kspace: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor,
                         sens: torch.Tensor, lam: torch.Tensor, checkpoints: list[int],
                         as_update: bool = True) -> dict[int, torch.Tensor]:
    """RSS magnitude ``[B, H, W]`` after each CG iteration count in ``checkpoints`` (one CG run).

    ``as_update``: the network's own magnitude plus the change the solve makes to the magnitude (a huge
    lam leaves it exactly as it is); else the solve's magnitude itself (which first re-projects the
    network's coil k-space onto the sensitivities' range: benchmarks/results/prior_dc_probe_sweep.md)."""
    x = sens_reduce(network_kspace, sens)
    start = rss(data_consistency(sens_expand(x, sens), kspace, mask)) if as_update else None
    lam = lam.view(-1, 1, 1, 1, 1)
    normal = lambda v: sens_reduce(apply_mask(sens_expand(v, sens), mask), sens) + lam * v  # noqa: E731
    residual = sens_reduce(apply_mask(kspace, mask), sens) + lam * x - normal(x)
    direction, rs = residual.clone(), _dot(residual, residual)
    out = {}
    for step in range(1, max(checkpoints) + 1):
        applied = normal(direction)
        alpha = (rs / _dot(direction, applied).clamp_min(1e-30)).view(-1, 1, 1, 1, 1)
        x, residual = x + alpha * direction, residual - alpha * applied
        rs_new = _dot(residual, residual)
        direction = residual + (rs_new / rs.clamp_min(1e-30)).view(-1, 1, 1, 1, 1) * direction
        rs = rs_new
        if step in checkpoints:
            out[step] = rss(data_consistency(sens_expand(x, sens), kspace, mask))
            if as_update:
                out[step] = rss(network_kspace) + out[step] - start
    return out


def image_scale(masked_kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice 99th percentile ``[B]`` of the zero-filled RSS image (``physics.zero_filled_scale``)."""
    return torch.quantile(rss(masked_kspace.float()).flatten(1), 0.99, dim=1)


def tikhonov_lambda(noise: torch.Tensor, masked_kspace: torch.Tensor, relative_error: float) -> torch.Tensor:
    """lam ``[B]`` = (sigma / (r * s))^2: the measured noise over the network's assumed error on the image scale."""
    return (noise.float() / (relative_error * image_scale(masked_kspace).clamp_min(1e-30))) ** 2


def tikhonov_dc_magnitude(magnitude: torch.Tensor, coil_kspace: torch.Tensor, masked_kspace: torch.Tensor,
                          mask: torch.Tensor, sens_maps: torch.Tensor, noise: torch.Tensor,
                          options: dict[str, float]) -> torch.Tensor:
    """``magnitude`` ``[B, H, W]`` with the Tikhonov update added where the noise was measured."""
    measured = torch.isfinite(noise) & (noise > 0)
    if not bool(measured.any()):
        return magnitude
    dtype = torch.float32
    lam = tikhonov_lambda(noise, masked_kspace, options["relative_error"])
    lam = torch.where(measured, lam, torch.ones_like(lam))  # any finite value: those slices are not used
    steps = int(options["iters"])
    updated = tikhonov_dc_iterates(coil_kspace.to(dtype), masked_kspace.to(dtype), mask.to(dtype),
                                   sens_maps.to(dtype), lam, [steps])[steps]
    keep = measured.view(-1, 1, 1)
    return torch.where(keep, updated.to(magnitude.dtype), magnitude)
