"""``nirvana-mri simulate``: write a fastMRI-format multi-coil train/val/test set from real anatomy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "Simulate fastMRI-format multi-coil k-space (train/val/test split by subject) from real anatomy: "
    "the MNI152 template bundled with nilearn (default), the shared anatomy HDF5 files, or your own "
    "NIfTI / PNG / HDF5 images."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output directory (gets train/ val/ test/ and manifest.json)%(default).0s",
    )
    parser.add_argument(
        "--source",
        nargs="+",
        default=["mni152"],
        metavar="SRC",
        help="'mni152', HDF5 files with 'images' [N,H,W] (+ 'subject' [N]), NIfTI volumes, "
        "PNG files or directories of PNGs",
    )
    parser.add_argument("--coils", type=int, default=16, help="receive coils (1..64; realistic 4..32)")
    parser.add_argument(
        "--snr",
        type=_snr_arg,
        default=30.0,
        help="mean object magnitude / per-coil noise std (SNR of the optimal coil combination); "
        "LOW:HIGH draws each volume's SNR log-uniformly from that range (train on a range: a model "
        "trained at one SNR paints that noise floor onto cleaner scans)",
    )
    parser.add_argument(
        "--noise-correlation",
        type=float,
        default=0.0,
        help="noise correlation between neighbouring coils, in [0, 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument(
        "--matrix",
        type=int,
        default=256,
        help="common square image grid (aspect ratio kept, zero-padded); 0 keeps native grids",
    )
    parser.add_argument(
        "--oversample",
        action="store_true",
        help="2x readout oversampling like fastMRI brain (k-space H doubled, target not)",
    )
    parser.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=[0.7, 0.15, 0.15],
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of subjects per split",
    )
    parser.add_argument(
        "--slices-per-volume",
        type=int,
        default=None,
        help="evenly spaced slices per subject (default: 8 for mni152, all with signal for "
        "files)%(default).0s",
    )
    parser.add_argument(
        "--max-subjects",
        type=int,
        default=None,
        help="subjects taken from each source (default: 6 mni152 pseudo-subjects; all of a "
        "file)%(default).0s",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset previously simulated into --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"nirvana-mri simulate: error: {message}", file=sys.stderr)
    return 1


def _snr_arg(text: str) -> float | tuple[float, float]:
    """``30`` or ``20:400``."""
    try:
        if ":" in text:
            low, high = text.split(":")
            return float(low), float(high)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW:HIGH, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..data.errors import ScanError

    if not 1 <= args.coils <= 64:
        return _fail(f"--coils must be in 1..64, got {args.coils}")
    low, high = args.snr if isinstance(args.snr, tuple) else (args.snr, args.snr)
    if not (low > 0 and high >= low):
        return _fail(f"--snr must be positive (a range: 0 < LOW <= HIGH), got {args.snr}")
    if not 0.0 <= args.noise_correlation < 1.0:
        return _fail(f"--noise-correlation must be in [0, 1), got {args.noise_correlation}")
    if args.matrix and not 16 <= args.matrix <= 1024:
        return _fail(f"--matrix must be in 16..1024 (or 0 for native grids), got {args.matrix}")
    for name, value in (
        ("--slices-per-volume", args.slices_per_volume),
        ("--max-subjects", args.max_subjects),
    ):
        if value is not None and value < 1:
            return _fail(f"{name} must be >= 1, got {value}")
    if any(f < 0 for f in args.splits) or sum(args.splits) <= 0:
        return _fail(f"--splits must be non-negative and not all zero, got {args.splits}")
    for source in args.source:
        if source.lower() != "mni152" and not Path(source).exists():
            return _fail(f"source not found: {source}")
    if args.source.count("mni152") and not args.matrix:
        return _fail("the mni152 source needs --matrix > 0")

    from ..data.simulate import simulate_dataset

    try:
        summary = simulate_dataset(
            args.out,
            source=args.source,
            coils=args.coils,
            snr=args.snr,
            seed=args.seed,
            matrix=args.matrix or None,
            oversample=args.oversample,
            splits=args.splits,
            slices_per_volume=args.slices_per_volume,
            max_subjects=args.max_subjects,
            noise_correlation=args.noise_correlation,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (ScanError, ValueError) as err:
        return _fail(str(err))
    counts = ", ".join(f"{split} {len(files)}" for split, files in summary["files"].items())
    print(
        f"simulated {summary['volumes']} volumes ({summary['slices']} slices, {args.coils} coils) in "
        f"{summary['seconds']:.1f} s: {counts} -> {args.out} (see manifest.json)"
    )
    return 0
