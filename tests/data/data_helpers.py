"""Small builders for test files (fastMRI layout) so each test states only what it varies."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from nirvana_mri.data.header import make_header
from nirvana_mri.physics import fft2c_np, ifft2c_np, rss_np


def random_kspace(slices: int, coils: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """k-space of smooth random coil images (never exactly zero)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(slices, coils, height, width)) + 1j * rng.normal(
        size=(slices, coils, height, width)
    )
    return fft2c_np(images).astype(np.complex64)


def rss_of(kspace: np.ndarray) -> np.ndarray:
    return rss_np(ifft2c_np(kspace)).astype(np.float32)


def write_fastmri(
    path: Path,
    kspace: np.ndarray,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    header: bool = True,
    target_key: str = "reconstruction_rss",
    attrs: dict | None = None,
    step1_limits: tuple[int, int, int] | None = None,
) -> Path:
    with h5py.File(path, "w") as out:
        out.create_dataset("kspace", data=kspace)
        if target is not None:
            out.create_dataset(target_key, data=target)
        if mask is not None:
            out.create_dataset("mask", data=mask)
        if header:
            h, w = kspace.shape[-2:]
            rh, rw = target.shape[-2:] if target is not None else (h, w)
            out.create_dataset(
                "ismrmrd_header",
                data=make_header(
                    (h, w),
                    (rh, rw),
                    (h, w, 5.0),
                    (rh, rw, 5.0),
                    kspace.shape[1] if kspace.ndim == 4 else 1,
                    kspace.shape[0],
                    step1_limits=step1_limits,
                ),
            )
        for key, value in (attrs or {"acquisition": "AXT1", "patient_id": "x"}).items():
            out.attrs[key] = value
    return path


def full_scan_file(
    path: Path, slices: int = 2, coils: int = 3, height: int = 24, width: int = 20, seed: int = 0
) -> Path:
    kspace = random_kspace(slices, coils, height, width, seed)
    return write_fastmri(path, kspace, rss_of(kspace))
