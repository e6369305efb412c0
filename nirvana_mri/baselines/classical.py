"""Classical (untrained) reconstructions of one slice: zero-filled, SENSE and L1-wavelet compressed sensing.

Every method has the same signature::

    method(masked_kspace: complex [C, H, W], mask: bool broadcastable to [H, W],
           num_low_frequencies: int | None = None, **options) -> float32 magnitude [H, W]

on the k-space grid (cropping to the fastMRI target happens outside), on the scale of the
root-sum-of-squares (RSS) image of the fully sampled k-space, so that they compare with fastMRI's
``reconstruction_rss`` directly.

Coil sensitivities come from ESPIRiT on the auto-calibration (ACS) region. sigpy's ``EspiritCalib``
only takes a square calibration region (too small for 8x masks, whose ACS is ~4% of the columns)
and takes ~9 s per 256x256x16 slice, so :func:`espirit_maps` implements the same algorithm
(Uecker et al. 2014; same kernels, threshold, crop and phase convention as sigpy, checked against it
in the tests) on a rectangular calibration region, and forms the image-domain Gram matrices from the
kernels' autocorrelation with two small DFT matrix products instead of one FFT per kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import sigpy as sp
import sigpy.mri.app as mri_app
import torch

from nirvana_mri.physics import ifft2c_np, rss_np, zero_filled_scale

# Defaults, chosen by benchmarks/tune_cs_lambda.py on 6 simulated 16-coil 256x256 brain slices at 4x and
# 8x (benchmarks/results/cs_lambda_sweep.md). CS_LAMBDA applies to k-space normalised so that the 99th
# percentile of the zero-filled RSS image is 1 (see physics.zero_filled_scale). Mean SSIM 4x / 8x with 100 FISTA
# iterations: lambda 1e-4 0.831 / 0.618, 3e-4 0.855 / 0.625 (best on both), 1e-3 0.828 / 0.613,
# 3e-3 0.789 / 0.590, 1e-2 0.744 / 0.562; lambda 3e-4 with 60 iterations 0.842 / 0.621 (zero-filled
# 0.661 / 0.520). SENSE: lambda 1e-3 (0.800 / 0.617; 1e-2: 0.806 / 0.609) and 30 CG iterations (more
# iterations amplify noise).
SENSE_LAMBDA = 1e-3
SENSE_ITERS = 30
CS_LAMBDA = 3e-4
CS_ITERS = 100
ESPIRIT_KERNEL = 6
ESPIRIT_CALIB_LIMIT = 128  # at most this many central rows (and columns) of the ACS region are used
ESPIRIT_THRESHOLD = 0.02
# No cropping by default: sigpy's 0.95 eigenvalue threshold zeroes low-signal tissue (ventricles, CSF) and
# background, which cost 0.03-0.1 SSIM for SENSE and CS on simulated 16-coil brain slices at 4x and 8x.
ESPIRIT_CROP = 0.0
ESPIRIT_CHECK = 0.8  # eigenvalue above which a pixel counts as "explained by the maps" (fallback check)
ESPIRIT_POWER_ITERS = 15  # from the ACS coil images; 10 to 60 give the same SENSE SSIM


# --------------------------------------------------------------------------------------------------
# inputs


def _as_inputs(masked_kspace: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (k-space complex64 [C,H,W] with unmeasured samples zeroed, mask bool [H,W])."""
    kspace = np.asarray(masked_kspace)
    if kspace.ndim == 2:
        kspace = kspace[None]
    if kspace.ndim != 3 or not np.iscomplexobj(kspace):
        raise ValueError(f"expected complex k-space [coils, H, W], got {kspace.dtype} {kspace.shape}")
    kspace = kspace.astype(np.complex64, copy=False)
    h, w = kspace.shape[-2:]
    if mask is None:
        mask2d = np.any(kspace != 0, axis=0)
    else:
        mask_arr = np.asarray(mask).astype(bool)
        while mask_arr.ndim > 2 and mask_arr.shape[0] == 1:
            mask_arr = mask_arr[0]
        try:
            mask2d = np.broadcast_to(mask_arr, (h, w))
        except ValueError:
            raise ValueError(
                f"mask of shape {np.shape(mask)} does not broadcast to k-space {h}x{w}"
            ) from None
    return kspace * mask2d, np.ascontiguousarray(mask2d)


def acs_region(mask: np.ndarray) -> tuple[slice, slice]:
    """The fully sampled rectangle around the centre of a mask [H, W]: (row slice, column slice).

    Grown greedily from the centre pixel, one row or column at a time on each side in turn, while the
    rectangle stays fully sampled. For a 1-D (column) mask this is every row times the central run of
    measured columns (fastMRI's ``num_low_frequencies`` block plus any equispaced line touching it:
    measured too); for 2-D patterns, the fully sampled calibration block. Empty slices when the centre
    itself is not measured.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    cy, cx = h // 2, w // 2
    if not mask[cy, cx]:
        return slice(cy, cy), slice(cx, cx)
    r0, r1, c0, c1 = cy, cy + 1, cx, cx + 1
    grown = True
    while grown:
        grown = False
        if r0 > 0 and mask[r0 - 1, c0:c1].all():
            r0, grown = r0 - 1, True
        if r1 < h and mask[r1, c0:c1].all():
            r1, grown = r1 + 1, True
        if c0 > 0 and mask[r0:r1, c0 - 1].all():
            c0, grown = c0 - 1, True
        if c1 < w and mask[r0:r1, c1].all():
            c1, grown = c1 + 1, True
    return slice(r0, r1), slice(c0, c1)


# --------------------------------------------------------------------------------------------------
# coil sensitivities


@contextlib.contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS/LAPACK threads (threadpoolctl, when installed) for a block."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _centre(region: slice, limit: int) -> slice:
    """At most ``limit`` entries in the middle of ``region``."""
    n = region.stop - region.start
    if n <= limit:
        return region
    start = region.start + (n - limit) // 2
    return slice(start, start + limit)


def _lowres_maps(kspace: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Fallback maps: coil images of the ACS block alone, divided by their RSS (a smooth estimate)."""
    low = np.zeros_like(kspace)
    low[:, rows, cols] = kspace[:, rows, cols]
    images = ifft2c_np(low)
    norm = rss_np(images, axis=0)
    return (images / np.maximum(norm, 1e-12 * max(norm.max(), 1e-30))).astype(np.complex64)


def espirit_maps(
    masked_kspace: np.ndarray,
    mask: np.ndarray | None = None,
    num_low_frequencies: int | None = None,
    *,
    kernel_width: int = ESPIRIT_KERNEL,
    calib_limit: int = ESPIRIT_CALIB_LIMIT,
    threshold: float = ESPIRIT_THRESHOLD,
    crop: float = ESPIRIT_CROP,
    power_iters: int = ESPIRIT_POWER_ITERS,
    min_support_energy: float = 0.75,
    check_threshold: float = ESPIRIT_CHECK,
) -> np.ndarray:
    """ESPIRiT sensitivity maps ``complex64 [C, H, W]`` (one set) from the ACS region of one slice.

    Maps are the leading eigenvectors, unit-norm over coils, with coil 0's phase removed (sigpy's
    convention); with ``crop > 0`` they are zeroed where the leading eigenvalue is below ``crop``
    (sigpy uses 0.95; the default here is no cropping, see ESPIRIT_CROP). With one coil the map is 1
    everywhere. When the ACS region is too small for a 3x3 kernel, or the pixels whose eigenvalue
    exceeds ``check_threshold`` hold less than ``min_support_energy`` of the energy of the (blurry,
    alias-free) image of the ACS block alone (a sign of a calibration region too small to estimate the
    kernels; ~0.9 when the maps are right), maps are the ACS coil images divided by their RSS instead.
    """
    kspace, mask2d = _as_inputs(masked_kspace, mask)
    n_coils, h, w = kspace.shape
    if n_coils == 1:
        return np.ones((1, h, w), dtype=np.complex64)
    rows, cols = acs_region(mask2d)
    rows, cols = _centre(rows, calib_limit), _centre(cols, calib_limit)
    ch, cw = rows.stop - rows.start, cols.stop - cols.start
    # kernel: as wide as asked, narrower along an axis where the ACS is narrow, so that the calibration
    # matrix keeps at least twice as many rows (kernel positions) as columns (coils x kernel size);
    # at 8x (10 ACS columns of 256, 16 coils) that means 6 x 4 kernels, ~0.02 SSIM better for SENSE than
    # 6 x 6 on simulated brain slices
    kh, kw = min(kernel_width, ch), min(kernel_width, cw)
    while kw > 3 and (ch - kh + 1) * (cw - kw + 1) < 2 * n_coils * kh * kw:
        kw -= 1
    while kh > 3 and (ch - kh + 1) * (cw - kw + 1) < 2 * n_coils * kh * kw:
        kh -= 1
    if kh < 3 or kw < 3 or not np.any(kspace[:, rows, cols]):
        return _lowres_maps(kspace, rows, cols)
    calib = kspace[:, rows, cols].astype(np.complex128)

    # calibration matrix: one row per kernel position, columns (coil, ky, kx)
    blocks = sp.array_to_blocks(calib, [kh, kw], [1, 1])  # [C, nby, nbx, kh, kw]
    mat = blocks.reshape(n_coils, -1, kh * kw).transpose(1, 0, 2).reshape(-1, n_coils * kh * kw)
    # right singular vectors of the calibration matrix above the threshold (eigh of the small Gram
    # matrix: cheaper than an SVD of the tall matrix, same subspace)
    with _blas_threads(1):  # small LAPACK problem: threads only fight for a busy CPU (5-10x slower)
        evals, evecs = np.linalg.eigh(mat.conj().T @ mat)
    sing = np.sqrt(np.clip(evals, 0, None))
    vh = evecs[:, sing > threshold * sing.max()].T.conj()  # rows: kernels K_n
    gram = (vh.T @ vh.conj()).reshape(n_coils, kh, kw, n_coils, kh, kw)
    auto = np.zeros((n_coils, n_coils, 2 * kh - 1, 2 * kw - 1), dtype=np.complex128)
    for ky in range(kh):
        for kx in range(kw):
            auto[:, :, ky : ky + kh, kx : kx + kw] += gram[:, ky, kx, :, ::-1, ::-1]
    # image-domain Gram matrices AHA(y, x) = sum_d G(d) exp(2 pi i (dy y / H + dx x / W)) / (kh kw),
    # pixel and frequency indices relative to the centre (H // 2, W // 2) as in centred FFTs
    dys, dxs = np.arange(-(kh - 1), kh), np.arange(-(kw - 1), kw)
    e_h = np.exp(2j * np.pi * np.outer(np.arange(h) - h // 2, dys) / h)  # [H, 2kh-1]
    e_w = np.exp(2j * np.pi * np.outer(dxs, np.arange(w) - w // 2) / w)  # [2kw-1, W]
    half = torch.from_numpy((auto @ e_w).astype(np.complex64))  # [C, C, 2kh-1, W]
    aha = torch.einsum("yd,abdx->yxab", torch.from_numpy(e_h.astype(np.complex64)), half) / (kh * kw)

    # leading eigenvector per pixel by power iteration, started from the ACS coil images (close to the
    # answer already). The signal region has an eigenvalue ~1 and a clear gap; pixels without one are
    # cropped anyway.
    gram_t = aha.contiguous().reshape(h * w, n_coils, n_coils)
    low = np.zeros_like(kspace)
    low[:, rows, cols] = kspace[:, rows, cols]
    low_images = ifft2c_np(low)
    start = (low_images / np.maximum(rss_np(low_images, axis=0), 1e-30)).reshape(n_coils, h * w).T
    vec = torch.from_numpy(np.ascontiguousarray(start + 1e-3))[..., None]
    iters = max(power_iters, 1)
    for step in range(iters):
        vec = torch.bmm(gram_t, vec)
        if step % 4 == 3 or step == iters - 1:  # renormalise now and then (values shrink as eig^n)
            eig = torch.view_as_real(vec).square().sum(dim=(1, 2, 3)).sqrt()[:, None, None]
            vec = vec / eig.clamp_min(1e-30)
    maps = vec[..., 0].numpy().T.reshape(n_coils, h, w)
    eig = torch.view_as_real(torch.bmm(gram_t, vec)).square().sum(dim=(1, 2, 3)).sqrt().reshape(h, w).numpy()
    phase = maps[0] / np.maximum(np.abs(maps[0]), 1e-30)
    maps = maps * np.conj(phase)[None]
    # a too-small or inconsistent calibration region shows as eigenvalues well below 1 over much of the
    # signal: fall back to the smooth ACS ratio maps then
    energy = rss_np(low_images, axis=0) ** 2
    if energy[eig > check_threshold].sum() < min_support_energy * energy.sum():
        return _lowres_maps(kspace, rows, cols)
    if crop > 0:
        maps = maps * (eig > crop)[None]
    return maps.astype(np.complex64)


# --------------------------------------------------------------------------------------------------
# reconstructions


def zero_filled(
    masked_kspace: np.ndarray, mask: np.ndarray | None = None, num_low_frequencies: int | None = None
) -> np.ndarray:
    """RSS of the inverse FFT of the masked k-space (unmeasured samples left at zero)."""
    kspace, _ = _as_inputs(masked_kspace, mask)
    return rss_np(ifft2c_np(kspace), axis=0).astype(np.float32)


def _weights(mask2d: np.ndarray) -> np.ndarray:
    return mask2d.astype(np.float32)[None]


def sense(
    masked_kspace: np.ndarray,
    mask: np.ndarray | None = None,
    num_low_frequencies: int | None = None,
    *,
    lamda: float = SENSE_LAMBDA,
    max_iter: int = SENSE_ITERS,
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """SENSE: conjugate gradient on ``(A^H A + lamda I) x = A^H y`` with ``A = mask * FFT * maps``.

    Maps are ESPIRiT's (:func:`espirit_maps`) unless given; one coil uses a unit map. The returned
    magnitude is ``|x| * RSS(maps)``, which equals the RSS image where the data fit the model (ESPIRiT
    maps are unit-norm over coils inside the object and zero outside). ``lamda`` is relative to the
    operator's norm (<= 1), so it needs no data scaling; it and the iteration cap regularise mildly.
    """
    image, maps = sense_image(masked_kspace, mask, num_low_frequencies, lamda=lamda, max_iter=max_iter, maps=maps)
    return (np.abs(image) * rss_np(maps, axis=0)).astype(np.float32)


def sense_image(
    masked_kspace: np.ndarray,
    mask: np.ndarray | None = None,
    num_low_frequencies: int | None = None,
    *,
    lamda: float = SENSE_LAMBDA,
    max_iter: int = SENSE_ITERS,
    maps: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The complex SENSE image ``[H, W]`` and the maps ``[C, H, W]`` it was solved with (see :func:`sense`);
    ``fft2c(maps * image)`` is then SENSE's estimate of the full coil k-space."""
    kspace, mask2d = _as_inputs(masked_kspace, mask)
    if maps is None:
        maps = espirit_maps(kspace, mask2d, num_low_frequencies)
    maps = np.asarray(maps, dtype=np.complex64)
    scale = zero_filled_scale(kspace)
    if scale <= 0:
        return np.zeros(kspace.shape[-2:], dtype=np.complex64), maps
    app = mri_app.SenseRecon(
        kspace / scale, maps, lamda=lamda, weights=_weights(mask2d), max_iter=max_iter, show_pbar=False
    )
    return (np.asarray(app.run()) * scale).astype(np.complex64), maps


def cs_l1_wavelet(
    masked_kspace: np.ndarray,
    mask: np.ndarray | None = None,
    num_low_frequencies: int | None = None,
    *,
    lamda: float = CS_LAMBDA,
    max_iter: int = CS_ITERS,
    wave_name: str = "db4",
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """Compressed sensing: ``min_x 1/2 ||A x - y||^2 + lamda ||W x||_1`` (Daubechies-4 wavelets).

    Solved by sigpy's accelerated proximal gradient (FISTA) with step 1 (``||A|| <= 1`` for unit-norm
    maps and orthonormal FFTs, so sigpy's power-iteration estimate of the step is skipped) for
    ``max_iter`` iterations. k-space is first divided by the zero-filled image's 99th percentile, so
    ``lamda`` is scale-invariant. Output on the RSS scale as in :func:`sense`.
    """
    return cs_l1_wavelet_iterates(
        masked_kspace,
        mask,
        num_low_frequencies,
        lamda=lamda,
        checkpoints=[max_iter],
        wave_name=wave_name,
        maps=maps,
    )[max_iter]


def cs_l1_wavelet_iterates(
    masked_kspace: np.ndarray,
    mask: np.ndarray | None = None,
    num_low_frequencies: int | None = None,
    *,
    lamda: float = CS_LAMBDA,
    checkpoints: list[int] | tuple[int, ...] = (CS_ITERS,),
    wave_name: str = "db4",
    maps: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """:func:`cs_l1_wavelet` after each of several iteration counts, from one run (for tuning)."""
    kspace, mask2d = _as_inputs(masked_kspace, mask)
    checkpoints = sorted({int(c) for c in checkpoints})
    if not checkpoints or checkpoints[0] < 1:
        raise ValueError("iteration counts must be positive")
    if maps is None:
        maps = espirit_maps(kspace, mask2d, num_low_frequencies)
    maps = np.asarray(maps, dtype=np.complex64)
    scale = zero_filled_scale(kspace)
    if scale <= 0:
        return {c: np.zeros(kspace.shape[-2:], dtype=np.float32) for c in checkpoints}
    app = mri_app.L1WaveletRecon(
        kspace / scale,
        maps,
        lamda=lamda,
        weights=_weights(mask2d),
        wave_name=wave_name,
        max_iter=checkpoints[-1],
        alpha=1.0,
        show_pbar=False,
    )
    weight = rss_np(maps, axis=0) * scale
    out = {}
    for step in range(1, checkpoints[-1] + 1):
        app.alg.update()
        if step in checkpoints:
            out[step] = (np.abs(app.x) * weight).astype(np.float32)
    return out


ClassicalMethod = Callable[..., np.ndarray]

CLASSICAL: dict[str, ClassicalMethod] = {
    "zero_filled": zero_filled,
    "sense": sense,
    "cs_l1_wavelet": cs_l1_wavelet,
}
