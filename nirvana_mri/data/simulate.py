"""Simulated fastMRI multi-coil data from real anatomy, so the whole pipeline runs and is tested.

The forward model, per slice: image ``x`` (magnitude with a smooth synthetic phase, or a complex image
with its real phase) -> optional 2x readout oversampling (the object sits in the central half of a
doubled FOV along H, like fastMRI brain) -> coil images ``S_c x`` with Biot-Savart loop sensitivities
(:mod:`.coils`) -> plus complex Gaussian noise, optionally correlated across coils -> centred
orthonormal FFT = the stored k-space. The stored ``reconstruction_rss`` is computed exactly as fastMRI
computes its targets: RSS of the inverse FFT of the stored (noisy, fully sampled) k-space, centre-
cropped to the recon matrix.

SNR: ``snr`` is the mean object magnitude of ``x`` divided by the per-coil noise standard deviation.
Maps are normalised so that ``sum_c |S_c|^2`` averages 1 over the object, so it is (on average) the SNR
of the optimally coil-combined image; RSS images show about that SNR inside the object.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..io_utils import atomic_path, atomic_write_text
from ..physics import fft2c_np, ifft2c_np
from .coils import coarse_grid, coarse_maps, head_array, noise_covariance, normalise_maps, upsample_maps
from .header import make_header
from .scan import center_crop_np, stable_id
from .sources import SourceInfo, SourceVolume, load_sources, sequence_parameters

SPLITS = ("train", "val", "test")
DEFAULT_SNR = 30.0


def rss_target(kspace: np.ndarray, recon_size: tuple[int, int]) -> np.ndarray:
    """fastMRI's target: RSS over coils of the inverse FFT of k-space ``[..., C, H, W]``, centre-cropped."""
    images = ifft2c_np(kspace)
    rss = np.sqrt(np.sum(images.real.astype(np.float64) ** 2 + images.imag.astype(np.float64) ** 2, axis=-3))
    return center_crop_np(rss, recon_size).astype(np.float32)


def smooth_phase(
    num_slices: int, shape: tuple[int, int], rng: np.random.Generator, terms: int = 6
) -> np.ndarray:
    """A smooth random phase ``[S, H, W]`` (radians): a few low-frequency waves (<= 1.5 cycles per FOV)
    plus a linear ramp, drifting slowly from slice to slice, like B0 / transmit phase in real scans."""
    h, w = shape
    y = (np.arange(h) - h / 2) / h
    x = (np.arange(w) - w / 2) / w
    z = np.linspace(-0.5, 0.5, num_slices) if num_slices > 1 else np.zeros(1)
    freq = rng.uniform(-1.5, 1.5, (terms, 2))
    amp = rng.normal(0.0, 0.6, terms)
    drift = rng.normal(0.0, 0.5, terms)
    offset = rng.uniform(-np.pi, np.pi, terms)
    ramp = rng.normal(0.0, 1.0, 2)
    base = (ramp[0] * y[:, None] + ramp[1] * x[None, :]).astype(np.float32)
    phase = np.empty((num_slices, h, w), dtype=np.float32)
    for s in range(num_slices):
        # cos(2 pi fy y + c + 2 pi fx x) = cos(a) cos(b) - sin(a) sin(b): outer products of 1-D
        # vectors, far cheaper than 2-D cosines (and than tiny matrix products through BLAS)
        field = base.copy()
        weights = amp * (1 + 0.5 * drift * z[s])
        for k in range(terms):
            a = 2 * np.pi * freq[k, 0] * y + offset[k] + drift[k] * z[s]
            b = 2 * np.pi * freq[k, 1] * x
            field += np.float32(weights[k]) * (
                np.multiply.outer(np.cos(a), np.cos(b)) - np.multiply.outer(np.sin(a), np.sin(b))
            ).astype(np.float32)
        phase[s] = field
    return phase + np.float32(rng.uniform(-np.pi, np.pi))


def object_mask(magnitude: np.ndarray) -> np.ndarray:
    """Pixels that belong to the object: above 10 % of the 99th percentile of the magnitude."""
    top = float(np.percentile(magnitude, 99)) if magnitude.size else 0.0
    return magnitude > 0.1 * top if top > 0 else np.ones_like(magnitude, dtype=bool)


@dataclass
class SimulatedVolume:
    kspace: np.ndarray  # [S, C, H, W] complex64 (H doubled when oversampled)
    target: np.ndarray  # [S, h, w] float32
    sensitivities: np.ndarray | None  # [S, C, H, W] complex64 when kept
    noise_std: float
    noise_covariance: np.ndarray  # [C, C] relative covariance (mean diagonal 1)
    image: np.ndarray  # [S, H, W] complex64 object (after phase / oversampling padding)


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread for the small per-slice GEMMs: OpenBLAS worker threads spin between
    calls and starve the threaded FFT and numpy work around them (measured 2.4x slower on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional (installed with scikit-learn, which nilearn requires)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def simulate_volume(
    images: np.ndarray,
    coils: int = 16,
    snr: float | None = DEFAULT_SNR,
    rng: np.random.Generator | int = 0,
    oversample: bool = False,
    pixel_mm: float = 1.0,
    slice_mm: float = 5.0,
    noise_correlation: float = 0.0,
    keep_sensitivities: bool = False,
) -> SimulatedVolume:
    """Multi-coil k-space for a stack of images ``[S, H, W]`` (real magnitude or complex).

    Real input gets a smooth synthetic phase; complex input keeps its phase. ``snr=None`` adds no
    noise (useful for tests of the forward model). Vectorised per slice; see the module docstring for
    the model and the SNR definition.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or min(images.shape) < 1:
        raise ValueError(f"images must be [slices, H, W], got shape {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN/Inf values")
    if not 1 <= int(coils) <= 64:
        raise ValueError(f"coils must be in 1..64, got {coils}")
    if snr is not None and not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    slices, height, width = images.shape
    if np.iscomplexobj(images):
        obj = images.astype(np.complex64)
    else:
        magnitude = np.clip(images.astype(np.float32), 0, None)
        obj = (magnitude * np.exp(1j * smooth_phase(slices, (height, width), rng))).astype(np.complex64)
    if oversample:
        padded = np.zeros((slices, 2 * height, width), dtype=np.complex64)
        top = height // 2
        padded[:, top : top + height] = obj
        obj = padded
    full_h = obj.shape[1]

    array = head_array(int(coils), rng)
    grid = coarse_grid((full_h, width))
    z_mm = (np.arange(slices) - (slices - 1) / 2) * slice_mm
    maps = coarse_maps(array, (full_h * pixel_mm, width * pixel_mm), z_mm, grid)
    magnitude = np.abs(obj)
    inside = object_mask(magnitude)
    weight = F.interpolate(torch.from_numpy(inside.astype(np.float32))[:, None], size=grid, mode="area")[:, 0]
    maps = normalise_maps(maps, weight.numpy() > 0.5)

    covariance = noise_covariance(array, noise_correlation, rng)
    diagonal = np.allclose(covariance, np.diag(np.diag(covariance)))
    mixing = (np.sqrt(np.diag(covariance))[:, None] if diagonal else np.linalg.cholesky(covariance)).astype(
        np.complex64
    )
    noise_std = 0.0 if snr is None else float(magnitude[inside].mean()) / float(snr)

    kspace = np.empty((slices, int(coils), full_h, width), dtype=np.complex64)
    target = np.empty((slices, height, width), dtype=np.float32)
    kept = np.empty_like(kspace) if keep_sensitivities else None
    noise_generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    with _single_threaded_blas():
        for s in range(slices):
            _simulate_slice_into(
                s, maps, obj, mixing, diagonal, noise_std, noise_generator, kspace, target, kept
            )
    return SimulatedVolume(kspace, target, kept, noise_std, covariance, obj)


def _simulate_slice_into(
    index: int,
    maps: np.ndarray,
    obj: np.ndarray,
    mixing: np.ndarray,
    diagonal: bool,
    noise_std: float,
    noise_generator: torch.Generator,
    kspace: np.ndarray,
    target: np.ndarray,
    kept: np.ndarray | None,
) -> None:
    """Coil images, noise, FFT and RSS target of slice ``index``, written into the volume arrays."""
    coils, full_h, width = kspace.shape[1:]
    height = target.shape[1]
    sens = upsample_maps(maps[index], (full_h, width))
    coil_images = sens * obj[index][None]
    if noise_std > 0:
        # interleaved float32 normals viewed as complex64: real and imaginary parts each N(0, 1); torch's
        # generator (seeded from the volume's numpy generator) is twice as fast and thread-count independent
        normals = torch.randn(coils, 2 * full_h * width, generator=noise_generator).numpy()
        noise = normals.view(np.complex64)
        scaled = mixing * np.float32(noise_std / np.sqrt(2))  # [C, 1] gains, or the Cholesky factor
        noise = noise * scaled if diagonal else scaled @ noise
        coil_images += noise.reshape(coils, full_h, width)
    kspace[index] = fft2c_np(coil_images)
    # fastMRI's target is the RSS of ifft2c(k-space); ifft2c(fft2c(x)) = x up to float rounding
    # (~1e-7 relative, checked by the tests), so take it from the coil images and save an FFT
    power = np.sum(np.square(coil_images.view(np.float32)), axis=0)  # [H, 2W]: re^2, im^2 interleaved
    rss = np.sqrt(power[:, 0::2] + power[:, 1::2])
    target[index] = center_crop_np(rss, (height, width))
    if kept is not None:
        kept[index] = sens


def simulate_slice(
    image: np.ndarray,
    coils: int = 8,
    snr: float | None = DEFAULT_SNR,
    seed: int = 0,
    oversample: bool = False,
    noise_correlation: float = 0.0,
) -> SimulatedVolume:
    """One slice (``[H, W]``) through :func:`simulate_volume`; results keep a slice axis of 1."""
    return simulate_volume(
        np.asarray(image)[None],
        coils=coils,
        snr=snr,
        rng=seed,
        oversample=oversample,
        noise_correlation=noise_correlation,
        keep_sensitivities=True,
    )


# ----------------------------------------------------------------------------------------------------
# splits


def split_counts(count: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Subjects per split: proportional (largest remainder), at least one each where possible,
    filled in the order train, val, test when there are fewer than three subjects."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(
            f"splits must be three non-negative fractions (train, val, test), got {list(fractions)}"
        )
    fractions = fractions / fractions.sum()
    raw = fractions * count
    counts = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - counts), kind="stable")[: count - counts.sum()]:
        counts[index] += 1
    for index in range(3):  # a requested split gets at least one subject when others can spare one
        if fractions[index] > 0 and counts[index] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[index] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def assign_splits(subject_keys: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Subject key -> split, never by slice: a seeded permutation of each source's subjects.

    Keys are ``"<namespace>:<id>"``; subjects are split per namespace (stratified by source), so every
    source with enough subjects appears in every split, and keys shared by several files (the same
    person in T1 and FLAIR) get one split.
    """
    groups: dict[str, list[str]] = {}
    for key in sorted(set(subject_keys)):
        groups.setdefault(key.rsplit(":", 1)[0], []).append(key)
    result = {}
    for namespace, keys in groups.items():
        order = np.random.default_rng([seed, 11, zlib.crc32(namespace.encode("utf-8"))]).permutation(
            len(keys)
        )
        n_train, n_val, _ = split_counts(len(keys), fractions)
        for rank, index in enumerate(order):
            result[keys[index]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return result


# ----------------------------------------------------------------------------------------------------
# writing


def write_simulated(
    path: Path,
    volume: SourceVolume,
    sim: SimulatedVolume,
    acquisition: str,
    oversample: bool,
    extra_attrs: dict[str, Any],
) -> None:
    """One fastMRI multi-coil file (atomic)."""
    slices, coils, height, width = sim.kspace.shape
    h, w = sim.target.shape[-2:]
    pixel = volume.pixel_mm
    patient = stable_id(volume.subject_key)
    xml = make_header(
        encoded_size=(height, width),
        recon_size=(h, w),
        encoded_fov_mm=(height * pixel, width * pixel, volume.slice_mm),
        recon_fov_mm=(h * pixel, w * pixel, volume.slice_mm),
        num_coils=coils,
        num_slices=slices,
        protocol=acquisition,
        patient_id=patient,
        sequence=sequence_parameters(volume.contrast),
    )
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as out:
            out.create_dataset("kspace", data=sim.kspace)
            out.create_dataset("reconstruction_rss", data=sim.target)
            out.create_dataset("ismrmrd_header", data=xml)
            out.attrs["acquisition"] = acquisition
            out.attrs["max"] = float(sim.target.max())
            out.attrs["norm"] = float(np.linalg.norm(sim.target))
            out.attrs["patient_id"] = patient
            out.attrs["simulated"] = True
            out.attrs["oversampled"] = bool(oversample)
            for key, value in extra_attrs.items():
                out.attrs[key] = value


def _volume_rng(seed: int, name: str) -> np.random.Generator:
    """Each volume's randomness depends only on (seed, its name): order and subsets do not matter."""
    return np.random.default_rng([int(seed) % (2**32), zlib.crc32(name.encode("utf-8"))])


def _snr_range(snr: float | tuple[float, float]) -> tuple[float, float]:
    low, high = (snr, snr) if isinstance(snr, int | float) else tuple(snr)
    if not (low > 0 and high >= low):
        raise ValueError(f"snr must be positive (a range: 0 < low <= high), got {snr}")
    return float(low), float(high)


def _volume_snr(snr_range: tuple[float, float], seed: int, name: str) -> float:
    """The volume's SNR: the value, or log-uniform in the range from a stream of its own."""
    low, high = snr_range
    if low == high:
        return low
    u = _volume_rng(seed, name + ":snr").random()
    return float(np.exp(np.log(low) + u * (np.log(high) - np.log(low))))


def simulate_dataset(
    out_dir: str | Path,
    source: str | Path | Sequence[str | Path] = "mni152",
    coils: int = 16,
    snr: float | tuple[float, float] = DEFAULT_SNR,
    seed: int = 0,
    matrix: int | None = 256,
    oversample: bool = False,
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    slices_per_volume: int | None = None,
    max_subjects: int | None = None,
    noise_correlation: float = 0.0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a fastMRI-format multi-coil dataset ``out_dir/{train,val,test}/*.h5`` + ``manifest.json``.

    ``source``: ``"mni152"`` (default; pseudo-subjects of nilearn's template, ``max_subjects`` of them,
    default 6), an HDF5 file with ``images`` [N, H, W] and ``subject`` [N] (e.g. the shared anatomy
    files), a NIfTI volume, a PNG file or a directory of PNGs, or a list of these. Each subject becomes
    one volume file; splits are drawn by subject, per source (``splits`` = train/val/test fractions).
    ``matrix`` resamples every image onto a common square grid (aspect ratio kept, zero-padded; ``None``
    keeps native grids). ``slices_per_volume`` picks that many evenly spaced slices through each
    subject (default: 8 for mni152 slabs, all slices with signal for files). ``max_subjects`` caps the
    subjects taken from each source. ``snr`` is one value, or a range ``(low, high)`` from which each
    volume draws its own, log-uniformly (seeded by its name): a model trained on one noise level
    learns that level's noise floor and paints it onto cleaner scans. Returns a summary (files per
    split, counts, seconds).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    if not 1 <= int(coils) <= 64:
        raise ValueError(f"coils must be in 1..64, got {coils}")
    snr_range = _snr_range(snr)
    if matrix is not None and not 16 <= int(matrix) <= 1024:
        raise ValueError(f"matrix must be in 16..1024 (or None), got {matrix}")
    if slices_per_volume is not None and slices_per_volume < 1:
        raise ValueError(f"slices_per_volume must be >= 1, got {slices_per_volume}")
    if max_subjects is not None and max_subjects < 1:
        raise ValueError(f"max_subjects must be >= 1, got {max_subjects}")
    if not 0.0 <= noise_correlation < 1.0:
        raise ValueError(f"noise correlation must be in [0, 1), got {noise_correlation}")
    split_counts(3, splits)  # validates the fractions
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not overwrite:
        raise ValueError(
            f"{out} already holds a simulated dataset (manifest.json); choose another "
            "directory or overwrite it (overwrite=True, --overwrite)"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")

    volumes, infos = load_sources(source, matrix, slices_per_volume, max_subjects, seed)
    if not volumes:
        raise ValueError("the sources hold no images")
    if manifest_path.exists():  # overwrite: remove what the previous run wrote, nothing else
        _remove_previous(out, manifest_path)
    assignment = assign_splits([v.subject_key for v in volumes], splits, seed)

    files: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    used_names: set[str] = set()
    total_slices = 0
    for spec in tqdm(volumes, desc="simulate", unit="volume", disable=not progress):
        volume = spec.load()
        acquisition = f"{volume.orientation}{volume.contrast}"
        name = f"sim_{acquisition}_{volume.name}"
        while name in used_names:
            name += "-b"
        used_names.add(name)
        split = assignment[volume.subject_key]
        volume_snr = _volume_snr(snr_range, seed, name)
        sim = simulate_volume(
            volume.images,
            coils=coils,
            snr=volume_snr,
            rng=_volume_rng(seed, name),
            oversample=oversample,
            pixel_mm=volume.pixel_mm,
            slice_mm=volume.slice_mm,
            noise_correlation=noise_correlation,
        )
        path = out / split / f"{name}.h5"
        write_simulated(
            path,
            volume,
            sim,
            acquisition,
            oversample,
            {
                "snr": volume_snr,
                "source": volume.source,
                "subject": volume.subject_key,
                "seed": int(seed),
            },
        )
        total_slices += sim.kspace.shape[0]
        files[split].append(
            {
                "file": f"{split}/{name}.h5",
                "subject": volume.subject_key,
                "source": volume.source,
                "acquisition": acquisition,
                "slices": int(sim.kspace.shape[0]),
                "kspace_shape": list(sim.kspace.shape),
                "target_shape": list(sim.target.shape),
                "noise_std": sim.noise_std,
                "snr": volume_snr,
            }
        )
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    manifest = _manifest(
        infos,
        files,
        assignment,
        locals_of_call={
            "source": [str(s) for s in ([source] if isinstance(source, str | Path) else source)],
            "coils": int(coils),
            "snr": snr_range[0] if snr_range[0] == snr_range[1] else list(snr_range),
            "seed": int(seed),
            "matrix": matrix,
            "oversample": bool(oversample),
            "splits": [float(f) for f in splits],
            "slices_per_volume": slices_per_volume,
            "max_subjects": max_subjects,
            "noise_correlation": float(noise_correlation),
        },
    )
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return {
        "out_dir": str(out),
        "manifest": str(manifest_path),
        "files": {split: [out / item["file"] for item in files[split]] for split in SPLITS},
        "volumes": sum(len(v) for v in files.values()),
        "slices": total_slices,
        "subjects": {split: sorted({item["subject"] for item in files[split]}) for split in SPLITS},
        "seconds": time.perf_counter() - started,
    }


def _remove_previous(out: Path, manifest_path: Path) -> None:
    try:
        previous = json.loads(manifest_path.read_text())
        listed = [item["file"] for split in SPLITS for item in previous.get("splits", {}).get(split, [])]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{manifest_path} is unreadable; remove {out} yourself to start afresh") from None
    for relative in listed:
        target = (out / relative).resolve()
        if target.parent.parent == out.resolve() and target.suffix == ".h5" and target.exists():
            target.unlink()
    manifest_path.unlink()


def _manifest(
    infos: list[SourceInfo],
    files: dict[str, list[dict[str, Any]]],
    assignment: dict[str, str],
    locals_of_call: dict[str, Any],
) -> dict[str, Any]:
    from .. import __name__ as package

    one_brain = any(info.name == "mni152" for info in infos)
    return {
        "generator": f"{package} simulate",
        "parameters": locals_of_call,
        "forward_model": "image (smooth synthetic phase for magnitude sources, real phase kept for complex "
        "ones) x Biot-Savart loop-array sensitivities (sum |S|^2 ~ 1 over the object) + complex Gaussian "
        "noise (optionally correlated) -> centred orthonormal FFT; reconstruction_rss = RSS of the inverse "
        "FFT of the stored k-space, centre-cropped to the recon matrix (fastMRI's definition)",
        "sources": [info.__dict__ for info in infos],
        "derived_from_one_brain": one_brain,
        "notes": [info.note for info in infos if info.note],
        "split_by": "subject, stratified by source (never by slice)",
        "subjects": {split: sorted(k for k, v in assignment.items() if v == split) for split in SPLITS},
        "splits": files,
        "counts": {
            split: {"volumes": len(files[split]), "slices": sum(i["slices"] for i in files[split])}
            for split in SPLITS
        },
    }


def simulate_demo_scan(path: str | Path, seed: int = 0, slices: int = 3, coils: int = 16,
                       matrix: int = 256) -> Path:
    """One small fully sampled fastMRI file from an MNI152 pseudo-subject (the README's demo scan)."""
    from .sources import mni_pseudo_subject

    path = Path(path)
    volume = mni_pseudo_subject(0, seed, matrix, slices)
    sim = simulate_volume(volume.images, coils=coils, rng=_volume_rng(seed, volume.name),
                          pixel_mm=volume.pixel_mm, slice_mm=volume.slice_mm)
    write_simulated(path, volume, sim, f"{volume.orientation}{volume.contrast}", oversample=False,
                    extra_attrs={"source": "mni152", "demo": True})
    return path
