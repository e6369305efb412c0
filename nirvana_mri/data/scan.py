"""Reading scans: fastMRI HDF5 (multi- or single-coil, fully sampled or undersampled) and raw ISMRMRD.

Every file is either read into a validated :class:`Scan` or refused with a :class:`ScanError` that
names the file and the problem; nothing half-read leaks out. Layout conventions are fastMRI's:
k-space ``[slices, coils, H, W]`` complex64 with H = readout (rows, may include 2x oversampling) and
W = phase encoding (columns, the axis 1-D masks select); targets ``[slices, h, w]`` float32 where
``(h, w)`` is the header's recon matrix ``(x, y)``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..io_utils import atomic_path, refuse_overwriting_input
from ..physics import ifft2c_np, rss_np
from .errors import ScanError
from .header import ScanHeader, make_header, parse_header
from .masks import acceleration_of, center_width

TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
#: An inferred mask only counts as undersampling when at least this fraction of the acquired k-space
#: region is exactly zero; a handful of exact zeros in quantised data is not a sampling pattern.
MIN_UNMEASURED_FRACTION = 0.01


@dataclass
class Scan:
    """One volume of k-space with what is known about it.

    ``mask`` is ``None`` for fully sampled data, else bool and broadcastable to ``[slices, 1, H, W]``:
    ``[1, W]`` (1-D column mask shared by all slices), ``[H, W]`` (2-D pattern), or per slice
    ``[S, 1, W]`` / ``[S, H, W]`` when slices differ. Unmeasured k-space samples are exactly zero.
    """

    kspace: np.ndarray
    mask: np.ndarray | None = None
    target: np.ndarray | None = None
    header: ScanHeader | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    target_key: str | None = None
    noise_covariance: np.ndarray | None = None  # [coils, coils] from a noise scan, when one exists

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """k-space ``(H, W)``."""
        return int(self.kspace.shape[-2]), int(self.kspace.shape[-1])

    @property
    def is_undersampled(self) -> bool:
        return self.mask is not None

    @property
    def recon_size(self) -> tuple[int, int]:
        """``(h, w)`` of the image to reconstruct: header recon matrix, else the target's, else k-space's."""
        if self.header is not None:
            return self.header.recon_size[0], self.header.recon_size[1]
        if self.target is not None:
            return int(self.target.shape[-2]), int(self.target.shape[-1])
        return self.shape

    def slice_mask(self, index: int) -> np.ndarray | None:
        """The mask of one slice as ``[1, W]`` or ``[H, W]`` (``None`` when fully sampled)."""
        if self.mask is None:
            return None
        return self.mask[index] if self.mask.ndim == 3 else self.mask

    @property
    def acceleration(self) -> float:
        """Measured acceleration (k-space samples / measured samples), 1.0 when fully sampled."""
        if self.mask is None:
            return 1.0
        per_slice = [acceleration_of(self.slice_mask(i), self.shape) for i in range(self.num_slices)]
        return float(np.mean(per_slice))

    @property
    def num_low_frequencies(self) -> int:
        """Contiguous measured centre columns (fastMRI's ACS width); all columns when fully sampled."""
        return self.shape[1] if self.mask is None else center_width(self.slice_mask(0))

    def rss(self) -> np.ndarray:
        """RSS magnitude of the (zero-filled) coil images, cropped to ``recon_size``: fastMRI's target."""
        return center_crop_np(rss_np(ifft2c_np(self.kspace)), self.recon_size).astype(np.float32)


def center_crop_np(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop of the last two axes (fastMRI's offsets; a dimension smaller than ``shape`` stays)."""
    h, w = image.shape[-2:]
    th, tw = min(int(shape[0]), h), min(int(shape[1]), w)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top : top + th, left : left + tw]


@dataclass
class ScanInfo:
    """A file's validated structure, read without loading k-space (what a dataset index needs)."""

    path: Path
    num_slices: int
    num_coils: int
    shape: tuple[int, int]
    header: ScanHeader | None
    attrs: dict[str, Any]
    mask: np.ndarray | None  # the stored ``mask`` dataset, normalised (see Scan.mask)
    target_key: str | None
    target_shape: tuple[int, int] | None
    target_max: float | None


# ----------------------------------------------------------------------------------------------------
# opening files


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ScanError(path, "no such file")
    if path.is_dir():
        raise ScanError(path, "is a directory, not a scan file")
    if path.stat().st_size == 0:
        raise ScanError(path, "empty file (0 bytes)")
    if not h5py.is_hdf5(str(path)):
        raise ScanError(path, "not an HDF5 file (fastMRI and ISMRMRD scans are HDF5)")


def open_h5(path: str | Path) -> h5py.File:
    """Open an HDF5 file read-only, turning every failure into a ScanError naming the file."""
    path = Path(path)
    _check_path(path)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        raise ScanError(path, f"truncated or corrupt HDF5 file ({reason})") from None


def is_ismrmrd(handle: h5py.File) -> str | None:
    """The ISMRMRD dataset group name of an open file (``dataset`` normally), or None."""
    for name, item in handle.items():
        if isinstance(item, h5py.Group) and "data" in item and "xml" in item:
            return name
    return None


def read_dataset(path: Path, dataset: h5py.Dataset, selection: Any = ()) -> np.ndarray:
    """Read (part of) an HDF5 dataset; a read failure (truncated, corrupt) becomes a ScanError."""
    try:
        return np.asarray(dataset[selection])
    except (OSError, KeyError, RuntimeError, TypeError) as err:
        raise ScanError(
            path, f"cannot read '{dataset.name.lstrip('/')}' (corrupt or truncated: {err})"
        ) from None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [v.decode("utf-8", errors="replace") for v in value.ravel()]
    return value


# ----------------------------------------------------------------------------------------------------
# validation of the pieces


def _kspace_layout(path: Path, dataset: h5py.Dataset) -> tuple[int, int, int, int, bool]:
    """``(S, C, H, W, single_coil)`` of a ``kspace`` dataset, or ScanError."""
    if not isinstance(dataset, h5py.Dataset):
        raise ScanError(path, "'kspace' is a group, not a dataset")
    dtype = dataset.dtype
    if dtype.kind != "c":
        hint = ""
        if dataset.ndim >= 1 and dataset.shape[-1] == 2 and dtype.kind == "f":
            hint = " (a trailing axis of 2 looks like real/imaginary pairs: store complex64 instead)"
        raise ScanError(path, f"k-space is real-valued ({dtype}); expected complex{hint}")
    shape = tuple(int(v) for v in dataset.shape)
    if len(shape) == 4:
        slices, coils, height, width = shape
        single = False
    elif len(shape) == 3:
        slices, height, width = shape
        coils, single = 1, True
    else:
        raise ScanError(
            path,
            f"k-space has {len(shape)} dimensions {shape}; expected [slices, coils, H, W] "
            "(multi-coil) or [slices, H, W] (single-coil)",
        )
    if min(shape) < 1:
        raise ScanError(path, f"k-space is empty (shape {shape})")
    if height < 2 or width < 2:
        raise ScanError(path, f"k-space of {height} x {width} is too small to be an image")
    return slices, coils, height, width, single


def normalise_mask(raw: np.ndarray, slices: int, height: int, width: int, path: Path | None) -> np.ndarray:
    """A stored mask as bool ``[1, W]``, ``[H, W]``, ``[S, 1, W]`` or ``[S, H, W]``, or ScanError."""
    raw = np.asarray(raw)
    if raw.dtype.kind not in "biuf":
        raise ScanError(path, f"mask has dtype {raw.dtype}; expected bool or 0/1 numbers")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ScanError(path, "mask contains NaN or Inf")
    if raw.dtype.kind != "b" and not np.isin(raw, (0, 1)).all():
        raise ScanError(path, "mask has values other than 0 and 1")
    mask = raw.astype(bool)
    original = mask.shape
    if mask.ndim >= 3 and mask.shape[-1] == 1 and width != 1:  # fastMRI torch layout [.., W, 1]
        mask = mask[..., 0]
    while mask.ndim > 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 1 and mask.shape[0] == width:
        mask = mask[None, :]
    elif mask.ndim == 2 and mask.shape[1] == width and mask.shape[0] in (1, height):
        pass
    elif mask.ndim == 2 and mask.shape[1] == width and mask.shape[0] == slices:
        mask = mask[:, None, :]
    elif (
        mask.ndim == 3
        and mask.shape[2] == width
        and mask.shape[0] in (1, slices)
        and mask.shape[1] in (1, height)
    ):
        if mask.shape[0] == 1:
            mask = mask[0]
    else:
        raise ScanError(
            path,
            f"mask of shape {original} does not fit k-space with {slices} slices of {height} x {width} "
            "(expected [W], [H, W], [slices, W] or [slices, H, W])",
        )
    mask = collapse_mask(mask)
    if mask.ndim == 3:
        empty = [i for i in range(mask.shape[0]) if not mask[i].any()]
        if empty:
            raise ScanError(path, f"mask marks nothing as measured in slice(s) {empty}")
    elif not mask.any():
        raise ScanError(path, "mask marks nothing as measured")
    return mask


def collapse_mask(mask: np.ndarray) -> np.ndarray:
    """The simplest equivalent mask: per-slice masks that agree become one, and ``[H, W]`` patterns
    whose rows all agree become ``[1, W]`` column masks."""
    if mask.ndim == 3 and all(np.array_equal(mask[0], m) for m in mask[1:]):
        mask = mask[0]
    if mask.ndim == 3:
        if mask.shape[1] > 1 and all((m == m[:1]).all() for m in mask):
            mask = mask[:, :1, :]
        return mask
    if mask.shape[0] > 1 and (mask == mask[:1]).all():
        mask = mask[:1]
    return mask


def infer_mask(kspace: np.ndarray, header: ScanHeader | None = None) -> np.ndarray | None:
    """The sampling pattern of k-space ``[S, C, H, W]`` whose unmeasured samples are exactly zero.

    ``None`` when the data is fully sampled: a location is unmeasured when every coil is exactly zero
    there; zero columns outside the acquired window (the header's encoding limits, else the span of
    measured columns) and zero rows outside the span of measured rows are zero padding, not
    undersampling; and fewer than ``MIN_UNMEASURED_FRACTION`` zeros inside are taken as measured zeros.
    """
    measured = np.any(kspace != 0, axis=1)  # [S, H, W]
    if not measured.any():
        return None
    columns = np.flatnonzero(measured.any(axis=(0, 1)))
    rows = np.flatnonzero(measured.any(axis=(0, 2)))
    left, right = int(columns[0]), int(columns[-1]) + 1
    window = header.acquired_columns if header is not None else None
    if window is not None and 0 <= window[0] < window[1] <= kspace.shape[-1]:
        left, right = window
    interior = measured[:, rows[0] : rows[-1] + 1, left:right]
    if interior.size == 0 or 1.0 - interior.mean() < MIN_UNMEASURED_FRACTION:
        return None
    # column patterns: every acquired row agrees within each slice
    band = measured[:, rows[0] : rows[-1] + 1, :]
    if (band == band[:, :1, :]).all():
        return collapse_mask(band[:, :1, :])
    return collapse_mask(measured)


def _target(
    path: Path, handle: h5py.File, slices: int, single: bool
) -> tuple[str | None, h5py.Dataset | None]:
    order = TARGET_KEYS[::-1] if single else TARGET_KEYS
    for key in order:
        if key in handle:
            dataset = handle[key]
            if not isinstance(dataset, h5py.Dataset):
                raise ScanError(path, f"'{key}' is a group, not a dataset")
            if dataset.dtype.kind not in "fiu":
                raise ScanError(path, f"target '{key}' has dtype {dataset.dtype}; expected real numbers")
            shape = dataset.shape
            if not (len(shape) == 3 and shape[0] == slices) and not (len(shape) == 2 and slices == 1):
                raise ScanError(path, f"target '{key}' has shape {shape}; expected [{slices}, h, w]")
            if min(shape) < 1:
                raise ScanError(path, f"target '{key}' is empty (shape {shape})")
            return key, dataset
    return None, None


def _header(path: Path, handle: h5py.File) -> ScanHeader | None:
    if "ismrmrd_header" not in handle:
        return None
    raw = read_dataset(path, handle["ismrmrd_header"])
    if raw.ndim > 0:
        raw = raw.ravel()[0] if raw.size else b""
    raw = raw.item() if isinstance(raw, np.ndarray) else raw
    try:
        return parse_header(raw)
    except ValueError as err:
        raise ScanError(path, str(err)) from None


def _inspect_open(
    path: Path, handle: h5py.File, read_target: bool
) -> tuple[ScanInfo, bool, np.ndarray | None]:
    if "kspace" not in handle:
        found = ", ".join(sorted(handle.keys())) or "nothing"
        what = " (this looks like a reconstruction file, not a scan)" if "reconstruction" in handle else ""
        raise ScanError(path, f"no 'kspace' dataset (found: {found}){what}")
    slices, coils, height, width, single = _kspace_layout(path, handle["kspace"])
    header = _header(path, handle)
    mask = None
    if "mask" in handle:
        mask = normalise_mask(read_dataset(path, handle["mask"]), slices, height, width, path)
    key, dataset = _target(path, handle, slices, single)
    target = None
    target_shape = target_max = None
    if dataset is not None:
        target_shape = tuple(int(v) for v in dataset.shape[-2:])
        if read_target:
            target = read_dataset(path, dataset).astype(np.float32).reshape(slices, *target_shape)
            bad = int((~np.isfinite(target)).sum())
            if bad:
                raise ScanError(path, f"target '{key}' contains {bad} NaN/Inf values")
            target_max = float(target.max())
    attrs = {k: _plain(v) for k, v in handle.attrs.items()}
    if "max" in attrs:
        try:
            target_max = float(attrs["max"])
        except (TypeError, ValueError):
            pass
    info = ScanInfo(path, slices, coils, (height, width), header, attrs, mask, key, target_shape, target_max)
    return info, single, target


def inspect_scan(path: str | Path, read_target: bool = True) -> ScanInfo:
    """Validate a fastMRI file's structure (not the k-space values) and return its layout.

    Reads the header, attrs, stored mask and (by default) the target, but not the k-space, so indexing
    thousands of volumes stays fast. ``read_scan`` does the full check.
    """
    path = Path(path)
    with open_h5(path) as handle:
        if is_ismrmrd(handle):
            raise ScanError(path, "is a raw ISMRMRD file; convert it first (nirvana-mri convert IN OUT.h5)")
        info, _, _ = _inspect_open(path, handle, read_target)
    return info


def read_scan(path: str | Path, slices: int | slice | None = None) -> Scan:
    """Read a fastMRI-layout HDF5 file or a raw ISMRMRD file into a validated :class:`Scan`.

    ``slices`` selects a subset (an index or a slice object) of a fastMRI file's slices. Single-coil
    files (k-space ``[S, H, W]``) come back with a coil axis of 1. The sampling mask comes from a
    ``mask`` dataset, else it is inferred from exactly-zero k-space (see :func:`infer_mask`).
    Raises :class:`ScanError` naming the file for anything it cannot read correctly.
    """
    path = Path(path)
    with open_h5(path) as handle:
        raw_ismrmrd = is_ismrmrd(handle) is not None
        if not raw_ismrmrd:
            info, single, target = _inspect_open(path, handle, read_target=True)
            selection = _slice_selection(path, slices, info.num_slices)
            kspace = read_dataset(path, handle["kspace"], selection)
    if raw_ismrmrd:
        from .ismrmrd_io import read_ismrmrd

        return read_ismrmrd(path)
    if single:
        kspace = kspace[:, None]
    kspace = np.ascontiguousarray(kspace, dtype=np.complex64)
    bad = int(kspace.size - np.isfinite(kspace).sum())
    if bad:
        raise ScanError(path, f"k-space contains {bad} NaN/Inf values")
    mask = info.mask
    if mask is not None and mask.ndim == 3:
        mask = collapse_mask(mask[selection])
    if target is not None:
        target = target[selection]
    if mask is None:
        mask = infer_mask(kspace, info.header)
    else:
        full = np.broadcast_to(mask if mask.ndim == 3 else mask[None], (kspace.shape[0], *kspace.shape[-2:]))
        if (np.any(kspace != 0, axis=1) & ~full).any():
            warnings.warn(
                f"{path}: k-space has samples where the stored mask says 'not measured'; "
                "they are zeroed (the mask wins)",
                stacklevel=2,
            )
            kspace = kspace * full[:, None]
    return Scan(
        kspace=kspace,
        mask=mask,
        target=target,
        header=info.header,
        attrs=info.attrs,
        path=path,
        target_key=info.target_key,
    )


def _slice_selection(path: Path, slices: int | slice | None, count: int) -> slice:
    if slices is None:
        return slice(None)
    if isinstance(slices, slice):
        return slices
    index = int(slices)
    if not -count <= index < count:
        raise ScanError(path, f"slice {index} out of range (the file has {count})")
    index %= count
    return slice(index, index + 1)


def iter_scans(paths: Iterable[str | Path]) -> Iterator[tuple[Path, Scan | ScanError]]:
    """Volume-level iteration: ``(path, Scan)`` per readable file, ``(path, ScanError)`` per bad one,
    so batch commands can go on with the rest and report failures at the end."""
    for item in paths:
        path = Path(item)
        try:
            yield path, read_scan(path)
        except ScanError as err:
            yield path, err


def find_scans(inputs: Sequence[str | Path], pattern: str = "*.h5") -> list[Path]:
    """Expand directories into their sorted ``pattern`` files; plain paths are kept as given."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        found.extend(sorted(path.glob(pattern)) if path.is_dir() else [path])
    return found


# ----------------------------------------------------------------------------------------------------
# writing fastMRI-layout scans


def stable_id(text: str, length: int = 12) -> str:
    """A short deterministic hex id (fastMRI-style anonymous ``patient_id``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _storable(value: Any) -> bool:
    if isinstance(value, str | int | float | bool | np.generic):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "biufc" and value.size <= 4096


def write_scan(path: str | Path, scan: Scan, inputs: Sequence[str | Path] = ()) -> Path:
    """Write ``scan`` as a fastMRI HDF5 file (atomically; never over an input file).

    Datasets: ``kspace`` complex64 ``[S, C, H, W]`` (single-coil scans too: fastMRI's multi-coil layout),
    ``mask`` when undersampled (a 1-D column mask as ``[W]`` like fastMRI's test files, else as held),
    ``reconstruction_rss`` when a target is known, ``ismrmrd_header`` (the scan's own, else one made from
    the shapes so fastMRI's SliceDataset can index the file), and attrs ``acquisition``, ``max``,
    ``norm``, ``patient_id`` plus the scan's other scalar attributes.
    """
    path = Path(path)
    refuse_overwriting_input(path, [Path(p) for p in inputs] + ([scan.path] if scan.path else []))
    slices, coils, height, width = scan.kspace.shape
    recon = scan.recon_size
    xml = (
        scan.header.xml
        if scan.header is not None
        else make_header(
            (height, width),
            recon,
            (height, width, 1.0),
            (recon[0], recon[1], 1.0),
            coils,
            slices,
            protocol=str(scan.attrs.get("acquisition", "unknown")),
        )
    )
    attrs = {k: v for k, v in scan.attrs.items() if _storable(v)}
    attrs.setdefault(
        "acquisition", scan.header.protocol if scan.header and scan.header.protocol else "unknown"
    )
    attrs.setdefault("patient_id", stable_id(str(scan.path or xml)))
    if scan.target is not None:
        attrs["max"] = float(scan.target.max())
        attrs["norm"] = float(np.linalg.norm(scan.target))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            out.create_dataset("kspace", data=np.ascontiguousarray(scan.kspace, dtype=np.complex64))
            if scan.mask is not None:
                mask = scan.mask[0] if scan.mask.ndim == 2 and scan.mask.shape[0] == 1 else scan.mask
                out.create_dataset("mask", data=np.asarray(mask, dtype=bool))
            if scan.target is not None:
                key = scan.target_key or "reconstruction_rss"
                out.create_dataset(key, data=np.asarray(scan.target, dtype=np.float32))
            out.create_dataset("ismrmrd_header", data=xml)
            if scan.noise_covariance is not None:
                out.create_dataset("noise_covariance", data=np.asarray(scan.noise_covariance, np.complex64))
            for key, value in attrs.items():
                out.attrs[key] = value
    return path
