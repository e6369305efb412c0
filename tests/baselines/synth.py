"""Tiny synthetic multi-coil data for the baseline tests (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from fastmri.data.subsample import EquispacedMaskFractionFunc
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from nirvana_mri.physics import fft2c_np, ifft2c_np, rss_np

CENTER_FRACTIONS = {4: 0.08, 8: 0.04}


def gaussian_coil_maps(coils: int, h: int, w: int, width: float = 0.6) -> np.ndarray:
    """Smooth complex coil maps: Gaussians centred on a ring around the field of view."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * np.pi * c / coils
        cy, cx = 1.2 * np.sin(angle), 1.2 * np.cos(angle)
        mag = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        phase = np.exp(1j * (angle + 0.5 * xx * np.cos(angle) + 0.5 * yy * np.sin(angle)))
        maps.append(mag * phase)
    return np.asarray(maps, dtype=np.complex64) if coils > 1 else np.ones((1, h, w), np.complex64)


def phantom_slice(
    h: int = 64,
    w: int = 64,
    coils: int = 4,
    noise: float = 0.003,
    seed: int = 0,
    scale: float = 1e-4,
    shift: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(fully sampled k-space complex64 [C, H, W], RSS target float32 [H, W]) of a Shepp-Logan phantom
    with a smooth phase, ``coils`` Gaussian coil maps and complex Gaussian noise (scale like fastMRI's)."""
    rng = np.random.default_rng(seed)
    image = resize(shepp_logan_phantom(), (h, w), anti_aliasing=True)
    image = np.roll(image, shift, axis=0)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    image = image * np.exp(1j * (0.8 * xx + 0.4 * yy**2))
    coil_images = gaussian_coil_maps(coils, h, w) * image
    kspace = fft2c_np(coil_images)
    kspace = kspace + noise * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    kspace = (kspace * scale).astype(np.complex64)
    return kspace, rss_np(ifft2c_np(kspace), axis=0).astype(np.float32)


def equispaced_mask(width: int, acceleration: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """fastMRI's equispaced-fraction mask as bool [1, W] and its number of low frequencies."""
    func = EquispacedMaskFractionFunc([CENTER_FRACTIONS[acceleration]], [acceleration])
    mask, num_low = func((1, 8, width, 2), seed=seed)
    return mask.numpy().reshape(1, width).astype(bool), int(num_low)


def write_fastmri_volume(
    path: Path,
    slices: int = 3,
    h: int = 64,
    w: int = 64,
    coils: int = 4,
    crop: tuple[int, int] | None = None,
    seed: int = 0,
) -> None:
    """A fully sampled multi-coil fastMRI-format file: kspace, reconstruction_rss (cropped), attrs."""
    kspace, targets = [], []
    for s in range(slices):
        k, t = phantom_slice(h, w, coils, seed=seed * 100 + s, shift=s - slices // 2)
        kspace.append(k)
        targets.append(t)
    kspace, target = np.stack(kspace), np.stack(targets)
    if crop is not None:
        top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
        target = target[:, top : top + crop[0], left : left + crop[1]]
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=target)
        f.attrs["max"] = float(target.max())
        f.attrs["norm"] = float(np.linalg.norm(target))
        f.attrs["acquisition"] = "AXT2"
        f.attrs["patient_id"] = f"synthetic-{seed}"
