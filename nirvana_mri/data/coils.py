"""Simulated receive coils: Biot-Savart loop arrays around the head, and correlated receiver noise.

Why Biot-Savart rather than Gaussian blobs: the receive field of a surface loop has the magnitude
fall-off *and* the spatially varying phase of real coil maps (the transverse field rotates around the
loop), so SENSE-type models trained on it meet the structure they meet in real data. The loops sit on
one to three rings of a cylinder around the head like a 4-32 channel head array (loop size shrinks
as the channel count grows), the slice plane is ``z = const`` with B0 along z, and the receive
sensitivity of a loop is ``Bx - i By`` of its reciprocal field. Maps are computed on a coarse grid
(they are smooth) and upsampled bicubically, which keeps 32-coil volumes cheap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COARSE = 48  # coarse grid points along the longer image axis for the field computation
SEGMENTS = 16  # straight segments per loop in the Biot-Savart sum
CORE_MM = 8.0  # regularisation distance: keeps the field finite at the wire


@dataclass(frozen=True)
class CoilArray:
    """Loop centres / normals / radii in mm (head centre at the origin, B0 along z)."""

    centres: np.ndarray  # [C, 3]
    normals: np.ndarray  # [C, 3]
    radii: np.ndarray  # [C]
    phases: np.ndarray  # [C] constant phase offset of each receive chain (cable, preamp)

    @property
    def num_coils(self) -> int:
        return int(self.centres.shape[0])


def head_array(num_coils: int, rng: np.random.Generator, ring_radius_mm: float = 125.0) -> CoilArray:
    """``num_coils`` loops on up to three rings around the head, randomly rotated and shifted."""
    if not 1 <= num_coils <= 64:
        raise ValueError(f"coils must be in 1..64, got {num_coils}")
    rings = 1 if num_coils <= 8 else 2 if num_coils <= 20 else 3
    per_ring = [num_coils // rings + (1 if r < num_coils % rings else 0) for r in range(rings)]
    spacing = 2 * np.pi * ring_radius_mm / max(per_ring)
    loop_radius = float(np.clip(0.45 * spacing, 22.0, 60.0))
    ring_gap = 1.7 * loop_radius
    z_shift = rng.uniform(-10.0, 10.0)
    radius_jitter = rng.uniform(0.95, 1.08)
    centres, normals = [], []
    start = rng.uniform(0, 2 * np.pi)
    for ring, count in enumerate(per_ring):
        z = (ring - (rings - 1) / 2) * ring_gap + z_shift
        offset = start + (np.pi / count if ring % 2 else 0.0)
        for k in range(count):
            angle = offset + 2 * np.pi * k / count + rng.normal(0, 0.03)
            direction = np.array([np.cos(angle), np.sin(angle), 0.0])
            centres.append(direction * ring_radius_mm * radius_jitter + np.array([0.0, 0.0, z]))
            normals.append(direction)
    return CoilArray(
        centres=np.asarray(centres),
        normals=np.asarray(normals),
        radii=np.full(num_coils, loop_radius) * rng.uniform(0.93, 1.07, num_coils),
        phases=rng.uniform(-np.pi, np.pi, num_coils),
    )


def _loop_field(points: np.ndarray, centre: np.ndarray, normal: np.ndarray, radius: float) -> np.ndarray:
    """Biot-Savart field ``[P, 3]`` (arbitrary units) of a unit current loop at ``points`` ``[P, 3]``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    field = np.zeros_like(points)
    step = 2 * np.pi * radius / SEGMENTS
    for theta in np.linspace(0, 2 * np.pi, SEGMENTS, endpoint=False):
        wire = centre + radius * (np.cos(theta) * u + np.sin(theta) * v)
        dl = step * (-np.sin(theta) * u + np.cos(theta) * v)
        r = points - wire
        inv = (np.einsum("pi,pi->p", r, r) + CORE_MM**2) ** -1.5
        field[:, 0] += (dl[1] * r[:, 2] - dl[2] * r[:, 1]) * inv
        field[:, 1] += (dl[2] * r[:, 0] - dl[0] * r[:, 2]) * inv
        field[:, 2] += (dl[0] * r[:, 1] - dl[1] * r[:, 0]) * inv
    return field


def coarse_maps(
    array: CoilArray, fov_mm: tuple[float, float], z_mm: np.ndarray, grid: tuple[int, int]
) -> np.ndarray:
    """Complex sensitivities ``[S, C, gh, gw]`` on a coarse grid spanning the FOV (rows, columns) in mm.

    Rows run along y (top = +y), columns along x; ``z_mm`` are the slice positions.
    """
    gh, gw = grid
    ys = np.linspace(fov_mm[0] / 2, -fov_mm[0] / 2, gh)
    xs = np.linspace(-fov_mm[1] / 2, fov_mm[1] / 2, gw)
    z_mm = np.asarray(z_mm, dtype=float)
    zz, yy, xx = np.meshgrid(z_mm, ys, xs, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    maps = np.empty((array.num_coils, z_mm.size * gh * gw), dtype=np.complex128)
    for c in range(array.num_coils):
        field = _loop_field(points, array.centres[c], array.normals[c], float(array.radii[c]))
        maps[c] = (field[:, 0] - 1j * field[:, 1]) * np.exp(1j * array.phases[c])
    return maps.reshape(array.num_coils, z_mm.size, gh, gw).transpose(1, 0, 2, 3)


def coarse_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """Coarse grid size with the image's aspect ratio (at least 8 points per axis)."""
    h, w = shape
    scale = COARSE / max(h, w)
    return max(8, min(h, round(h * scale))), max(8, min(w, round(w * scale)))


def normalise_maps(maps: np.ndarray, weight: np.ndarray, flatten: float = 0.5) -> np.ndarray:
    """Scale maps so that ``sum_c |S_c|^2`` averages 1 over the object (``weight`` > 0 marks it).

    ``flatten`` in [0, 1] divides by ``(sum |S|^2) ** (flatten / 2)`` first: 0 keeps the raw array's
    strong centre-dark / edge-bright profile, 1 makes ``sum |S|^2 = 1`` everywhere (ESPIRiT-like);
    0.5 leaves the mild intensity bias that real RSS images show.
    """
    sos = np.sum(np.abs(maps) ** 2, axis=-3, keepdims=True)
    maps = maps / np.maximum(sos, 1e-30) ** (flatten / 2)
    sos = np.sum(np.abs(maps) ** 2, axis=-3)
    w = np.broadcast_to(weight, sos.shape).astype(float)
    if w.sum() <= 0:
        w = np.ones_like(sos)
    mean = float(np.sum(sos * w) / max(np.sum(w), 1e-12))
    return maps / np.sqrt(mean)


@functools.lru_cache(maxsize=32)
def _cubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[size_out, size_in]`` matrix of torch's bicubic interpolation (``align_corners=True``) along one
    axis: torch's 2-D bicubic is separable, so interpolating each unit vector gives its columns."""
    eye = torch.eye(size_in, dtype=torch.float64).reshape(size_in, 1, size_in, 1)
    columns = F.interpolate(eye, size=(size_out, 1), mode="bicubic", align_corners=True)
    return columns.reshape(size_in, size_out).T.numpy()


def upsample_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of complex coarse maps ``[..., gh, gw]`` to ``shape`` (complex64).

    Done as two small matrix products (rows, then columns), which is several times faster than
    ``F.interpolate`` on many channels and gives the same numbers.
    """
    lead, (gh, gw) = maps.shape[:-2], maps.shape[-2:]
    height, width = int(shape[0]), int(shape[1])
    rows = _cubic_matrix(gh, height).astype(np.float32)  # [H, gh]
    cols = _cubic_matrix(gw, width).astype(np.complex64)  # [W, gw]
    stack = maps.astype(np.complex64).reshape(-1, gh, gw)
    count = stack.shape[0]
    wide = (stack.reshape(count * gh, gw) @ cols.T).reshape(count, gh, width)  # columns: one GEMM
    out = np.empty((count, height, width), dtype=np.complex64)
    floats = out.view(np.float32)  # [count, H, 2W]: the real row matrix acts on re / im alike
    for index in range(count):
        np.matmul(rows, wide[index].view(np.float32), out=floats[index])
    return out.reshape(*lead, height, width)


def noise_covariance(array: CoilArray, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Receiver noise covariance ``[C, C]`` (mean diagonal 1).

    ``correlation`` in [0, 1) mixes white noise with a Gaussian kernel of the loop distances (positive
    definite for any geometry); channel gains vary by about +-10 % as on real scanners.
    """
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"noise correlation must be in [0, 1), got {correlation}")
    count = array.num_coils
    gains = rng.uniform(0.9, 1.1, count)
    if correlation > 0 and count > 1:
        d2 = np.sum((array.centres[:, None] - array.centres[None]) ** 2, axis=-1)
        length = 1.5 * float(np.mean(array.radii))
        kernel = np.exp(-d2 / (2 * length**2))
        base = (1 - correlation) * np.eye(count) + correlation * kernel
    else:
        base = np.eye(count)
    cov = gains[:, None] * base * gains[None, :]
    return cov / np.mean(np.diag(cov))
