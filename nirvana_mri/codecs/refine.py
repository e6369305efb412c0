"""Optional last step for clean scans: a few L1-wavelet compressed-sensing iterations from the network's image.

Why: on clean scans (SNR 300-1000) the learned models here leave a faint texture and background floor
that the targets do not have, where tuned compressed sensing does not (benchmarks/results/
quality_by_snr.md). A few FISTA steps on ``1/2 ||A x - y||^2 + lam ||W x||_1`` (Daubechies-4, sigpy)
started from the network's coil-combined image remove much of it: on validation volumes at 4x,
SSIM 0.848 -> 0.924 at SNR 1000 and 0.919 -> 0.931 at SNR 300 (5 of 5 volumes each), while the same
step costs SSIM on noisier scans: -0.023 at SNR 200, -0.050 at SNR 150, -0.085 at SNR 100 (PSNR still
rises there: it removes the target's own noise texture, which SSIM rewards matching;
benchmarks/results/refine_probe/). So it runs only on slices whose measured noise, relative to the
image, is below ``max_relative_noise`` (validation: 0.0008-0.0036 at SNR 300-1000, 0.0038-0.0045 at
SNR 200, 0.0050-0.0079 at SNR 100-150; 0.0035 errs on the side of leaving a slice alone), and only at
inference. On unseen anatomy at SNR 300 / 1000 it is mixed (benchmarks/results/ood_clean/: 3 of 12
refined volumes rose, by up to +0.26, and 9 fell, by up to 0.036), so it is off by default
(``NirvanaMRI(refine=...)``, ``nirvana-mri reconstruct --refine``): try it on your own clean scans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nirvana_mri.physics import ifft2c_np, rss_np, zero_filled_scale

DEFAULT_REFINE: dict[str, float] = {"lam": 0.001, "iters": 5, "max_relative_noise": 0.0035}


def with_defaults(name: str, options: dict[str, Any], defaults: dict[str, float]) -> dict[str, float]:
    """``options`` over ``defaults``; unknown keys are a clear error naming the option ``name``."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{name} takes {', '.join(defaults)}; unknown: {', '.join(unknown)}")
    return {**defaults, **options}


def check_refine(options: dict[str, Any] | None) -> dict[str, float] | None:
    """Validated refinement options (defaults filled in), or None for off; a clear error for bad ones."""
    if not options:
        return None
    merged = with_defaults("refine", options, DEFAULT_REFINE)
    if merged["lam"] < 0 or int(merged["iters"]) < 1 or merged["max_relative_noise"] <= 0:
        raise ValueError(f"refine needs lam >= 0, iters >= 1, max_relative_noise > 0; got {merged}")
    return merged


def refine_iterates(coil_kspace: np.ndarray, masked_kspace: np.ndarray, weights: np.ndarray, sens: np.ndarray,
                    lam: float, checkpoints: list[int]) -> dict[int, np.ndarray]:
    """One slice: complex ``coil_kspace`` (the network's) / ``masked_kspace`` / ``sens`` ``[C, H, W]``,
    sampling ``weights`` ``[1, H, W]`` -> the refined magnitude ``[H, W]`` on the RSS scale after each
    iteration count in ``checkpoints`` (one run; benchmarks/refine_probe.py compares several)."""
    import sigpy.mri.app as mri_app

    scale = zero_filled_scale(masked_kspace)
    start = (np.conj(sens) * ifft2c_np(coil_kspace)).sum(0) / scale
    last = max(checkpoints)
    app = mri_app.L1WaveletRecon(masked_kspace / scale, sens, lamda=lam, weights=weights, x=start,
                                 max_iter=int(last), alpha=1.0, show_pbar=False)
    weight = rss_np(sens, axis=0) * scale
    out = {}
    for step in range(1, last + 1):
        app.alg.update()
        if step in checkpoints:
            out[step] = (np.abs(app.x) * weight).astype(np.float32)
    return out


def refine_slice(coil_kspace: np.ndarray, masked_kspace: np.ndarray, weights: np.ndarray, sens: np.ndarray,
                 lam: float, iters: int) -> np.ndarray:
    """One slice refined with ``iters`` steps (see :func:`refine_iterates`)."""
    return refine_iterates(coil_kspace, masked_kspace, weights, sens, lam, [int(iters)])[int(iters)]


def relative_noise(noise: torch.Tensor, masked_kspace: torch.Tensor) -> np.ndarray:
    """The k-space noise std ``[B]`` relative to each slice's image scale (NaN where unmeasured)."""
    kspace = torch.view_as_complex(masked_kspace.detach().float().contiguous()).cpu().numpy()
    scales = np.array([zero_filled_scale(k) for k in kspace])
    return noise.detach().float().cpu().numpy() / np.maximum(scales, 1e-30)


def refine_magnitude(magnitude: torch.Tensor, coil_kspace: torch.Tensor, masked_kspace: torch.Tensor,
                     mask: torch.Tensor, sens_maps: torch.Tensor, noise: torch.Tensor,
                     options: dict[str, float]) -> torch.Tensor:
    """``magnitude`` ``[B, H, W]`` with the slices whose relative noise is below the threshold refined."""
    rel = relative_noise(noise, masked_kspace)
    chosen = [b for b in range(magnitude.shape[0]) if np.isfinite(rel[b]) and rel[b] < options["max_relative_noise"]]
    if not chosen:
        return magnitude
    as_complex = lambda t: torch.view_as_complex(t.detach().float().contiguous()).cpu().numpy()  # noqa: E731
    coils, measured, sens = as_complex(coil_kspace), as_complex(masked_kspace), as_complex(sens_maps)
    height, width = magnitude.shape[-2:]
    sampled = mask.detach().bool().cpu().expand(mask.shape[0], 1, height, width, 1)[:, 0, :, :, 0].numpy()
    out = magnitude.clone()
    for b in chosen:
        weights = sampled[min(b, len(sampled) - 1)].astype(np.float32)[None]
        image = refine_slice(coils[b], measured[b] * weights, weights, sens[b], options["lam"], options["iters"])
        out[b] = torch.from_numpy(image).to(out.device, out.dtype)
    return out
