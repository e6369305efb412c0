"""Reconstruction of scans with a learned model: files in, fastMRI-format reconstructions out.

A fully sampled scan is undersampled retrospectively (fastMRI masks, seeded by the file name); an
already undersampled scan (a stored mask, or exact zeros in k-space) is used as measured. When a
target exists, SSIM / PSNR / NMSE are computed the fastMRI way on the target's grid, for the model
and for the zero-filled reconstruction. One bad file is reported and skipped; the rest are written.
"""

from __future__ import annotations

import copy
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nirvana_mri import metrics
from nirvana_mri.codecs.background import DEFAULT_BACKGROUND
from nirvana_mri.codecs.refine import DEFAULT_REFINE
from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.physics import center_crop, estimate_snr, low_frequency_mask, zero_filled
from nirvana_mri.recon_models import load_recon_model, read_recon_config


def default_model_path() -> Path:
    """Folder of the default Nirvana-MRI model bundled with the package."""
    return Path(__file__).resolve().parent / "weights" / "default"


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(choice)


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu",
               refine: bool = False, background_floor: bool | None = None) -> tuple[torch.nn.Module, dict]:
    """The model folder (``None`` / ``"bundled"``: the packaged default) in eval mode; ``refine`` switches
    on the clean-scan compressed-sensing step (codecs/refine.py) and ``background_floor`` the noise floor
    outside the object (codecs/background.py), which only Nirvana-MRI models have; ``None`` leaves it as
    the model's config says (the bundled model: on), ``False`` switches it off."""
    folder = default_model_path() if path in (None, "bundled") else Path(path)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no reconstruction model at {folder}")
    steps = {"--refine": ("refine", DEFAULT_REFINE, refine),
             "--background-floor": ("background", DEFAULT_BACKGROUND, bool(background_floor))}
    overrides = {key: value for key, value, wanted in steps.values() if wanted}
    if background_floor is False and read_recon_config(folder)["method"] == "nirvana_mri":
        overrides["background"] = None  # off, whatever the saved config says
    overrides = overrides or None
    if overrides and read_recon_config(folder)["method"] != "nirvana_mri":
        flags = " and ".join(flag for flag, (_, _, wanted) in steps.items() if wanted)
        raise ValueError(f"{flags} needs a Nirvana-MRI model; {folder} is not one")
    model, config = load_recon_model(folder, map_location=device, overrides=overrides)
    return model.eval(), config


def supports_cuda_graphs(model: torch.nn.Module) -> bool:
    """A Nirvana-MRI model with a backbone: the models ``--cuda-graphs`` applies to."""
    return hasattr(model, "use_cuda_graphs") and model.backbone.backbone is not None


def wants_cuda_graphs(option: bool | None, device: torch.device, model: torch.nn.Module) -> bool:
    """Whether to replay the backbone from CUDA graphs: ``--cuda-graphs`` (True), ``--no-cuda-graphs`` (False) or
    neither (None: on for Nirvana-MRI models on a GPU, where it measured 2.0-4.1x faster per slice than eager
    with equal output; benchmarks/results/graph_reconstruct.md)."""
    if option is None:
        return device.type == "cuda" and supports_cuda_graphs(model)
    return option


def enable_cuda_graphs(model: torch.nn.Module) -> None:
    """``--cuda-graphs``: the backbone's inference forward replayed from CUDA graphs (backbone/graphs.py)."""
    if not supports_cuda_graphs(model):
        raise ValueError("--cuda-graphs needs a Nirvana-MRI model with a backbone")
    model.use_cuda_graphs()


@dataclass
class PreparedScan:
    masked_kspace: torch.Tensor  # [S, C, H, W, 2]
    mask: torch.Tensor  # [1 or S, 1, 1|H, W, 1] (one mask for the volume, or one per slice)
    num_low_frequencies: int | None
    retrospective: bool  # True: we undersampled a fully sampled scan
    acceleration: float  # measured fraction^-1
    info: dict[str, Any] = field(default_factory=dict)


def prepare_scan(scan, acceleration: int, mask_type: str, seed: int, name: str) -> PreparedScan:
    """Masked k-space and mask as torch tensors, undersampling retrospectively when needed."""
    from nirvana_mri.data import make_mask

    kspace = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(scan.kspace)))
    if scan.mask is None:
        mask_np, num_low = make_mask(scan.shape, acceleration, mask_type, seed=seed, fname=name)
        retrospective = True
    else:  # [1, W], [H, W], [S, 1, W] or [S, H, W] (the data layer's normal forms)
        mask_np, num_low, retrospective = scan.mask, None, False
    mask_np = np.asarray(mask_np, dtype=np.float32)
    mask = torch.from_numpy(np.ascontiguousarray(mask_np.reshape(-1, *mask_np.shape[-2:])))[:, None, :, :, None]
    if not bool(low_frequency_mask(mask).any(dim=(1, 2, 3, 4)).all()):
        raise ValueError(f"{name}: the measured k-space has no sampled centre (auto-calibration lines): "
                         "coil sensitivities are estimated from it")
    sampled = float(np.broadcast_to(mask_np, (*mask_np.shape[:-2], *scan.shape)).mean())
    return PreparedScan(kspace * mask, mask, num_low, retrospective, 1.0 / max(sampled, 1e-9))


def slice_masks(prepared: PreparedScan, start: int, count: int) -> torch.Tensor:
    """Masks ``[count, 1, 1|H, W, 1]`` of slices ``start .. start + count``."""
    if prepared.mask.shape[0] == 1:
        return prepared.mask.expand(count, -1, -1, -1, -1)
    return prepared.mask[start : start + count]


@torch.no_grad()
def run_model(model: torch.nn.Module, prepared: PreparedScan, device: torch.device, batch_size: int = 4,
              bf16: bool = False) -> np.ndarray:
    """Magnitude reconstruction ``[S, H, W]`` of every slice, in batches."""
    outputs = []
    for start in range(0, prepared.masked_kspace.shape[0], batch_size):
        chunk = prepared.masked_kspace[start : start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(chunk, slice_masks(prepared, start, chunk.shape[0]).to(device), prepared.num_low_frequencies)
        outputs.append(out.float().cpu())
    return torch.cat(outputs).numpy()


def _hidden_kspace_loss(model: torch.nn.Module, measured: torch.Tensor, keep: torch.Tensor,
                        hidden: torch.Tensor) -> torch.Tensor:
    """Relative L1 error of the model's k-space on ``hidden`` samples, seeing only ``keep``."""
    _, kspace = model(measured * keep, keep.float(), None, return_kspace=True)
    hidden = hidden.expand_as(kspace)
    return (kspace[hidden] - measured[hidden]).abs().mean() / measured[hidden].abs().mean().clamp_min(1e-12)


def _random_subset(mask: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A random ``fraction`` of the measured samples outside the calibration region (bool)."""
    candidates = mask.bool() & ~low_frequency_mask(mask).bool()
    scores = torch.rand(mask.shape, generator=generator).to(mask.device)
    subset = (scores < fraction) & candidates
    if candidates.any() and not subset.any():  # small scans: at least one sample, else the loss is empty
        subset = scores == scores.masked_fill(~candidates, 2.0).min()
    return subset


def adapt_to_scan(model: torch.nn.Module, prepared: PreparedScan, device: torch.device, steps: int,
                  lr: float = 1e-4, holdout: float = 0.2, validation: float = 0.1, check_every: int = 2,
                  seed: int = 0) -> torch.nn.Module:
    """Self-supervised test-time adaptation on the measured k-space alone (in the spirit of the
    Trigger), with self-validated early stopping (as in zero-shot self-supervised learning, ZS-SSL).

    A fixed ``validation`` fraction of the measured samples (outside the calibration region) is never
    shown while adapting. Each Adam step hides a further random ``holdout`` fraction and learns to
    predict it; every ``check_every`` steps the model predicts the validation samples, and the
    parameters with the lowest validation error are returned — the unadapted model included, so
    adaptation that does not help on the scan's own data is not kept. Returns an adapted copy.
    """
    adapted = copy.deepcopy(model).to(device).train()
    params = [p for p in adapted.parameters() if p.requires_grad]
    if steps <= 0 or not params:
        return adapted.eval()
    generator = torch.Generator().manual_seed(seed)
    slices = prepared.masked_kspace.shape[0]
    check_slices = sorted({slices // 2, max(0, slices // 2 - slices // 4)})  # two central slices
    masks = [slice_masks(prepared, i, 1).to(device) for i in range(slices)]
    val = [_random_subset(m, validation, generator) for m in masks]

    def validation_error() -> float:
        adapted.eval()
        with torch.no_grad():
            errors = [_hidden_kspace_loss(adapted, prepared.masked_kspace[i : i + 1].to(device),
                                          masks[i].bool() & ~val[i], val[i]).item() for i in check_slices]
        adapted.train()
        return float(np.mean(errors))

    if not all(v.any() for v in val):
        warnings.warn("test-time adaptation skipped: no measured samples outside the calibration region",
                      stacklevel=2)
        return adapted.eval()
    best_error, best_state = validation_error(), [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=lr)
    for step in range(1, steps + 1):
        index = int(torch.randint(slices, (1,), generator=generator))
        available = masks[index].bool() & ~val[index]
        hide = _random_subset(available.float(), holdout, generator)
        loss = _hidden_kspace_loss(adapted, prepared.masked_kspace[index : index + 1].to(device),
                                   available & ~hide, hide)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % check_every == 0 or step == steps:
            error = validation_error()
            if error < best_error:
                best_error, best_state = error, [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, kept in zip(params, best_state, strict=True):
            p.copy_(kept)
    return adapted.eval()


def output_shape(scan) -> tuple[int, int]:
    """The target's grid when there is one, else the header's reconstruction size, else k-space's."""
    if scan.target is not None:
        return tuple(scan.target.shape[-2:])
    return scan.recon_size


def score(target: np.ndarray, recon: np.ndarray, zero_filled_recon: np.ndarray) -> dict[str, Any]:
    return metrics.all_metrics(target, recon) | {"zero_filled": metrics.all_metrics(target, zero_filled_recon)}


@dataclass
class ReconstructOptions:
    out: Path
    model: str | None = None
    acceleration: int = 4
    mask_type: str = "equispaced_fraction"
    seed: int = 0
    device: str = "auto"
    batch_size: int = 4
    png: bool = False
    nifti: bool = False
    adapt_steps: int = 0
    refine: bool = False
    background_floor: bool | None = None  # None: as the model's config says
    cuda_graphs: bool | None = None  # replay the frozen backbone from CUDA graphs; None: on a GPU (wants_cuda_graphs)


def noise_level_warning(name: str, snr: float, training_snr: list[float] | None) -> str | None:
    """A warning when a scan is much cleaner than the model's training data: a model trained at one
    SNR paints that noise floor into the background (benchmarks/results/snr_robustness.md: SSIM already
    drops clearly at 2.5x the training SNR)."""
    if not training_snr or not np.isfinite(snr) or snr <= 2 * max(training_snr):
        return None
    low, high = min(training_snr), max(training_snr)
    return (f"{name}: estimated SNR {snr:.0f} is far above the model's training data (SNR {low:g}-{high:g}); "
            "it may paint its training noise floor into the background (see benchmarks/results/"
            "snr_robustness.md; fine-tune on data simulated with `simulate --snr LOW:HIGH`)")


def reconstruct_file(path: Path, model: torch.nn.Module, options: ReconstructOptions,
                     device: torch.device, training_snr: list[float] | None = None) -> dict[str, Any]:
    """Reconstruct one file, write its outputs; returns its metrics (empty without a target)."""
    from nirvana_mri.data import read_scan, write_nifti, write_png, write_reconstruction

    scan = read_scan(path)
    snr = estimate_snr(scan.kspace[scan.kspace.shape[0] // 2])
    warning = noise_level_warning(path.name, snr, training_snr)
    if warning:
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    prepared = prepare_scan(scan, options.acceleration, options.mask_type, options.seed, path.name)
    if options.adapt_steps > 0:
        model = adapt_to_scan(model, prepared, device, options.adapt_steps, seed=options.seed)
    recon = run_model(model, prepared, device, options.batch_size, bf16=device.type == "cuda")
    shape = output_shape(scan)
    recon = center_crop(torch.from_numpy(recon), shape).numpy().astype(np.float32)
    out_file = options.out / path.name
    write_reconstruction(out_file, recon, inputs=[path])
    if options.png:
        write_png(out_file.with_suffix(".png"), recon)
    if options.nifti:
        write_nifti(out_file.with_suffix(".nii.gz"), recon)
    if scan.target is None:
        return {}
    zf = center_crop(zero_filled(prepared.masked_kspace), shape).numpy()
    target = scan.target.astype(np.float32)
    if target.shape != recon.shape:
        raise ValueError(f"{path}: target shape {target.shape} differs from reconstruction {recon.shape}")
    return score(target, recon, zf) | {"acceleration": round(prepared.acceleration, 2),
                                       "retrospective": prepared.retrospective,
                                       "estimated_snr": round(snr, 1) if np.isfinite(snr) else None} | (
        {"warning": warning} if warning else {})


def reconstruct_files(paths: list[Path], options: ReconstructOptions) -> dict[str, Any]:
    """Reconstruct many files; a failing file is recorded in ``failed`` and the rest go on."""
    device = pick_device(options.device)
    if options.cuda_graphs and device.type != "cuda":
        raise ValueError(f"--cuda-graphs needs a CUDA device; this run uses {device}")
    model, config = load_model(options.model, device, options.refine, options.background_floor)
    if wants_cuda_graphs(options.cuda_graphs, device, model):
        enable_cuda_graphs(model)
    options.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"files": {}, "failed": {}}
    for path in tqdm(paths, desc="reconstruct", unit="file", dynamic_ncols=True):
        try:
            scores = reconstruct_file(Path(path), model, options, device, config.get("training_snr"))
            if scores:
                results["files"][Path(path).name] = scores
        except (ValueError, OSError, RuntimeError) as err:
            results["failed"][Path(path).name] = str(err)
    if results["files"] or results["failed"]:
        atomic_write_text(options.out / "metrics.json", json.dumps(results, indent=2) + "\n")
    return results


def run_demo(options: ReconstructOptions) -> tuple[Path, dict[str, Any]]:
    """Simulate a sample scan from the MNI152 template, reconstruct it, write OUT/demo.png."""
    from nirvana_mri.data import simulate_demo_scan
    from nirvana_mri.figures import comparison_figure

    options.out.mkdir(parents=True, exist_ok=True)
    sample = simulate_demo_scan(options.out / "input" / "sample_scan.h5", seed=options.seed)
    results = reconstruct_files([sample], options)
    if results["failed"]:
        raise RuntimeError(f"demo reconstruction failed: {results['failed']}")
    scores = results["files"][sample.name]
    from nirvana_mri.data import read_scan

    scan = read_scan(sample)
    recon = _read_reconstruction(options.out / sample.name)
    prepared = prepare_scan(scan, options.acceleration, options.mask_type, options.seed, sample.name)
    zf = center_crop(zero_filled(prepared.masked_kspace), recon.shape[-2:]).numpy()
    middle = recon.shape[0] // 2
    figure = options.out / "demo.png"
    comparison_figure(
        figure, {"zero-filled": zf[middle], "Nirvana-MRI": recon[middle]}, scan.target[middle],
        title=f"{sample.name}: {options.acceleration}x {options.mask_type} (middle slice)",
        scores={"zero-filled": scores["zero_filled"], "Nirvana-MRI": scores},
    )
    return figure, scores


def _read_reconstruction(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        return handle["reconstruction"][()]
