"""Reconstruction metrics the fastMRI way: volume-wise, on magnitude images, data range from the target."""

from __future__ import annotations

import numpy as np
from fastmri import evaluate


def _check(target: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    target, recon = np.asarray(target, dtype=np.float64), np.asarray(recon, dtype=np.float64)
    if target.shape != recon.shape:
        raise ValueError(f"target {target.shape} and reconstruction {recon.shape} differ in shape")
    if target.ndim == 2:
        target, recon = target[None], recon[None]
    if target.ndim != 3:
        raise ValueError(f"expected [slices, H, W] or [H, W] images, got {target.shape}")
    return target, recon


def ssim(target: np.ndarray, recon: np.ndarray) -> float:
    """Mean SSIM over slices (7x7 window, data range = target max over the volume), as fastMRI."""
    target, recon = _check(target, recon)
    # fastmri.evaluate.ssim returns a 1-element array; numpy >= 2.4 refuses float() on it
    return float(np.asarray(evaluate.ssim(target, recon, maxval=float(target.max()))).reshape(-1)[0])


def psnr(target: np.ndarray, recon: np.ndarray) -> float:
    """PSNR in dB with the volume's target maximum as peak, as fastMRI."""
    target, recon = _check(target, recon)
    return float(evaluate.psnr(target, recon, maxval=float(target.max())))


def nmse(target: np.ndarray, recon: np.ndarray) -> float:
    """||target - recon||^2 / ||target||^2 over the volume."""
    target, recon = _check(target, recon)
    return float(evaluate.nmse(target, recon))


def all_metrics(target: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    return {"ssim": ssim(target, recon), "psnr": psnr(target, recon), "nmse": nmse(target, recon)}
