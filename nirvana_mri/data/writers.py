"""Writing reconstructions: fastMRI submission HDF5, NIfTI volumes and PNG previews.

Every writer is atomic (a temporary file beside the target, renamed over it only when complete) and
refuses to write over an input: over any path in ``inputs``, and over any existing file that holds raw
data (a ``kspace`` dataset or an ISMRMRD group), so a slip of the command line cannot destroy a scan.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
from PIL import Image

from ..io_utils import atomic_path, atomic_write_bytes, refuse_overwriting_input


def _guard(path: Path, inputs: Sequence[str | Path]) -> None:
    refuse_overwriting_input(path, [Path(p) for p in inputs])
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name to write")
    if path.exists() and h5py.is_hdf5(str(path)):
        try:
            with h5py.File(path, "r") as handle:
                raw = "kspace" in handle or any(
                    isinstance(v, h5py.Group) and "data" in v and "xml" in v for v in handle.values()
                )
        except OSError:
            raw = False
        if raw:
            raise ValueError(f"refusing to overwrite {path}: it holds raw k-space (an input scan?)")


def _volume(array: Any, what: str) -> np.ndarray:
    volume = np.asarray(array)
    if np.iscomplexobj(volume):
        raise ValueError(f"{what} must be real magnitude images, got complex values")
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise ValueError(f"{what} must be [slices, h, w] (or one [h, w] image), got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise ValueError(f"{what} contains NaN/Inf values; refusing to write it")
    return volume.astype(np.float32, copy=False)


def write_reconstruction(
    path: str | Path,
    reconstruction: np.ndarray,
    attrs: dict[str, Any] | None = None,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write ``reconstruction`` [S, h, w] float32 in fastMRI's submission format (one file per volume).

    The file holds the dataset ``reconstruction`` (what fastMRI's evaluation reads) and ``attrs`` as
    HDF5 attributes (strings and numbers; e.g. the model and acceleration used).
    """
    path = Path(path)
    _guard(path, inputs)
    volume = _volume(reconstruction, "reconstruction")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            out.create_dataset("reconstruction", data=volume)
            for key, value in (attrs or {}).items():
                if value is not None:
                    out.attrs[key] = value
    return path


def _to_uint8(images: np.ndarray, percentile: float, vmax: float | None) -> np.ndarray:
    top = float(vmax) if vmax is not None else float(np.percentile(images, percentile))
    if not top > 0:
        top = float(images.max()) or 1.0
    return (np.clip(images / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mosaic(volume: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Tile ``[S, h, w]`` slices into one image, row by row (empty tiles are black)."""
    slices, height, width = volume.shape
    columns = columns or int(np.ceil(np.sqrt(slices)))
    rows = int(np.ceil(slices / columns))
    canvas = np.zeros((rows * height, columns * width), dtype=volume.dtype)
    for index in range(slices):
        r, c = divmod(index, columns)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = volume[index]
    return canvas


def write_png(
    path: str | Path,
    image_or_images: np.ndarray,
    slice_index: int | None = None,
    columns: int | None = None,
    percentile: float = 99.5,
    vmax: float | None = None,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """One 8-bit grayscale PNG preview: a 2-D image, one slice (``slice_index``) or a mosaic of all.

    Complex input is shown as magnitude. Intensities are scaled to ``vmax`` (default: the
    ``percentile`` of the shown pixels, so one hot pixel does not black out the rest).
    """
    path = Path(path)
    _guard(path, inputs)
    data = np.asarray(image_or_images)
    data = np.abs(data) if np.iscomplexobj(data) else data
    volume = _volume(data, "image")
    if slice_index is not None:
        if not -volume.shape[0] <= slice_index < volume.shape[0]:
            raise ValueError(f"slice_index {slice_index} out of range for {volume.shape[0]} slices")
        shown = volume[slice_index]
    else:
        shown = volume[0] if volume.shape[0] == 1 else mosaic(volume, columns)
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(shown, percentile, vmax), mode="L").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_nifti(
    path: str | Path,
    volume: np.ndarray,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write ``volume`` [S, h, w] as NIfTI-1 (``.nii`` or ``.nii.gz``, chosen by the file name).

    ``voxel_size`` is in millimetres in the array's axis order ``(slice, row, column)``. Stored as
    NIfTI ``(i, j, k) = (column, row flipped, slice)`` so viewers show each slice as the array shows it
    (row 0 at the top) with slices stacked along k; the affine is a plain scaling (no scanner
    orientation is known for a reconstruction).
    """
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    _guard(path, inputs)
    data = _volume(np.abs(volume) if np.iscomplexobj(volume) else volume, "volume")
    size_s, size_r, size_c = (float(v) for v in voxel_size)
    if min(size_s, size_r, size_c) <= 0:
        raise ValueError(f"voxel sizes must be positive, got {voxel_size}")
    array = np.ascontiguousarray(np.transpose(data[:, ::-1, :], (2, 1, 0)))
    image = nib.Nifti1Image(array, np.diag([size_c, size_r, size_s, 1.0]))
    image.header.set_xyzt_units("mm")
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write_bytes(path, payload)
    return path


def voxel_size_from_header(header: Any, target_shape: tuple[int, int]) -> tuple[float, float, float]:
    """``(slice, row, column)`` voxel size in mm from a ScanHeader's recon field of view (1 mm if unknown)."""
    fov = getattr(header, "recon_fov_mm", None)
    if not fov:
        return (1.0, 1.0, 1.0)
    return (float(fov[2]) or 1.0, float(fov[0]) / target_shape[0], float(fov[1]) / target_shape[1])
