"""Choose the L1-wavelet compressed-sensing lambda (and iteration count), and time the classical methods.

Simulates 16-coil 256x256 k-space from real brain slices (../shared/data/anatomy: SIAT T2 images with
their measured phase, ANTs T1 slices with a smooth synthetic phase), birdcage coil maps and complex
Gaussian noise (RSS background ~1.5% of the image maximum, like fastMRI brain), undersamples it with
fastMRI's equispaced-fraction masks at 4x and 8x (fixed seeds), and sweeps lambda on k-space normalised
the way :func:`nirvana_mri.baselines.classical.cs_l1_wavelet` normalises it, scoring SSIM / PSNR the
fastMRI way (maps are estimated once per slice and shared by every setting). The timings of the chosen
defaults are measured by benchmarks/classical_timing.py.

The slices used here are a tuning set: the benchmark's test volumes must come from other subjects.

    python benchmarks/tune_cs_lambda.py [--anatomy ../shared/data/anatomy] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import sigpy.mri
from fastmri.data.subsample import EquispacedMaskFractionFunc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nirvana_mri import metrics  # noqa: E402
from nirvana_mri.baselines import classical  # noqa: E402
from nirvana_mri.benchmark import hardware_info  # noqa: E402
from nirvana_mri.io_utils import atomic_write_text  # noqa: E402
from nirvana_mri.physics import fft2c_np, ifft2c_np, rss_np  # noqa: E402

CENTER_FRACTIONS = {4: 0.08, 8: 0.04}
# tuning slices: (file, index). SIAT ids 0-30 are distinct subjects; ANTs r16..r85 likewise.
TUNING_SLICES = [("siat_t2_complex.h5", i) for i in (1, 9, 17, 25)] + [
    ("ants_t1_slices.h5", i) for i in (0, 3)
]


def simulate(
    image: np.ndarray, coils: int, seed: int, noise_rel: float = 0.015
) -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled multi-coil k-space [C,H,W] and its RSS target [H,W] from a 2-D image."""
    rng = np.random.default_rng(seed)
    h, w = image.shape
    image = image / np.abs(image).max()
    if not np.iscomplexobj(image):
        yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        image = image * np.exp(1j * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy + 0.5 * xx * yy))
    maps = sigpy.mri.birdcage_maps((coils, h, w), r=1.3)
    coil_images = maps * image
    clean_rss = rss_np(coil_images, axis=0)
    sigma = noise_rel * clean_rss.max() / np.sqrt(2 * coils)
    kspace = fft2c_np(coil_images) + sigma * (
        rng.standard_normal((coils, h, w)) + 1j * rng.standard_normal((coils, h, w))
    )
    kspace = kspace.astype(np.complex64)
    return kspace, rss_np(ifft2c_np(kspace), axis=0).astype(np.float32)


def load_slices(anatomy: Path, coils: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for seed, (name, index) in enumerate(TUNING_SLICES):
        with h5py.File(anatomy / name, "r") as f:
            image = np.asarray(f["images"][index])
        kspace, target = simulate(image, coils, seed)
        out.append((f"{name}[{index}]", kspace, target))
    return out


def equispaced(width: int, accel: int, seed: int) -> tuple[np.ndarray, int]:
    mask, num_low = EquispacedMaskFractionFunc([CENTER_FRACTIONS[accel]], [accel])(
        (1, 1, width, 2), seed=seed
    )
    return mask.numpy().reshape(1, width).astype(bool), int(num_low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anatomy", type=Path, default=REPO.parent / "shared" / "data" / "anatomy")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--sense-lambdas", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--iters", type=int, nargs="+", default=[30, 60, 100])
    args = parser.parse_args(argv)

    slices = load_slices(args.anatomy, args.coils)
    per_slice = {}
    for accel in (4, 8):
        for s, (name, kspace, target) in enumerate(slices):
            mask, num_low = equispaced(kspace.shape[-1], accel, seed=s)
            masked = kspace * mask
            maps = classical.espirit_maps(masked, mask, num_low)

            def score(key: str, recon: np.ndarray, accel=accel, name=name, target=target) -> None:
                per_slice[(accel, name, key)] = metrics.all_metrics(target, recon)

            score("zero_filled", classical.zero_filled(masked, mask))
            for lam in args.sense_lambdas:
                score(f"sense lambda={lam:g}", classical.sense(masked, mask, lamda=lam, maps=maps))
            for lam in args.lambdas:
                iterates = classical.cs_l1_wavelet_iterates(
                    masked, mask, lamda=lam, checkpoints=args.iters, maps=maps
                )
                for iters, recon in iterates.items():
                    score(f"cs lambda={lam:g} iters={iters}", recon)
            print(f"{accel}x {name} done", flush=True)
    sweep = []  # one entry per (accel, method setting): mean scores over the tuning slices
    keys = sorted({k[2] for k in per_slice})
    for accel in (4, 8):
        for key in keys:
            vals = [per_slice[(accel, name, key)] for name, _, _ in slices]
            sweep.append(
                {
                    "accel": accel,
                    "method": key,
                    "ssim_mean": float(np.mean([v["ssim"] for v in vals])),
                    "ssim_std": float(np.std([v["ssim"] for v in vals])),
                    "psnr_mean": float(np.mean([v["psnr"] for v in vals])),
                    "nmse_mean": float(np.mean([v["nmse"] for v in vals])),
                }
            )

    best = {}
    for accel in (4, 8):
        cs_rows = [r for r in sweep if r["accel"] == accel and r["method"].startswith("cs ")]
        best[str(accel)] = max(cs_rows, key=lambda r: r["ssim_mean"])["method"]
    both = {}  # CS setting -> mean of its 4x and 8x mean SSIMs
    for row in sweep:
        if row["method"].startswith("cs "):
            both.setdefault(row["method"], []).append(row["ssim_mean"])
    best["both"] = max(both, key=lambda k: np.mean(both[k]))

    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware_info("cpu"),
        "python": platform.python_version(),
        "tuning_slices": [name for name, _, _ in slices],
        "coils": args.coils,
        "defaults": {
            "cs_lambda": classical.CS_LAMBDA,
            "cs_iters": classical.CS_ITERS,
            "sense_lambda": classical.SENSE_LAMBDA,
            "sense_iters": classical.SENSE_ITERS,
        },
        "best_cs_setting_by_ssim": best,
        "sweep": sweep,
    }
    atomic_write_text(args.out / "cs_lambda_sweep.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"# CS lambda sweep ({args.coils} coils, 256x256, {len(slices)} tuning slices)",
        "",
        f"Command: `{result['command']}`  ",
        f"Hardware: {result['hardware']['cpu']}",
        "",
        "| accel | method | SSIM mean ± std | PSNR mean | NMSE mean |",
        "|---|---|---|---|---|",
    ]
    for row in sweep:
        lines.append(
            f"| {row['accel']}x | {row['method']} | {row['ssim_mean']:.4f} ± {row['ssim_std']:.4f} | "
            f"{row['psnr_mean']:.2f} | {row['nmse_mean']:.4f} |"
        )
    lines += ["", "Best CS setting by mean SSIM: " + ", ".join(f"{a}: {m}" for a, m in best.items())]
    atomic_write_text(args.out / "cs_lambda_sweep.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
