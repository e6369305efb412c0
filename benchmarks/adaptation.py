"""Does self-supervised test-time adaptation (``nirvana-mri reconstruct --adapt-steps N``) help?

Each held-out volume is reconstructed with the bundled model without adaptation and with N Adam steps
of k-space hold-out self-supervision on its own measured data (the codecs adapt; the backbone stays
frozen); SSIM / PSNR / NMSE against the target, per volume and averaged. Slices are trimmed to the
central ``--slices`` so the CPU run stays short.

    python benchmarks/adaptation.py --data TESTDIR [--steps 0 10 30] [--accel 4] [--slices 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.reconstruct import ReconstructOptions, reconstruct_files


def trimmed_copy(path: Path, folder: Path, slices: int) -> Path:
    """The central ``slices`` slices of a fastMRI file, in a scratch folder (inputs are never touched)."""
    out = folder / path.name
    with h5py.File(path, "r") as src, h5py.File(out, "w") as dst:
        total = src["kspace"].shape[0]
        start = max(0, (total - slices) // 2)
        for key in ("kspace", "reconstruction_rss"):
            dst.create_dataset(key, data=src[key][start : start + slices])
        dst.create_dataset("ismrmrd_header", data=src["ismrmrd_header"][()])
        for key, value in src.attrs.items():
            dst.attrs[key] = value
    return out


def write_markdown(results: dict, out: Path) -> None:
    """Means and per-volume SSIM of every run, and the same for the fixed-step version kept for comparison."""
    lines = ["# Test-time adaptation (`reconstruct --adapt-steps N`)", "",
             f"`{results['command']}` on {results['machine']} (torch {results['torch']}); {results['accel']}x "
             f"equispaced-fraction, the central {results['slices_per_volume']} slices of each volume. Adaptation "
             "keeps the parameters with the lowest error on a self-validation hold-out of the measured k-space "
             "(possibly the unadapted ones).", ""]
    lines += _tables(results)
    fixed = out / "adaptation_fixed_steps.json"
    if fixed.exists():
        lines += ["", "## Before self-validated early stopping (the last step kept, `adaptation_fixed_steps.json`)", ""]
        lines += _tables(json.loads(fixed.read_text()))
    atomic_write_text(out / "adaptation.md", "\n".join(lines) + "\n")


def _tables(results: dict) -> list[str]:
    runs = results["runs"]
    names = sorted(next(iter(runs.values()))["files"])
    lines = ["| adapt steps | SSIM | PSNR (dB) | NMSE | seconds (all files) | " + " | ".join(
                 f"SSIM {n.removesuffix('.h5')}" for n in names) + " |",
             "|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for steps, run in runs.items():
        m = run["mean"]
        per_volume = " | ".join(f"{run['files'][n]['ssim']:.4f}" for n in names)
        lines.append(f"| {steps} | {m['ssim']:.4f} | {m['psnr']:.2f} | {m['nmse']:.4f} | {run['seconds']:.0f} | "
                     f"{per_volume} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10, 30])
    parser.add_argument("--accel", type=int, default=4)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--render-only", action="store_true", help="rewrite adaptation.md from adaptation.json")
    args = parser.parse_args()
    if args.render_only:
        write_markdown(json.loads((args.out / "adaptation.json").read_text()), args.out)
        return 0
    torch.manual_seed(0)
    results: dict = {"command": " ".join(["python", *sys.argv]), "machine": platform.processor() or platform.machine(),
                     "torch": torch.__version__, "accel": args.accel, "slices_per_volume": args.slices, "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        files = [trimmed_copy(p, scratch, args.slices) for p in sorted(args.data.glob("*.h5"))]
        for steps in args.steps:
            started = time.time()
            options = ReconstructOptions(out=scratch / f"out{steps}", model=args.model, acceleration=args.accel,
                                         device="cpu", adapt_steps=steps)
            outcome = reconstruct_files(files, options)
            per_file = outcome["files"]
            results["runs"][str(steps)] = {
                "seconds": time.time() - started, "failed": outcome["failed"], "files": per_file,
                "mean": {m: float(np.mean([v[m] for v in per_file.values()])) for m in ("ssim", "psnr", "nmse")},
            }
            print(steps, results["runs"][str(steps)]["mean"], flush=True)
    atomic_write_text(args.out / "adaptation.json", json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
