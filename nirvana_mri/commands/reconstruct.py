"""``nirvana-mri reconstruct``: undersampled k-space in fastMRI HDF5 files -> images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("Reconstruct scans (fastMRI-format HDF5, multi- or single-coil) with Nirvana-MRI. Fully sampled "
        "input is undersampled retrospectively with a seeded fastMRI mask; already undersampled input "
        "(a stored mask or zeros in k-space) is used as measured. Writes OUT/<name>.h5 with a "
        "'reconstruction' dataset (fastMRI submission format), optional PNG / NIfTI, and OUT/metrics.json "
        "when the files hold a target. --demo simulates a sample scan and needs nothing else.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path, help="fastMRI-format .h5 scans (or folders of them)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (never one of the inputs)")
    parser.add_argument("--model", default="bundled", help="model folder; 'bundled' = the packaged default")
    parser.add_argument("--accel", type=int, default=4, choices=[2, 3, 4, 5, 6, 8, 10, 12, 16],
                        help="acceleration for retrospective undersampling")
    parser.add_argument("--mask-type", default="equispaced_fraction",
                        choices=["random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"])
    parser.add_argument("--seed", type=int, default=0, help="mask seed (combined with each file name)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=4, help="slices per forward pass")
    parser.add_argument("--png", action="store_true", help="also write a PNG preview per file")
    parser.add_argument("--nifti", action="store_true", help="also write a NIfTI volume per file")
    parser.add_argument("--adapt-steps", type=int, default=0,
                        help="self-supervised test-time adaptation steps per scan (0 = off): the codecs learn "
                             "to predict held-out measured k-space, and the step with the lowest error on a "
                             "further validation hold-out is kept (possibly none). Slow on CPU (seconds per "
                             "step). With the bundled model it lowered SSIM (-0.024 at SNR 300: it fits the "
                             "measured noise too); see benchmarks/results/adaptation_stage3_snr300.md")
    parser.add_argument("--refine", action="store_true",
                        help="clean scans only: after the network, a few L1-wavelet compressed-sensing steps "
                             "from its image (Nirvana-MRI models; applied only to slices whose measured noise is "
                             "low, roughly SNR 250 and above: +0.01 / +0.08 SSIM at SNR 300 / 1000 on validation "
                             "volumes at 4x, but it would cost SSIM on noisier ones, and on unseen anatomy it was "
                             "mixed). Off by default; see benchmarks/results/refine_probe/ and ood_clean/")
    parser.add_argument("--background-floor", action=argparse.BooleanOptionalAction, default=None,
                        help="outside the object (its support read off the calibration lines, plus whatever the "
                             "calibration image shows above its noise) set the image to the noise floor of an "
                             "RSS image, as in a fastMRI target (Nirvana-MRI models). Default: as the model's "
                             "config says; the bundled model has it on (held-out test +0.019 / +0.014 SSIM at "
                             "4x / 8x, every volume up; on evaluation-only anatomy +0.030, worst -0.0002). "
                             "--no-background-floor gives the network's own background, e.g. for a zero "
                             "background; see benchmarks/results/clean_scan_probe_gate_*.md")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                        help="replay the frozen backbone's forward from CUDA graphs, one per batch shape "
                             "(Nirvana-MRI models on a GPU): one launch instead of hundreds per backbone call. "
                             "Each graph is checked against the eager result on its first two batches; a shape "
                             "that differs stays eager, with a warning. Default: on when running on a GPU (an "
                             "H200 reconstructed 4.1x / 3.3x / 2.0x faster per slice at batch size 1 / 4 / 8, "
                             "output equal to eager; benchmarks/results/graph_reconstruct.md); "
                             "--no-cuda-graphs runs eagerly; --cuda-graphs on a CPU is an error")
    parser.add_argument("--demo", action="store_true",
                        help="simulate a sample scan, reconstruct it and write OUT/demo.png")


def _expand(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        files.extend(sorted(path.glob("*.h5")) if path.is_dir() else [path])
    return files


def run(args: argparse.Namespace) -> int:
    from nirvana_mri.reconstruct import ReconstructOptions, reconstruct_files, run_demo

    options = ReconstructOptions(out=args.out, model=args.model, acceleration=args.accel, mask_type=args.mask_type,
                                 seed=args.seed, device=args.device, batch_size=args.batch_size, png=args.png,
                                 nifti=args.nifti, adapt_steps=args.adapt_steps,
                                 refine=args.refine, background_floor=args.background_floor,
                                 cuda_graphs=args.cuda_graphs)
    if args.batch_size < 1 or args.adapt_steps < 0:
        raise ValueError("--batch-size must be positive and --adapt-steps non-negative")
    if args.demo:
        figure, scores = run_demo(options)
        print(f"demo: SSIM {scores['ssim']:.4f} (zero-filled {scores['zero_filled']['ssim']:.4f}), "
              f"PSNR {scores['psnr']:.2f} dB; figure in {figure}")
        return 0
    files = _expand(args.files)
    if not files:
        raise ValueError("no input files (give .h5 files or folders, or --demo)")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"input not found: {', '.join(missing)}")
    results = reconstruct_files(files, options)
    written = len(files) - len(results["failed"])
    for name, reason in results["failed"].items():
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    if results["files"]:
        ssim = sum(r["ssim"] for r in results["files"].values()) / len(results["files"])
        zf = sum(r["zero_filled"]["ssim"] for r in results["files"].values()) / len(results["files"])
        print(f"mean SSIM {ssim:.4f} (zero-filled {zf:.4f}) over {len(results['files'])} file(s) with targets")
    print(f"{written} of {len(files)} file(s) reconstructed into {args.out}"
          + (f"; {len(results['failed'])} failed" if results["failed"] else ""))
    return 1 if results["failed"] else 0
