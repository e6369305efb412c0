"""Nirvana-MRI on measured k-space (shared/data/real_kspace), against zero-filled and SENSE.

- ``ugmpi_phantom_4ch_256.h5`` is fully sampled: undersampled retrospectively (4x, 8x equispaced-
  fraction, seed 0) and scored against its stored RSS target (SSIM / PSNR / NMSE, fastMRI way).
- ``brain_8ch_poisson_r8_undersampled.h5`` (a real brain, 2-D Poisson disc, ~8x) and
  ``siemens_phantom_14ch_grappa_r3.ismrmrd.h5`` (raw Siemens data, GRAPPA R=3 with calibration lines)
  have no fully sampled reference. They are scored by k-space hold-out: a seeded 20% of the measured
  samples outside the calibration region is hidden, each method reconstructs from the rest and predicts
  the hidden coil samples; NMSE on those samples (zero-filled predicts zeros: NMSE 1).
Writes ``benchmarks/results/real_kspace.{json,md}`` and ``real_kspace.png``.

    python benchmarks/real_kspace.py --data ../shared/data/real_kspace [--model bundled]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from nirvana_mri import metrics
from nirvana_mri.baselines.classical import sense, sense_image
from nirvana_mri.data import make_mask, read_scan
from nirvana_mri.figures import comparison_figure
from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.physics import center_crop, fft2c_np, ifft2c_np, low_frequency_mask, rss_np
from nirvana_mri.reconstruct import load_model

HOLDOUT = 0.2


def nirvana(model, masked: np.ndarray, mask2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude image and predicted coil k-space of one slice (complex [C, H, W])."""
    kspace = torch.view_as_real(torch.from_numpy(masked.astype(np.complex64)))[None]
    mask = torch.from_numpy(mask2d.astype(np.float32))[None, None, :, :, None]
    with torch.no_grad():
        image, coil_kspace = model(kspace, mask, None, return_kspace=True)
    return image[0].numpy(), torch.view_as_complex(coil_kspace[0].contiguous()).numpy()


def holdout_split(mask2d: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, hidden) boolean patterns: hidden = a random 20% of measured samples outside the ACS."""
    full = torch.from_numpy(np.ascontiguousarray(mask2d, dtype=np.float32))[None, None, :, :, None]
    calibration = low_frequency_mask(full)[0, 0, :, :, 0].numpy().astype(bool)
    rng = np.random.default_rng(seed)
    hidden = np.broadcast_to(mask2d, mask2d.shape) & ~calibration & (rng.random(mask2d.shape) < HOLDOUT)
    return mask2d & ~hidden, hidden


def holdout_nmse(predicted: np.ndarray, measured: np.ndarray, hidden: np.ndarray) -> float:
    sel = np.broadcast_to(hidden, measured.shape)
    return float(np.sum(np.abs(predicted[sel] - measured[sel]) ** 2) / np.sum(np.abs(measured[sel]) ** 2))


def retrospective(model, path: Path) -> dict:
    scan = read_scan(path)
    kspace, target = scan.kspace[0], scan.target[0]
    rows, images = {}, {}
    for accel in (4, 8):
        mask, num_low = make_mask(scan.shape, accel, "equispaced_fraction", seed=0, fname=path.name)
        mask2d = np.broadcast_to(mask, scan.shape)
        masked = kspace * mask2d
        recons = {"zero_filled": rss_np(ifft2c_np(masked)), "sense": sense(masked, mask2d, num_low),
                  "nirvana_mri": nirvana(model, masked, mask2d)[0]}
        for name, image in recons.items():
            image = center_crop(torch.from_numpy(np.ascontiguousarray(image)), target.shape).numpy()
            rows[f"{name}@{accel}x"] = metrics.all_metrics(target, image)
            images[(name, accel)] = image
    return {"kind": "retrospective", "shape": list(scan.kspace.shape), "rows": rows,
            "figure": ({n: images[(n, 4)] for n in ("zero_filled", "sense", "nirvana_mri")}, target)}


def holdout(model, path: Path, seed: int = 0) -> dict:
    scan = read_scan(path)
    kspace = scan.kspace[0]
    mask2d = np.broadcast_to(scan.slice_mask(0), scan.shape).copy()
    kept, hidden = holdout_split(mask2d, seed)
    masked = kspace * kept
    maps_image, maps = sense_image(masked, kept)
    predictions = {"zero_filled": np.zeros_like(kspace), "sense": fft2c_np(maps * maps_image[None]),
                   "nirvana_mri": nirvana(model, masked, kept)[1]}
    rows = {name: {"holdout_nmse": holdout_nmse(pred, kspace, hidden)} for name, pred in predictions.items()}
    full_images = {"zero_filled": rss_np(ifft2c_np(kspace * mask2d)), "sense": sense(kspace * mask2d, mask2d),
                   "nirvana_mri": nirvana(model, kspace * mask2d, mask2d)[0]}
    crop = scan.recon_size
    full_images = {k: center_crop(torch.from_numpy(np.ascontiguousarray(v)), crop).numpy()
                   for k, v in full_images.items()}
    return {"kind": "holdout", "shape": list(scan.kspace.shape), "acceleration": round(scan.acceleration, 2),
            "hidden_samples": int(hidden.sum()), "rows": rows, "figure": (full_images, None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = load_model(args.model, "cpu")
    cases = {"ugmpi_phantom_4ch_256.h5": retrospective, "brain_8ch_poisson_r8_undersampled.h5": holdout,
             "siemens_phantom_14ch_grappa_r3.ismrmrd.h5": holdout}
    results, figures = {}, {}
    for name, evaluate in cases.items():
        outcome = evaluate(model, args.data / name)
        figures[name] = outcome.pop("figure")
        results[name] = outcome
        print(name, json.dumps(outcome["rows"]), flush=True)
    report = {"command": " ".join(["python", *sys.argv]), "machine": f"{platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}", "model": args.model, "holdout_fraction": HOLDOUT, "files": results}
    atomic_write_text(args.out / "real_kspace.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / "real_kspace.md", markdown(report))
    for name, (images, target) in figures.items():
        stem = name.split(".")[0]
        comparison_figure(args.out / f"real_kspace_{stem}.png", images, target, title=name)
    return 0


def markdown(report: dict) -> str:
    lines = ["# Nirvana-MRI on measured k-space", "", f"`{report['command']}` on {report['machine']}.", ""]
    for name, outcome in report["files"].items():
        lines += [f"## {name} (k-space {outcome['shape']})", ""]
        if outcome["kind"] == "retrospective":
            lines += ["| method | SSIM | PSNR (dB) | NMSE |", "|---|---:|---:|---:|"]
            lines += [f"| {k} | {v['ssim']:.4f} | {v['psnr']:.2f} | {v['nmse']:.4f} |"
                      for k, v in outcome["rows"].items()]
        else:
            lines += [f"Measured acceleration {outcome['acceleration']}x; {outcome['hidden_samples']} measured "
                      f"samples hidden ({int(100 * report['holdout_fraction'])}% outside the calibration region).", "",
                      "| method | NMSE on the hidden samples (lower is better) |", "|---|---:|"]
            lines += [f"| {k} | {v['holdout_nmse']:.4f} |" for k, v in outcome["rows"].items()]
        lines += ["", f"![{name}](real_kspace_{name.split('.')[0]}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
