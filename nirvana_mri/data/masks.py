"""Sampling masks: fastMRI's own mask functions, seeded the way fastMRI seeds them.

1-D (Cartesian) masks select k-space *columns* (phase encoding along W, like fastMRI) and are
returned with shape ``[1, W]``; 2-D patterns have shape ``[H, W]``. Both broadcast against k-space
``[..., H, W]``. ``True`` means "measured".

Determinism: fastMRI's data transforms seed the mask function with ``tuple(map(ord, fname))`` so that
a volume keeps one mask for all its slices in every epoch. ``make_mask(seed=S, fname=F)`` seeds with
``(S, *map(ord, basename(F)))`` instead: the same per-file determinism, plus a user seed so that
different seeds give different validation masks. No Python ``hash()`` is involved (it is salted per
process), so masks agree across processes, workers and machines. Without a seed the mask is drawn from
torch's global generator, which PyTorch seeds differently in every DataLoader worker (numpy's global
state would be copied into each forked worker and repeat masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fastmri.data.subsample import create_mask_for_mask_type

FASTMRI_MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
MASK_TYPES = FASTMRI_MASK_TYPES + ("variable_density_2d",)
_DEFAULT_CENTER_FRACTIONS = {4: 0.08, 8: 0.04}


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairs (4x: 0.08, 8x: 0.04); other factors keep the same product (0.32)."""
    return _DEFAULT_CENTER_FRACTIONS.get(int(acceleration), 0.32 / float(acceleration))


def mask_seed(seed: int | None, fname: str | Path | None = None) -> tuple[int, ...] | None:
    """The random-state seed for a mask: ``None`` when unseeded, else ``(seed, *ord(chars of name))``."""
    if seed is None:
        return None
    head = (int(seed) % (2**32),)
    return head if fname is None else head + tuple(map(ord, Path(str(fname)).name))


def _fresh_seed() -> tuple[int, ...]:
    return (int(torch.randint(0, 2**31 - 1, ()).item()),)


def make_mask(
    shape: tuple[int, int],
    acceleration: int,
    mask_type: str = "equispaced_fraction",
    seed: int | None = None,
    center_fraction: float | None = None,
    fname: str | None = None,
) -> tuple[np.ndarray, int]:
    """A sampling mask for k-space of ``shape = (H, W)`` and the number of fully sampled centre columns.

    ``mask_type`` is one of fastMRI's (``random``, ``equispaced``, ``equispaced_fraction``, ``magic``,
    ``magic_fraction``; built with ``fastmri.data.subsample``) -> bool ``[1, W]``, or
    ``variable_density_2d`` -> bool ``[H, W]`` (random points, density falling with k-space radius,
    a fully sampled centre box; like the 2-D Poisson-disc scans some users bring). ``center_fraction``
    defaults to fastMRI's 0.08 at 4x and 0.04 at 8x. Deterministic when ``seed`` is given (and per file
    when ``fname`` is given too); see the module docstring.
    """
    height, width = (int(v) for v in shape)
    if height < 1 or width < 2:
        raise ValueError(f"cannot make a mask for k-space of shape {shape}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask type {mask_type!r}; choose from {', '.join(MASK_TYPES)}")
    if not acceleration or acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    fraction = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"center_fraction must be in (0, 1], got {fraction}")
    rng_seed = mask_seed(seed, fname) or _fresh_seed()
    if acceleration == 1:
        return np.ones((1, width), dtype=bool), width
    if mask_type == "variable_density_2d":
        return _variable_density_2d(height, width, acceleration, fraction, rng_seed)
    func = create_mask_for_mask_type(mask_type, [fraction], [int(acceleration)])
    mask, num_low = func((1, height, width, 2), seed=rng_seed)
    return mask.numpy().reshape(1, width) > 0, int(num_low)


def _variable_density_2d(
    height: int, width: int, acceleration: float, fraction: float, seed: tuple[int, ...]
) -> tuple[np.ndarray, int]:
    rng = np.random.RandomState(seed)
    box_h = min(height, max(2, round(height * fraction)))
    box_w = min(width, max(2, round(width * fraction)))
    mask = np.zeros((height, width), dtype=bool)
    top, left = (height - box_h + 1) // 2, (width - box_w + 1) // 2
    mask[top : top + box_h, left : left + box_w] = True
    wanted = round(height * width / acceleration) - int(mask.sum())
    if wanted > 0:
        ky = (np.arange(height) - height // 2) / max(height / 2, 1)
        kx = (np.arange(width) - width // 2) / max(width / 2, 1)
        radius = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / np.sqrt(2)
        density = np.clip(1.0 - radius, 1e-3, None) ** 2
        density[mask] = 0.0
        candidates = np.flatnonzero(density)
        wanted = min(wanted, candidates.size)
        prob = density.ravel()[candidates]
        chosen = rng.choice(candidates, size=wanted, replace=False, p=prob / prob.sum())
        mask.ravel()[chosen] = True
    return mask, box_w


def as_mask_2d(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask broadcast to a full bool ``[H, W]`` array."""
    return np.broadcast_to(np.asarray(mask, dtype=bool), tuple(shape))


def acceleration_of(mask: np.ndarray, shape: tuple[int, int] | None = None) -> float:
    """Nominal acceleration ``samples / measured samples`` of a mask (``inf`` when nothing is measured)."""
    full = as_mask_2d(mask, shape) if shape is not None else np.asarray(mask, dtype=bool)
    measured = int(full.sum())
    return float("inf") if measured == 0 else full.size / measured


def center_width(mask: np.ndarray) -> int:
    """Contiguous measured columns around the k-space centre (fastMRI's ``num_low_frequencies``).

    For a 2-D pattern it is counted along the centre row.
    """
    mask = np.asarray(mask, dtype=bool)
    row = mask.reshape(-1, mask.shape[-1])[mask.reshape(-1, mask.shape[-1]).shape[0] // 2]
    centre = row.size // 2
    if not row[centre]:
        return 0
    left = centre
    while left > 0 and row[left - 1]:
        left -= 1
    right = centre
    while right + 1 < row.size and row[right + 1]:
        right += 1
    return right - left + 1


def mask_to_torch(mask: np.ndarray) -> torch.Tensor:
    """``[1, W]`` -> float32 ``[1, 1, W, 1]``; ``[H, W]`` -> ``[1, H, W, 1]`` (fastMRI's broadcast layout
    for one slice ``[C, H, W, 2]``)."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [1, W] or [H, W], got shape {mask.shape}")
    return torch.from_numpy(np.ascontiguousarray(mask)).reshape(1, *mask.shape, 1)
