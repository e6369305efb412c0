"""The MRI forward model: the ground floor that data simulation, codecs and baselines share.

Conventions (those of fastMRI, so that its models and transforms plug in unchanged):
- torch k-space and images are real tensors with a trailing dimension of 2 (real, imaginary):
  multi-coil k-space ``[B, coils, H, W, 2]``, a coil-combined image ``[B, 1, H, W, 2]``;
- a sampling mask broadcasts against k-space: ``[B, 1, 1, W, 1]`` for 1-D (column) masks,
  ``[B, 1, H, W, 1]`` for 2-D patterns; non-zero means "measured";
- FFTs are centred and orthonormal (``fastmri.fft2c`` / ``ifft2c``).
numpy helpers work on complex arrays with the same centring and norm.
"""

from __future__ import annotations

import fastmri
import numpy as np
import scipy.fft
import torch

fft2c = fastmri.fft2c
ifft2c = fastmri.ifft2c
complex_mul = fastmri.complex_mul
complex_conj = fastmri.complex_conj
complex_abs = fastmri.complex_abs


def fft2c_np(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes, in the input's precision (scipy, threaded)."""
    shifted = scipy.fft.ifftshift(image, axes=(-2, -1))
    return scipy.fft.fftshift(scipy.fft.fft2(shifted, norm="ortho", workers=-1), axes=(-2, -1))


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D FFT over the last two axes, in the input's precision."""
    shifted = scipy.fft.ifftshift(kspace, axes=(-2, -1))
    return scipy.fft.fftshift(scipy.fft.ifft2(shifted, norm="ortho", workers=-1), axes=(-2, -1))


def rss_np(coil_images: np.ndarray, axis: int = -3) -> np.ndarray:
    """Root-sum-of-squares coil combination of complex coil images."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))


def zero_filled_scale(kspace: np.ndarray) -> float:
    """The 99th percentile of the zero-filled RSS image of coil k-space ``[C, H, W]`` (0 for empty data):
    the scale compressed sensing divides k-space by, so its lambda means the same on every scan."""
    return float(np.percentile(rss_np(ifft2c_np(kspace), axis=0), 99))


def noise_std(masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample noise std ``[B]`` of measured multi-coil k-space ``[B,C,H,W,2]``, from the measured
    samples in the four k-space corners (outer 1/8 of each axis), where a brain scan holds almost only
    noise: complex Gaussian noise of std sigma has median magnitude sigma * sqrt(ln 2). Unmeasured
    samples and exact zeros (zero padding) are ignored; NaN when no corner sample was measured."""
    height, width = masked_kspace.shape[-3:-1]
    rows = torch.zeros(height, dtype=torch.bool, device=masked_kspace.device)
    cols = torch.zeros(width, dtype=torch.bool, device=masked_kspace.device)
    rows[: max(1, height // 8)] = rows[-max(1, height // 8):] = True
    cols[: max(1, width // 8)] = cols[-max(1, width // 8):] = True
    magnitude = torch.linalg.vector_norm(masked_kspace.float(), dim=-1)  # [B, C, H, W]
    measured = (rows[:, None] & cols[None, :]) & (mask[..., 0] != 0) & (magnitude > 0)
    samples = torch.where(measured, magnitude, torch.nan).flatten(1)
    return samples.nanmedian(dim=1).values / float(np.sqrt(np.log(2.0)))


def estimate_snr(kspace: np.ndarray) -> float:
    """SNR of one slice's fully sampled multi-coil k-space ``[C, H, W]`` as the simulator defines it:
    mean object magnitude of the coil-combined image over the per-coil noise std.

    Noise: ``noise_std`` (the k-space corners) with every sample measured. Object: the RSS image above
    20 % of its maximum. Within a factor 2 of the truth
    on simulated brains at SNR 30-300 (lower at high SNR, where the corners still hold some signal);
    a guide, not a measurement. Undersampled k-space (zeros) gives NaN: its zero-filled image does
    not show the object's level.
    """
    if not np.all(kspace != 0):
        return float("nan")
    measured = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64)))[None]
    sigma = float(noise_std(measured, torch.ones(1, 1, *kspace.shape[-2:], 1))[0])
    image = rss_np(ifft2c_np(kspace))
    obj = float(image[image > 0.2 * image.max()].mean())
    return obj / sigma if sigma > 0 else float("inf")


def sens_expand(image: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil-combined image ``[B,1,H,W,2]`` -> multi-coil k-space ``[B,C,H,W,2]``."""
    return fft2c(complex_mul(image, sens_maps))


def sens_reduce(kspace: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Multi-coil k-space ``[B,C,H,W,2]`` -> coil-combined image ``[B,1,H,W,2]`` (adjoint of expand)."""
    return complex_mul(ifft2c(kspace), complex_conj(sens_maps)).sum(dim=1, keepdim=True)


def apply_mask(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the k-space samples that the mask marks as not measured."""
    return kspace * mask.to(kspace.dtype)


def data_consistency(predicted: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard data consistency: keep measured samples exactly, take the prediction elsewhere."""
    return torch.where(mask.bool(), measured, predicted)


def rss(kspace_or_images: torch.Tensor, is_kspace: bool = True) -> torch.Tensor:
    """RSS magnitude ``[B,H,W]`` of multi-coil data ``[B,C,H,W,2]`` (k-space by default)."""
    images = ifft2c(kspace_or_images) if is_kspace else kspace_or_images
    return fastmri.rss(complex_abs(images), dim=1)


def zero_filled(masked_kspace: torch.Tensor) -> torch.Tensor:
    """The zero-filled RSS reconstruction ``[B,H,W]`` of masked multi-coil k-space."""
    return rss(masked_kspace, is_kspace=True)


def center_crop(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dimensions to ``shape`` around the centre (fastMRI's convention).

    When ``shape`` is larger than the image along a dimension, that dimension is kept whole
    (fastMRI's own crop refuses; reconstructions smaller than the target are rare but legal).
    """
    h, w = image.shape[-2:]
    th, tw = min(shape[0], h), min(shape[1], w)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top : top + th, left : left + tw]


def mask_from_kspace_np(kspace: np.ndarray) -> np.ndarray:
    """Sampling pattern ``[H, W]`` (bool) of undersampled complex k-space ``[..., H, W]``.

    A location counts as measured when any coil / slice has a non-zero sample there: measured
    k-space is never exactly zero, skipped locations are stored as exact zeros.
    """
    flat = np.abs(kspace).reshape(-1, *kspace.shape[-2:])
    return np.any(flat > 0, axis=0)


def _central_run(sampled: torch.Tensor) -> int:
    """Width of the symmetric run of sampled entries around the centre of a 1-D bool vector."""
    centre = sampled.shape[0] // 2
    left = int(torch.cumprod(sampled[:centre].flip(0).int(), 0).sum())
    right = int(torch.cumprod(sampled[centre:].int(), 0).sum())
    return max(2 * min(left, right), 1)


def low_frequency_mask(mask: torch.Tensor) -> torch.Tensor:
    """The fully sampled centre (auto-calibration region) of each sample's mask, same shape as ``mask``.

    1-D masks ``[B,1,1,W,1]`` give a band of central columns (all rows); 2-D patterns ``[B,1,H,W,1]``
    a central box whose sides are the sampled runs through the centre row and centre column.
    """
    sampled = mask[:, 0, :, :, 0].bool()  # [B, H or 1, W]
    box = torch.zeros_like(sampled)
    for b in range(sampled.shape[0]):
        rows, cols = sampled.shape[1], sampled.shape[2]
        width = _central_run(sampled[b, rows // 2])
        height = rows if rows == 1 else _central_run(sampled[b, :, cols // 2])
        top, left = (rows - height + 1) // 2, (cols - width + 1) // 2
        box[b, top : top + height, left : left + width] = True
    return (box & sampled)[:, None, :, :, None].to(mask.dtype)
