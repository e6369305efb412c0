"""Regularisation of SENSE and compressed sensing chosen on the benchmark data's validation subjects.

The library defaults (benchmarks/results/cs_lambda_sweep.md) were tuned on slices with about a third
of this data's noise (RSS background ~1.5 % of the maximum vs ~4 %), so at SNR 30 they under-regularise.
This sweeps both weights on the *validation* subjects (never the test ones) with the same engine,
masks and metrics as the quality report, and names the weight with the best mean SSIM over 4x and 8x.

    python benchmarks/tune_classical_val.py --data VALDIR [--slices 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from nirvana_mri import benchmark
from nirvana_mri.io_utils import atomic_write_text

SENSE_LAMBDAS = [1e-3, 1e-2, 3e-2, 1e-1]
CS_LAMBDAS = [3e-4, 1e-3, 3e-3, 1e-2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of validation volumes")
    parser.add_argument("--slices", type=int, default=2, help="central slices per volume")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    methods = benchmark.resolve_methods(["sense", "cs_l1_wavelet"], None)
    rows = []
    for sense_lambda, cs_lambda in zip(SENSE_LAMBDAS, CS_LAMBDAS, strict=True):
        options = {"sense": {"lamda": sense_lambda}, "cs_l1_wavelet": {"lamda": cs_lambda}}
        results = benchmark.run_benchmark(args.data, methods, max_slices_per_volume=args.slices, device="cpu",
                                          classical_options=options)
        for row in results["rows"]:
            lamda = options[row["method"]]["lamda"]
            rows.append({"method": row["method"], "lamda": lamda, "accel": row["accel"],
                         "ssim": row["ssim_mean"], "psnr": row["psnr_mean"], "nmse": row["nmse_mean"]})
            print(row["method"], lamda, row["accel"], round(row["ssim_mean"], 4), flush=True)
    best = {}
    for method in ("sense", "cs_l1_wavelet"):
        grid = sorted({r["lamda"] for r in rows if r["method"] == method})
        score = {lam: float(np.mean([r["ssim"] for r in rows if r["method"] == method and r["lamda"] == lam]))
                 for lam in grid}
        best[method] = max(score, key=score.get)
    summary = {"command": " ".join(["python", *sys.argv]), "machine": platform.machine(), "data": str(args.data),
               "slices_per_volume": args.slices, "rows": rows, "best_lambda": best}
    atomic_write_text(args.out / "classical_lambda_val.json", json.dumps(summary, indent=2) + "\n")
    lines = ["# SENSE / CS regularisation on the validation subjects", "", f"`{summary['command']}` on "
             f"{summary['machine']}; central {args.slices} slices of each validation volume; fastMRI SSIM.", "",
             "| method | lambda | SSIM 4x | SSIM 8x | PSNR 4x | PSNR 8x |", "|---|---:|---:|---:|---:|---:|"]
    for method in ("sense", "cs_l1_wavelet"):
        for lam in sorted({r["lamda"] for r in rows if r["method"] == method}):
            cell = {r["accel"]: r for r in rows if r["method"] == method and r["lamda"] == lam}
            lines.append(f"| {method} | {lam:g} | {cell[4]['ssim']:.4f} | {cell[8]['ssim']:.4f} | "
                         f"{cell[4]['psnr']:.2f} | {cell[8]['psnr']:.2f} |")
    lines += ["", "Best mean SSIM over 4x and 8x: " + ", ".join(f"{m} lambda={v:g}" for m, v in best.items()) + "."]
    atomic_write_text(args.out / "classical_lambda_val.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
