"""Anatomy to simulate k-space from: the MNI152 template, the shared anatomy files, users' images.

Every source becomes a list of :class:`SourceVolume` (one subject's slices on a common square grid,
real magnitude or complex with real phase) plus a :class:`SourceInfo` for the manifest (what it is,
its licence). ``subject_key`` identifies the person behind a volume so that splits never put one
person in two splits: it is ``"<namespace>:<id>"`` where the namespace is the file's ``source``
attribute (so the NiChart T1 and FLAIR files, which share subject ids and source, share keys).

The MNI152 template that nilearn installs is one (averaged) brain. Pseudo-subjects are made from it
by random affine + smooth elastic deformations, different slabs and orientations, and contrast
changes (T2-like and FLAIR-like images are synthesised from nilearn's grey / white matter probability
maps; the T1 image is the template itself), plus a synthetic skull and scalp around the skull-stripped
template. They are not independent people, and the manifest says so.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .errors import ScanError

DEFAULT_FOV_MM = 240.0
MNI_DEFAULT_SUBJECTS = 6
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class SourceVolume:
    images: np.ndarray  # [S, m, m] float32 magnitude or complex64 (real phase)
    subject_key: str
    name: str  # short tag for file names, e.g. "mni152-p003"
    contrast: str  # "T1", "T2", "FLAIR", ...
    orientation: str  # "AX", "COR", "SAG"
    pixel_mm: float
    slice_mm: float
    source: str  # the SourceInfo.name it came from


@dataclass
class VolumeSpec:
    """A volume to simulate, known by subject and name before its images are made (lazily, so a
    progress bar covers the work and memory holds one volume at a time)."""

    subject_key: str
    name: str
    load: Callable[[], SourceVolume]


@dataclass
class SourceInfo:
    name: str
    path: str | None
    description: str
    license: str
    contrast: str
    kind: str
    note: str = ""
    subjects: int = 0


# ----------------------------------------------------------------------------------------------------
# grids


def to_square_grid(
    images: np.ndarray, matrix: int | None, pixel_mm: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, float]:
    """Resample ``[S, H, W]`` onto ``matrix x matrix`` pixels: square pixels, aspect ratio kept, zero-padded.

    Returns the images and their pixel size in mm. ``matrix=None`` keeps the grid (square pixels
    only are resampled when the source pixels are not square).
    """
    images = np.asarray(images)
    _, h, w = images.shape
    ph, pw = float(pixel_mm[0]), float(pixel_mm[1])
    extent_h, extent_w = h * ph, w * pw
    if matrix is None:
        pixel = min(ph, pw)
        target = (max(1, round(extent_h / pixel)), max(1, round(extent_w / pixel)))
        out_shape = target
    else:
        pixel = max(extent_h, extent_w) / matrix
        target = (min(matrix, max(1, round(extent_h / pixel))), min(matrix, max(1, round(extent_w / pixel))))
        out_shape = (matrix, matrix)
    if target != (h, w):
        if np.iscomplexobj(images):
            images = _resize(images.real, target) + 1j * _resize(images.imag, target)
        else:
            images = np.clip(_resize(images, target), 0, None)
    if tuple(images.shape[1:]) != out_shape:
        padded = np.zeros((images.shape[0], *out_shape), dtype=images.dtype)
        top, left = (out_shape[0] - images.shape[1]) // 2, (out_shape[1] - images.shape[2]) // 2
        padded[:, top : top + images.shape[1], left : left + images.shape[2]] = images
        images = padded
    dtype = np.complex64 if np.iscomplexobj(images) else np.float32
    return images.astype(dtype), pixel


def _resize(array: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of ``[S, H, W]`` (antialiased when shrinking), all slices in one torch call."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[:, None]
    shrink = target[0] < array.shape[1] or target[1] < array.shape[2]
    out = F.interpolate(tensor, size=target, mode="bicubic", align_corners=False, antialias=shrink)
    return out[:, 0].numpy()


def normalise_intensity(images: np.ndarray) -> np.ndarray:
    """Scale so the 99.5th percentile of the non-background magnitude is 1 (complex: phase kept)."""
    magnitude = np.abs(images)
    foreground = magnitude[magnitude > 0.05 * magnitude.max()] if magnitude.max() > 0 else magnitude
    top = float(np.percentile(foreground, 99.5)) if foreground.size else 1.0
    return images / (top if top > 0 else 1.0)


def pick_slices(images: np.ndarray, count: int | None) -> np.ndarray:
    """Indices of ``count`` evenly spaced slices through the part of the stack that holds signal."""
    energy = np.abs(images).reshape(images.shape[0], -1).mean(axis=1)
    keep = np.flatnonzero(energy > 0.1 * energy.max()) if energy.max() > 0 else np.arange(len(energy))
    if keep.size == 0:
        keep = np.arange(len(energy))
    first, last = int(keep[0]), int(keep[-1])
    if count is None or count >= last - first + 1:
        return np.arange(first, last + 1)
    return np.unique(np.round(np.linspace(first, last, count)).astype(int))


def _contrast_name(text: str) -> str:
    upper = text.upper()
    for name in ("FLAIR", "T2", "T1", "PD"):
        if name in upper:
            return name
    cleaned = re.sub(r"[^A-Z0-9]", "", upper)
    return cleaned[:8] or "UNK"


def _pixel_from_kind(kind: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*mm", kind or "")
    return float(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------------
# HDF5 images (the shared anatomy files and users' files in the same layout)


def load_h5_images(
    path: Path,
    matrix: int | None,
    slices_per_volume: int | None,
    max_subjects: int | None,
    rng: np.random.Generator,
) -> tuple[list[VolumeSpec], SourceInfo]:
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ScanError(path, f"cannot open as HDF5 images ({err})") from None
    with handle:
        if "images" not in handle:
            raise ScanError(path, f"no 'images' dataset (found: {', '.join(handle.keys()) or 'nothing'})")
        images = np.asarray(handle["images"])
        subjects = np.asarray(handle["subject"]) if "subject" in handle else None
        attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in handle.attrs.items()}
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or min(images.shape) < 2:
        raise ScanError(path, f"'images' must be [N, H, W], got shape {images.shape}")
    if images.dtype.kind not in "biufc":
        raise ScanError(path, f"'images' has dtype {images.dtype}; expected numbers")
    if not np.isfinite(images).all():
        raise ScanError(path, "'images' contains NaN/Inf values")
    if subjects is None:
        warnings.warn(
            f"{path}: no 'subject' dataset; treating the whole file as one subject "
            "(slices of one person must not be split)",
            stacklevel=3,
        )
        subjects = np.zeros(images.shape[0], dtype=np.int64)
    if subjects.shape != (images.shape[0],):
        raise ScanError(path, f"'subject' has shape {subjects.shape}; expected [{images.shape[0]}]")
    complex_source = np.iscomplexobj(images)
    images = images.astype(np.complex64 if complex_source else np.float32)
    namespace = attrs.get("source", path.stem)
    contrast = _contrast_name(attrs.get("contrast", "T1"))
    pixel = _pixel_from_kind(attrs.get("kind", "")) or DEFAULT_FOV_MM / max(images.shape[1:])
    ids = sorted(set(int(s) for s in subjects))
    if max_subjects is not None and len(ids) > max_subjects:
        ids = sorted(rng.choice(ids, size=max_subjects, replace=False).tolist())
    tag = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")

    def make(sid: int) -> SourceVolume:
        stack = images[subjects == sid]
        stack = stack[pick_slices(stack, slices_per_volume)]
        if not complex_source:
            stack = np.clip(stack, 0, None)
        grid, pixel_out = to_square_grid(stack, matrix, (pixel, pixel))
        return SourceVolume(
            images=normalise_intensity(grid),
            subject_key=f"{namespace}:{sid}",
            name=f"{tag}-s{sid:04d}",
            contrast=contrast,
            orientation="AX",
            pixel_mm=pixel_out,
            slice_mm=pixel,
            source=str(path),
        )

    volumes = [
        VolumeSpec(f"{namespace}:{sid}", f"{tag}-s{sid:04d}", functools.partial(make, sid)) for sid in ids
    ]
    info = SourceInfo(
        name=str(path),
        path=str(path),
        description=attrs.get("source", "user HDF5 images"),
        license=attrs.get("license", "unknown (not stated in the file)"),
        contrast=contrast,
        kind=attrs.get("kind", "complex" if complex_source else "magnitude"),
        note=attrs.get("note", ""),
        subjects=len(ids),
    )
    return volumes, info


# ----------------------------------------------------------------------------------------------------
# NIfTI and PNG


def load_nifti(
    path: Path, matrix: int | None, slices_per_volume: int | None
) -> tuple[list[VolumeSpec], SourceInfo]:
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise ScanError(path, f"cannot read NIfTI ({err})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ScanError(path, f"NIfTI must be a 2-D or 3-D image, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ScanError(path, "NIfTI contains NaN/Inf values")
    zooms = [float(z) for z in image.header.get_zooms()[:3]] + [1.0] * 3
    # RAS canonical: axial slices along k; show anterior at the top and the right hemisphere on the left
    stack = np.flip(np.transpose(data, (2, 1, 0)), axis=1)
    stack = np.clip(stack, 0, None)
    stack = stack[pick_slices(stack, slices_per_volume)]
    grid, pixel = to_square_grid(stack, matrix, (zooms[1], zooms[0]))
    tag = re.sub(r"[^a-z0-9]+", "-", path.name.lower().replace(".nii", "").replace(".gz", "")).strip("-")
    volume = SourceVolume(
        normalise_intensity(grid), f"{path.name}:0", tag, "T1", "AX", pixel, zooms[2], str(path)
    )
    info = SourceInfo(
        str(path),
        str(path),
        "user NIfTI volume",
        "unknown (user data)",
        "T1",
        "magnitude",
        "contrast assumed T1 (not stated in NIfTI)",
        1,
    )
    return [VolumeSpec(volume.subject_key, volume.name, lambda: volume)], info


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("F"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as err:
        raise ScanError(path, f"cannot read image ({err})") from None


def load_pictures(path: Path, matrix: int | None) -> tuple[list[VolumeSpec], SourceInfo]:
    """A PNG (or JPEG/TIFF) file is one single-slice subject; a directory of them is one subject's stack."""
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    )
    if not files:
        raise ScanError(path, "directory holds no PNG/JPEG/TIFF images")
    pictures = [_read_picture(p) for p in files]
    shapes = {p.shape for p in pictures}
    if len(shapes) != 1:
        raise ScanError(path, f"images of different sizes in one stack: {sorted(shapes)}")
    grid, pixel = to_square_grid(np.stack(pictures), matrix)
    tag = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")
    volume = SourceVolume(
        normalise_intensity(grid),
        f"{path.name}:0",
        tag,
        "T1",
        "AX",
        DEFAULT_FOV_MM / grid.shape[-1],
        5.0,
        str(path),
    )
    info = SourceInfo(
        str(path),
        str(path),
        "user images",
        "unknown (user data)",
        "T1",
        "magnitude (8-bit)",
        "pixel size unknown: a 240 mm field of view is assumed",
        1,
    )
    return [VolumeSpec(volume.subject_key, volume.name, lambda: volume)], info


# ----------------------------------------------------------------------------------------------------
# MNI152 pseudo-subjects


MNI_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def load_mni152_t1() -> np.ndarray:
    """The 1 mm MNI152 T1 template that nilearn installs, scaled to [0, 1].

    Read straight from nilearn's package data with nibabel (what ``load_mni152_template(resolution=1)``
    returns, to float precision) because importing ``nilearn.datasets`` alone costs seconds; falls
    back to the public loader if the file moves in a future nilearn. ``NIRVANA_MNI152_T1`` may name
    that file directly (machines without nilearn).
    """
    import importlib.util
    import os

    import nibabel as nib

    override = os.environ.get("NIRVANA_MNI152_T1")
    if override:
        data = np.asarray(nib.load(override).dataobj, dtype=np.float32)
        return data / data.max()
    spec = importlib.util.find_spec("nilearn")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "datasets" / "data" / MNI_FILE
        if path.exists():
            data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
            return data / data.max()
    from nilearn import datasets

    return datasets.load_mni152_template(resolution=1).get_fdata(dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _mni_channels() -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Template channels ``[1, 3, X, Y, Z]``: T1, soft head support, distance outside the support (mm)."""
    t1 = load_mni152_t1()
    support = ndimage.binary_fill_holes(t1 > 0.02)
    coarse = ~support[::2, ::2, ::2]
    distance = ndimage.distance_transform_edt(np.pad(coarse, 10, constant_values=True), sampling=2.0)
    distance = ndimage.zoom(distance[10:-10, 10:-10, 10:-10], 2.0, order=1)[
        : t1.shape[0], : t1.shape[1], : t1.shape[2]
    ]
    pad = [(0, t1.shape[i] - distance.shape[i]) for i in range(3)]
    distance = np.pad(distance, pad, mode="edge")
    soft_support = ndimage.uniform_filter(support.astype(np.float32), 2)
    stack = np.stack([t1, soft_support, distance.astype(np.float32)])
    return torch.from_numpy(np.ascontiguousarray(stack))[None], t1.shape


# T1 template intensity of CSF, grey and white matter (medians over nilearn's tissue maps: CSF where
# both probabilities < 0.1, GM > 0.7, WM > 0.9); contrasts are piecewise-linear remaps through them,
# which keeps the template's detail and partial-volume edges (mixing probability maps would blur both)
_T1_ANCHORS = (0.0, 0.27, 0.655, 0.87, 1.0)
# (CSF, GM, WM) brain levels and the synthetic head layers (meninges gap, skull, scalp fat)
_CONTRASTS = {
    "T1": {"csf": 0.27, "gm": 0.655, "wm": 0.87, "gap": 0.15, "skull": 0.06, "scalp": 0.95},
    "T2": {"csf": 1.0, "gm": 0.62, "wm": 0.42, "gap": 0.9, "skull": 0.04, "scalp": 0.7},
    "FLAIR": {"csf": 0.07, "gm": 0.78, "wm": 0.55, "gap": 0.07, "skull": 0.04, "scalp": 0.65},
}
_SEQUENCES = {
    "T1": (250.0, 2.6, 0.0, 70.0),
    "T2": (4000.0, 100.0, 0.0, 150.0),
    "FLAIR": (9000.0, 120.0, 2500.0, 150.0),
}
_ORIENTATION_AXES = {  # (slice axis, row axis, column axis) as (axis index, sign) in template voxels
    "AX": ((2, 1.0), (1, -1.0), (0, 1.0)),
    "COR": ((1, 1.0), (2, -1.0), (0, 1.0)),
    "SAG": ((0, 1.0), (2, -1.0), (1, 1.0)),
}
_MNI_CENTRE = np.array([98.0, 117.0, 80.0])  # centre of the head in template voxels (1 mm)
_MNI_EXTENT = {"AX": 150.0, "COR": 175.0, "SAG": 140.0}  # brain extent along each slice axis (mm)


def sequence_parameters(contrast: str) -> tuple[float, float, float, float] | None:
    """Nominal (TR, TE, TI, flip) for the header of a simulated contrast (descriptive only)."""
    return _SEQUENCES.get(contrast)


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def mni_pseudo_subject(
    index: int, seed: int, matrix: int, slices: int, fov_mm: float = DEFAULT_FOV_MM
) -> SourceVolume:
    """One deformed, re-contrasted slab of the MNI152 template on a ``matrix`` grid (``slices`` slices)."""
    rng = np.random.default_rng([seed, index, 152])
    contrast = ("T1", "T2", "FLAIR")[index % 3]
    orientation = "AX" if index % 5 in (0, 1, 3) else ("COR" if index % 5 == 2 else "SAG")
    channels, shape = _mni_channels()
    axes = _ORIENTATION_AXES[orientation]
    extent = _MNI_EXTENT[orientation]
    spacing = float(np.clip(rng.uniform(0.7, 0.95) * extent / max(slices, 1), 1.0, 8.0))
    span = spacing * (slices - 1)
    centre_offset = rng.uniform(-1, 1) * max(0.0, (extent * 0.8 - span) / 2)
    thickness = min(spacing, 5.0) * 0.8
    pixel = fov_mm / matrix

    # sample grid in the subject frame (mm): planes x rows x columns, 2 sub-planes per slice
    planes = (np.arange(slices) - (slices - 1) / 2) * spacing + centre_offset
    sub = np.array([-thickness / 4, thickness / 4])
    depth = (planes[:, None] + sub[None, :]).ravel()
    coords = (np.arange(matrix) - (matrix - 1) / 2) * pixel
    frame = np.zeros((depth.size, matrix, matrix, 3), dtype=np.float32)
    for (axis, sign), values, shape_index in zip(axes, (depth, coords, coords), range(3), strict=True):
        view = [1, 1, 1]
        view[shape_index] = values.size
        frame[..., axis] += (sign * values).reshape(view).astype(np.float32)

    # random affine (rotation, anisotropic scaling = head size) and a smooth elastic displacement
    rotation = _rotation(np.deg2rad(rng.uniform(-7, 7, 3)))
    scale = np.diag(rng.uniform(0.9, 1.08, 3))
    affine = (rotation @ scale).astype(np.float32)
    shift = rng.uniform(-4, 4, 3).astype(np.float32)
    points = frame.reshape(-1, 3) @ affine.T + shift
    control = torch.from_numpy(rng.normal(0.0, 2.5, (1, 3, 5, 6, 6)).astype(np.float32))
    displacement = F.interpolate(
        control, size=(depth.size, matrix, matrix), mode="trilinear", align_corners=True
    )
    points = points + displacement[0].permute(1, 2, 3, 0).reshape(-1, 3).numpy()
    voxels = points + _MNI_CENTRE.astype(np.float32)

    # trilinear sampling of all template channels at once: the volume is [X, Y, Z] = (D, H, W) for
    # grid_sample, whose grid holds (W, H, D) coordinates, hence the reversed (z, y, x) order
    size = np.array(shape, dtype=np.float32)
    normalised = 2.0 * voxels / (size - 1) - 1.0
    grid = torch.from_numpy(
        np.ascontiguousarray(normalised[:, [2, 1, 0]]).reshape(1, depth.size, matrix, matrix, 3)
    )
    sampled = F.grid_sample(channels, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    t1, support, distance = (sampled[c].numpy() for c in range(3))
    outside = (np.abs(normalised) > 1).any(axis=1).reshape(distance.shape)
    distance = np.where(outside, 100.0, distance)

    image = _contrast_image(contrast, t1, support, distance, rng)
    image = image.reshape(slices, sub.size, matrix, matrix).mean(axis=1)  # partial volume across the slice
    return SourceVolume(
        images=normalise_intensity(image.astype(np.float32)),
        subject_key=f"mni152:{index}",
        name=f"mni152-p{index:03d}",
        contrast=contrast,
        orientation=orientation,
        pixel_mm=pixel,
        slice_mm=spacing,
        source="mni152",
    )


def _contrast_image(
    contrast: str, t1: np.ndarray, support: np.ndarray, distance: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    levels = {k: v * rng.uniform(0.92, 1.08) for k, v in _CONTRASTS[contrast].items()}
    brain = np.interp(t1, _T1_ANCHORS, (0.0, levels["csf"], levels["gm"], levels["wm"], levels["wm"] * 1.05))
    skull_start = rng.uniform(1.5, 3.0)
    skull_end = skull_start + rng.uniform(4.0, 7.0)
    scalp_end = skull_end + rng.uniform(4.0, 8.0)

    def step(x: np.ndarray, edge: float) -> np.ndarray:  # soft step over ~2 mm
        return 1.0 / (1.0 + np.exp(-(x - edge) / 0.5))

    gap = step(distance, 0.0) * (1 - step(distance, skull_start))
    skull = step(distance, skull_start) * (1 - step(distance, skull_end))
    scalp = step(distance, skull_end) * (1 - step(distance, scalp_end))
    layers = levels["gap"] * gap + levels["skull"] * skull + levels["scalp"] * scalp
    return support * brain + (1 - support) * layers


def mni_volumes(count: int, seed: int, matrix: int, slices: int) -> tuple[list[VolumeSpec], SourceInfo]:
    volumes = [
        VolumeSpec(
            f"mni152:{i}", f"mni152-p{i:03d}", functools.partial(mni_pseudo_subject, i, seed, matrix, slices)
        )
        for i in range(count)
    ]
    info = SourceInfo(
        name="mni152",
        path=None,
        description="MNI152 ICBM 2009a nonlinear symmetric T1 template (1 mm, skull-stripped) as "
        "installed with nilearn",
        license="MNI152 template licence: free use, copy and redistribution with the copyright notice "
        "(Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
        "Institute, McGill University)",
        contrast="T1 (T2-like and FLAIR-like synthesised)",
        kind="magnitude (1 mm template)",
        note=f"All {count} pseudo-subjects derive from ONE averaged brain (random affine + elastic "
        "deformations, different slabs/orientations, synthetic contrasts, synthetic skull/scalp): splits "
        "by pseudo-subject are not independent people; use the shared anatomy files for honest "
        "generalisation estimates.",
        subjects=count,
    )
    return volumes, info


# ----------------------------------------------------------------------------------------------------
# dispatch


def load_source(
    source: str | Path, matrix: int | None, slices_per_volume: int | None, max_subjects: int | None, seed: int
) -> tuple[list[VolumeSpec], SourceInfo]:
    """Load one source: ``"mni152"``, an HDF5 file with ``images``, a NIfTI file, PNG file(s)/directory."""
    if str(source).lower() == "mni152":
        count = MNI_DEFAULT_SUBJECTS if max_subjects is None else max_subjects
        if matrix is None:
            raise ValueError("the mni152 source needs a matrix size")
        return mni_volumes(count, seed, matrix, slices_per_volume or 8)
    path = Path(source)
    if not path.exists():
        raise ScanError(path, "source not found")
    name = path.name.lower()
    rng = np.random.default_rng([seed, 7])
    if path.is_dir() or name.endswith(IMAGE_SUFFIXES):
        return load_pictures(path, matrix)
    if name.endswith((".nii", ".nii.gz")):
        return load_nifti(path, matrix, slices_per_volume)
    if h5py.is_hdf5(str(path)):
        return load_h5_images(path, matrix, slices_per_volume, max_subjects, rng)
    raise ScanError(path, "unknown source type (expected mni152, an HDF5 file with 'images', NIfTI or PNG)")


def load_sources(
    sources: str | Path | Sequence[str | Path],
    matrix: int | None,
    slices_per_volume: int | None,
    max_subjects: int | None,
    seed: int,
) -> tuple[list[VolumeSpec], list[SourceInfo]]:
    items = [sources] if isinstance(sources, str | Path) else list(sources)
    volumes, infos = [], []
    for item in items:
        v, info = load_source(item, matrix, slices_per_volume, max_subjects, seed)
        volumes.extend(v)
        infos.append(info)
    return volumes, infos
