"""The benchmark engine: reconstruct held-out fastMRI volumes with many methods, score them the fastMRI way.

For every method, volume and acceleration: undersample the fully sampled k-space with a fixed-seed
equispaced-fraction mask (the same mask for every method), reconstruct every slice, crop to the target,
compute volume-wise SSIM / PSNR / NMSE (:mod:`nirvana_mri.metrics`), and time the reconstruction per
slice. Methods are the classical ones (:data:`nirvana_mri.baselines.classical.CLASSICAL`, numpy on the
CPU) and learned models loaded from checkpoint folders (:func:`nirvana_mri.recon_models.load_recon_model`),
run in eval mode without gradients, in batches of slices, on the chosen device; on a GPU run they are
also timed on the CPU for a few slices so both columns are filled.

A failing method, model folder or volume is recorded in ``errors`` and the run goes on.

No command-line code here: ``nirvana_mri.commands.benchmark`` and ``benchmarks/quality.py`` call
:func:`run_benchmark` and hand its result to :mod:`nirvana_mri.report`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nirvana_mri import metrics
from nirvana_mri.physics import center_crop, ifft2c_np, rss_np

DEFAULT_ACCELS = (4, 8)
CENTER_FRACTIONS = {4: 0.08, 8: 0.04}  # fastMRI's equispaced-fraction settings for brain (4x, 8x)
MASK_TYPE = "equispaced_fraction"
# the order methods appear in tables: baselines first (E2E-VarNet given the noise-level input right after
# E2E-VarNet), then Nirvana-MRI and its ablations
METHOD_ORDER = (
    "zero_filled",
    "sense",
    "cs_l1_wavelet",
    "unet",
    "e2e_varnet",
    "e2e_varnet_noise",
    "nirvana_mri",
    "nirvana_mri_no_trigger",
    "nirvana_mri_random_backbone",
    "transformer_backbone",
    "codecs_only",
)
H5_SUFFIXES = (".h5", ".hdf5")

ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------------------------------
# methods


@dataclass
class MethodSpec:
    """One method to benchmark: classical (by registry name) or learned (a checkpoint folder)."""

    name: str
    kind: str  # "classical" | "learned"
    folder: Path | None = None


def classical_names() -> list[str]:
    from nirvana_mri.baselines.classical import CLASSICAL

    return list(CLASSICAL)


def find_model_folders(models_dir: str | Path) -> dict[str, Path]:
    """Subfolders of ``models_dir`` that hold a ``config.json`` (a saved reconstruction model), by name."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"models folder {models_dir} does not exist")
    return {p.name: p for p in sorted(models_dir.iterdir()) if (p / "config.json").is_file()}


def resolve_methods(specs: Sequence[str] | None, models_dir: str | Path | None = None) -> list[MethodSpec]:
    """Turn ``["zero_filled", "unet=PATH", "nirvana_mri", ...]`` into method specs.

    ``NAME=PATH`` is a learned model in folder PATH; a bare classical name is that classical method;
    any other bare name is the folder ``models_dir/NAME``. ``None`` means the defaults: every classical
    method plus every model folder found under ``models_dir``. Raises ``ValueError`` for an unknown
    name and ``FileNotFoundError`` for a missing model folder (one line each, for the command).
    """
    classical = classical_names()
    if specs is None:
        out = [MethodSpec(name, "classical") for name in classical]
        if models_dir is not None:
            out += [
                MethodSpec(name, "learned", folder) for name, folder in find_model_folders(models_dir).items()
            ]
        return out
    out: list[MethodSpec] = []
    for raw in specs:
        spec = raw.strip()
        if not spec:
            continue
        if "=" in spec:
            name, path = (part.strip() for part in spec.split("=", 1))
            if not name or not path:
                raise ValueError(f"method {raw!r}: expected NAME=PATH")
            folder = Path(path).expanduser()
        elif spec in classical:
            out.append(MethodSpec(spec, "classical"))
            continue
        elif models_dir is not None:
            name, folder = spec, Path(models_dir) / spec
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"method {spec!r}: no model folder {folder} "
                    f"(known classical methods: {', '.join(classical)})"
                )
        else:
            raise ValueError(
                f"unknown method {spec!r}: classical methods are {', '.join(classical)}; "
                f"learned models are given as NAME=PATH or found under --models-dir"
            )
        if not folder.is_dir():
            raise FileNotFoundError(f"method {name!r}: model folder {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"method {name!r}: {folder} has no config.json (not a saved model)")
        out.append(MethodSpec(name, "learned", folder))
    names = [m.name for m in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"method named more than once: {', '.join(duplicates)}")
    if not out:
        raise ValueError("no methods to benchmark")
    return out


def method_sort_key(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name), name) if name in METHOD_ORDER else (len(METHOD_ORDER), name)


# --------------------------------------------------------------------------------------------------
# data


def list_volumes(data_dir: str | Path) -> list[Path]:
    """fastMRI HDF5 files directly in ``data_dir`` (sorted); ``ValueError`` when there are none."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    files = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in H5_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"data folder {data_dir} holds no fastMRI .h5 files")
    return files


@dataclass
class Volume:
    name: str
    kspace: np.ndarray  # complex64 [slices, coils, H, W], fully sampled
    target: np.ndarray  # float32 [slices, h, w]
    attrs: dict[str, Any] = field(default_factory=dict)


def _read_scan(path: Path) -> tuple[np.ndarray, Any, Any, dict[str, Any]]:
    """(kspace [S,C,H,W], mask or None, target or None, attrs) through the data layer when present."""
    try:
        from nirvana_mri.data import read_scan  # the data layer (branch data)
    except ImportError:
        read_scan = None
    if read_scan is not None:
        scan = read_scan(path)
        return np.asarray(scan.kspace), scan.mask, scan.target, dict(scan.attrs or {})
    import h5py  # minimal reader until the data layer lands

    with h5py.File(path, "r") as f:
        kspace = np.asarray(f["kspace"])
        mask = np.asarray(f["mask"]) if "mask" in f else None
        key = next((k for k in ("reconstruction_rss", "reconstruction_esc") if k in f), None)
        target = np.asarray(f[key]) if key else None  # multi-coil RSS, or single-coil ESC
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    if kspace.ndim == 3:  # single-coil files: [slices, H, W]
        kspace = kspace[:, None]
    return kspace, mask, target, attrs


def load_volume(path: Path, max_slices: int | None = None) -> Volume:
    """A fully sampled volume and its target (``reconstruction_rss``, or the RSS of the k-space when the
    file has none). With ``max_slices``, the central slices only (edge slices are mostly noise)."""
    kspace, mask, target, attrs = _read_scan(path)
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ValueError(
            f"{path.name}: expected complex k-space [slices, coils, H, W], got {kspace.dtype} {kspace.shape}"
        )
    if mask is not None and not np.all(np.asarray(mask)):
        raise ValueError(
            f"{path.name}: k-space is already undersampled; the benchmark needs fully sampled data"
        )
    if max_slices is not None and kspace.shape[0] > max_slices:
        start = (kspace.shape[0] - max_slices) // 2
        sel = slice(start, start + max_slices)
    else:
        sel = slice(None)
    kspace = np.ascontiguousarray(kspace[sel]).astype(np.complex64, copy=False)
    if target is None:
        target = rss_np(ifft2c_np(kspace), axis=1)
    else:
        target = np.asarray(target)[sel]
        if target.shape[0] != kspace.shape[0]:
            raise ValueError(
                f"{path.name}: {target.shape[0]} target slices for {kspace.shape[0]} k-space slices"
            )
    return Volume(path.name, kspace, np.asarray(target, dtype=np.float32), attrs)


def make_mask(shape: tuple[int, int], accel: int, seed: int, fname: str) -> tuple[np.ndarray, int]:
    """Fixed-seed equispaced-fraction mask ``bool [1, W]`` (or ``[H, W]``) and its number of low frequencies.

    Uses the data layer's ``make_mask`` when it is installed, fastMRI's mask function otherwise; either
    way the mask depends only on (shape, accel, seed, file name), never on the method.
    """
    center_fraction = CENTER_FRACTIONS.get(accel, 0.32 / accel)
    try:
        from nirvana_mri.data import make_mask as data_make_mask
    except ImportError:
        data_make_mask = None
    if data_make_mask is not None:
        mask, num_low = data_make_mask(
            shape=tuple(shape), acceleration=accel, mask_type=MASK_TYPE, seed=seed,
            center_fraction=center_fraction, fname=fname,
        )  # fmt: skip
        return np.asarray(mask, dtype=bool), int(num_low)
    from fastmri.data.subsample import EquispacedMaskFractionFunc

    func = EquispacedMaskFractionFunc([center_fraction], [accel])
    mask_seed = (seed, zlib.crc32(fname.encode()) & 0x7FFFFFFF)
    mask, num_low = func((1, shape[0], shape[1], 2), seed=mask_seed)
    return mask.numpy().reshape(1, shape[1]).astype(bool), int(num_low)


def _crop_pair(target: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop the reconstruction to the target (fastMRI), and both to their common shape if smaller."""
    recon = center_crop(recon, target.shape[-2:])
    target = center_crop(target, recon.shape[-2:])
    return np.ascontiguousarray(target), np.ascontiguousarray(recon)


# --------------------------------------------------------------------------------------------------
# hardware


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model and count, torch / CUDA versions and the GPU's name when ``device`` is CUDA."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": None,
    }
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def software_versions() -> dict[str, str]:
    """Versions of the packages a benchmark's numbers depend on; one not installed (e.g. sigpy on a
    GPU machine that runs only learned models) reads "not installed" instead of stopping the run."""
    from importlib import metadata

    import nirvana_mri

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "nirvana_mri": getattr(nirvana_mri, "__version__", "0.1.0"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "fastmri": version("fastmri"),
        "sigpy": version("sigpy"),
    }


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    return resolved


# --------------------------------------------------------------------------------------------------
# running one method on one volume


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared tensors counted once."""
    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _learned_inputs(
    kspace: np.ndarray, mask: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy k-space [B,C,H,W] and mask [1,W] / [H,W] -> torch [B,C,H,W,2] and bool [B,1,1|H,W,1]."""
    k = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(kspace))).to(device)
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
    m = m.reshape(1, 1, *m.shape[-2:], 1).expand(k.shape[0], -1, -1, -1, -1).to(device)
    return k * m, m


def probe_inputs(path: Path, accel: int, max_slices: int | None) -> tuple[Volume, torch.Tensor, torch.Tensor]:
    """A volume's central slices with the CPU model inputs the quality benchmark gives every learned model
    at ``accel`` (its seed-0 mask): ``(volume, masked k-space [S,C,H,W,2], mask [S,1,1|H,W,1])``. For the
    probes in ``benchmarks/`` that look inside one model."""
    vol = load_volume(path, max_slices=max_slices)
    mask, _ = make_mask(vol.kspace.shape[-2:], accel, 0, vol.name)
    kspace, m = _learned_inputs(vol.kspace, mask, torch.device("cpu"))
    return vol, kspace, m


def reconstruct_learned(
    model: torch.nn.Module,
    kspace: np.ndarray,
    mask: np.ndarray,
    num_low: int,
    device: torch.device,
    batch_size: int,
) -> tuple[np.ndarray, float]:
    """All slices through the model in batches; returns (magnitudes [S,H,W], seconds) with the time
    measured around each batch (after a synchronise on GPU), transfers to and from the device included."""
    outputs, seconds = [], 0.0
    with torch.no_grad():
        for start in range(0, kspace.shape[0], batch_size):
            _sync(device)
            t0 = time.perf_counter()
            k, m = _learned_inputs(kspace[start : start + batch_size], mask, device)
            out = model(k, m, num_low)
            out = out.float().cpu().numpy()
            _sync(device)
            seconds += time.perf_counter() - t0
            outputs.append(out.reshape(-1, *out.shape[-2:]))
    return np.concatenate(outputs), seconds


def reconstruct_classical(
    fn: Callable[..., np.ndarray], kspace: np.ndarray, mask: np.ndarray, num_low: int
) -> tuple[np.ndarray, float]:
    outputs, seconds = [], 0.0
    for s in range(kspace.shape[0]):
        masked = kspace[s] * mask
        t0 = time.perf_counter()
        outputs.append(fn(masked, mask, num_low))
        seconds += time.perf_counter() - t0
    return np.stack(outputs).astype(np.float32), seconds


def _time_on_cpu(
    model: torch.nn.Module,
    kspace: np.ndarray,
    mask: np.ndarray,
    num_low: int,
    batch_size: int,
    device: torch.device,
) -> tuple[float, int] | str:
    """(seconds, slices) of the model on the CPU for a few slices, or the error text; the model goes back
    to ``device`` either way. A model that cannot run on the CPU keeps its GPU results."""
    try:
        model.cpu()
        reconstruct_learned(model, kspace[:1], mask, num_low, torch.device("cpu"), batch_size)  # warm-up
        _, seconds = reconstruct_learned(model, kspace, mask, num_low, torch.device("cpu"), batch_size)
        return seconds, int(kspace.shape[0])
    except Exception as err:  # noqa: BLE001
        return _error_text(err)
    finally:
        model.to(device)


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 500 else text[:497] + "..."


# --------------------------------------------------------------------------------------------------
# the run


def _summary_row(
    name: str, accel: int, values: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    def stat(key: str, fn: Callable[[np.ndarray], float]) -> float | None:
        arr = np.array([v[key] for v in values], dtype=np.float64)
        return float(fn(arr)) if len(arr) else None

    n_slices = sum(v["n_slices"] for v in values)
    seconds = sum(v["seconds"] for v in values)
    row = {
        "method": name,
        "accel": accel,
        "ssim_mean": stat("ssim", np.mean),
        "ssim_std": stat("ssim", np.std),
        "psnr_mean": stat("psnr", np.mean),
        "psnr_std": stat("psnr", np.std),
        "nmse_mean": stat("nmse", np.mean),
        "nmse_std": stat("nmse", np.std),
        "n_volumes": len(values),
        "n_slices": n_slices,
        "sec_per_slice_cpu": None,
        "sec_per_slice_gpu": None,
    }
    if n_slices:
        key = "sec_per_slice_gpu" if extra.get("device", "cpu").startswith("cuda") else "sec_per_slice_cpu"
        row[key] = seconds / n_slices
    row.update(extra)
    return row


def run_benchmark(
    data_dir: str | Path,
    methods: Sequence[MethodSpec],
    accels: Sequence[int] = DEFAULT_ACCELS,
    *,
    max_volumes: int | None = None,
    max_slices_per_volume: int | None = None,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    cpu_timing_slices: int = 2,
    data_description: str | None = None,
    command: str | None = None,
    progress: ProgressFn | None = None,
    classical_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Benchmark ``methods`` on the volumes in ``data_dir``; returns the results dictionary.

    The dictionary is JSON-ready except ``examples`` (numpy images for the report's figures: the
    middle slice of the first volume that reconstructs, per acceleration, target and every method).
    ``cpu_timing_slices``: on a GPU run, time each learned model on the CPU on this many slices of the
    first volume too (0: skip). ``classical_options``: keyword arguments per classical method (e.g.
    ``{"sense": {"lamda": 0.01}}``: regularisation tuned on the user's own validation data).
    """
    classical_options = classical_options or {}
    files = list_volumes(data_dir)
    if max_volumes is not None:
        files = files[: max(int(max_volumes), 0)]
    accels = [int(a) for a in accels]
    torch_device = resolve_device(device)
    started = datetime.now(timezone.utc)
    per_volume: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    examples: dict[str, Any] = {"volume": None, "slice": None, "accels": {}}
    volume_info: dict[str, dict[str, Any]] = {}
    bad_volumes: dict[str, str] = {}
    total, done = len(methods) * len(files), 0

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, message)

    def volumes():
        for index, path in enumerate(files):
            if path.name in bad_volumes:
                yield index, path, None
                continue
            try:
                vol = load_volume(path, max_slices_per_volume)
            except Exception as err:  # noqa: BLE001 - recorded, the run goes on
                bad_volumes[path.name] = _error_text(err)
                errors.append(
                    {"method": None, "accel": None, "volume": path.name, "error": bad_volumes[path.name]}
                )
                yield index, path, None
                continue
            volume_info.setdefault(
                path.name,
                {
                    "slices": int(vol.kspace.shape[0]),
                    "coils": int(vol.kspace.shape[1]),
                    "kspace_shape": list(vol.kspace.shape[-2:]),
                    "target_shape": list(vol.target.shape[-2:]),
                    "acquisition": vol.attrs.get("acquisition"),
                },
            )
            yield index, path, vol

    masks: dict[tuple[str, int], tuple[np.ndarray, int]] = {}

    def mask_for(vol: Volume, accel: int) -> tuple[np.ndarray, int]:
        key = (vol.name, accel)
        if key not in masks:
            masks[key] = make_mask(vol.kspace.shape[-2:], accel, seed, vol.name)
        return masks[key]

    for spec in methods:
        model, config, fn = None, {}, None
        extra: dict[str, Any] = {"kind": spec.kind}
        try:
            if spec.kind == "classical":
                from nirvana_mri.baselines.classical import CLASSICAL

                fn = functools.partial(CLASSICAL[spec.name], **classical_options.get(spec.name, {}))
                extra.update(device="cpu", params=0, trainable_params=0)
            else:
                from nirvana_mri.recon_models import load_recon_model, training_metadata

                model, config = load_recon_model(spec.folder, map_location=torch_device)
                model.eval()
                n_total, n_train = parameter_counts(model)
                extra.update(
                    device=str(torch_device),
                    params=n_total,
                    trainable_params=n_train,
                    registry_method=config.get("method"),
                    folder=str(spec.folder),
                    training=training_metadata(config),
                    model_args=config.get("model_args"),
                )
        except Exception as err:  # noqa: BLE001
            errors.append({"method": spec.name, "accel": None, "volume": None, "error": _error_text(err)})
            for _ in files:
                tick(f"{spec.name}: failed to load")
            for accel in accels:  # rows without numbers, so the tables show the failure
                rows.append(
                    {
                        **_summary_row(
                            spec.name, accel, [], {"kind": spec.kind, "device": str(torch_device)}
                        ),
                        "params": None,
                        "trainable_params": None,
                        "errors": 1,
                    }
                )
            continue

        results: dict[int, list[dict[str, Any]]] = {a: [] for a in accels}
        cpu_seconds: dict[int, tuple[float, int]] = {}
        warmed = False
        for _index, path, vol in volumes():
            if vol is None:
                tick(f"{spec.name} {path.name}: skipped")
                continue
            for accel in accels:
                try:
                    mask, num_low = mask_for(vol, accel)
                    if fn is not None:
                        recon, seconds = reconstruct_classical(fn, vol.kspace, mask, num_low)
                    else:
                        if not warmed:  # first call: allocations, cuDNN autotuning; not timed
                            reconstruct_learned(
                                model, vol.kspace[:1], mask, num_low, torch_device, batch_size
                            )
                            warmed = True
                        recon, seconds = reconstruct_learned(
                            model, vol.kspace, mask, num_low, torch_device, batch_size
                        )
                        if torch_device.type == "cuda" and cpu_timing_slices > 0 and accel not in cpu_seconds:
                            cpu_seconds[accel] = _time_on_cpu(
                                model, vol.kspace[:cpu_timing_slices], mask, num_low, batch_size, torch_device
                            )
                    target, cropped = _crop_pair(vol.target, recon)
                    scores = metrics.all_metrics(target, cropped)
                    entry = {
                        "method": spec.name,
                        "accel": accel,
                        "volume": vol.name,
                        "n_slices": int(recon.shape[0]),
                        "seconds": seconds,
                        "sec_per_slice": seconds / max(recon.shape[0], 1),
                        **scores,
                    }
                    results[accel].append(entry)
                    per_volume.append({k: v for k, v in entry.items() if k != "seconds"})
                    if examples["volume"] in (None, vol.name):
                        _store_example(examples, vol, accel, spec.name, target, cropped, recon, mask, num_low)
                except Exception as err:  # noqa: BLE001
                    errors.append(
                        {"method": spec.name, "accel": accel, "volume": vol.name, "error": _error_text(err)}
                    )
            tick(f"{spec.name} {vol.name}")
        for accel in accels:
            row = _summary_row(spec.name, accel, results[accel], extra)
            if isinstance(cpu_seconds.get(accel), tuple):
                row["sec_per_slice_cpu"] = cpu_seconds[accel][0] / cpu_seconds[accel][1]
                row["cpu_timing_slices"] = cpu_seconds[accel][1]
            elif accel in cpu_seconds:
                row["cpu_timing_error"] = cpu_seconds[accel]
            row["errors"] = sum(1 for e in errors if e["method"] == spec.name and e["accel"] in (accel, None))
            rows.append(row)
        del model
        if torch_device.type == "cuda":
            torch.cuda.empty_cache()

    rows.sort(key=lambda r: (r["accel"], method_sort_key(r["method"])))
    return {
        "rows": rows,
        "per_volume": per_volume,
        "errors": errors,
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(timezone.utc) - started).total_seconds(), 1),
        "hardware": hardware_info(torch_device),
        "software": software_versions(),
        "data": {
            "dir": str(Path(data_dir)),
            "description": data_description,
            "n_volumes": len(files),
            "volumes": volume_info,
            "unreadable": bad_volumes,
            "n_slices": int(sum(v["slices"] for v in volume_info.values())),
        },
        "settings": {
            "accels": accels,
            "mask_type": MASK_TYPE,
            "center_fractions": {str(a): CENTER_FRACTIONS.get(a, 0.32 / a) for a in accels},
            "seed": seed,
            "max_volumes": max_volumes,
            "max_slices_per_volume": max_slices_per_volume,
            "batch_size": batch_size,
            "device": str(torch_device),
            "cpu_timing_slices": cpu_timing_slices,
            "classical_options": classical_options,
            "metrics": "fastMRI: volume-wise SSIM (7x7, data range = volume max of the target), PSNR, NMSE "
            "on magnitude images cropped to the target",
        },
        "methods": [
            {"name": m.name, "kind": m.kind, "folder": str(m.folder) if m.folder else None} for m in methods
        ],
        "examples": examples,
    }


def _store_example(
    examples: dict[str, Any],
    vol: Volume,
    accel: int,
    name: str,
    target: np.ndarray,
    cropped: np.ndarray,
    recon: np.ndarray,
    mask: np.ndarray,
    num_low: int,
) -> None:
    """Keep the middle slice of the example volume: target, zero-filled and this method's output."""
    s = target.shape[0] // 2
    if examples["volume"] is None:
        examples["volume"], examples["slice"] = vol.name, s
    per_accel = examples["accels"].setdefault(accel, {"methods": {}})
    if "target" not in per_accel:
        per_accel["target"] = target[s].astype(np.float32)
        zf = rss_np(ifft2c_np(vol.kspace[s] * mask), axis=0)
        per_accel["zero_filled"] = center_crop(zf, target.shape[-2:]).astype(np.float32)
        per_accel["mask"] = np.broadcast_to(np.asarray(mask, bool), vol.kspace.shape[-2:]).copy()
    per_accel["methods"][name] = cropped[s].astype(np.float32)
