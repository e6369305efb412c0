"""Does a model trained at one noise level paint that noise floor onto cleaner scans?

The held-out test subjects of the training sources (the same subject split as
benchmarks/make_datasets.py, seed 0) are simulated again at several SNRs; every model reconstructs
them at 4x (equispaced-fraction, fixed seed), and SSIM / PSNR / NMSE are compared with zero-filled.
Optionally a measured, fully sampled scan with a target (e.g. ../shared/data/real_kspace/
ugmpi_phantom_4ch_256.h5, a high-SNR phantom) is scored the same way.

    python benchmarks/snr_robustness.py --anatomy DIR --models bundled=PATH,other=PATH \\
        [--snrs 30 100 300 1000] [--slices 4] [--real FILE.h5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
from adaptation import trimmed_copy

from nirvana_mri.data import simulate_dataset
from nirvana_mri.io_utils import atomic_write_text
from nirvana_mri.reconstruct import ReconstructOptions, reconstruct_files

# the training sources' test subjects (make_datasets.py TRAIN_SETS, seed 0), fewer slices
SOURCES = {
    "ixi": dict(source="ixi_t1_2mm.h5", coils=16, slices_per_volume=8),
    "mni": dict(source="mni152", coils=12, slices_per_volume=8, max_subjects=12),
}


def simulate_test_set(anatomy: Path, snr: float, folder: Path, slices: int) -> list[Path]:
    files = []
    for name, spec in SOURCES.items():
        spec = dict(spec)
        source = spec.pop("source")
        out = folder / f"{name}_snr{snr:g}"
        simulate_dataset(out, source=source if source == "mni152" else anatomy / source, snr=snr, seed=0, **spec)
        files += [trimmed_copy(p, folder, slices) for p in sorted((out / "test").glob("*.h5"))]
    return files


def background_floor(reconstruction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Mean of the reconstruction and of the target where the target is below 5 % of its maximum,
    as fractions of that maximum: how much signal a method paints where there is (almost) none."""
    background = target < 0.05 * target.max()
    return float(reconstruction[background].mean() / target.max()), float(target[background].mean() / target.max())


def score(files: list[Path], model: str, out: Path, accel: int) -> dict:
    options = ReconstructOptions(out=out, model=model, acceleration=accel, device="cpu")
    outcome = reconstruct_files(files, options)
    per_file = outcome["files"]
    for path in files:
        with h5py.File(path) as source, h5py.File(out / path.name) as result:
            recon_floor, target_floor = background_floor(result["reconstruction"][()], source["reconstruction_rss"][()])
        per_file[path.name].update(background=recon_floor, target_background=target_floor)
    names = ("ssim", "psnr", "nmse", "background")
    mean = {m: float(np.mean([v[m] for v in per_file.values()])) for m in names}
    zero_filled = {m: float(np.mean([v["zero_filled"][m] for v in per_file.values()])) for m in names[:3]}
    zero_filled["target_background"] = float(np.mean([v["target_background"] for v in per_file.values()]))
    return {"mean": mean, "zero_filled": zero_filled, "files": per_file, "failed": outcome["failed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anatomy", type=Path, required=True, help="folder with ixi_t1_2mm.h5")
    parser.add_argument("--models", required=True, help="NAME=MODEL_FOLDER,... ('bundled' as folder works)")
    parser.add_argument("--snrs", type=float, nargs="+", default=[30, 100, 300, 1000])
    parser.add_argument("--slices", type=int, default=4, help="central slices per volume")
    parser.add_argument("--accel", type=int, default=4)
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="measured files with a target")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.models.split(","))
    torch.manual_seed(0)
    results: dict = {"command": " ".join(["python", *sys.argv]), "machine": platform.machine(),
                     "torch": torch.__version__, "accel": args.accel, "slices_per_volume": args.slices,
                     "models": models, "rows": []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sets = {f"simulated held-out, SNR {snr:g}": simulate_test_set(args.anatomy, snr, scratch / f"s{snr:g}",
                                                                       args.slices) for snr in args.snrs}
        sets.update({f"measured: {path.name}": [path] for path in args.real})
        for data, files in sets.items():
            for name, folder in models.items():
                result = score(files, folder, scratch / "out" / name / str(abs(hash(data))), args.accel)
                results["rows"].append({"data": data, "method": name, **result})
                print(data, name, result["mean"], "zero-filled", result["zero_filled"], flush=True)
    atomic_write_text(args.out / "snr_robustness.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(args.out / "snr_robustness.md", markdown(results))
    return 0


def markdown(results: dict) -> str:
    names = list(results["models"])
    lines = ["# Robustness to the noise level (SNR) of the scan", "",
             f"`{results['command']}` on {results['machine']} (torch {results['torch']}); "
             f"{results['accel']}x equispaced-fraction, central {results['slices_per_volume']} slices per volume. "
             "Models: " + ", ".join(f"`{k}` = {v}" for k, v in results["models"].items()) + ".", "",
             "| data | zero-filled SSIM | " + " | ".join(f"{n} SSIM" for n in names) + " | zero-filled PSNR | "
             + " | ".join(f"{n} PSNR" for n in names) + " | target background | "
             + " | ".join(f"{n} background" for n in names) + " |",
             "|---|---:|" + "---:|" * len(names) + "---:|" + "---:|" * len(names) + "---:|" + "---:|" * len(names)]
    for data in dict.fromkeys(r["data"] for r in results["rows"]):
        rows = {r["method"]: r for r in results["rows"] if r["data"] == data}
        zf = next(iter(rows.values()))["zero_filled"]
        lines.append(f"| {data} | {zf['ssim']:.4f} | " + " | ".join(f"{rows[n]['mean']['ssim']:.4f}" for n in names)
                     + f" | {zf['psnr']:.2f} | " + " | ".join(f"{rows[n]['mean']['psnr']:.2f}" for n in names)
                     + f" | {zf['target_background']:.4f} | "
                     + " | ".join(f"{rows[n]['mean']['background']:.4f}" for n in names) + " |")
    lines += ["", "Background: mean of the image where the target is below 5 % of its maximum, as a fraction of that "
              "maximum (the noise floor a method paints there; the target's own is the noise of the scan)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
